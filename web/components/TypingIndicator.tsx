import { typingSentence } from "@/lib/conversation";
import { SpecialistAvatar } from "./SpecialistAvatar";

/** "Luna is writing…" with the writers' avatars; announced politely to screen readers. */
export function TypingIndicator({ typing }: { typing: Record<string, string> }) {
  const sentence = typingSentence(typing);
  return (
    <div className="typing" role="status" aria-live="polite" data-testid="typing">
      {sentence && (
        <>
          <span className="typing-avatars">
            {Object.entries(typing).map(([role, speaker]) => (
              <SpecialistAvatar key={role} role={role} speaker={speaker} size={22} />
            ))}
          </span>
          <span>{sentence}</span>
          <span className="typing-dots" aria-hidden="true">
            <span />
            <span />
            <span />
          </span>
        </>
      )}
    </div>
  );
}
