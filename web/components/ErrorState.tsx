"use client";
import Link from "next/link";
import { describeError } from "@/lib/api";

/** A clear, actionable error in place of content (never a blank page). */
export function ErrorState({
  title,
  error,
  onRetry,
}: {
  title: string;
  error: unknown;
  onRetry?: () => void;
}) {
  const { message, hint } = describeError(error);
  return (
    <div className="notice notice-error" role="alert" data-testid="error-state">
      <div className="notice-body">
        <strong>{title}</strong>
        <p style={{ margin: "4px 0" }}>{message}</p>
        {hint && <p style={{ margin: 0 }} className="small">{hint}</p>}
      </div>
      <div className="row">
        {onRetry && (
          <button type="button" className="btn btn-small" onClick={onRetry}>
            Try again
          </button>
        )}
        <Link className="btn btn-small" href="/">
          Home
        </Link>
        <Link className="btn btn-small" href="/settings">
          Settings
        </Link>
      </div>
    </div>
  );
}
