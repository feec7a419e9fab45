import type { CSSProperties } from "react";
import { persona } from "@/lib/specialists";

export interface SpecialistAvatarProps {
  role: string;
  speaker?: string;
  size?: number;
  /** Decorative next to a visible name (default); otherwise it is labelled. */
  decorative?: boolean;
}

/** A specialist's round badge in their colour (Luna magenta, Frame cyan, ...). */
export function SpecialistAvatar({ role, speaker, size = 36, decorative = true }: SpecialistAvatarProps) {
  const who = persona(role, speaker);
  const style = {
    width: size,
    height: size,
    fontSize: Math.round(size * 0.44),
    "--role-colour": `var(--c-${who.colour})`,
  } as CSSProperties;
  const label = role === "user" ? "You" : speaker || who.name;
  return (
    <span
      className="avatar"
      style={style}
      data-role={role}
      aria-hidden={decorative ? true : undefined}
      role={decorative ? undefined : "img"}
      aria-label={decorative ? undefined : label}
      title={decorative ? undefined : `${label}, ${who.title}`}
    >
      {role === "user" ? "Y" : role === "system" ? "✦" : (speaker || who.name).slice(0, 1).toUpperCase()}
    </span>
  );
}

export function roleColour(role: string): string {
  return `var(--c-${persona(role).colour})`;
}
