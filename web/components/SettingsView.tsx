"use client";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { useCallback, useEffect, useState } from "react";
import { api, describeError, getToken, setToken } from "@/lib/api";
import { SPECIALIST_ROLES } from "@/lib/specialists";
import type { Health, ModelsInfo, Preferences, Session, SessionSettings } from "@/lib/types";
import { ErrorState } from "./ErrorState";
import { ModelSelector, PullStatus, type PullState } from "./ModelSelector";
import { TemplateBrowser } from "./TemplateBrowser";

function StatusItem({ name, ok, detail }: { name: string; ok: boolean | null; detail: string | null }) {
  return (
    <div className="status-item" data-testid={`health-${name.toLowerCase()}`} data-ok={ok ?? undefined}>
      <div className="row" style={{ justifyContent: "space-between" }}>
        <strong>{name}</strong>
        <span className={`badge ${ok === null ? "" : ok ? "badge-ok" : "badge-bad"}`}>
          <span className="dot" aria-hidden="true" />
          {ok === null ? "checking" : ok ? "connected" : "not connected"}
        </span>
      </div>
      <p>{detail ?? "\u00a0"}</p>
    </div>
  );
}

export function SettingsView() {
  const router = useRouter();
  const params = useSearchParams();
  const sessionParam = params.get("session");

  const [health, setHealth] = useState<Health | null>(null);
  const [healthError, setHealthError] = useState<unknown>(null);
  const [models, setModels] = useState<ModelsInfo | null>(null);
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [sessionsError, setSessionsError] = useState<unknown>(null);
  const [settings, setSettings] = useState<SessionSettings | null>(null);
  const [settingsError, setSettingsError] = useState<unknown>(null);
  const [assignments, setAssignments] = useState<Record<string, string>>({});
  const [prefs, setPrefs] = useState<Preferences | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [saveError, setSaveError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [token, setTokenDraft] = useState("");
  const [pull, setPull] = useState<PullState | null>(null);
  const [pullName, setPullName] = useState("");

  const sessionId = sessionParam ?? sessions?.[0]?.id ?? null;

  const checkHealth = useCallback(async () => {
    setHealth(null);
    setHealthError(null);
    try {
      setHealth(await api.getHealth());
    } catch (error) {
      setHealthError(error);
    }
    api.getModels().then(setModels, () => setModels(null));
  }, []);

  const loadSessions = useCallback(async () => {
    setSessionsError(null);
    try {
      setSessions((await api.listSessions(50)).items);
    } catch (error) {
      setSessionsError(error);
    }
  }, []);

  useEffect(() => {
    setTokenDraft(getToken());
    void checkHealth();
    void loadSessions();
  }, [checkHealth, loadSessions]);

  const loadSettings = useCallback(async (id: string) => {
    setSettingsError(null);
    try {
      const value = await api.getSettings(id);
      setSettings(value);
      setAssignments(
        Object.fromEntries(SPECIALIST_ROLES.map((role) => [role, value.model_assignments[role] ?? "auto"])),
      );
      setPrefs(value.preferences);
    } catch (error) {
      setSettingsError(error);
    }
  }, []);

  useEffect(() => {
    if (sessionId) void loadSettings(sessionId);
  }, [sessionId, loadSettings]);

  // /settings?session=…#role-style: bring that role's selector into view once it exists.
  useEffect(() => {
    if (!settings || !window.location.hash) return;
    const element = document.getElementById(window.location.hash.slice(1));
    if (element) {
      element.scrollIntoView({ block: "center" });
      element.querySelector("select")?.focus();
    }
  }, [settings]);

  const saveModels = async () => {
    if (!sessionId) return;
    setSaving(true);
    setSaveError(null);
    setSaved(null);
    try {
      const value = await api.putSettings(sessionId, { model_assignments: assignments });
      setSettings(value);
      setSaved("models");
    } catch (error) {
      const { message, hint } = describeError(error);
      setSaveError(hint ? `${message} ${hint}` : message);
    } finally {
      setSaving(false);
    }
  };

  const savePrefs = async () => {
    if (!sessionId || !prefs) return;
    setSaving(true);
    setSaveError(null);
    setSaved(null);
    try {
      const value = await api.putSettings(sessionId, { preferences: prefs });
      setSettings(value);
      setPrefs(value.preferences);
      setSaved("preferences");
    } catch (error) {
      const { message, hint } = describeError(error);
      setSaveError(hint ? `${message} ${hint}` : message);
    } finally {
      setSaving(false);
    }
  };

  const startPull = async (name: string) => {
    const clean = name.trim();
    if (!clean) return;
    setPull({ name: clean, progress: null, error: null, done: false });
    try {
      await api.pullModel(clean, (progress) => setPull((p) => (p ? { ...p, progress } : p)));
      setPull((p) => (p ? { ...p, done: true } : p));
      api.getModels().then(setModels, () => undefined);
    } catch (error) {
      const { message } = describeError(error);
      setPull((p) => (p ? { ...p, error: message } : p));
    }
  };

  const setPref = <K extends keyof Preferences>(key: K, value: Preferences[K]) =>
    setPrefs((current) => (current ? { ...current, [key]: value } : current));

  const changed =
    settings !== null &&
    SPECIALIST_ROLES.some((role) => (settings.model_assignments[role] ?? "auto") !== assignments[role]);

  return (
    <div className="page settings-grid">
      <h1>Settings</h1>

      <section className="card stack" aria-labelledby="conn-title">
        <div className="row">
          <h2 id="conn-title" style={{ margin: 0 }}>
            Connection
          </h2>
          <span className="spacer" />
          <button type="button" className="btn btn-small" onClick={() => void checkHealth()}>
            Check again
          </button>
        </div>
        {healthError ? (
          <ErrorState title="Cannot reach the studio server" error={healthError} onRetry={checkHealth} />
        ) : (
          <div className="status-grid">
            <StatusItem name="Database" ok={health ? health.database.ok : null} detail={health?.database.detail ?? null} />
            <StatusItem name="Ollama" ok={health ? health.ollama.ok : null} detail={health?.ollama.detail ?? null} />
            <StatusItem name="ComfyUI" ok={health ? health.comfyui.ok : null} detail={health?.comfyui.detail ?? null} />
          </div>
        )}
        <form
          className="field"
          onSubmit={(event) => {
            event.preventDefault();
            setToken(token);
            setSaved("token");
            void checkHealth();
          }}
        >
          <label htmlFor="api-token">API token</label>
          <div className="row">
            <input
              id="api-token"
              type="password"
              autoComplete="off"
              value={token}
              onChange={(event) => setTokenDraft(event.target.value)}
              placeholder="Only when the studio runs with --token"
              style={{ flex: 1, minWidth: 200 }}
            />
            <button type="submit" className="btn">
              Save token
            </button>
          </div>
          <span className="field-hint">Kept in this browser only (localStorage).</span>
          {saved === "token" && (
            <span className="field-hint" role="status" style={{ color: "var(--ok)" }}>
              Token saved.
            </span>
          )}
        </form>
      </section>

      <section className="card stack" aria-labelledby="session-title">
        <h2 id="session-title" style={{ margin: 0 }}>
          Session
        </h2>
        {sessionsError ? (
          <ErrorState title="Could not load the sessions" error={sessionsError} onRetry={loadSessions} />
        ) : sessions && sessions.length === 0 ? (
          <p className="muted">
            Model assignments and preferences belong to a session. <Link href="/">Start one</Link> first.
          </p>
        ) : (
          <div className="field">
            <label htmlFor="session-select">Settings of the session</label>
            <select
              id="session-select"
              value={sessionId ?? ""}
              onChange={(event) => router.replace(`/settings?session=${encodeURIComponent(event.target.value)}`)}
              data-testid="session-select"
            >
              {sessionParam && sessions && !sessions.some((s) => s.id === sessionParam) && (
                <option value={sessionParam}>{sessionParam}</option>
              )}
              {(sessions ?? []).map((session) => (
                <option key={session.id} value={session.id}>
                  {session.name}
                </option>
              ))}
            </select>
          </div>
        )}
        {settingsError ? (
          <ErrorState
            title="Could not load this session's settings"
            error={settingsError}
            onRetry={sessionId ? () => void loadSettings(sessionId) : undefined}
          />
        ) : null}
      </section>

      {settings && (
        <section className="card" aria-labelledby="models-title">
          <h2 id="models-title">Models</h2>
          <p className="muted small">
            Each specialist can use a different model. <strong>auto</strong> picks the best installed Ollama
            model, or the embedded one when Ollama is not there.
          </p>
          {models && !models.ollama_reachable && (
            <div className="notice notice-warn" style={{ marginBottom: 8 }}>
              <div className="notice-body">
                <strong>Ollama is not reachable at {models.ollama_host}</strong>
                Start it (<code>ollama serve</code>) or set <code>OLLAMA_HOST</code> to use its models; meanwhile{" "}
                <strong>auto</strong> falls back to the embedded model. Roles set to an Ollama model fail until it
                answers.
              </div>
            </div>
          )}
          {SPECIALIST_ROLES.map((role) => (
            <ModelSelector
              key={role}
              role={role}
              value={assignments[role] ?? "auto"}
              models={models}
              resolved={settings.resolved_models[role]}
              onChange={(value) => {
                setSaved(null);
                setAssignments((current) => ({ ...current, [role]: value }));
              }}
              onPull={models?.ollama_reachable ? startPull : undefined}
              pull={pull}
            />
          ))}
          {settings.notes.map((note) => (
            <p key={note} className="small muted">
              {note}
            </p>
          ))}
          <div className="row" style={{ marginTop: 12 }}>
            <button type="button" className="btn btn-primary" onClick={saveModels} disabled={saving || !changed} data-testid="save-models">
              Save models
            </button>
            {saved === "models" && (
              <span role="status" style={{ color: "var(--ok)" }} data-testid="saved">
                Saved. The next turn uses them.
              </span>
            )}
          </div>
          {models?.ollama_reachable && (
            <form
              className="field"
              style={{ marginTop: 18 }}
              onSubmit={(event) => {
                event.preventDefault();
                void startPull(pullName);
              }}
            >
              <label htmlFor="pull-name">Pull another model from Ollama</label>
              <div className="row">
                <input
                  id="pull-name"
                  type="text"
                  value={pullName}
                  onChange={(event) => setPullName(event.target.value)}
                  placeholder="e.g. llama3.1:8b"
                  pattern="[A-Za-z0-9._:/\-]+"
                  style={{ flex: 1, minWidth: 180 }}
                />
                <button type="submit" className="btn" disabled={!pullName.trim() || Boolean(pull && !pull.done && !pull.error)}>
                  Pull
                </button>
              </div>
              {pull && <PullStatus pull={pull} />}
            </form>
          )}
        </section>
      )}

      {settings && prefs && (
        <section className="card stack" aria-labelledby="prefs-title">
          <h2 id="prefs-title" style={{ margin: 0 }}>
            Preferences
          </h2>
          <div className="pref-grid">
            <label className="check">
              <input
                type="checkbox"
                checked={prefs.approve_plans}
                onChange={(event) => setPref("approve_plans", event.target.checked)}
              />
              <span>
                Ask me before generating
                <span className="field-hint" style={{ display: "block", fontWeight: 400 }}>
                  Pixel shows the plan and waits for your yes.
                </span>
              </span>
            </label>
            <label className="check">
              <input
                type="checkbox"
                checked={prefs.unload_ollama_before_generation}
                onChange={(event) => setPref("unload_ollama_before_generation", event.target.checked)}
              />
              <span>
                Free the GPU before generating
                <span className="field-hint" style={{ display: "block", fontWeight: 400 }}>
                  When Ollama and ComfyUI share one GPU.
                </span>
              </span>
            </label>
            <div className="field">
              <label htmlFor="pref-rounds">Rounds before the team asks you</label>
              <input
                id="pref-rounds"
                type="number"
                min={1}
                max={10}
                value={prefs.max_rounds}
                onChange={(event) => setPref("max_rounds", Math.max(1, Math.min(10, Number(event.target.value) || 1)))}
              />
            </div>
            <div className="field">
              <label htmlFor="pref-size">Default format</label>
              <select
                id="pref-size"
                value={prefs.default_size}
                onChange={(event) => setPref("default_size", event.target.value as Preferences["default_size"])}
              >
                <option value="landscape">Landscape</option>
                <option value="square">Square</option>
                <option value="portrait">Portrait</option>
              </select>
            </div>
            <div className="field">
              <label htmlFor="pref-quality">Quality</label>
              <select
                id="pref-quality"
                value={prefs.quality}
                onChange={(event) => setPref("quality", event.target.value as Preferences["quality"])}
              >
                <option value="draft">Draft (fast)</option>
                <option value="standard">Standard</option>
                <option value="high">High</option>
              </select>
            </div>
            <div className="field">
              <label htmlFor="pref-pause">Pause when I am away for (seconds)</label>
              <input
                id="pref-pause"
                type="number"
                min={30}
                max={86400}
                placeholder="never"
                value={prefs.pause_after_idle_seconds ?? ""}
                onChange={(event) =>
                  setPref("pause_after_idle_seconds", event.target.value ? Number(event.target.value) : null)
                }
              />
            </div>
            <div className="field">
              <label htmlFor="pref-timeout">Model timeout (seconds)</label>
              <input
                id="pref-timeout"
                type="number"
                min={1}
                max={3600}
                value={prefs.model_timeout}
                onChange={(event) => setPref("model_timeout", Number(event.target.value) || 180)}
              />
            </div>
          </div>
          <TemplateBrowser
            value={prefs.preferred_template ?? null}
            onChoose={(name) => setPref("preferred_template", name)}
          />
          <div className="row">
            <button type="button" className="btn btn-primary" onClick={savePrefs} disabled={saving}>
              Save preferences
            </button>
            {saved === "preferences" && (
              <span role="status" style={{ color: "var(--ok)" }}>
                Saved.
              </span>
            )}
          </div>
        </section>
      )}
      {saveError && (
        <div className="notice notice-error" role="alert">
          <div className="notice-body">
            <strong>Not saved</strong>
            {saveError}
          </div>
        </div>
      )}
    </div>
  );
}
