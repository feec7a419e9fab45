"use client";
import { forwardRef, useImperativeHandle, useRef, useState, type FormEvent, type KeyboardEvent } from "react";

export interface ChatInputProps {
  onSend: (text: string) => void;
  /** The team is talking: a message now interrupts them (the input stays enabled). */
  teamBusy?: boolean;
  placeholder?: string;
  maxLength?: number;
}

export interface ChatInputHandle {
  focus: () => void;
  setText: (text: string) => void;
}

/** The person's line to the team. Always enabled: typing while the team talks is how the
 * person interjects. Enter sends, Shift+Enter adds a line. */
export const ChatInput = forwardRef<ChatInputHandle, ChatInputProps>(function ChatInput(
  { onSend, teamBusy = false, placeholder, maxLength = 8000 },
  ref,
) {
  const [text, setText] = useState("");
  const area = useRef<HTMLTextAreaElement>(null);

  useImperativeHandle(ref, () => ({
    focus: () => area.current?.focus(),
    setText: (value: string) => {
      setText(value);
      requestAnimationFrame(() => {
        const el = area.current;
        if (!el) return;
        el.focus();
        el.setSelectionRange(value.length, value.length);
      });
    },
  }));

  const submit = (event?: FormEvent) => {
    event?.preventDefault();
    const value = text.trim();
    if (!value) return;
    onSend(value);
    setText("");
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      submit();
    }
  };

  const rows = Math.min(6, Math.max(1, text.split("\n").length));
  return (
    <form className="stack" style={{ gap: 6 }} onSubmit={submit} aria-label="Message the team">
      <div className="chat-input">
        <label htmlFor="chat-input" className="visually-hidden">
          Message to the team
        </label>
        <textarea
          id="chat-input"
          ref={area}
          rows={rows}
          value={text}
          maxLength={maxLength}
          placeholder={
            placeholder ??
            (teamBusy ? "Jump in any time…" : "Message the team…")
          }
          onChange={(event) => setText(event.target.value)}
          onKeyDown={onKeyDown}
          aria-describedby="chat-input-hint"
          data-testid="chat-input"
        />
        <button type="submit" className="btn btn-primary" disabled={!text.trim()} data-testid="send">
          {teamBusy ? "Interject" : "Send"}
        </button>
      </div>
      <p id="chat-input-hint" className="input-hint" style={{ margin: 0 }}>
        {teamBusy
          ? "The team is talking. Your message interrupts them; they answer you first, then go on."
          : "Enter to send, Shift+Enter for a new line."}
      </p>
    </form>
  );
});
