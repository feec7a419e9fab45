"use client";
import { useState } from "react";
import { assetUrl } from "@/lib/api";
import type { GenerationOutput } from "@/lib/types";
import { outputUrl, type GenerationView } from "@/lib/conversation";
import { PlanTable } from "./PlanTable";
import { ProgressBar } from "./ProgressBar";

export interface GenerationPreviewProps {
  generation: GenerationView;
  onCancel?: () => void;
  onRegenerate?: () => void;
  onVariation?: () => void;
  /** The result's API url and the output itself (its `path` is the ref a message carries). */
  onUseAsInit?: (url: string, output: GenerationOutput) => void;
  busy?: boolean;
}

const STATUS_TEXT: Record<string, string> = {
  queued: "Queued",
  running: "Generating",
  complete: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

/** The generation under the stream: live progress (and ComfyUI's preview frames), the
 * result when done, and what to do next with it. */
export function GenerationPreview({
  generation,
  onCancel,
  onRegenerate,
  onVariation,
  onUseAsInit,
  busy = false,
}: GenerationPreviewProps) {
  const { status } = generation;
  // A preview frame the browser cannot decode is left out rather than shown broken.
  const [brokenPreview, setBrokenPreview] = useState<string | null>(null);
  const active = status === "queued" || status === "running";
  const outputs = generation.outputs.filter((o) => o && o.filename);
  const badge =
    status === "complete" ? "badge-ok" : status === "failed" ? "badge-bad" : active ? "badge-warn" : "";
  const stepText =
    generation.step !== null && generation.maxSteps
      ? `step ${generation.step}/${generation.maxSteps} · ${Math.round(generation.progress * 100)}%`
      : undefined;
  return (
    <section
      className="generation"
      aria-labelledby="generation-title"
      data-testid="generation"
      data-status={status}
    >
      <div className="generation-head">
        <h2 id="generation-title">Generation</h2>
        <span className={`badge ${badge}`} role="status">
          {STATUS_TEXT[status] ?? status}
        </span>
        <span className="spacer" />
        {active && onCancel && generation.generationId && (
          <button type="button" className="btn btn-small btn-danger" onClick={onCancel} disabled={busy}>
            Cancel
          </button>
        )}
      </div>

      {active && (
        <ProgressBar
          value={status === "queued" && generation.progress === 0 ? null : generation.progress}
          label={status === "queued" ? "Waiting for ComfyUI" : "Rendering"}
          detail={stepText}
        />
      )}
      {generation.message && active && <p className="small muted" style={{ margin: 0 }}>{generation.message}</p>}
      {active && generation.preview && generation.preview !== brokenPreview && (
        // eslint-disable-next-line @next/next/no-img-element
        <img
          className="preview-img"
          src={generation.preview}
          alt="Live preview of the image being generated"
          onError={() => setBrokenPreview(generation.preview)}
        />
      )}

      {status === "failed" && (
        <div className="notice notice-error" role="alert">
          <div className="notice-body">
            <strong>The generation failed</strong>
            {generation.error || "ComfyUI reported an error."} Try again, or tell the team what to change.
          </div>
        </div>
      )}
      {status === "cancelled" && <p className="muted small" style={{ margin: 0 }}>The generation was cancelled.</p>}

      {status === "complete" && outputs.length > 0 && (
        <div className="generation-result">
          <div className="generation-media">
            {outputs.map((output) => {
              const src = assetUrl(outputUrl(generation.generationId, output));
              const prompt = generation.plan?.positive_prompt;
              return output.kind === "video" ? (
                <video key={output.filename} src={src} controls loop playsInline aria-label={prompt || "Generated video"} />
              ) : (
                <a key={output.filename} href={src} target="_blank" rel="noreferrer" title="Open full size">
                  {/* eslint-disable-next-line @next/next/no-img-element */}
                  <img src={src} alt={prompt ? `Generated: ${prompt}` : "Generated image"} data-testid="result-image" />
                </a>
              );
            })}
          </div>
          {generation.plan && (
            <div className="generation-plan">
              <h3 className="small muted" style={{ margin: 0 }}>
                Pixel&apos;s plan
              </h3>
              <PlanTable plan={generation.plan} />
            </div>
          )}
        </div>
      )}

      {(status === "complete" || status === "failed" || status === "cancelled") && (
        <div className="row" role="group" aria-label="Iterate on this result">
          {onRegenerate && generation.generationId && (
            <button type="button" className="btn btn-small" onClick={onRegenerate} disabled={busy}>
              ↻ Regenerate
            </button>
          )}
          {onVariation && status === "complete" && (
            <button type="button" className="btn btn-small" onClick={onVariation} disabled={busy}>
              ✦ Variation
            </button>
          )}
          {onUseAsInit && status === "complete" && outputs[0] && outputs[0].kind !== "video" && (
            <button
              type="button"
              className="btn btn-small"
              onClick={() => onUseAsInit(outputUrl(generation.generationId, outputs[0]), outputs[0])}
              disabled={busy}
            >
              ⤷ Use as init image
            </button>
          )}
          {status === "complete" &&
            outputs.map((output) => (
              <a
                key={output.filename}
                className="btn btn-small"
                href={assetUrl(outputUrl(generation.generationId, output))}
                download={output.filename}
              >
                ⇩ Download{outputs.length > 1 ? ` ${output.filename}` : ""}
              </a>
            ))}
        </div>
      )}
    </section>
  );
}
