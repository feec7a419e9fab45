import type { NextConfig } from "next";
import { PHASE_DEVELOPMENT_SERVER } from "next/constants";

/**
 * Production: a static export in out/ that `creative-studio serve` hands out (see
 * api/app.py `_mount_web`). Development: `next dev` proxies /api to the studio server
 * (CREATIVE_STUDIO_API, default http://127.0.0.1:8420) so the browser sees one origin.
 */
export default function config(phase: string): NextConfig {
  const base: NextConfig = {
    images: { unoptimized: true },
    reactStrictMode: true,
    poweredByHeader: false,
    trailingSlash: false,
  };
  if (phase === PHASE_DEVELOPMENT_SERVER) {
    const api = process.env.CREATIVE_STUDIO_API || "http://127.0.0.1:8420";
    return {
      ...base,
      // SSE must stream through the proxy: no compression buffering.
      compress: false,
      async rewrites() {
        return [{ source: "/api/:path*", destination: `${api}/api/:path*` }];
      },
    };
  }
  return { ...base, output: "export" };
}
