/**
 * The chat page's state, built from the stored history and the live events: a pure
 * reducer (tested without a browser).
 *
 * - Tokens of one message share its message_id: they build a streaming message; the
 *   final `message` event with that id replaces the streamed text (an interrupted turn
 *   arrives with interrupted=true). Tokens for a message already complete are ignored,
 *   so a replay that overlaps the history changes nothing.
 * - The person's messages appear at once (optimistic, `pending`) and are reconciled with
 *   the server's copy by message_id, or by content when the event wins the race against
 *   the POST's answer.
 */
import type {
  ConversationDetail,
  GenerationOutput,
  GenerationRecordState,
  MessagePayload,
  Phase,
  Plan,
  Question,
  Role,
  StoredMessage,
  StudioEvent,
} from "./types";

export interface ChatMessage {
  key: string;
  messageId: string | null;
  role: Role;
  speaker: string;
  content: string;
  phase: string | null;
  kind: string | null;
  interrupted: boolean;
  /** Tokens are still arriving. */
  streaming: boolean;
  /** The person's message, not yet confirmed by the server. */
  pending: boolean;
  /** Sending failed: the reason (the person can retry). */
  failed: string | null;
  metadata: Record<string, unknown>;
}

export interface GenerationView {
  generationId: string | null;
  status: string;
  progress: number;
  step: number | null;
  maxSteps: number | null;
  node: string | null;
  nodeType: string | null;
  preview: string | null;
  outputs: GenerationOutput[];
  error: string | null;
  message: string | null;
  connection: string | null;
  plan: Plan | null;
}

export interface StudioErrorNote {
  id: number;
  message: string;
  recoverable: boolean;
}

export interface ConversationState {
  loaded: boolean;
  messages: ChatMessage[];
  /** role -> speaker, for everyone composing right now. */
  typing: Record<string, string>;
  phase: Phase | null;
  status: string | null;
  question: Question | null;
  interruptId: string | null;
  generation: GenerationView | null;
  errors: StudioErrorNote[];
  lastEventId: number;
  /** Events up to this id were already seen before this page loaded (history). */
  historyUntil: number;
}

export const initialConversationState: ConversationState = {
  loaded: false,
  messages: [],
  typing: {},
  phase: null,
  status: null,
  question: null,
  interruptId: null,
  generation: null,
  errors: [],
  lastEventId: 0,
  historyUntil: 0,
};

export type ConversationAction =
  | { type: "load"; detail: ConversationDetail; messages: StoredMessage[] }
  | { type: "events"; events: StudioEvent[] }
  | { type: "optimistic"; key: string; content: string }
  | { type: "sent"; key: string; message: MessagePayload }
  | { type: "sendFailed"; key: string; error: string }
  | { type: "retrying"; key: string }
  | { type: "answered" }
  | { type: "dismissError"; id: number }
  | { type: "generationUpdate"; generation: Partial<GenerationView> & { generationId: string } };

const str = (value: unknown): string | null => (typeof value === "string" ? value : null);
const num = (value: unknown): number | null =>
  typeof value === "number" && Number.isFinite(value) ? value : null;

function fromPayload(payload: MessagePayload, key?: string): ChatMessage {
  return {
    key: key ?? payload.message_id,
    messageId: payload.message_id,
    role: payload.role,
    speaker: payload.speaker,
    content: payload.content ?? "",
    phase: payload.phase ?? null,
    kind: payload.kind ?? null,
    interrupted: Boolean(payload.interrupted),
    streaming: false,
    pending: false,
    failed: null,
    metadata: payload.metadata ?? {},
  };
}

/** The API's link for an output (events carry it; the graph state keeps storage paths). */
export function outputUrl(generationId: string | null, output: GenerationOutput): string {
  if (typeof output.url === "string" && output.url.startsWith("/api/")) return output.url;
  if (generationId)
    return `/api/generations/${encodeURIComponent(generationId)}/outputs/${encodeURIComponent(output.filename)}`;
  return typeof output.url === "string" ? output.url : "";
}

function emptyGeneration(generationId: string | null): GenerationView {
  return {
    generationId,
    status: "queued",
    progress: 0,
    step: null,
    maxSteps: null,
    node: null,
    nodeType: null,
    preview: null,
    outputs: [],
    error: null,
    message: null,
    connection: null,
    plan: null,
  };
}

function generationFromRecord(record: GenerationRecordState | null | undefined): GenerationView | null {
  if (!record || typeof record !== "object") return null;
  const view = emptyGeneration(record.generation_id ?? null);
  view.status = record.status || "queued";
  view.progress = record.status === "complete" ? 1 : (record.progress ?? 0);
  view.outputs = Array.isArray(record.outputs) ? record.outputs : [];
  view.error = record.error ?? null;
  view.plan = record.plan ?? null;
  if (record.waiting_for_server) view.connection = "unreachable";
  return view;
}

/** A "generation" message from the studio carries the record and its outputs. */
function generationFromMessage(message: ChatMessage, current: GenerationView | null): GenerationView | null {
  const record = message.metadata?.generation as GenerationRecordState | undefined;
  if (!record || typeof record !== "object") return current;
  const view = generationFromRecord(record);
  if (!view) return current;
  const outputs = message.metadata?.outputs;
  if (Array.isArray(outputs) && outputs.length) view.outputs = outputs as GenerationOutput[];
  if (current && current.generationId === view.generationId) {
    // Keep what the live events knew (preview, plan) unless the record says more.
    return {
      ...current,
      status: view.status === "queued" && current.status !== "queued" ? current.status : view.status,
      progress: Math.max(current.progress, view.progress),
      outputs: view.outputs.length ? view.outputs : current.outputs,
      error: view.error ?? current.error,
      plan: view.plan ?? current.plan,
    };
  }
  return view;
}

function upsertMessage(messages: ChatMessage[], incoming: ChatMessage): ChatMessage[] {
  const index = messages.findIndex((m) => m.messageId === incoming.messageId);
  if (index >= 0) {
    const next = messages.slice();
    next[index] = { ...incoming, key: messages[index].key };
    return next;
  }
  if (incoming.role === "user") {
    // The event may arrive before the POST's answer: match the pending copy by content.
    const pending = messages.findIndex(
      (m) => m.role === "user" && m.pending && !m.messageId && m.content.trim() === incoming.content.trim(),
    );
    if (pending >= 0) {
      const next = messages.slice();
      next[pending] = { ...incoming, key: messages[pending].key };
      return next;
    }
  }
  return [...messages, incoming];
}

function applyEvent(state: ConversationState, event: StudioEvent): ConversationState {
  const data = event.data ?? {};
  switch (event.kind) {
    case "token": {
      const messageId = str(data.message_id);
      const text = str(data.text) ?? "";
      const role = (str(data.role) ?? "system") as Role;
      const speaker = str(data.speaker) ?? role;
      if (!messageId) return state;
      const index = state.messages.findIndex((m) => m.messageId === messageId);
      const typing = state.typing[role] ? state.typing : { ...state.typing, [role]: speaker };
      if (index >= 0) {
        const current = state.messages[index];
        if (!current.streaming) return state; // complete already: a replayed token
        const messages = state.messages.slice();
        messages[index] = { ...current, content: current.content + text };
        return { ...state, messages, typing };
      }
      const message: ChatMessage = {
        key: messageId,
        messageId,
        role,
        speaker,
        content: text,
        phase: state.phase,
        kind: null,
        interrupted: false,
        streaming: true,
        pending: false,
        failed: null,
        metadata: {},
      };
      return { ...state, messages: [...state.messages, message], typing };
    }
    case "message": {
      const payload = data as unknown as MessagePayload;
      if (!payload.message_id) return state;
      const message = fromPayload(payload);
      const messages = upsertMessage(state.messages, message);
      let typing = state.typing;
      if (typing[message.role] && message.role !== "user") {
        typing = { ...typing };
        delete typing[message.role];
      }
      const generation =
        message.kind === "generation" ? generationFromMessage(message, state.generation) : state.generation;
      return { ...state, messages, typing, generation };
    }
    case "phase": {
      const phase = str(data.phase) as Phase | null;
      return phase ? { ...state, phase } : state;
    }
    case "typing": {
      const role = str(data.role);
      if (!role) return state;
      const typing = { ...state.typing };
      if (data.active) typing[role] = str(data.speaker) ?? role;
      else delete typing[role];
      return { ...state, typing };
    }
    case "interrupt": {
      const question = (data.question ?? null) as Question | null;
      return { ...state, question, interruptId: str(data.interrupt_id), status: "waiting" };
    }
    case "status": {
      const status = str(data.state);
      if (!status) return state;
      if (status === "resumed") return { ...state, status: "running" };
      const next: ConversationState = { ...state, status };
      if (status === "running") next.question = null;
      if (status !== "running") next.typing = {};
      return next;
    }
    case "error": {
      if (event.id <= state.historyUntil) return state; // an old error, replayed
      const message = str(data.message) ?? "Something went wrong.";
      const note: StudioErrorNote = {
        id: event.id,
        message,
        recoverable: data.recoverable === undefined ? true : Boolean(data.recoverable),
      };
      return { ...state, errors: [...state.errors.filter((e) => e.id !== event.id), note].slice(-5) };
    }
    case "generation_progress": {
      const generationId = str(data.generation_id);
      const base =
        state.generation && (state.generation.generationId === generationId || !generationId)
          ? state.generation
          : emptyGeneration(generationId);
      const status = str(data.status) ?? base.status;
      const progress = num(data.progress);
      const next: GenerationView = {
        ...base,
        status,
        progress: progress === null ? base.progress : progress,
        step: num(data.step) ?? (data.step === null ? null : base.step),
        maxSteps: num(data.max_steps) ?? (data.max_steps === null ? null : base.maxSteps),
        node: str(data.node) ?? base.node,
        nodeType: str(data.node_type) ?? base.nodeType,
        preview: str(data.preview) ?? base.preview,
        error: str(data.error) ?? (status === "running" ? null : base.error),
        message: str(data.message) ?? base.message,
        connection: str(data.connection) ?? base.connection,
        outputs: status === "running" || status === "queued" ? [] : base.outputs,
      };
      return { ...state, generation: next };
    }
    case "generation_done": {
      const generationId = str(data.generation_id);
      const base =
        state.generation && state.generation.generationId === generationId
          ? state.generation
          : emptyGeneration(generationId);
      const outputs = Array.isArray(data.outputs) ? (data.outputs as GenerationOutput[]) : [];
      return {
        ...state,
        generation: { ...base, status: "complete", progress: 1, outputs, error: null },
      };
    }
    default:
      return state;
  }
}

export function conversationReducer(
  state: ConversationState,
  action: ConversationAction,
): ConversationState {
  switch (action.type) {
    case "load": {
      const { detail } = action;
      let messages = action.messages.map((m) => fromPayload(m));
      // Keep what the person sent or the stream added meanwhile.
      for (const m of state.messages) {
        if (!messages.some((x) => x.messageId && x.messageId === m.messageId))
          messages = upsertMessage(messages, m);
      }
      let generation = generationFromRecord(detail.generation);
      for (const m of messages) if (m.kind === "generation") generation = generationFromMessage(m, generation);
      if (generation && !generation.plan) generation.plan = detail.plan ?? null;
      return {
        ...state,
        loaded: true,
        messages,
        phase: detail.phase ?? state.phase,
        status: detail.question ? "waiting" : detail.running ? "running" : detail.status,
        question: detail.question ?? null,
        generation: state.generation ?? generation,
        historyUntil: detail.last_event_id,
      };
    }
    case "events": {
      let next = state;
      for (const event of action.events) {
        if (event.id <= next.lastEventId) continue;
        next = { ...applyEvent(next, event), lastEventId: event.id };
      }
      return next;
    }
    case "optimistic": {
      const message: ChatMessage = {
        key: action.key,
        messageId: null,
        role: "user",
        speaker: "You",
        content: action.content,
        phase: state.phase,
        kind: "user",
        interrupted: false,
        streaming: false,
        pending: true,
        failed: null,
        metadata: {},
      };
      return { ...state, messages: [...state.messages, message] };
    }
    case "sent": {
      const already = state.messages.findIndex((m) => m.messageId === action.message.message_id);
      if (already >= 0) {
        // The event was first: drop the optimistic copy if it is still separate.
        return {
          ...state,
          messages: state.messages.filter((m) => m.key !== action.key || m.messageId !== null),
        };
      }
      return {
        ...state,
        messages: state.messages.map((m) =>
          m.key === action.key ? { ...fromPayload(action.message, m.key) } : m,
        ),
      };
    }
    case "sendFailed":
      return {
        ...state,
        messages: state.messages.map((m) =>
          m.key === action.key ? { ...m, pending: false, failed: action.error } : m,
        ),
      };
    case "retrying":
      return {
        ...state,
        messages: state.messages.map((m) =>
          m.key === action.key ? { ...m, pending: true, failed: null } : m,
        ),
      };
    case "answered":
      return { ...state, question: null, status: "running" };
    case "dismissError":
      return { ...state, errors: state.errors.filter((e) => e.id !== action.id) };
    case "generationUpdate": {
      const base =
        state.generation && state.generation.generationId === action.generation.generationId
          ? state.generation
          : emptyGeneration(action.generation.generationId);
      return { ...state, generation: { ...base, ...action.generation } };
    }
    default:
      return state;
  }
}

/** Who is composing right now, as a sentence ("Luna is writing…"). */
export function typingSentence(typing: Record<string, string>): string | null {
  const names = Object.values(typing);
  if (!names.length) return null;
  if (names.length === 1) return `${names[0]} is writing…`;
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are writing…`;
}
