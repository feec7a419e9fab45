import type { CSSProperties } from "react";
import { assetUrl } from "@/lib/api";
import type { ChatMessage } from "@/lib/conversation";
import { persona } from "@/lib/specialists";
import { SpecialistAvatar } from "./SpecialistAvatar";

export interface MessageBubbleProps {
  message: ChatMessage;
  onRetry?: (key: string) => void;
  /** Where to change a role's model (shown under "X is unavailable" messages). */
  settingsHref?: (role: string) => string;
}

/** One message, styled by who wrote it: avatar, name and colour; states for streaming,
 * interrupted, sending and failed. */
export function MessageBubble({ message, onRetry, settingsHref }: MessageBubbleProps) {
  const who = persona(message.role, message.speaker);
  const name = message.role === "user" ? "You" : message.speaker || who.name;
  const style = { "--role-colour": `var(--c-${who.colour})` } as CSSProperties;
  // The images the person gave with this message (metadata.images: checked refs + urls).
  const images = (Array.isArray(message.metadata.images) ? message.metadata.images : []).filter(
    (image): image is { ref: string; url: string; filename?: string } =>
      typeof image?.ref === "string" && typeof image?.url === "string",
  );
  return (
    <article
      className="msg"
      style={style}
      data-role={message.role}
      data-message-id={message.messageId ?? undefined}
      data-streaming={message.streaming || undefined}
      data-pending={message.pending || undefined}
      data-failed={message.failed ? true : undefined}
      data-kind={message.kind ?? undefined}
      data-interrupted={message.interrupted || undefined}
      aria-label={`${name}${message.role !== "user" && message.role !== "system" ? `, ${who.title}` : ""}`}
      aria-busy={message.streaming || undefined}
    >
      <SpecialistAvatar role={message.role} speaker={message.speaker} />
      <div className="msg-body">
        <div className="msg-meta">
          <span className="msg-name">{name}</span>
          {message.role !== "user" && message.role !== "system" && (
            <span className="msg-title">{who.title}</span>
          )}
          {message.interrupted && <span className="badge">interrupted</span>}
        </div>
        <div className="msg-bubble">
          {message.content}
          {message.streaming && <span className="caret" aria-hidden="true" />}
        </div>
        {images.length > 0 && (
          <div className="row" style={{ gap: 6, flexWrap: "wrap" }}>
            {images.map((image) => (
              // eslint-disable-next-line @next/next/no-img-element
              <img
                key={image.ref}
                src={assetUrl(image.url)}
                alt={`Image given: ${image.filename ?? image.ref}`}
                title={image.ref}
                data-testid="message-image"
                height={96}
                style={{ maxWidth: 160, objectFit: "cover", borderRadius: 6 }}
              />
            ))}
          </div>
        )}
        {message.kind === "unavailable" && (
          <div className="msg-status" style={{ color: "var(--warn)" }}>
            {typeof message.metadata.model === "string" && <span>Model: {message.metadata.model}.</span>}
            {settingsHref && typeof message.metadata.unavailable_role === "string" && (
              <a href={settingsHref(message.metadata.unavailable_role)}>
                Change {persona(message.metadata.unavailable_role).name}&apos;s model in Settings
              </a>
            )}
          </div>
        )}
        {message.pending && (
          <div className="msg-status" role="status">
            Sending…
          </div>
        )}
        {message.failed && (
          <div className="msg-status error" role="alert">
            Not sent: {message.failed}
            {onRetry && (
              <button type="button" className="btn btn-small" onClick={() => onRetry(message.key)}>
                Retry
              </button>
            )}
          </div>
        )}
      </div>
    </article>
  );
}
