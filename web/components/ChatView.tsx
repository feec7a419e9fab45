"use client";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { api, ApiError, describeError, type StudioImage } from "@/lib/api";
import { conversationReducer, initialConversationState } from "@/lib/conversation";
import type { Session } from "@/lib/types";
import { useConversationEvents } from "@/lib/useConversationEvents";
import { ChatInput, type ChatInputHandle } from "./ChatInput";
import { ConnectionBanner } from "./ConnectionBanner";
import { ErrorState } from "./ErrorState";
import { GenerationPreview } from "./GenerationPreview";
import { MessageStream } from "./MessageStream";
import { PhaseIndicator } from "./PhaseIndicator";
import { QuestionCard } from "./QuestionCard";
import { TeamModels } from "./TeamModels";

/** The conversation id from /chat/<id> (the static export serves one page for every id). */
export function conversationIdFrom(pathname: string | null): string | null {
  const match = /^\/chat\/([^/?#]+)/.exec(pathname || "");
  if (!match || match[1] === "_") return null;
  return decodeURIComponent(match[1]);
}

let localCounter = 0;

const STATUS_TEXT: Record<string, string> = {
  running: "The team is talking",
  waiting: "The team is waiting for your answer",
  idle: "The team is waiting for you",
  complete: "Done — ask for changes to iterate",
  paused: "Paused while you were away",
};

export function ChatView() {
  const pathname = usePathname();
  // Read after hydration: the prerendered page was built for the placeholder id "_".
  const [conversationId, setConversationId] = useState<string | null>(null);
  useEffect(() => {
    const fromPath = conversationIdFrom(pathname) ?? conversationIdFrom(window.location.pathname);
    setConversationId(fromPath);
  }, [pathname]);

  const [state, dispatch] = useReducer(conversationReducer, initialConversationState);
  const [session, setSession] = useState<Session | null>(null);
  const [title, setTitle] = useState<string | null>(null);
  const [sessionId, setSessionId] = useState<string | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [after, setAfter] = useState<number | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const inputRef = useRef<ChatInputHandle>(null);

  const load = useCallback(async (id: string) => {
    setLoadError(null);
    try {
      const detail = await api.getConversation(id);
      const messages = await api.allMessages(id);
      dispatch({ type: "load", detail, messages });
      setTitle(detail.title);
      setSessionId(detail.session_id);
      // A running turn may be half-streamed: replay from the start so its tokens are
      // rebuilt (complete messages ignore them). Otherwise follow from where we are.
      setAfter(detail.running ? 0 : detail.last_event_id);
      api.getSession(detail.session_id).then(setSession, () => undefined);
    } catch (error) {
      setLoadError(error);
    }
  }, []);

  useEffect(() => {
    if (conversationId) void load(conversationId);
  }, [conversationId, load]);

  const events = useConversationEvents(conversationId, {
    after,
    onEvents: (batch) => dispatch({ type: "events", events: batch }),
  });

  const post = useCallback(
    async (key: string, text: string, images: string[] = []) => {
      if (!conversationId) return;
      try {
        const accepted = await api.postMessage(conversationId, text, images);
        dispatch({ type: "sent", key, message: accepted.message });
      } catch (error) {
        const { message, hint } = describeError(error);
        dispatch({ type: "sendFailed", key, error: hint ? `${message} ${hint}` : message });
      }
    },
    [conversationId],
  );

  const send = useCallback(
    (text: string, images: StudioImage[] = []) => {
      localCounter += 1;
      const key = `local-${Date.now()}-${localCounter}`;
      dispatch({ type: "optimistic", key, content: text });
      void post(key, text, images.map((image) => image.ref));
    },
    [post],
  );

  const retry = useCallback(
    (key: string) => {
      const message = state.messages.find((m) => m.key === key);
      if (!message) return;
      dispatch({ type: "retrying", key });
      void post(key, message.content);
    },
    [state.messages, post],
  );

  const act = async (what: () => Promise<unknown>) => {
    setActionError(null);
    setBusy(true);
    try {
      await what();
    } catch (error) {
      const { message, hint } = describeError(error);
      setActionError(hint ? `${message} ${hint}` : message);
    } finally {
      setBusy(false);
    }
  };

  if (loadError) {
    const notFound = loadError instanceof ApiError && loadError.status === 404;
    return (
      <div className="page">
        <ErrorState
          title={notFound ? "This conversation does not exist" : "The conversation could not be loaded"}
          error={loadError}
          onRetry={notFound || !conversationId ? undefined : () => void load(conversationId)}
        />
      </div>
    );
  }

  const running = state.status === "running";
  const generation = state.generation;
  const settingsHref = (role?: string) =>
    `/settings${sessionId ? `?session=${encodeURIComponent(sessionId)}` : ""}${role ? `#role-${role}` : ""}`;

  return (
    <div className="chat">
      <header className="chat-header">
        <div className="chat-title">
          <h1 data-testid="session-name">{session?.name ?? (state.loaded ? "Session" : "Loading…")}</h1>
          <p title={title ?? undefined} data-testid="chat-subtitle">
            {title && title !== session?.name ? `${title} · ` : ""}
            {STATUS_TEXT[state.status ?? ""] ?? "\u00a0"}
          </p>
        </div>
        <PhaseIndicator
          phase={state.phase}
          waiting={generation?.status === "queued" && generation?.connection === "unreachable"}
        />
        <div className="row" style={{ gap: 6 }}>
          {running && conversationId && (
            <button
              type="button"
              className="btn btn-small"
              onClick={() =>
                act(async () => {
                  await api.cancelConversation(conversationId);
                  // The cancel answers once the conversation left "generating": show it
                  // ("Generation cancelled.") without waiting for the stream.
                  await load(conversationId);
                })
              }
              disabled={busy}
              title="Stop the team at the next safe point"
              aria-label="Stop the team"
            >
              ■ <span className="btn-label">Stop</span>
            </button>
          )}
          {state.status === "paused" && conversationId && (
            <button
              type="button"
              className="btn btn-small"
              onClick={() => act(() => api.resumeConversation(conversationId))}
              disabled={busy}
              aria-label="Continue the discussion"
            >
              ▶ <span className="btn-label">Continue</span>
            </button>
          )}
          <Link
            className="btn btn-small icon-btn"
            href={settingsHref()}
            aria-label="Settings for this session"
            title="Settings"
          >
            <span aria-hidden="true" style={{ fontSize: "1.15rem" }}>⚙</span>
          </Link>
          <Link
            className="btn btn-small"
            href={sessionId ? `/?session=${encodeURIComponent(sessionId)}` : "/"}
            data-testid="new-chat"
            aria-label="New chat"
          >
            + <span className="btn-label">New chat</span>
          </Link>
        </div>
      </header>
      <TeamModels sessionId={sessionId} settingsHref={settingsHref()} />

      <div className="chat-body">
        <div className="chat-inner">
          <ConnectionBanner status={events} onReconnect={events.reconnectNow} />
          {!state.loaded && (
            <div className="stack" aria-busy="true" aria-label="Loading the conversation">
              <div className="skeleton" style={{ height: 60 }} />
              <div className="skeleton" style={{ height: 60, width: "80%" }} />
              <div className="skeleton" style={{ height: 60, width: "65%" }} />
            </div>
          )}
          {state.loaded && state.messages.length === 0 && (
            <p className="muted">Nothing said yet. Tell the team what you would like to make.</p>
          )}
          <MessageStream
            messages={state.messages}
            typing={state.typing}
            onRetry={retry}
            settingsHref={settingsHref}
          />
          {state.errors.map((error) => (
            <div key={error.id} className="notice notice-error" role="alert" data-testid="studio-error">
              <div className="notice-body">
                <strong>The team ran into a problem</strong>
                {error.message}
              </div>
              {error.recoverable && conversationId && !running && (
                <button
                  type="button"
                  className="btn btn-small"
                  onClick={() =>
                    act(async () => {
                      await api.resumeConversation(conversationId);
                      dispatch({ type: "dismissError", id: error.id });
                    })
                  }
                >
                  Continue
                </button>
              )}
              <button
                type="button"
                className="btn btn-small btn-ghost"
                onClick={() => dispatch({ type: "dismissError", id: error.id })}
                aria-label="Dismiss this error"
              >
                ✕
              </button>
            </div>
          ))}
          {state.question && conversationId && (
            <QuestionCard
              question={state.question}
              onAnswer={(answer) =>
                act(async () => {
                  await api.answer(conversationId, answer);
                  dispatch({ type: "answered" });
                })
              }
            />
          )}
          {generation && (
            <GenerationPreview
              generation={generation}
              busy={busy}
              onCancel={() =>
                generation.generationId &&
                act(() => api.cancelGeneration(generation.generationId as string))
              }
              onRegenerate={() =>
                generation.generationId &&
                act(async () => {
                  const next = await api.retryGeneration(generation.generationId as string);
                  dispatch({
                    type: "generationUpdate",
                    generation: {
                      generationId: next.id,
                      status: next.status,
                      progress: next.progress ?? 0,
                      outputs: [],
                      error: null,
                      preview: null,
                      plan: generation.plan,
                    },
                  });
                })
              }
              onVariation={() =>
                send("Make a variation of this image: keep the plan and the style, but use a new seed.")
              }
              onUseAsInit={(url, output) => {
                const path = typeof output.path === "string" ? output.path : null;
                if (!path) return;
                inputRef.current?.attach({
                  ref: path,
                  url,
                  filename: output.filename,
                  source: "output",
                });
                inputRef.current?.setText("Start from this image and change: ");
              }}
            />
          )}
          {actionError && (
            <div className="notice notice-error" role="alert">
              <div className="notice-body">
                <strong>That did not work</strong>
                {actionError}
              </div>
              <button type="button" className="btn btn-small btn-ghost" onClick={() => setActionError(null)} aria-label="Dismiss">
                ✕
              </button>
            </div>
          )}
        </div>
      </div>

      <div className="chat-footer">
        <div className="chat-footer-inner">
          <ChatInput
            ref={inputRef}
            onSend={send}
            onUpload={sessionId ? (file) => api.uploadImage(sessionId, file, file.name) : undefined}
            teamBusy={running}
          />
        </div>
      </div>
    </div>
  );
}
