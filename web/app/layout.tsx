import type { Metadata, Viewport } from "next";
import { AppBar } from "@/components/AppBar";
import "./globals.css";

export const metadata: Metadata = {
  title: "Creative Studio",
  description: "A local-first AI creative team: five specialists discuss your image live.",
};

export const viewport: Viewport = {
  themeColor: "#0d0f14",
  width: "device-width",
  initialScale: 1,
  colorScheme: "dark",
};

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body>
        <a className="skip-link" href="#content">
          Skip to content
        </a>
        <AppBar />
        <main id="content" tabIndex={-1}>
          {children}
        </main>
      </body>
    </html>
  );
}
