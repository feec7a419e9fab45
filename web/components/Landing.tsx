"use client";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, describeError } from "@/lib/api";
import { SPECIALISTS, SPECIALIST_ROLES } from "@/lib/specialists";
import type { Conversation, Session } from "@/lib/types";
import { ErrorState } from "./ErrorState";
import { SpecialistAvatar } from "./SpecialistAvatar";

const EXAMPLES = [
  "A cyberpunk street at night, neon signs reflected in the rain",
  "A lighthouse in a storm, painted like Turner",
  "A cosy reading nook in a treehouse, morning light",
];

interface SessionRow {
  session: Session;
  conversations: Conversation[] | null;
}

function when(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ""
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function Landing() {
  const router = useRouter();
  const params = useSearchParams();
  const sessionParam = params.get("session");
  const [request, setRequest] = useState("");
  const [starting, setStarting] = useState(false);
  const [startError, setStartError] = useState<string | null>(null);
  const [rows, setRows] = useState<SessionRow[] | null>(null);
  const [listError, setListError] = useState<unknown>(null);
  const [target, setTarget] = useState<Session | null>(null);

  const loadSessions = useCallback(async () => {
    setListError(null);
    try {
      const page = await api.listSessions(12);
      const initial = page.items.map((session) => ({ session, conversations: null }));
      setRows(initial);
      const withConversations = await Promise.all(
        page.items.map(async (session) => ({
          session,
          conversations: await api.listConversations(session.id).catch(() => []),
        })),
      );
      setRows(withConversations);
    } catch (error) {
      setListError(error);
    }
  }, []);

  useEffect(() => {
    void loadSessions();
  }, [loadSessions]);

  useEffect(() => {
    if (!sessionParam) {
      setTarget(null);
      return;
    }
    api.getSession(sessionParam).then(setTarget, () => setTarget(null));
  }, [sessionParam]);

  const start = async (event?: FormEvent) => {
    event?.preventDefault();
    const text = request.trim();
    if (!text || starting) return;
    setStarting(true);
    setStartError(null);
    try {
      const session = target ?? (await api.createSession(text.length > 60 ? `${text.slice(0, 57)}…` : text));
      const conversation = await api.createConversation(session.id, text);
      router.push(`/chat/${conversation.id}`);
    } catch (error) {
      const { message, hint } = describeError(error);
      setStartError(hint ? `${message} ${hint}` : message);
      setStarting(false);
    }
  };

  return (
    <div className="page">
      <section className="hero" aria-labelledby="hero-title">
        <h1 id="hero-title">What shall the team make?</h1>
        <p className="muted" style={{ maxWidth: 640 }}>
          Five specialists discuss your idea live — jump in whenever you like — and the plan they
          agree on goes to ComfyUI.
        </p>
        <ul className="team-strip" aria-label="The team">
          {SPECIALIST_ROLES.map((role) => (
            <li key={role} className="team-member">
              <SpecialistAvatar role={role} size={34} />
              <span>
                <strong style={{ color: `var(--c-${SPECIALISTS[role].colour})` }}>{SPECIALISTS[role].name}</strong>
                <small>{SPECIALISTS[role].title}</small>
              </span>
            </li>
          ))}
        </ul>
        <form className="card stack start-form" onSubmit={start} aria-label="Start a new chat">
          <div className="field">
            <label htmlFor="first-request">
              {target ? `New chat in “${target.name}”` : "Your first request"}
            </label>
            <textarea
              id="first-request"
              value={request}
              onChange={(event) => setRequest(event.target.value)}
              onKeyDown={(event) => {
                if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) void start();
              }}
              placeholder="Describe the image or video you want…"
              maxLength={8000}
              data-testid="first-request"
              aria-describedby="first-request-hint"
            />
            <span id="first-request-hint" className="field-hint">
              Ctrl+Enter to start. You can change direction at any time during the discussion.
            </span>
          </div>
          <div className="examples" aria-label="Examples">
            {EXAMPLES.map((example) => (
              <button key={example} type="button" className="btn btn-small btn-ghost" onClick={() => setRequest(example)}>
                {example}
              </button>
            ))}
          </div>
          {startError && (
            <div className="notice notice-error" role="alert">
              <div className="notice-body">
                <strong>Could not start the chat</strong>
                {startError}
              </div>
            </div>
          )}
          <div className="row">
            <button type="submit" className="btn btn-primary" disabled={!request.trim() || starting} data-testid="start">
              {starting ? "Starting…" : "Start the discussion"}
            </button>
            {target && (
              <Link className="btn btn-ghost" href="/">
                Start a new session instead
              </Link>
            )}
          </div>
        </form>
      </section>

      <section aria-labelledby="recent-title">
        <div className="row" style={{ marginBottom: 12 }}>
          <h2 id="recent-title" style={{ margin: 0 }}>
            Recent sessions
          </h2>
          <span className="spacer" />
          <Link href="/gallery" className="btn btn-small">
            Gallery
          </Link>
        </div>
        {listError ? (
          <ErrorState title="Could not load your sessions" error={listError} onRetry={loadSessions} />
        ) : rows === null ? (
          <div className="stack" aria-busy="true" aria-label="Loading sessions">
            <div className="skeleton" style={{ height: 48 }} />
            <div className="skeleton" style={{ height: 48 }} />
          </div>
        ) : rows.length === 0 ? (
          <p className="empty">No sessions yet. Your first request starts one.</p>
        ) : (
          <ul className="list" data-testid="sessions">
            {rows.map(({ session, conversations }) => (
              <li key={session.id} className="list-item">
                <div style={{ minWidth: 0, flex: 1 }}>
                  <div style={{ fontWeight: 600 }}>{session.name}</div>
                  <div className="small faint">{when(session.updated_at)}</div>
                </div>
                <Link className="btn btn-small btn-ghost" href={`/?session=${session.id}`}>
                  New chat
                </Link>
                <Link className="btn btn-small btn-ghost" href={`/gallery?session=${session.id}`}>
                  Images
                </Link>
                {conversations && conversations.length > 0 && (
                  <div className="conv-links">
                    {conversations.slice(0, 5).map((conversation) => (
                      <Link key={conversation.id} href={`/chat/${conversation.id}`}>
                        {conversation.title || "Untitled conversation"}
                        <span className="faint small"> · {conversation.status}</span>
                      </Link>
                    ))}
                  </div>
                )}
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
