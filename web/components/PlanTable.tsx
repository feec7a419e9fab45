import type { Plan } from "@/lib/types";

const FIELDS: [keyof Plan, string][] = [
  ["positive_prompt", "Prompt"],
  ["negative_prompt", "Negative"],
  ["template", "Template"],
  ["checkpoint", "Checkpoint"],
  ["width", "Size"],
  ["steps", "Steps"],
  ["sampler", "Sampler"],
  ["cfg", "CFG"],
  ["seed", "Seed"],
];

/** Pixel's plan as a small table (prompt first). */
export function PlanTable({ plan, compact = false }: { plan: Plan; compact?: boolean }) {
  const rows = FIELDS.filter(([key]) => plan[key] !== undefined && plan[key] !== null && plan[key] !== "")
    .filter(([key]) => !compact || ["positive_prompt", "width", "seed", "checkpoint"].includes(key as string))
    .map(([key, label]) => {
      let value: string;
      if (key === "width") value = `${plan.width}×${plan.height}`;
      else if (key === "sampler") value = `${plan.sampler}${plan.scheduler ? ` / ${plan.scheduler}` : ""}`;
      else value = String(plan[key]);
      return [label, value] as const;
    });
  return (
    <table className="plan-table">
      <tbody>
        {rows.map(([label, value]) => (
          <tr key={label}>
            <th scope="row">{label}</th>
            <td>{value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
