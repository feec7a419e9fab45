"use client";
/**
 * React hook around ConversationEventStream: follows a conversation's events while the
 * component is mounted, reconnects by itself (and at once when the browser is back
 * online or the tab becomes visible again), and reports the connection state.
 */
import { useEffect, useRef, useState } from "react";
import { api, apiBase, authHeaders } from "./api";
import { ConversationEventStream, type StreamStatus } from "./eventStream";
import type { StudioEvent } from "./types";

export interface ConversationEventsOptions {
  /** Start after this event id; null: do not connect yet (history still loading). */
  after: number | null;
  onEvents: (events: StudioEvent[]) => void;
  fetchImpl?: typeof fetch;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface ConversationEvents extends StreamStatus {
  reconnectNow: () => void;
}

const idle: StreamStatus = {
  state: "idle",
  error: null,
  errorStatus: null,
  attempt: 0,
  retryAt: null,
  lastEventId: 0,
};

export function useConversationEvents(
  conversationId: string | null,
  options: ConversationEventsOptions,
): ConversationEvents {
  const [status, setStatus] = useState<StreamStatus>(idle);
  const streamRef = useRef<ConversationEventStream | null>(null);
  const onEventsRef = useRef(options.onEvents);
  const { after, fetchImpl, initialBackoffMs, maxBackoffMs } = options;

  useEffect(() => {
    onEventsRef.current = options.onEvents;
  });

  useEffect(() => {
    if (!conversationId || after === null) return;
    const stream = new ConversationEventStream({
      url: `${apiBase()}${api.eventsPath(conversationId)}`,
      after,
      headers: authHeaders,
      onEvents: (events) => onEventsRef.current(events),
      onStatus: setStatus,
      fetchImpl,
      initialBackoffMs,
      maxBackoffMs,
    });
    streamRef.current = stream;
    stream.start();
    const wake = () => {
      if (document.visibilityState === "visible") stream.reconnectNow();
    };
    const online = () => stream.reconnectNow();
    window.addEventListener("online", online);
    document.addEventListener("visibilitychange", wake);
    return () => {
      window.removeEventListener("online", online);
      document.removeEventListener("visibilitychange", wake);
      stream.stop();
      streamRef.current = null;
    };
    // `after` is read once per conversation: later events continue from the stream's own id.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [conversationId, after === null, fetchImpl, initialBackoffMs, maxBackoffMs]);

  return {
    ...status,
    reconnectNow: () => streamRef.current?.reconnectNow(),
  };
}
