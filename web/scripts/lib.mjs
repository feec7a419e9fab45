// Shared by e2e.mjs and screenshots.mjs: start the stack (tests/e2e_stack.py), launch
// Debian's chromium through playwright-core, and talk to the API.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(WEB, "..");

export function chromiumPath() {
  const candidates = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) {
    throw new Error(
      "No chromium found. Install Debian's package (apt-get install -y chromium) or set CHROMIUM_PATH.",
    );
  }
  return found;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Start tests/e2e_stack.py; resolves with {url, comfyui, restart(), stop()}. */
export function startStack({ delay = 0.03, stepDelay = 0.05 } = {}) {
  if (!existsSync(path.join(WEB, "out", "index.html"))) {
    throw new Error("web/out is missing: run `npm run build` first.");
  }
  const python = process.env.PYTHON || path.join(ROOT, ".venv", "bin", "python");
  const child = spawn(
    python,
    [path.join(ROOT, "tests", "e2e_stack.py"), "--delay", String(delay), "--step-delay", String(stepDelay)],
    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  let buffer = "";
  const waiters = [];
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => {
    buffer += chunk;
    let index;
    while ((index = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, index).trim();
      buffer = buffer.slice(index + 1);
      if (!line) continue;
      let value;
      try {
        value = JSON.parse(line);
      } catch {
        continue;
      }
      const waiter = waiters.shift();
      if (waiter) waiter.resolve(value);
    }
  });
  const next = (timeoutMs) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the stack did not answer in time")), timeoutMs);
      waiters.push({
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
      });
    });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return Promise.race([
    next(180_000),
    exited.then((code) => {
      throw new Error(`tests/e2e_stack.py exited with ${code}`);
    }),
  ]).then((info) => ({
    ...info,
    async restart() {
      const back = next(120_000);
      child.kill("SIGHUP");
      return back;
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    },
  }));
}

export function apiClient(base) {
  const call = async (method, p, body) => {
    const response = await fetch(`${base}${p}`, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!response.ok) throw new Error(`${method} ${p}: ${response.status} ${await response.text()}`);
    return response.status === 204 ? null : response.json();
  };
  return {
    get: (p) => call("GET", p),
    post: (p, body) => call("POST", p, body ?? {}),
    put: (p, body) => call("PUT", p, body),
    async startConversation(request, name = request.slice(0, 60)) {
      const session = await call("POST", "/api/sessions", { name });
      const conversation = await call("POST", `/api/sessions/${session.id}/conversations`, { message: request });
      return { session, conversation };
    },
    async waitStatus(conversationId, predicate, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const detail = await call("GET", `/api/conversations/${conversationId}`);
        if (predicate(detail)) return detail;
        if (Date.now() > deadline) throw new Error(`conversation ${conversationId} stayed ${detail.status}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
