import { act, render, screen } from "@testing-library/react";
import { useReducer } from "react";
import { describe, expect, it, vi } from "vitest";
import { ConnectionBanner } from "@/components/ConnectionBanner";
import { MessageStream } from "@/components/MessageStream";
import { conversationReducer, initialConversationState } from "@/lib/conversation";
import { useConversationEvents } from "@/lib/useConversationEvents";
import { controllableResponse, frame, jsonResponse, until } from "./helpers";

/** A minimal chat: the hook feeding the reducer feeding the stream. */
function LiveChat({ fetchImpl, after = 0 }: { fetchImpl: typeof fetch; after?: number | null }) {
  const [state, dispatch] = useReducer(conversationReducer, initialConversationState);
  const events = useConversationEvents("c1", {
    after,
    fetchImpl,
    initialBackoffMs: 5,
    maxBackoffMs: 20,
    onEvents: (batch) => dispatch({ type: "events", events: batch }),
  });
  return (
    <>
      <ConnectionBanner status={events} onReconnect={events.reconnectNow} />
      <span data-testid="state">{events.state}</span>
      <MessageStream messages={state.messages} typing={state.typing} />
    </>
  );
}

describe("useConversationEvents", () => {
  it("streams tokens into the page, survives a dropped connection and catches up without duplicates", async () => {
    const first = controllableResponse();
    const second = controllableResponse();
    const headers: Record<string, string>[] = [];
    const queue = [first, second];
    const fetchImpl = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) => {
      headers.push((init?.headers ?? {}) as Record<string, string>);
      const next = queue.shift();
      return next ? next.response : new Promise<Response>(() => undefined);
    }) as unknown as typeof fetch;

    render(<LiveChat fetchImpl={fetchImpl} />);
    await until(() => screen.getByTestId("state").textContent === "open");
    act(() => {
      first.push(frame(1, "typing", { role: "style", speaker: "Luna", active: true }));
      first.push(frame(2, "token", { message_id: "m1", role: "style", speaker: "Luna", text: "Deep " }));
    });
    await until(() => screen.queryByText(/Deep/) !== null);
    expect(screen.getByTestId("typing").textContent).toContain("Luna is writing…");

    // A partial event, then the connection drops.
    act(() => {
      first.push('id: 3\nevent: token\ndata: {"message_id":"m1","role":"style","speaker":"Luna","te');
      first.fail();
    });
    await until(() => headers.length === 2);
    expect(headers[1]["Last-Event-ID"]).toBe("2");
    act(() => {
      second.push(frame(2, "token", { message_id: "m1", role: "style", speaker: "Luna", text: "Deep " }));
      second.push(frame(3, "token", { message_id: "m1", role: "style", speaker: "Luna", text: "indigo" }));
      second.push(
        frame(4, "message", {
          message_id: "m1",
          role: "style",
          speaker: "Luna",
          content: "Deep indigo.",
          interrupted: false,
          metadata: {},
        }),
      );
    });
    await until(() => screen.queryByText("Deep indigo.") !== null);
    expect(screen.getAllByRole("article")).toHaveLength(1);
    expect(screen.getByTestId("state").textContent).toBe("open");
    expect(screen.queryByTestId("connection")).toBeNull();
  });

  it("shows an actionable state when the server keeps failing, and a final one for 404", async () => {
    const fetchImpl = vi.fn(async () => {
      throw new TypeError("Failed to fetch");
    }) as unknown as typeof fetch;
    const { unmount } = render(<LiveChat fetchImpl={fetchImpl} />);
    await until(() => screen.queryByTestId("connection") !== null);
    expect(screen.getByTestId("connection").textContent).toMatch(/reconnecting/i);
    expect(screen.getByRole("button", { name: "Reconnect now" })).toBeTruthy();
    unmount();

    const missing = vi.fn(async () =>
      jsonResponse(404, { error: { code: "not_found", message: "No conversation c1." } }),
    ) as unknown as typeof fetch;
    render(<LiveChat fetchImpl={missing} />);
    await until(() => screen.queryByTestId("connection")?.getAttribute("data-state") === "failed");
    expect(screen.getByRole("alert").textContent).toContain("does not exist");
  });

  it("waits while the history is loading (after = null)", async () => {
    const fetchImpl = vi.fn() as unknown as typeof fetch;
    render(<LiveChat fetchImpl={fetchImpl} after={null} />);
    await new Promise((r) => setTimeout(r, 20));
    expect(fetchImpl).not.toHaveBeenCalled();
  });
});
