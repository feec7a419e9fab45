"use client";
import type { ModelsInfo, PullProgress } from "@/lib/types";
import { persona } from "@/lib/specialists";
import { ProgressBar } from "./ProgressBar";
import { SpecialistAvatar } from "./SpecialistAvatar";

export interface PullState {
  name: string;
  progress: PullProgress | null;
  error: string | null;
  done: boolean;
}

export interface ModelSelectorProps {
  role: string;
  value: string;
  models: ModelsInfo | null;
  /** What the role uses right now (auto resolved). */
  resolved?: string;
  onChange: (value: string) => void;
  onPull?: (name: string) => void;
  pull?: PullState | null;
}

function sizeText(bytes: number | null): string {
  if (!bytes) return "";
  const gb = bytes / 1e9;
  return gb >= 1 ? `${gb.toFixed(1)} GB` : `${Math.round(bytes / 1e6)} MB`;
}

/** Which model a role uses: Ollama's installed models, the embedded one, `auto`; shows a
 * missing assignment clearly and offers to pull it. */
export function ModelSelector({ role, value, models, resolved, onChange, onPull, pull }: ModelSelectorProps) {
  const who = persona(role);
  const id = `model-${role}`;
  const installed = models?.installed ?? [];
  const isOllama = value.startsWith("ollama:");
  const missing = isOllama && models?.ollama_reachable && !installed.some((m) => m.assignment === value);
  const unknownOllama = isOllama && !installed.some((m) => m.assignment === value);
  const missingName = value.slice("ollama:".length);
  const pulling = pull && pull.name === missingName && !pull.done;
  return (
    <div className="model-row" id={`role-${role}`} data-testid={`model-row-${role}`}>
      <div className="model-who">
        <SpecialistAvatar role={role} size={32} />
        <div>
          <label htmlFor={id} style={{ color: `var(--c-${who.colour})` }}>
            {who.name}
          </label>
          <small>{who.title}</small>
        </div>
      </div>
      <div className="stack" style={{ gap: 6 }}>
        <select id={id} value={value} onChange={(event) => onChange(event.target.value)} data-testid={`model-${role}`}>
          <option value="auto">auto — the best available model</option>
          <optgroup label={models?.ollama_reachable ? "Installed in Ollama" : "Ollama (not reachable)"}>
            {installed.map((model) => (
              <option key={model.assignment} value={model.assignment}>
                {model.name}
                {model.parameter_size ? ` · ${model.parameter_size}` : ""}
                {model.quantization ? ` · ${model.quantization}` : ""}
                {model.size ? ` · ${sizeText(model.size)}` : ""}
              </option>
            ))}
            {unknownOllama && <option value={value}>{missingName} — not installed</option>}
          </optgroup>
          <optgroup label="Built in">
            <option value="embedded">
              embedded — the offline default (Qwen2.5 0.5B){models && !models.embedded_available ? " (unavailable)" : ""}
            </option>
            <option value="embedded:qwen2.5-0.5b">embedded — Qwen2.5-Coder 0.5B Instruct</option>
            <option value="embedded:gemma3-270m">embedded — Gemma 3 270M (base model, faster)</option>
            <option value="scripted">scripted — deterministic demo team</option>
          </optgroup>
        </select>
        {resolved && <span className="field-hint">Uses now: {resolved}</span>}
        {value.startsWith("embedded") && models?.embedded_note && <span className="field-hint">{models.embedded_note}</span>}
        {missing && (
          <div className="notice notice-warn" role="status">
            <div className="notice-body">
              <strong>{missingName} is not installed</strong>
              {who.name} cannot talk until it is. Pull it now, or pick an installed model.
            </div>
            {onPull && (
              <button type="button" className="btn btn-small" disabled={Boolean(pulling)} onClick={() => onPull(missingName)}>
                {pulling ? "Pulling…" : `Pull ${missingName}`}
              </button>
            )}
          </div>
        )}
        {isOllama && models && !models.ollama_reachable && (
          <span className="field-hint" style={{ color: "var(--warn)" }}>
            Ollama is not reachable at {models.ollama_host}; {who.name} will fail until it is.
          </span>
        )}
        {pull && pull.name === missingName && <PullStatus pull={pull} />}
      </div>
    </div>
  );
}

export function PullStatus({ pull }: { pull: PullState }) {
  if (pull.error)
    return (
      <p className="small" role="alert" style={{ color: "var(--danger)", margin: 0 }}>
        Pulling {pull.name} failed: {pull.error}
      </p>
    );
  if (pull.done)
    return (
      <p className="small" role="status" style={{ color: "var(--ok)", margin: 0 }}>
        {pull.name} is installed.
      </p>
    );
  const fraction = pull.progress?.fraction ?? null;
  return <ProgressBar value={fraction} label={`Pulling ${pull.name}: ${pull.progress?.status ?? "starting"}`} />;
}
