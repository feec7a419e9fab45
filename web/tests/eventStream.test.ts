import { afterEach, describe, expect, it, vi } from "vitest";
import { ConversationEventStream, type StreamStatus } from "@/lib/eventStream";
import type { StudioEvent } from "@/lib/types";
import { controllableResponse, frame, jsonResponse, until } from "./helpers";

function setup(responses: (() => Response)[], after = 0) {
  const calls: { url: string; headers: Record<string, string> }[] = [];
  const fetchImpl = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
    calls.push({ url: String(url), headers: (init?.headers ?? {}) as Record<string, string> });
    const next = responses.shift();
    if (!next) return new Promise<Response>(() => undefined); // hangs (never answers)
    return next();
  }) as unknown as typeof fetch;
  const events: StudioEvent[] = [];
  const statuses: StreamStatus[] = [];
  const stream = new ConversationEventStream({
    url: "/api/conversations/c1/events",
    after,
    fetchImpl,
    onEvents: (batch) => events.push(...batch),
    onStatus: (s) => statuses.push(s),
    initialBackoffMs: 5,
    maxBackoffMs: 20,
    headers: () => ({ Authorization: "Bearer t" }),
  });
  return { stream, calls, events, statuses };
}

let active: ConversationEventStream | null = null;
afterEach(() => active?.stop());

describe("ConversationEventStream", () => {
  it("delivers events in order and reports the connection open", async () => {
    const first = controllableResponse();
    const t = setup([() => first.response]);
    active = t.stream;
    t.stream.start();
    await until(() => t.statuses.some((s) => s.state === "open"));
    first.push(frame(1, "status", { state: "running" }) + frame(2, "token", { text: "a" }));
    await until(() => t.events.length === 2);
    expect(t.events.map((e) => [e.id, e.kind])).toEqual([
      [1, "status"],
      [2, "token"],
    ]);
    expect(t.calls[0].headers.Authorization).toBe("Bearer t");
    expect(t.calls[0].headers["Last-Event-ID"]).toBeUndefined();
  });

  it("reconnects by itself after a drop, with Last-Event-ID, and never delivers an event twice", async () => {
    const first = controllableResponse();
    const second = controllableResponse();
    const t = setup([() => first.response, () => second.response]);
    active = t.stream;
    t.stream.start();
    await until(() => t.statuses.some((s) => s.state === "open"));
    first.push(frame(10, "token", { text: "Hel" }) + frame(11, "token", { text: "lo" }));
    first.push('id: 12\nevent: token\ndata: {"te'); // half an event, then the connection dies
    await until(() => t.events.length === 2);
    first.fail();
    await until(() => t.calls.length === 2);
    expect(t.statuses.some((s) => s.state === "reconnecting" && s.error)).toBe(true);
    expect(t.calls[1].headers["Last-Event-ID"]).toBe("11");
    // The server replays from 12; an overlapping older id is dropped.
    second.push(frame(11, "token", { text: "lo" }) + frame(12, "token", { text: "!" }) + frame(13, "message", {}));
    await until(() => t.events.length === 4);
    expect(t.events.map((e) => e.id)).toEqual([10, 11, 12, 13]);
    expect(t.events[2].data).toEqual({ text: "!" });
    expect(t.stream.lastEventId).toBe(13);
  });

  it("starts after the given id", async () => {
    const first = controllableResponse();
    const t = setup([() => first.response], 41);
    active = t.stream;
    t.stream.start();
    await until(() => t.calls.length === 1);
    expect(t.calls[0].headers["Last-Event-ID"]).toBe("41");
  });

  it("retries server errors and network failures with backoff", async () => {
    const ok = controllableResponse();
    const t = setup([
      () => jsonResponse(503, { error: { code: "unavailable", message: "starting up" } }),
      () => {
        throw new TypeError("Failed to fetch");
      },
      () => ok.response,
    ]);
    active = t.stream;
    t.stream.start();
    await until(() => t.statuses.some((s) => s.state === "open"), 3000);
    expect(t.calls).toHaveLength(3);
    const errors = t.statuses.filter((s) => s.state === "reconnecting" && s.error).map((s) => s.error);
    expect(errors).toContain("starting up");
  });

  it("stops with a clear error when reconnecting cannot help (404, 401)", async () => {
    const t = setup([() => jsonResponse(404, { error: { code: "not_found", message: "No conversation c1." } })]);
    active = t.stream;
    t.stream.start();
    await until(() => t.statuses.some((s) => s.state === "failed"));
    const failed = t.statuses.find((s) => s.state === "failed")!;
    expect(failed.error).toBe("No conversation c1.");
    expect(failed.errorStatus).toBe(404);
    expect(t.calls).toHaveLength(1);
  });

  it("reconnects at once after the server ends a healthy stream", async () => {
    const first = controllableResponse();
    const second = controllableResponse();
    const t = setup([() => first.response, () => second.response]);
    active = t.stream;
    t.stream.start();
    await until(() => t.statuses.some((s) => s.state === "open"));
    first.push(frame(5, "status", { state: "idle" }));
    first.end();
    await until(() => t.calls.length === 2);
    expect(t.calls[1].headers["Last-Event-ID"]).toBe("5");
  });

  it("treats a silent connection as dropped", async () => {
    const first = controllableResponse();
    const second = controllableResponse();
    const calls: number[] = [];
    const stream = new ConversationEventStream({
      url: "/e",
      after: 0,
      onEvents: () => undefined,
      fetchImpl: (async (_url: RequestInfo | URL, init?: RequestInit) => {
        calls.push(1);
        const response = calls.length === 1 ? first.response : second.response;
        init?.signal?.addEventListener("abort", () => (calls.length === 1 ? first.fail() : undefined));
        return response;
      }) as unknown as typeof fetch,
      stallMs: 30,
      initialBackoffMs: 1,
    });
    active = stream;
    stream.start();
    await until(() => calls.length >= 2, 2000);
  });
});
