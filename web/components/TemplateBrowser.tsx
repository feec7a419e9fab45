"use client";
import { useCallback, useEffect, useMemo, useState } from "react";
import { describeError, request } from "@/lib/api";

/** One template of GET /api/templates: ours or ComfyUI's official one, and whether it runs. */
export interface TemplateInfo {
  name: string;
  title: string;
  description: string;
  source: "studio" | "official";
  kind: "image" | "edit" | "video" | "upscale";
  family: string;
  runnable: boolean | null;
  missing: string | null;
  missing_models: Record<string, string[]>;
  missing_nodes: string[];
  needs_comfyui: string | null;
}

export interface TemplateList {
  comfyui: "connected" | "unreachable";
  comfyui_detail: string | null;
  comfyui_version: string | null;
  library_version: string;
  items: TemplateInfo[];
}

export const listTemplates = () => request<TemplateList>("GET", "/api/templates");

const KINDS = ["image", "edit", "video", "upscale"] as const;

/**
 * Browse every template the studio can generate with (filter by kind, only those that run)
 * and choose the session's preferred one; none chosen lets Pixel pick from what ComfyUI has.
 * Only official templates can be preferred here: ours are what Pixel picks by itself, and
 * your own uploaded workflows are chosen as custom:<name>.
 */
export function TemplateBrowser({
  value,
  onChoose,
  load = listTemplates,
}: {
  value: string | null;
  onChoose: (name: string | null) => void;
  load?: () => Promise<TemplateList>;
}) {
  const [list, setList] = useState<TemplateList | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [kind, setKind] = useState<string>("all");
  const [onlyRunnable, setOnlyRunnable] = useState(false);

  const refresh = useCallback(async () => {
    setError(null);
    try {
      setList(await load());
    } catch (problem) {
      setError(describeError(problem).message);
    }
  }, [load]);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  const shown = useMemo(
    () =>
      (list?.items ?? []).filter(
        (item) => (kind === "all" || item.kind === kind) && (!onlyRunnable || item.runnable !== false),
      ),
    [list, kind, onlyRunnable],
  );

  return (
    <div className="field" data-testid="template-browser">
      <label htmlFor="template-kind">Template</label>
      <p className="field-hint">
        {value ? (
          <>
            Preferred: <code>{value}</code>{" "}
            <button type="button" className="btn btn-small" onClick={() => onChoose(null)}>
              Let Pixel choose
            </button>
          </>
        ) : (
          "Pixel chooses from what your ComfyUI has installed."
        )}
      </p>
      <div className="row">
        <select id="template-kind" value={kind} onChange={(event) => setKind(event.target.value)}>
          <option value="all">All kinds</option>
          {KINDS.map((k) => (
            <option key={k} value={k}>
              {k}
            </option>
          ))}
        </select>
        <label className="check">
          <input type="checkbox" checked={onlyRunnable} onChange={(event) => setOnlyRunnable(event.target.checked)} />
          <span>Only those that run</span>
        </label>
        <button type="button" className="btn btn-small" onClick={() => void refresh()}>
          Check again
        </button>
      </div>
      {error && (
        <p role="alert" className="small">
          Could not list the templates: {error}
        </p>
      )}
      {list?.comfyui === "unreachable" && (
        <p className="small muted" role="status">
          ComfyUI is not connected, so whether each template runs is unknown. {list.comfyui_detail}
        </p>
      )}
      <ul className="stack template-list">
        {shown.map((item) => (
          <li key={item.name} data-testid={`template-${item.name}`} className="small">
            <div className="row">
              <strong>{item.title}</strong>
              <span className="muted">
                {item.kind} · {item.family} · {item.source === "studio" ? "studio" : "ComfyUI"}
              </span>
              <span className="spacer" />
              <span className={`badge ${item.runnable === null ? "" : item.runnable ? "badge-ok" : "badge-bad"}`}>
                {item.runnable === null ? "unknown" : item.runnable ? "runs" : "missing files"}
              </span>
              {item.source === "official" && (
                <button
                  type="button"
                  className="btn btn-small"
                  disabled={value === item.name}
                  onClick={() => onChoose(item.name)}
                >
                  {value === item.name ? "Chosen" : "Use"}
                </button>
              )}
            </div>
            {item.missing && <span className="field-hint">Needs {item.missing}</span>}
          </li>
        ))}
      </ul>
      {list && shown.length === 0 && <p className="small muted">No template matches.</p>}
    </div>
  );
}
