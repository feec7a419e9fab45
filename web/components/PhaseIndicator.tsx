import { PHASES, type Phase } from "@/lib/types";

/** Where the discussion is: ideation → refinement → synthesis → review → generating → complete. */
export function PhaseIndicator({ phase, waiting = false }: { phase: Phase | null; waiting?: boolean }) {
  const current = phase ? PHASES.indexOf(phase) : -1;
  return (
    <ol className="phases" aria-label="Phase of the discussion" data-testid="phase" data-phase={phase ?? ""}>
      {PHASES.map((name, index) => {
        const state = index < current ? "done" : index === current ? "current" : "todo";
        return (
          <li key={name} data-state={state} aria-current={state === "current" ? "step" : undefined}>
            {name === "generating" && state === "current" && waiting ? "waiting for ComfyUI" : name}
          </li>
        );
      })}
    </ol>
  );
}
