"use client";
import {
  forwardRef,
  useImperativeHandle,
  useRef,
  useState,
  type DragEvent,
  type FormEvent,
  type KeyboardEvent,
} from "react";
import { assetUrl, describeError, type StudioImage } from "@/lib/api";

export interface ChatInputProps {
  onSend: (text: string, images: StudioImage[]) => void;
  /** Upload a file the person attached or dropped; without it, no attaching. */
  onUpload?: (file: File) => Promise<StudioImage>;
  /** The team is talking: a message now interrupts them (the input stays enabled). */
  teamBusy?: boolean;
  placeholder?: string;
  maxLength?: number;
}

export interface ChatInputHandle {
  focus: () => void;
  setText: (text: string) => void;
  /** Attach a stored image (e.g. a result: "Use as init image") to the next message. */
  attach: (image: StudioImage) => void;
}

/** The person's line to the team. Always enabled: typing while the team talks is how the
 * person interjects. Enter sends, Shift+Enter adds a line. */
export const ChatInput = forwardRef<ChatInputHandle, ChatInputProps>(function ChatInput(
  { onSend, onUpload, teamBusy = false, placeholder, maxLength = 8000 },
  ref,
) {
  const [text, setText] = useState("");
  const [images, setImages] = useState<StudioImage[]>([]);
  const [uploading, setUploading] = useState(false);
  const [attachError, setAttachError] = useState<string | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const picker = useRef<HTMLInputElement>(null);

  const attach = (image: StudioImage) =>
    setImages((current) => (current.some((i) => i.ref === image.ref) ? current : [...current, image].slice(-4)));

  const upload = async (files: FileList | File[] | null) => {
    if (!onUpload || !files) return;
    setAttachError(null);
    setUploading(true);
    try {
      for (const file of Array.from(files)) attach(await onUpload(file));
    } catch (error) {
      const { message } = describeError(error);
      setAttachError(message);
    } finally {
      setUploading(false);
    }
  };

  const onDrop = (event: DragEvent<HTMLFormElement>) => {
    if (!onUpload || !event.dataTransfer.files.length) return;
    event.preventDefault();
    void upload(event.dataTransfer.files);
  };

  useImperativeHandle(ref, () => ({
    focus: () => area.current?.focus(),
    attach: (image: StudioImage) => {
      attach(image);
      area.current?.focus();
    },
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
    if (!value || uploading) return;
    onSend(value, images);
    setText("");
    setImages([]);
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      submit();
    }
  };

  const rows = Math.min(6, Math.max(1, text.split("\n").length));
  return (
    <form
      className="stack"
      style={{ gap: 6 }}
      onSubmit={submit}
      onDragOver={(event) => onUpload && event.preventDefault()}
      onDrop={onDrop}
      aria-label="Message the team"
    >
      {(images.length > 0 || attachError) && (
        <div className="row" style={{ gap: 6, flexWrap: "wrap" }} data-testid="attached-images">
          {images.map((image) => (
            <span key={image.ref} className="chip" data-testid="attached-image" title={image.ref}>
              {/* eslint-disable-next-line @next/next/no-img-element */}
              <img src={assetUrl(image.url)} alt="" width={28} height={28} style={{ objectFit: "cover" }} />
              {image.name || image.filename}
              <button
                type="button"
                className="btn btn-small btn-ghost"
                aria-label={`Remove ${image.name || image.filename}`}
                onClick={() => setImages((current) => current.filter((i) => i.ref !== image.ref))}
              >
                ✕
              </button>
            </span>
          ))}
          {attachError && (
            <span className="notice notice-error" role="alert" data-testid="attach-error">
              {attachError}
            </span>
          )}
        </div>
      )}
      <div className="chat-input">
        {onUpload && (
          <>
            <input
              ref={picker}
              type="file"
              accept="image/png,image/jpeg,image/webp"
              hidden
              data-testid="image-file"
              onChange={(event) => {
                void upload(event.target.files);
                event.target.value = "";
              }}
            />
            <button
              type="button"
              className="btn"
              onClick={() => picker.current?.click()}
              disabled={uploading}
              aria-label="Attach an image"
              title="Attach a starting image (or drop one here)"
              data-testid="attach-image"
            >
              {uploading ? (
                "…"
              ) : (
                // An inline icon, not an emoji: machines without an emoji font show a box.
                <svg width="18" height="18" viewBox="0 0 24 24" aria-hidden="true" fill="none"
                  stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round">
                  <rect x="3" y="4" width="18" height="16" rx="2" />
                  <circle cx="9" cy="10" r="2" />
                  <path d="M21 17l-5-5-9 8" />
                </svg>
              )}
            </button>
          </>
        )}
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
        <button type="submit" className="btn btn-primary" disabled={!text.trim() || uploading} data-testid="send">
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
