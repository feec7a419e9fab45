"use client";
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import type { ChatMessage } from "@/lib/conversation";
import { MessageBubble } from "./MessageBubble";
import { TypingIndicator } from "./TypingIndicator";

export interface MessageStreamProps {
  messages: ChatMessage[];
  typing: Record<string, string>;
  onRetry?: (key: string) => void;
  settingsHref?: (role: string) => string;
}

const NEAR_BOTTOM = 120;

function scrollParent(element: HTMLElement | null): HTMLElement | null {
  let node = element?.parentElement ?? null;
  while (node) {
    const { overflowY } = getComputedStyle(node);
    if (overflowY === "auto" || overflowY === "scroll") return node;
    node = node.parentElement;
  }
  return null;
}

/** The conversation as it happens: messages in order, the streaming ones growing, and who
 * is writing. Follows the newest text while the reader is at the bottom; otherwise offers
 * a button to jump back down instead of pulling them away from what they read. */
export function MessageStream({ messages, typing, onRetry, settingsHref }: MessageStreamProps) {
  const [pinned, setPinned] = useState(true);
  const pinnedRef = useRef(true);
  const endRef = useRef<HTMLDivElement>(null);

  const toBottom = () => {
    const scroller = scrollParent(endRef.current);
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  };

  useEffect(() => {
    const scroller = scrollParent(endRef.current);
    if (!scroller) return;
    let lastTop = scroller.scrollTop;
    // Only the reader moving up un-pins the view; content growing (tokens, an image
    // loading) or our own scrolling to the bottom never does.
    const onScroll = () => {
      const top = scroller.scrollTop;
      const distance = scroller.scrollHeight - top - scroller.clientHeight;
      const next = distance < NEAR_BOTTOM ? true : top < lastTop - 2 ? false : pinnedRef.current;
      lastTop = top;
      if (next !== pinnedRef.current) {
        pinnedRef.current = next;
        setPinned(next);
      }
    };
    scroller.addEventListener("scroll", onScroll, { passive: true });
    // Keep following when anything in the scroller changes size while pinned.
    const observer =
      typeof ResizeObserver === "undefined"
        ? null
        : new ResizeObserver(() => {
            if (pinnedRef.current) scroller.scrollTop = scroller.scrollHeight;
          });
    if (observer) for (const child of Array.from(scroller.children)) observer.observe(child);
    return () => {
      scroller.removeEventListener("scroll", onScroll);
      observer?.disconnect();
    };
  }, []);

  const lastLength = messages.length ? messages[messages.length - 1].content.length : 0;
  useLayoutEffect(() => {
    if (pinnedRef.current) toBottom();
  }, [messages.length, lastLength, typing]);

  return (
    <section className="stream" aria-label="Conversation">
      <div role="log" aria-live="polite" aria-relevant="additions" className="stream" data-testid="stream">
        {messages.map((message) => (
          <MessageBubble key={message.key} message={message} onRetry={onRetry} settingsHref={settingsHref} />
        ))}
      </div>
      <TypingIndicator typing={typing} />
      <div ref={endRef} />
      {!pinned && (
        <button
          type="button"
          className="btn btn-small jump"
          onClick={() => {
            pinnedRef.current = true;
            setPinned(true);
            toBottom();
          }}
        >
          ↓ Jump to the latest
        </button>
      )}
    </section>
  );
}
