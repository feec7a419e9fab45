/**
 * The conversation's live event stream: fetch + ReadableStream (so it can send the
 * Authorization header and choose its own reconnection), parsed with SseParser.
 *
 * - Reconnects by itself with exponential backoff (and at once when the browser comes
 *   back online), sending Last-Event-ID so the server replays exactly what was missed.
 * - Delivers each event once: ids are increasing integers, anything at or below the last
 *   delivered id is dropped (a replay overlapping what was already seen).
 * - A half-received event stays buffered until complete; a stream that goes silent for
 *   longer than `stallMs` (the server pings every 15 s) is treated as dropped.
 * - Errors that reconnecting cannot fix (401, 404, a Last-Event-ID the server does not
 *   know) stop the stream in state "failed" with the server's message.
 */
import { SseParser } from "./sse";
import type { StudioEvent } from "./types";

export type StreamState = "idle" | "connecting" | "open" | "reconnecting" | "failed" | "closed";

export interface StreamStatus {
  state: StreamState;
  /** What went wrong last (shown to the person), null when all is well. */
  error: string | null;
  /** HTTP status of a fatal error (401, 404, ...), 0 for network trouble. */
  errorStatus: number | null;
  attempt: number;
  /** When the next reconnection attempt is due (ms since epoch), if one is scheduled. */
  retryAt: number | null;
  lastEventId: number;
}

export interface EventStreamOptions {
  /** The stream's path or URL (without query). */
  url: string;
  /** Deliver events after this id (0: from the beginning). */
  after: number;
  onEvents: (events: StudioEvent[]) => void;
  onStatus?: (status: StreamStatus) => void;
  headers?: () => Record<string, string>;
  fetchImpl?: typeof fetch;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  stallMs?: number;
}

const FATAL = new Set([400, 401, 403, 404, 410, 422]);

export class ConversationEventStream {
  private readonly opts: Required<
    Omit<EventStreamOptions, "onStatus" | "headers" | "fetchImpl">
  > &
    Pick<EventStreamOptions, "onStatus" | "headers" | "fetchImpl">;
  private lastId: number;
  private controller: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stallTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  private attempt = 0;
  private status: StreamStatus;
  private wake: (() => void) | null = null;

  constructor(options: EventStreamOptions) {
    this.opts = {
      initialBackoffMs: 500,
      maxBackoffMs: 10_000,
      stallMs: 45_000,
      ...options,
    };
    this.lastId = options.after;
    this.status = {
      state: "idle",
      error: null,
      errorStatus: null,
      attempt: 0,
      retryAt: null,
      lastEventId: this.lastId,
    };
  }

  get lastEventId(): number {
    return this.lastId;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.controller?.abort();
    this.clearTimers();
    this.wake?.();
    this.setStatus({ state: "closed", retryAt: null });
  }

  /** Skip the backoff wait (the person pressed "Reconnect", or the browser is online). */
  reconnectNow(): void {
    if (this.stopped) {
      this.attempt = 0;
      this.start();
      return;
    }
    this.attempt = 0;
    this.wake?.();
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.timer = this.stallTimer = null;
  }

  private setStatus(patch: Partial<StreamStatus>): void {
    this.status = { ...this.status, ...patch, attempt: this.attempt, lastEventId: this.lastId };
    this.opts.onStatus?.(this.status);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const outcome = await this.connectOnce();
      if (this.stopped) return;
      if (outcome.fatal) {
        this.stopped = true;
        this.setStatus({
          state: "failed",
          error: outcome.error,
          errorStatus: outcome.status,
          retryAt: null,
        });
        return;
      }
      this.attempt += 1;
      const delay =
        outcome.error === null && this.attempt === 1
          ? 0 // the server ended a healthy stream: come back at once
          : Math.min(
              this.opts.maxBackoffMs,
              this.opts.initialBackoffMs * 2 ** Math.max(0, this.attempt - 1),
            ) *
            (0.75 + Math.random() * 0.5);
      this.setStatus({
        state: "reconnecting",
        error: outcome.error,
        errorStatus: outcome.status,
        retryAt: Date.now() + delay,
      });
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, delay);
      });
      this.wake = null;
      if (this.timer) clearTimeout(this.timer);
    }
  }

  private armStall(): void {
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => this.controller?.abort("stalled"), this.opts.stallMs);
  }

  private async connectOnce(): Promise<{ fatal: boolean; error: string | null; status: number | null }> {
    const controller = new AbortController();
    this.controller = controller;
    const doFetch = this.opts.fetchImpl ?? fetch;
    this.setStatus({ state: this.attempt === 0 ? "connecting" : "reconnecting", retryAt: null });
    let response: Response;
    try {
      const headers: Record<string, string> = {
        Accept: "text/event-stream",
        ...(this.opts.headers?.() ?? {}),
      };
      if (this.lastId > 0) headers["Last-Event-ID"] = String(this.lastId);
      this.armStall();
      response = await doFetch(this.opts.url, {
        headers,
        signal: controller.signal,
        cache: "no-store",
      });
    } catch {
      this.clearTimers();
      if (this.stopped) return { fatal: false, error: null, status: null };
      return { fatal: false, error: "Lost the connection to the studio server.", status: 0 };
    }
    if (!response.ok || !response.body) {
      this.clearTimers();
      let message = `The server answered ${response.status}.`;
      try {
        const body = await response.json();
        if (body?.error?.message) message = body.error.message;
      } catch {
        // keep the generic message
      }
      return { fatal: FATAL.has(response.status), error: message, status: response.status };
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    let receivedAny = false;
    this.setStatus({ state: "open", error: null, errorStatus: null, retryAt: null });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.armStall();
        if (!receivedAny) {
          receivedAny = true;
          this.attempt = 0; // a working connection resets the backoff
        }
        const batch: StudioEvent[] = [];
        for (const message of parser.feed(decoder.decode(value, { stream: true }))) {
          const id = message.id === null ? NaN : Number(message.id);
          if (!Number.isFinite(id)) continue;
          if (id <= this.lastId) continue; // already delivered (overlapping replay)
          let data: Record<string, unknown>;
          try {
            data = JSON.parse(message.data || "{}");
          } catch {
            data = { raw: message.data };
          }
          this.lastId = id;
          batch.push({ id, kind: message.event, data });
        }
        if (batch.length) {
          this.status = { ...this.status, lastEventId: this.lastId };
          this.opts.onEvents(batch);
        }
      }
    } catch {
      this.clearTimers();
      if (this.stopped) return { fatal: false, error: null, status: null };
      return { fatal: false, error: "The live connection dropped.", status: 0 };
    }
    this.clearTimers();
    return { fatal: false, error: null, status: null };
  }
}
