import { describe, expect, it } from "vitest";
import {
  conversationReducer,
  initialConversationState,
  typingSentence,
  type ConversationState,
} from "@/lib/conversation";
import type { ConversationDetail, StoredMessage } from "@/lib/types";
import { ev } from "./helpers";

const detail = (over: Partial<ConversationDetail> = {}): ConversationDetail => ({
  id: "c1",
  session_id: "s1",
  title: "t",
  parent_id: null,
  forked_from_checkpoint: null,
  status: "running",
  created_at: "",
  updated_at: "",
  phase: "ideation",
  running: true,
  question: null,
  plan: null,
  generation: null,
  brief: null,
  last_event_id: 0,
  ...over,
});

const stored = (message_id: string, role: string, content: string, seq: number): StoredMessage => ({
  id: `row-${seq}`,
  seq,
  message_id,
  role: role as StoredMessage["role"],
  speaker: role,
  content,
  phase: "ideation",
  kind: null,
  interrupted: false,
  metadata: {},
  created_at: "",
});

const run = (state: ConversationState, ...events: ReturnType<typeof ev>[]) =>
  conversationReducer(state, { type: "events", events });

describe("conversationReducer", () => {
  it("builds a streaming message from tokens and replaces it with the final message", () => {
    let s = run(
      initialConversationState,
      ev(1, "typing", { role: "style", speaker: "Luna", active: true }),
      ev(2, "token", { message_id: "m1", role: "style", speaker: "Luna", text: "Deep " }),
      ev(3, "token", { message_id: "m1", role: "style", speaker: "Luna", text: "indigo" }),
    );
    expect(s.messages).toHaveLength(1);
    expect(s.messages[0]).toMatchObject({ content: "Deep indigo", streaming: true, speaker: "Luna" });
    expect(typingSentence(s.typing)).toBe("Luna is writing…");
    s = run(
      s,
      ev(4, "message", { message_id: "m1", role: "style", speaker: "Luna", content: "Deep indigo shadows.", phase: "ideation", kind: "explore", interrupted: false, metadata: {} }),
      ev(5, "typing", { role: "style", speaker: "Luna", active: false }),
    );
    expect(s.messages).toHaveLength(1);
    expect(s.messages[0]).toMatchObject({ content: "Deep indigo shadows.", streaming: false, key: "m1" });
    expect(s.typing).toEqual({});
  });

  it("ignores tokens replayed for a message that is already complete, and events seen before", () => {
    let s = conversationReducer(initialConversationState, {
      type: "load",
      detail: detail({ last_event_id: 4 }),
      messages: [stored("m1", "style", "Deep indigo shadows.", 1)],
    });
    s = run(
      s,
      ev(2, "token", { message_id: "m1", role: "style", speaker: "Luna", text: "Deep " }),
      ev(4, "message", { message_id: "m1", role: "style", speaker: "Luna", content: "Deep indigo shadows.", interrupted: false, metadata: {} }),
      ev(6, "token", { message_id: "m2", role: "composition", speaker: "Frame", text: "Low " }),
    );
    expect(s.messages.map((m) => [m.messageId, m.content])).toEqual([
      ["m1", "Deep indigo shadows."],
      ["m2", "Low "],
    ]);
    const again = run(s, ev(6, "token", { message_id: "m2", role: "composition", speaker: "Frame", text: "Low " }));
    expect(again.messages[1].content).toBe("Low ");
  });

  it("keeps an interrupted turn where it was, marked interrupted", () => {
    let s = run(
      initialConversationState,
      ev(1, "token", { message_id: "m1", role: "composition", speaker: "Frame", text: "A low angle" }),
    );
    s = conversationReducer(s, { type: "optimistic", key: "local-1", content: "Frame, wider please" });
    s = run(
      s,
      ev(2, "message", { message_id: "u1", role: "user", speaker: "You", content: "Frame, wider please", interrupted: false, metadata: {} }),
      ev(3, "message", { message_id: "m1", role: "composition", speaker: "Frame", content: "A low angle", interrupted: true, metadata: {} }),
    );
    expect(s.messages.map((m) => [m.role, m.interrupted, m.pending])).toEqual([
      ["composition", true, false],
      ["user", false, false],
    ]);
  });

  it("shows the person's message at once and reconciles it whichever answer comes first", () => {
    const payload = { message_id: "u1", role: "user" as const, speaker: "You", content: "brighter neon", phase: null, kind: "user", interrupted: false, metadata: {} };
    // POST answer first, then the event.
    let a = conversationReducer(initialConversationState, { type: "optimistic", key: "k", content: "brighter neon" });
    expect(a.messages[0]).toMatchObject({ pending: true, messageId: null });
    a = conversationReducer(a, { type: "sent", key: "k", message: payload });
    a = run(a, ev(1, "message", payload));
    expect(a.messages).toHaveLength(1);
    expect(a.messages[0]).toMatchObject({ pending: false, messageId: "u1", key: "k" });
    // Event first, then the POST answer.
    let b = conversationReducer(initialConversationState, { type: "optimistic", key: "k", content: "brighter neon" });
    b = run(b, ev(1, "message", payload));
    b = conversationReducer(b, { type: "sent", key: "k", message: payload });
    expect(b.messages).toHaveLength(1);
    expect(b.messages[0]).toMatchObject({ pending: false, messageId: "u1" });
  });

  it("marks a failed send and lets it be retried", () => {
    let s = conversationReducer(initialConversationState, { type: "optimistic", key: "k", content: "hi" });
    s = conversationReducer(s, { type: "sendFailed", key: "k", error: "Cannot reach the studio server." });
    expect(s.messages[0]).toMatchObject({ pending: false, failed: "Cannot reach the studio server." });
    s = conversationReducer(s, { type: "retrying", key: "k" });
    expect(s.messages[0]).toMatchObject({ pending: true, failed: null });
  });

  it("follows phase, status, interrupts and errors", () => {
    let s = run(
      initialConversationState,
      ev(1, "phase", { phase: "refinement" }),
      ev(2, "interrupt", { interrupt_id: "i1", question: { type: "no_consensus", question: "Which?", options: [] } }),
    );
    expect(s.phase).toBe("refinement");
    expect(s.status).toBe("waiting");
    expect(s.question?.type).toBe("no_consensus");
    s = run(s, ev(3, "status", { state: "running" }), ev(4, "error", { message: "boom", recoverable: true }));
    expect(s.question).toBeNull();
    expect(s.errors).toEqual([{ id: 4, message: "boom", recoverable: true }]);
    const loaded = conversationReducer(initialConversationState, {
      type: "load",
      detail: detail({ last_event_id: 10 }),
      messages: [],
    });
    expect(run(loaded, ev(4, "error", { message: "old" })).errors).toEqual([]);
  });

  it("tracks the generation from progress to the outputs", () => {
    let s = run(
      initialConversationState,
      ev(1, "generation_progress", { generation_id: "g1", progress: 0.02, status: "running" }),
      ev(2, "generation_progress", { generation_id: "g1", progress: 0.4, status: "running", step: 10, max_steps: 25, preview: "data:image/jpeg;base64,AA" }),
    );
    expect(s.generation).toMatchObject({ generationId: "g1", progress: 0.4, step: 10, maxSteps: 25, preview: "data:image/jpeg;base64,AA" });
    s = run(s, ev(3, "generation_done", { generation_id: "g1", outputs: [{ filename: "a.png", kind: "image", url: "/api/generations/g1/outputs/a.png" }] }));
    expect(s.generation).toMatchObject({ status: "complete", progress: 1 });
    expect(s.generation?.outputs[0].filename).toBe("a.png");
  });

  it("restores the generation from history (a studio 'generation' message)", () => {
    const message = {
      ...stored("s1", "system", "Done: 1 image.", 9),
      kind: "generation",
      metadata: {
        generation: { status: "complete", generation_id: "g9", outputs: [], plan: { positive_prompt: "neon" } },
        outputs: [{ filename: "x.png", kind: "image", url: "/api/generations/g9/outputs/x.png" }],
      },
    };
    const s = conversationReducer(initialConversationState, {
      type: "load",
      detail: detail({ running: false, status: "complete", phase: "complete" }),
      messages: [message],
    });
    expect(s.generation).toMatchObject({ generationId: "g9", status: "complete" });
    expect(s.generation?.outputs[0].filename).toBe("x.png");
    expect(s.generation?.plan?.positive_prompt).toBe("neon");
  });
});

describe("typingSentence", () => {
  it("names everyone composing", () => {
    expect(typingSentence({})).toBeNull();
    expect(typingSentence({ style: "Luna", story: "Saga" })).toBe("Luna and Saga are writing…");
  });
});
