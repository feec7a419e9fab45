import type { Role, SpecialistRole } from "./types";

/** The five specialists (graph/prompts/personas.toml) plus the person and the studio. */
export interface Persona {
  role: Role;
  name: string;
  title: string;
  /** personas.toml colour name; the CSS uses it as `--c-<colour>`. */
  colour: string;
  initial: string;
}

export const SPECIALISTS: Record<SpecialistRole, Persona> = {
  style: { role: "style", name: "Luna", title: "style specialist", colour: "magenta", initial: "L" },
  composition: {
    role: "composition",
    name: "Frame",
    title: "composition specialist",
    colour: "cyan",
    initial: "F",
  },
  story: { role: "story", name: "Saga", title: "story specialist", colour: "yellow", initial: "S" },
  technical: {
    role: "technical",
    name: "Pixel",
    title: "technical director",
    colour: "green",
    initial: "P",
  },
  critic: { role: "critic", name: "Lens", title: "quality critic", colour: "red", initial: "L" },
};

export const SPECIALIST_ROLES = Object.keys(SPECIALISTS) as SpecialistRole[];

const OTHERS: Record<"user" | "system", Persona> = {
  user: { role: "user", name: "You", title: "you", colour: "user", initial: "Y" },
  system: { role: "system", name: "Studio", title: "the studio", colour: "system", initial: "★" },
};

export function persona(role: string, speaker?: string): Persona {
  if (role in SPECIALISTS) return SPECIALISTS[role as SpecialistRole];
  if (role === "user") return OTHERS.user;
  return { ...OTHERS.system, name: speaker || OTHERS.system.name };
}

export function isSpecialist(role: string): role is SpecialistRole {
  return role in SPECIALISTS;
}
