export interface ProgressBarProps {
  /** 0..1, or null when unknown (indeterminate). */
  value: number | null;
  label: string;
  detail?: string;
}

/** An accessible progress bar (role=progressbar with its value and a visible label). */
export function ProgressBar({ value, label, detail }: ProgressBarProps) {
  const percent = value === null ? null : Math.round(Math.max(0, Math.min(1, value)) * 100);
  return (
    <div className="progress" data-indeterminate={percent === null || undefined}>
      <div className="progress-label">
        <span>{label}</span>
        <span>{detail ?? (percent === null ? "" : `${percent}%`)}</span>
      </div>
      <div
        className="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent ?? undefined}
        aria-valuetext={percent === null ? "working" : `${percent}%`}
      >
        <div className="progress-fill" style={{ width: `${percent ?? 30}%` }} />
      </div>
    </div>
  );
}
