/**
 * The studio API client. Every call goes to `${apiBase()}/api/...` (same origin by
 * default: `creative-studio serve` serves this app, `next dev` proxies /api). Errors come
 * back as ApiError with the server's `{error: {code, message}}`, or code "network" when
 * the server could not be reached at all.
 */
import type {
  Conversation,
  ConversationDetail,
  Generation,
  Health,
  MessagePayload,
  ModelsInfo,
  Page,
  Preferences,
  PullProgress,
  Session,
  SessionSettings,
  StoredMessage,
} from "./types";

const TOKEN_KEY = "creative-studio.token";
const BASE_KEY = "creative-studio.api-base";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }

  /** A sentence that tells the person what to do about it. */
  get hint(): string {
    if (this.code === "network")
      return "The studio server does not answer. Is `creative-studio serve` running?";
    if (this.status === 401)
      return "This studio needs an API token: enter it under Settings → Connection.";
    if (this.status === 404) return "It may have been deleted.";
    if (this.status === 503) return "A service the studio needs is not available right now.";
    if (this.status >= 500) return "The server hit an error; try again in a moment.";
    return "";
  }
}

function storage(): Storage | null {
  try {
    return typeof window === "undefined" ? null : window.localStorage;
  } catch {
    return null;
  }
}

export function getToken(): string {
  return storage()?.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token: string): void {
  const store = storage();
  if (!store) return;
  if (token.trim()) store.setItem(TOKEN_KEY, token.trim());
  else store.removeItem(TOKEN_KEY);
}

/** "" (same origin) unless NEXT_PUBLIC_API_BASE or a saved base says otherwise. */
export function apiBase(): string {
  const saved = storage()?.getItem(BASE_KEY);
  const base = saved || process.env.NEXT_PUBLIC_API_BASE || "";
  return base.replace(/\/+$/, "");
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** An absolute-or-relative URL the browser can load (images, downloads). */
export function assetUrl(path: string): string {
  if (/^(https?:|data:|blob:)/.test(path)) return path;
  const token = getToken();
  const url = `${apiBase()}${path}`;
  return token ? `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}` : url;
}

async function errorFrom(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body?.error?.message) {
      code = body.error.code ?? code;
      message = body.error.message;
    } else if (typeof body?.detail === "string") {
      message = body.detail;
    }
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, code, message);
}

/** An image the studio keeps for a session (an upload or a result), as a message carries it. */
export interface StudioImage {
  ref: string;
  url: string;
  filename: string;
  width?: number;
  height?: number;
  name?: string | null;
  source?: "upload" | "output";
}

export async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  init: { signal?: AbortSignal } = {},
): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${apiBase()}${path}`, {
      method,
      headers: {
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...authHeaders(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: init.signal,
      cache: "no-store",
    });
  } catch (error) {
    if ((error as Error)?.name === "AbortError") throw error;
    throw new ApiError(0, "network", "Cannot reach the studio server.");
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

const q = (params: Record<string, string | number | undefined | null>) => {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join("&")}` : "";
};

const id = (value: string) => encodeURIComponent(value);

export const api = {
  // sessions
  listSessions: (limit = 20, offset = 0) =>
    request<Page<Session>>("GET", `/api/sessions${q({ limit, offset })}`),
  createSession: (name: string) => request<Session>("POST", "/api/sessions", { name }),
  getSession: (sessionId: string) => request<Session>("GET", `/api/sessions/${id(sessionId)}`),
  renameSession: (sessionId: string, name: string) =>
    request<Session>("PATCH", `/api/sessions/${id(sessionId)}`, { name }),
  deleteSession: (sessionId: string) =>
    request<void>("DELETE", `/api/sessions/${id(sessionId)}`),
  getSettings: (sessionId: string) =>
    request<SessionSettings>("GET", `/api/sessions/${id(sessionId)}/settings`),
  putSettings: (
    sessionId: string,
    body: { model_assignments?: Record<string, string>; preferences?: Partial<Preferences> },
  ) => request<SessionSettings>("PUT", `/api/sessions/${id(sessionId)}/settings`, body),
  createConversation: (sessionId: string, message?: string, title?: string) =>
    request<Conversation>("POST", `/api/sessions/${id(sessionId)}/conversations`, {
      ...(message ? { message } : {}),
      ...(title ? { title } : {}),
    }),
  listConversations: (sessionId: string) =>
    request<Conversation[]>("GET", `/api/sessions/${id(sessionId)}/conversations`),

  // conversations
  getConversation: (conversationId: string) =>
    request<ConversationDetail>("GET", `/api/conversations/${id(conversationId)}`),
  listMessages: (conversationId: string, afterSeq?: number, limit = 200) =>
    request<StoredMessage[]>(
      "GET",
      `/api/conversations/${id(conversationId)}/messages${q({ after_seq: afterSeq, limit })}`,
    ),
  /** Every stored message, page by page. */
  async allMessages(conversationId: string): Promise<StoredMessage[]> {
    const all: StoredMessage[] = [];
    let after: number | undefined;
    for (;;) {
      const page = await api.listMessages(conversationId, after, 200);
      all.push(...page);
      if (page.length < 200) return all;
      after = page[page.length - 1].seq;
    }
  },
  postMessage: (conversationId: string, content: string, images: string[] = []) =>
    request<{ message: MessagePayload; queued: boolean }>(
      "POST",
      `/api/conversations/${id(conversationId)}/messages`,
      images.length ? { content, images } : { content },
    ),
  /** Store an image for the session (checked by content on the server); send its `ref`
   * with a message to give the team a starting image. */
  uploadImage: async (sessionId: string, file: Blob, name = "image.png"): Promise<StudioImage> => {
    const form = new FormData();
    form.append("file", file, name);
    let response: Response;
    try {
      response = await fetch(`${apiBase()}/api/sessions/${id(sessionId)}/images`, {
        method: "POST",
        headers: { Accept: "application/json", ...authHeaders() },
        body: form,
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network", "Cannot reach the studio server.");
    }
    if (!response.ok) throw await errorFrom(response);
    return (await response.json()) as StudioImage;
  },
  answer: (
    conversationId: string,
    body: { text?: string; choice?: string; approved?: boolean },
  ) => request<unknown>("POST", `/api/conversations/${id(conversationId)}/answer`, body),
  cancelConversation: (conversationId: string) =>
    request<unknown>("POST", `/api/conversations/${id(conversationId)}/cancel`),
  resumeConversation: (conversationId: string) =>
    request<unknown>("POST", `/api/conversations/${id(conversationId)}/resume`),
  eventsPath: (conversationId: string) => `/api/conversations/${id(conversationId)}/events`,

  // generations
  listGenerations: (sessionId?: string, limit = 50, offset = 0) =>
    request<Page<Generation>>(
      "GET",
      `/api/generations${q({ session_id: sessionId, limit, offset })}`,
    ),
  getGeneration: (generationId: string) =>
    request<Generation>("GET", `/api/generations/${id(generationId)}`),
  cancelGeneration: (generationId: string) =>
    request<Generation>("POST", `/api/generations/${id(generationId)}/cancel`),
  retryGeneration: (generationId: string) =>
    request<Generation>("POST", `/api/generations/${id(generationId)}/retry`),

  // models & health
  getModels: () => request<ModelsInfo>("GET", "/api/models"),
  getHealth: () => request<Health>("GET", "/api/health"),

  /** Pull a model with Ollama; calls onProgress for each NDJSON line. */
  async pullModel(
    name: string,
    onProgress: (step: PullProgress) => void,
    signal?: AbortSignal,
  ): Promise<PullProgress> {
    let response: Response;
    try {
      response = await fetch(`${apiBase()}/api/models/pull`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({ name }),
        signal,
      });
    } catch (error) {
      if ((error as Error)?.name === "AbortError") throw error;
      throw new ApiError(0, "network", "Cannot reach the studio server.");
    }
    if (!response.ok || !response.body) throw await errorFrom(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let last: PullProgress = { status: "started" };
    for (;;) {
      const { done, value } = await reader.read();
      buffer += decoder.decode(value, { stream: !done });
      const lines = buffer.split("\n");
      buffer = done ? "" : (lines.pop() ?? "");
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          last = JSON.parse(line) as PullProgress;
          onProgress(last);
        } catch {
          // a broken line: skip it, the next one carries the state
        }
      }
      if (done) break;
    }
    if (last.status === "error") throw new ApiError(502, "pull_failed", last.error || "The pull failed.");
    return last;
  },
};

export function describeError(error: unknown): { message: string; hint: string } {
  if (error instanceof ApiError) return { message: error.message, hint: error.hint };
  return { message: (error as Error)?.message || String(error), hint: "" };
}
