"use client";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { useCallback, useEffect, useState } from "react";
import { api, assetUrl } from "@/lib/api";
import { outputUrl } from "@/lib/conversation";
import type { Generation, Plan, Session } from "@/lib/types";
import { ErrorState } from "./ErrorState";
import { PlanTable } from "./PlanTable";

const PAGE = 24;

/** The plan of a generation: parameters.plan (the API's shape) or the parameters themselves. */
export function planOf(generation: Generation): Plan {
  const parameters = generation.parameters ?? {};
  const plan = parameters.plan;
  return (plan && typeof plan === "object" ? plan : parameters) as Plan;
}

function Tile({ generation, sessionName }: { generation: Generation; sessionName?: string }) {
  const plan = planOf(generation);
  const output = generation.outputs.find((o) => o && o.filename);
  const src = output ? assetUrl(outputUrl(generation.id, output)) : null;
  const prompt = plan.positive_prompt || "(no prompt)";
  const badge =
    generation.status === "complete" ? "badge-ok" : generation.status === "failed" ? "badge-bad" : "badge-warn";
  return (
    <li className="tile" data-testid="gallery-item" data-generation-id={generation.id}>
      <div className="tile-media">
        {src && output?.kind === "video" ? (
          <video src={src} controls muted loop playsInline aria-label={prompt} />
        ) : src ? (
          // eslint-disable-next-line @next/next/no-img-element
          <img src={src} alt={prompt} loading="lazy" />
        ) : (
          <span>{generation.status === "failed" ? "Failed" : generation.status}</span>
        )}
      </div>
      <div className="tile-body">
        <div className="row" style={{ gap: 6 }}>
          <span className={`badge ${badge}`}>{generation.status}</span>
          {sessionName && <span className="small faint">{sessionName}</span>}
        </div>
        <p className="tile-prompt" style={{ margin: 0 }} title={prompt}>
          {prompt}
        </p>
        {generation.error && <p className="small" style={{ color: "var(--danger)", margin: 0 }}>{generation.error}</p>}
        <details>
          <summary>Plan</summary>
          <PlanTable plan={plan} />
        </details>
        <div className="row" style={{ marginTop: "auto" }}>
          {generation.conversation_id && (
            <Link className="btn btn-small" href={`/chat/${generation.conversation_id}`}>
              Open conversation
            </Link>
          )}
          {src && (
            <a className="btn btn-small btn-ghost" href={src} download={output?.filename}>
              Download
            </a>
          )}
          <span className="small faint" style={{ marginLeft: "auto" }}>
            {new Date(generation.created_at).toLocaleDateString()}
          </span>
        </div>
      </div>
    </li>
  );
}

export function GalleryView() {
  const router = useRouter();
  const params = useSearchParams();
  const sessionFilter = params.get("session") ?? "";
  const [sessions, setSessions] = useState<Session[]>([]);
  const [items, setItems] = useState<Generation[] | null>(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [loadingMore, setLoadingMore] = useState(false);

  useEffect(() => {
    api.listSessions(100).then((page) => setSessions(page.items), () => undefined);
  }, []);

  const load = useCallback(async () => {
    setError(null);
    setItems(null);
    try {
      const page = await api.listGenerations(sessionFilter || undefined, PAGE, 0);
      setItems(page.items);
      setMore(page.items.length === PAGE);
    } catch (err) {
      setError(err);
    }
  }, [sessionFilter]);

  useEffect(() => {
    void load();
  }, [load]);

  const loadMore = async () => {
    if (!items) return;
    setLoadingMore(true);
    try {
      const page = await api.listGenerations(sessionFilter || undefined, PAGE, items.length);
      setItems([...items, ...page.items]);
      setMore(page.items.length === PAGE);
    } catch (err) {
      setError(err);
    } finally {
      setLoadingMore(false);
    }
  };

  const names = Object.fromEntries(sessions.map((s) => [s.id, s.name]));
  return (
    <div className="page">
      <div className="row" style={{ marginBottom: 18, alignItems: "flex-end" }}>
        <h1 style={{ margin: 0 }}>Gallery</h1>
        <span className="spacer" />
        <div className="field" style={{ width: 280, maxWidth: "100%" }}>
          <label htmlFor="gallery-session">Session</label>
          <select
            id="gallery-session"
            value={sessionFilter}
            onChange={(event) =>
              router.replace(event.target.value ? `/gallery?session=${encodeURIComponent(event.target.value)}` : "/gallery")
            }
            data-testid="gallery-filter"
          >
            <option value="">All sessions</option>
            {sessionFilter && !names[sessionFilter] && <option value={sessionFilter}>This session</option>}
            {sessions.map((session) => (
              <option key={session.id} value={session.id}>
                {session.name}
              </option>
            ))}
          </select>
        </div>
      </div>
      {error ? (
        <ErrorState title="Could not load the gallery" error={error} onRetry={load} />
      ) : items === null ? (
        <div className="gallery" aria-busy="true" aria-label="Loading the gallery">
          {[0, 1, 2].map((i) => (
            <div key={i} className="skeleton" style={{ height: 280 }} />
          ))}
        </div>
      ) : items.length === 0 ? (
        <div className="empty">
          <p>No generations {sessionFilter ? "in this session " : ""}yet.</p>
          <Link className="btn btn-primary" href="/">
            Start a discussion
          </Link>
        </div>
      ) : (
        <>
          <ul className="gallery list" style={{ display: "grid" }} data-testid="gallery">
            {items.map((generation) => (
              <Tile
                key={generation.id}
                generation={generation}
                sessionName={sessionFilter ? undefined : names[generation.session_id]}
              />
            ))}
          </ul>
          {more && (
            <div className="row" style={{ justifyContent: "center", marginTop: 18 }}>
              <button type="button" className="btn" onClick={loadMore} disabled={loadingMore}>
                {loadingMore ? "Loading…" : "Load more"}
              </button>
            </div>
          )}
        </>
      )}
    </div>
  );
}
