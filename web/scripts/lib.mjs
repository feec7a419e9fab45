// Shared by e2e.mjs and screenshots.mjs: start the stack (tests/e2e_stack.py), launch
// Debian's chromium through playwright-core, and talk to the API.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";
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

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A real PNG of one colour (what the person attaches in the image steps). */
export function pngBytes(width, height, [r, g, b] = [40, 20, 90]) {
  const chunk = (kind, data) => {
    const body = Buffer.concat([Buffer.from(kind, "latin1"), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => [r, g, b]).flat())]);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(Buffer.concat(Array.from({ length: height }, () => row)))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** What the ComfyUI double received for one of the studio's generations: the API-format
 * prompt from its /history (as real ComfyUI keeps it), and a file from its input folder. */
export function comfyuiClient(base, api) {
  return {
    async promptOf(generationId) {
      const generation = await api.get(`/api/generations/${generationId}`);
      if (!generation.prompt_id) throw new Error(`generation ${generationId} has no ComfyUI prompt id`);
      const response = await fetch(`${base}/history/${encodeURIComponent(generation.prompt_id)}`);
      const history = await response.json();
      const entry = history[generation.prompt_id];
      if (!entry) throw new Error(`ComfyUI has no history for ${generation.prompt_id}`);
      return entry.prompt[2];
    },
    async inputFile(name) {
      const response = await fetch(`${base}/view?type=input&filename=${encodeURIComponent(name)}`);
      if (!response.ok) throw new Error(`ComfyUI has no input file ${name}: ${response.status}`);
      return Buffer.from(await response.arrayBuffer());
    },
  };
}
