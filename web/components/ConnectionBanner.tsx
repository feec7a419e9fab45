"use client";
import { useEffect, useState } from "react";
import type { StreamStatus } from "@/lib/eventStream";

export interface ConnectionBannerProps {
  status: StreamStatus;
  onReconnect: () => void;
}

/** Says clearly when the live stream is down and what happens next; nothing when it is fine. */
export function ConnectionBanner({ status, onReconnect }: ConnectionBannerProps) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (status.state !== "reconnecting" || !status.retryAt) return;
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [status.state, status.retryAt]);

  if (status.state === "failed") {
    const title =
      status.errorStatus === 401
        ? "This studio needs an API token"
        : status.errorStatus === 404
          ? "This conversation does not exist"
          : "The live stream stopped";
    return (
      <div className="notice notice-error" role="alert" data-testid="connection" data-state="failed">
        <div className="notice-body">
          <strong>{title}</strong>
          {status.error}
          {status.errorStatus === 401 && (
            <>
              {" "}
              <a href="/settings">Enter the token in Settings</a>.
            </>
          )}
        </div>
        {status.errorStatus !== 404 && (
          <button type="button" className="btn btn-small" onClick={onReconnect}>
            Try again
          </button>
        )}
      </div>
    );
  }
  if (status.state === "reconnecting" && status.error) {
    const seconds = status.retryAt ? Math.max(0, Math.ceil((status.retryAt - now) / 1000)) : 0;
    return (
      <div className="notice notice-warn" role="status" data-testid="connection" data-state="reconnecting">
        <div className="notice-body">
          <strong>Connection lost — reconnecting{seconds > 0 ? ` in ${seconds}s` : "…"}</strong>
          {status.error} Nothing is lost: the conversation catches up when the connection is back.
        </div>
        <button type="button" className="btn btn-small" onClick={onReconnect}>
          Reconnect now
        </button>
      </div>
    );
  }
  return null;
}
