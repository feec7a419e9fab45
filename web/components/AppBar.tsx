"use client";
import Link from "next/link";
import { usePathname } from "next/navigation";

const LINKS = [
  { href: "/", label: "Studio" },
  { href: "/gallery", label: "Gallery" },
  { href: "/settings", label: "Settings" },
];

const DOTS = ["magenta", "cyan", "yellow", "green", "red"];

export function AppBar() {
  const pathname = usePathname() || "/";
  return (
    <header className="appbar">
      <Link href="/" className="brand" aria-label="Creative Studio, home">
        <span className="brand-dots" aria-hidden="true">
          {DOTS.map((c) => (
            <span key={c} style={{ background: `var(--c-${c})` }} />
          ))}
        </span>
        <span className="brand-name">Creative Studio</span>
      </Link>
      <nav className="appnav" aria-label="Main">
        {LINKS.map((link) => {
          const current = link.href === "/" ? pathname === "/" || pathname.startsWith("/chat") : pathname.startsWith(link.href);
          return (
            <Link key={link.href} href={link.href} aria-current={current ? "page" : undefined}>
              {link.label}
            </Link>
          );
        })}
      </nav>
    </header>
  );
}
