"use client";
import Link from "next/link";
import { useEffect, useState } from "react";
import { api } from "@/lib/api";
import { SPECIALISTS, SPECIALIST_ROLES } from "@/lib/specialists";
import type { SessionSettings } from "@/lib/types";

/** Which model each specialist runs in this session, and what would make them better. */
export function TeamModels({ sessionId, settingsHref }: { sessionId: string | null; settingsHref: string }) {
  const [settings, setSettings] = useState<SessionSettings | null>(null);
  useEffect(() => {
    if (!sessionId) return;
    let alive = true;
    api
      .getSettings(sessionId)
      .then((value) => alive && setSettings(value))
      .catch(() => alive && setSettings(null)); // the chat works without this line
    return () => {
      alive = false;
    };
  }, [sessionId]);
  if (!settings || !Object.keys(settings.resolved_models).length) return null;
  return (
    <div className="team-models" data-testid="team-models">
      <span className="team-models-list">
        {SPECIALIST_ROLES.map((role) => (
          <span key={role} className="team-model" title={`${SPECIALISTS[role].name} runs ${settings.resolved_models[role]}`}>
            {SPECIALISTS[role].name} · <code>{settings.resolved_models[role] ?? "?"}</code>
          </span>
        ))}
      </span>
      {settings.notes.map((note) => (
        <span key={note} className="field-hint team-models-note">
          {note} <Link href={settingsHref}>Change models</Link>
        </span>
      ))}
    </div>
  );
}
