import type { StudioEvent } from "@/lib/types";

/** One SSE frame as the server writes it. */
export function frame(id: number, kind: string, data: unknown): string {
  return `id: ${id}\r\nevent: ${kind}\r\ndata: ${JSON.stringify(data)}\r\n\r\n`;
}

export function ev(id: number, kind: string, data: Record<string, unknown>): StudioEvent {
  return { id, kind, data };
}

/** A streaming HTTP response whose body the test writes to, chunk by chunk. */
export function controllableResponse(status = 200) {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  const response = new Response(body, {
    status,
    headers: { "Content-Type": "text/event-stream" },
  });
  return {
    response,
    push: (text: string) => controller.enqueue(encoder.encode(text)),
    /** The server ends the stream cleanly. */
    end: () => controller.close(),
    /** The connection drops mid-stream. */
    fail: () => controller.error(new TypeError("network error")),
  };
}

export function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

export const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

export async function until(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await tick(5);
  }
}
