// End-to-end tests of the web app in headless Chromium (Debian's package, driven by
// playwright-core) against the real server: tests/e2e_stack.py starts `creative-studio
// serve` with the scripted team and the ComfyUI test double, serving web/out.
//
//   npm run build && npm run e2e        (E2E_DELAY=0.03 seconds per scripted word)
//
// Each step prints ✓ or ✗; the last line is "N passed, N failed". Failing steps leave a
// screenshot in web/test-results/.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { WEB, apiClient, comfyuiClient, launchBrowser, pngBytes, sleep, startStack } from "./lib.mjs";

const RESULTS = path.join(WEB, "test-results");
mkdirSync(RESULTS, { recursive: true });
const delay = Number(process.env.E2E_DELAY || 0.03);
const SPECIALIST = ["style", "composition", "story", "technical", "critic"];

const results = [];
let page;

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`✓ ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (error) {
    results.push({ name, ok: false, error: String(error?.message || error) });
    console.log(`✗ ${name}: ${String(error?.message || error).split("\n")[0]}`);
    const file = path.join(RESULTS, `${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`);
    await page?.screenshot({ path: file }).catch(() => undefined);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Every message in the DOM: id, role, text, flags. */
async function domMessages() {
  return page.$$eval(".msg", (nodes) =>
    nodes.map((n) => ({
      id: n.getAttribute("data-message-id"),
      role: n.getAttribute("data-role"),
      text: n.querySelector(".msg-bubble")?.textContent ?? "",
      streaming: n.hasAttribute("data-streaming"),
      interrupted: n.hasAttribute("data-interrupted"),
      pending: n.hasAttribute("data-pending"),
    })),
  );
}

/** Live, a turn cut short by the person stays where it was on screen, before their
 * message; the server stores it after. Both orders are accepted for such a pair. */
function matchOrder(dom, server) {
  const out = server.slice();
  for (let i = 1; i < out.length; i++) {
    if (out[i].interrupted && out[i - 1].role === "user" && dom[i - 1]?.id === out[i].message_id) {
      [out[i - 1], out[i]] = [out[i], out[i - 1]];
    }
  }
  return out;
}

async function sameAsServer(api, conversationId) {
  const stored = await api.get(`/api/conversations/${conversationId}/messages?limit=200`);
  let server = stored;
  // The page may still be applying the last events: give it a moment to settle.
  let dom = [];
  for (let i = 0; i < 40; i++) {
    dom = await domMessages();
    server = matchOrder(dom, stored);
    if (dom.length === server.length && dom.every((m, k) => m.id === server[k].message_id)) break;
    await sleep(250);
  }
  const ids = dom.map((m) => m.id);
  check(new Set(ids).size === ids.length, "a message is shown twice");
  check(
    dom.length === server.length,
    `the page shows ${dom.length} messages, the server has ${server.length}`,
  );
  server.forEach((m, k) => {
    check(dom[k].id === m.message_id, `message ${k} differs: ${dom[k].id} vs ${m.message_id}`);
    check(dom[k].text.trim() === m.content.trim(), `message ${k} text differs:\n${dom[k].text}\n${m.content}`);
    check(!dom[k].streaming, `message ${k} still looks like it is streaming`);
  });
  return server;
}

const stack = await startStack({ delay, stepDelay: Number(process.env.E2E_STEP_DELAY || 0.15) });
if (!stack.comfyui) console.log("! the ComfyUI test double could not be started: the generation steps will fail");
const api = apiClient(stack.url);
const comfyui = comfyuiClient(stack.comfyui_url, api);
const browser = await launchBrowser();
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
// Record every progress value the generation preview shows (it can be brief).
await context.addInitScript(() => {
  window.__progressSeen = [];
  new MutationObserver(() => {
    const bar = document.querySelector("[data-testid=generation] [role=progressbar]");
    const value = bar?.getAttribute("aria-valuenow");
    if (value !== null && value !== undefined && window.__progressSeen.at(-1) !== value) window.__progressSeen.push(value);
  }).observe(document, { subtree: true, childList: true, attributes: true });
});
page = await context.newPage();
const pageErrors = [];
page.on("pageerror", (error) => pageErrors.push(error.message));
page.on("response", (response) => {
  if (response.status() >= 400 && !response.url().includes("/api/")) {
    pageErrors.push(`${response.status()} ${response.url()}`);
  }
});

let conversationId = null;
let sessionId = null;
const phasesSeen = new Set();
let watchingPhases = true;
const phaseWatcher = (async () => {
  while (watchingPhases) {
    const phase = await page
      .$eval("[data-testid=phase]", (el) => el.getAttribute("data-phase"))
      .catch(() => null);
    if (phase) phasesSeen.add(phase);
    await sleep(100);
  }
})();

try {
  await step("landing: start a session with a first request", async () => {
    await page.goto(`${stack.url}/`);
    await page.getByLabel("Your first request").fill("a cyberpunk street at night, neon signs in the rain");
    await page.getByRole("button", { name: "Start the discussion" }).click();
    await page.waitForURL(/\/chat\/[0-9a-f-]{36}$/, { timeout: 15_000 });
    conversationId = page.url().split("/chat/")[1];
    const detail = await api.get(`/api/conversations/${conversationId}`);
    sessionId = detail.session_id;
    await page.waitForSelector('.msg[data-role="user"]', { timeout: 10_000 });
  });

  await step("chat: the specialists stream token by token, with names and a typing indicator", async () => {
    const first = await page.waitForSelector(".msg[data-streaming]", { timeout: 30_000 });
    const role = await first.getAttribute("data-role");
    check(SPECIALIST.includes(role), `a streaming message from ${role}`);
    const before = (await first.$eval(".msg-bubble", (el) => el.textContent)) ?? "";
    await page.waitForFunction(
      (text) => {
        const el = document.querySelector(".msg[data-streaming] .msg-bubble");
        return !el || (el.textContent ?? "").length > text.length;
      },
      before,
      { timeout: 10_000 },
    );
    await page.waitForFunction(
      () => /is writing|are writing/.test(document.querySelector("[data-testid=typing]")?.textContent ?? ""),
      null,
      { timeout: 10_000 },
    );
    await page.waitForFunction(
      () => new Set([...document.querySelectorAll(".msg .msg-name")].map((n) => n.textContent)).size >= 3,
      null,
      { timeout: 30_000 },
    );
    const names = await page.$$eval(".msg .msg-name", (nodes) => nodes.map((n) => n.textContent));
    check(names.includes("Luna") && names.includes("Frame"), `names shown: ${[...new Set(names)]}`);
    const colour = await page.$eval('.msg[data-role="style"] .msg-name', (el) => getComputedStyle(el).color);
    check(colour !== "rgb(232, 235, 242)", "Luna's name has her own colour");
  });

  const interjection = "Frame, try a low angle with the neon reflected in puddles";
  await step("chat: interject mid-stream, shown at once, and the team answers it", async () => {
    await page.waitForSelector(".msg[data-streaming]", { timeout: 30_000 });
    const input = page.getByTestId("chat-input");
    check(await input.isEnabled(), "the input is enabled while the team talks");
    await input.fill(interjection);
    const sentAt = Date.now();
    await input.press("Enter");
    await page.waitForFunction(
      (text) => [...document.querySelectorAll('.msg[data-role="user"] .msg-bubble')].some((n) => n.textContent === text),
      interjection,
      { timeout: 2_000 },
    );
    const shownIn = Date.now() - sentAt;
    check(shownIn < 1_000, `the person's message appeared after ${shownIn} ms`);
    await page.waitForSelector(".msg[data-interrupted]", { timeout: 10_000 });
    // Frame answers the person after their message.
    await page.waitForFunction(
      (text) => {
        const nodes = [...document.querySelectorAll(".msg")];
        const at = nodes.findIndex(
          (n) => n.getAttribute("data-role") === "user" && n.querySelector(".msg-bubble")?.textContent === text,
        );
        return nodes
          .slice(at + 1)
          .some((n) => n.getAttribute("data-role") === "composition" && !n.hasAttribute("data-streaming") && /Noted|low angle/i.test(n.textContent ?? ""));
      },
      interjection,
      { timeout: 30_000 },
    );
    const confirmed = await page.$$eval('.msg[data-role="user"]', (nodes) => nodes.filter((n) => n.hasAttribute("data-pending")).length);
    check(confirmed === 0, "the optimistic message was reconciled with the server's");
  });

  await step("generation: progress bar, then the final image", async () => {
    await page.waitForSelector('[data-testid=generation][data-status="complete"]', { timeout: 120_000 });
    const seen = await page.evaluate(() => window.__progressSeen.map(Number));
    check(seen.some((v) => v > 0 && v < 100), `progress values shown: ${seen.join(", ")}`);
    const image = await page.waitForSelector("[data-testid=result-image]", { timeout: 10_000 });
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, image, { timeout: 10_000 });
    for (const name of ["Regenerate", "Variation", "Use as init image", "Download"]) {
      check(await page.getByRole("group", { name: "Iterate on this result" }).getByText(name).count(), `${name} control`);
    }
  });

  await step("chat: the phase moves through the discussion", async () => {
    await page.waitForSelector('[data-testid=phase][data-phase="complete"]', { timeout: 30_000 });
    check(phasesSeen.size >= 4, `phases seen: ${[...phasesSeen].join(", ")}`);
  });

  await step("chat: the page shows exactly what the server stored", async () => {
    await api.waitStatus(conversationId, (d) => !d.running);
    await sameAsServer(api, conversationId);
  });

  await step("chat: reload mid-stream and lose nothing", async () => {
    const input = page.getByTestId("chat-input");
    await input.fill("make the neon brighter and more saturated");
    await input.press("Enter");
    const streaming = await page.waitForSelector(".msg[data-streaming]", { timeout: 30_000 });
    await page.waitForFunction(
      (el) => (el.querySelector(".msg-bubble")?.textContent ?? "").split(" ").length >= 4,
      streaming,
      { timeout: 10_000 },
    );
    const before = await domMessages();
    const partial = before.find((m) => m.streaming);
    await page.reload();
    await page.waitForSelector(`.msg[data-message-id="${partial.id}"]`, { timeout: 15_000 });
    const after = await page.$eval(`.msg[data-message-id="${partial.id}"] .msg-bubble`, (el) => el.textContent ?? "");
    check(after.startsWith(partial.text.trim().slice(0, 10)), `the half-streamed message came back: "${after}" vs "${partial.text}"`);
    check(after.length >= partial.text.trim().length, "the half-streamed message kept its text");
    const now = await domMessages();
    for (const m of before.filter((x) => x.id && !x.streaming)) {
      check(now.some((n) => n.id === m.id && n.text === m.text), `message ${m.id} survived the reload`);
    }
    await api.waitStatus(conversationId, (d) => !d.running, 180_000);
    await sameAsServer(api, conversationId);
  });

  await step("chat: a server restart mid-stream is shown, then the stream catches up", async () => {
    const { conversation } = await api.startConversation("a lighthouse in a storm, oil painting");
    await page.goto(`${stack.url}/chat/${conversation.id}`);
    await page.waitForSelector(".msg[data-streaming]", { timeout: 30_000 });
    const restarted = stack.restart();
    await page.waitForSelector("[data-testid=connection]", { timeout: 20_000 });
    await restarted;
    await page.waitForSelector("[data-testid=connection]", { state: "detached", timeout: 30_000 });
    const detail = await api.waitStatus(conversation.id, (d) => !d.running && d.status !== "running", 180_000);
    if (detail.status !== "complete" || detail.generation?.status !== "complete") {
      // One line that says how the run ended: its last events.
      const log = await api.get(`/api/conversations/${conversation.id}/events/log?after=0&limit=1000`);
      const tail = log
        .filter((e) => e.kind !== "token")
        .slice(-12)
        .map((e) => `${e.kind}:${JSON.stringify(e.data).slice(0, 80)}`);
      check(false, `after the restart the run ended ${detail.status} (generation ${detail.generation?.status}); ${tail.join(" | ")}`);
    }
    await sameAsServer(api, conversation.id);
  });

  await step("chat: an unknown conversation shows a clear error, not a blank page", async () => {
    await page.goto(`${stack.url}/chat/00000000-0000-4000-8000-000000000000`);
    const text = await page.getByTestId("error-state").textContent({ timeout: 10_000 });
    check(/does not exist/i.test(text ?? ""), text);
  });

  await step("settings: change a role's model", async () => {
    await page.goto(`${stack.url}/settings?session=${sessionId}`);
    await page.waitForSelector("[data-testid=health-database][data-ok=true]", { timeout: 15_000 });
    await page.waitForSelector("[data-testid=health-comfyui][data-ok=true]", { timeout: 15_000 });
    const select = page.getByLabel("Luna");
    await select.selectOption("embedded");
    await page.getByTestId("save-models").click();
    await page.waitForSelector("[data-testid=saved]", { timeout: 15_000 });
    const settings = await api.get(`/api/sessions/${sessionId}/settings`);
    check(settings.model_assignments.style === "embedded", JSON.stringify(settings.model_assignments));
    await page.reload();
    await page.waitForFunction(
      () => document.querySelector("[data-testid=model-style]")?.value === "embedded",
      null,
      { timeout: 10_000 },
    );
  });

  await step("gallery: find the image, filter by session, open its conversation", async () => {
    await page.goto(`${stack.url}/gallery`);
    const tile = await page.waitForSelector(`[data-testid=gallery-item] img`, { timeout: 15_000 });
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, tile, { timeout: 10_000 });
    const mine = (await api.get(`/api/generations?session_id=${sessionId}`)).items.map((g) => g.id);
    const all = (await api.get(`/api/generations`)).items.length;
    check(mine.length > 0 && all > mine.length, `generations: ${mine.length} of ${all}`);
    await page.getByTestId("gallery-filter").selectOption(sessionId);
    await page.waitForURL(new RegExp(`session=${sessionId}`));
    await page.waitForFunction(
      (count) => document.querySelectorAll("[data-testid=gallery-item]").length === count,
      mine.length,
      { timeout: 15_000 },
    );
    const ids = await page.$$eval("[data-testid=gallery-item]", (n) => n.map((x) => x.getAttribute("data-generation-id")));
    check(ids.every((id) => mine.includes(id)), `filtered: ${ids} vs ${mine}`);
    const prompt = await page.$eval("[data-testid=gallery-item] .tile-prompt", (el) => el.textContent ?? "");
    check(/neon|cyberpunk/i.test(prompt), `prompt shown: ${prompt}`);
    await page.getByRole("link", { name: "Open conversation" }).first().click();
    await page.waitForURL(new RegExp(`/chat/${conversationId}$`), { timeout: 10_000 });
    await page.waitForSelector(".msg", { timeout: 10_000 });
  });

  await step("chat: a missing model is explained, with a link to fix it in Settings", async () => {
    const session = await api.post("/api/sessions", {
      name: "Missing model",
      model_assignments: { story: "ollama:llama3.1:8b" },
    });
    const conversation = await api.post(`/api/sessions/${session.id}/conversations`, { message: "a red fox in the snow" });
    await page.goto(`${stack.url}/chat/${conversation.id}`);
    const note = await page.waitForSelector('.msg[data-kind="unavailable"]', { timeout: 30_000 });
    check(/Saga is unavailable/.test((await note.textContent()) ?? ""), "the studio says which specialist is missing");
    await page.getByRole("link", { name: "Change Saga's model in Settings" }).click();
    await page.waitForURL(/\/settings\?session=.*#role-story/, { timeout: 10_000 });
    await page.waitForFunction(() => document.activeElement?.id === "model-story", null, { timeout: 10_000 });
    check(
      (await page.getByTestId("model-story").inputValue()) === "ollama:llama3.1:8b",
      "the role's selector shows the missing model",
    );
    await api.waitStatus(conversation.id, (d) => !d.running, 120_000);
  });

  /** Wait until the conversation's run is over with a generation other than `previous`. */
  const nextGeneration = async (previous) => {
    const detail = await api.waitStatus(
      conversationId,
      (d) => !d.running && d.status !== "running" && d.generation?.generation_id && d.generation.generation_id !== previous,
      240_000,
    );
    check(detail.generation.status === "complete", `the generation ended ${detail.generation.status}: ${detail.generation.error ?? ""}`);
    return detail;
  };
  const nodeOf = (prompt, classType) => Object.values(prompt).find((n) => n.class_type === classType);
  /** The person's stored message with `content`, and that it carries the image `ref`. */
  const storedWithImage = async (content, ref) => {
    const stored = await api.get(`/api/conversations/${conversationId}/messages?limit=200`);
    const mine = stored.filter((m) => m.role === "user" && m.content === content);
    check(mine.length === 1, `${mine.length} stored messages say "${content}"`);
    const images = mine[0].metadata.images ?? [];
    check(images.length === 1 && images[0].ref === ref, `the message's images: ${JSON.stringify(images)}`);
    return images[0];
  };
  /** The person's message on screen shows the image it carries, loaded. */
  const shownWithImage = async (content, ref) => {
    await page.waitForFunction(
      ([text, r]) =>
        [...document.querySelectorAll('.msg[data-role="user"]')].some(
          (n) =>
            n.querySelector(".msg-bubble")?.textContent === text &&
            [...n.querySelectorAll("[data-testid=message-image]")].some(
              (img) => img.getAttribute("title") === r && img.complete && img.naturalWidth > 0,
            ),
        ),
      [content, ref],
      { timeout: 15_000 },
    );
  };

  const attached = "make it a rainy night street, keep it close to my photo";
  await step("chat: attach an image (chip, remove, attach), send it: the team starts from it (img2img)", async () => {
    // The settings step saved the embedded model for the team: back to the stack's
    // scripted team (no assignments), so these steps do not run a real model.
    const reset = await api.put(`/api/sessions/${sessionId}/settings`, { model_assignments: {} });
    check(
      !Object.values(reset.model_assignments).some((m) => String(m).startsWith("embedded")),
      `assignments after the reset: ${JSON.stringify(reset.model_assignments)}`,
    );
    const before = await api.waitStatus(conversationId, (d) => !d.running, 180_000);
    const previous = before.generation?.generation_id ?? null;
    await page.goto(`${stack.url}/chat/${conversationId}`);
    await page.waitForSelector(".msg", { timeout: 15_000 });
    const png = pngBytes(96, 64, [200, 40, 120]);
    const file = path.join(mkdtempSync(path.join(tmpdir(), "cs-e2e-image-")), "street.png");
    writeFileSync(file, png);
    const picker = page.getByTestId("image-file");
    await picker.setInputFiles(file);
    let chip = await page.waitForSelector("[data-testid=attached-image]", { timeout: 15_000 });
    const ref = await chip.getAttribute("title");
    check(ref?.startsWith(`${sessionId}/uploads/`) && ref.endsWith(".png"), `the chip's ref: ${ref}`);
    check(/street\.png/.test((await chip.textContent()) ?? ""), "the chip names the file");
    // A chip can be removed, and the same file attached again.
    await page.getByRole("button", { name: "Remove street.png" }).click();
    await page.waitForSelector("[data-testid=attached-image]", { state: "detached", timeout: 5_000 });
    await picker.setInputFiles(file);
    chip = await page.waitForSelector("[data-testid=attached-image]", { timeout: 15_000 });
    check((await chip.getAttribute("title")) === ref, "the same file is the same stored image");
    check((await page.$$("[data-testid=attached-image]")).length === 1, "one chip");
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await chip.$("img"), { timeout: 10_000 });
    const input = page.getByTestId("chat-input");
    await input.fill(attached);
    await page.screenshot({ path: path.join(RESULTS, "chat-attached-image.png") });
    await input.press("Enter");
    await page.waitForSelector("[data-testid=attached-image]", { state: "detached", timeout: 5_000 });
    await shownWithImage(attached, ref);
    const detail = await nextGeneration(previous);
    const given = await storedWithImage(attached, ref);
    check(given.source === "upload" && given.width === 96 && given.height === 64, JSON.stringify(given));
    check(detail.plan?.template === "img2img", `the plan's template: ${detail.plan?.template}`);
    // Pixel's plan in the chat says it starts from the image, close to it ("keep it close").
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('.msg[data-role="technical"] .msg-bubble')].some((n) =>
          /starts from the image you gave \(close to it: denoise 0\.35\)/.test(n.textContent ?? ""),
        ),
      null,
      { timeout: 15_000 },
    );
    // ComfyUI got the very file, loaded by the prompt, sampled at that denoise.
    const prompt = await comfyui.promptOf(detail.generation.generation_id);
    const load = nodeOf(prompt, "LoadImage");
    check(load, `no LoadImage in the prompt: ${Object.values(prompt).map((n) => n.class_type)}`);
    check((await comfyui.inputFile(load.inputs.image)).equals(png), "ComfyUI's input file is the attached PNG");
    check(Math.abs(nodeOf(prompt, "KSampler")?.inputs.denoise - 0.35) < 1e-6, "the sampler's denoise is 0.35");
  });

  const fromResult = "Start from this image and change: make it dusk, loosely inspired by it";
  await step("chat: \"Use as init image\" attaches the result; sent, it reaches the conversation as an image", async () => {
    const before = await api.waitStatus(conversationId, (d) => !d.running, 180_000);
    const result = before.generation;
    check(result?.status === "complete" && result.outputs?.[0]?.path, `the last result: ${JSON.stringify(result)}`);
    const output = result.outputs[0];
    await page.waitForFunction(
      (id) => {
        const img = document.querySelector("[data-testid=result-image]");
        return img && img.getAttribute("src")?.includes(id) && img.complete && img.naturalWidth > 0;
      },
      result.generation_id,
      { timeout: 15_000 },
    );
    const resultUrl = await page.$eval("[data-testid=result-image]", (img) => img.src);
    await page.getByRole("group", { name: "Iterate on this result" }).getByText("Use as init image").click();
    const chip = await page.waitForSelector("[data-testid=attached-image]", { timeout: 5_000 });
    check((await chip.getAttribute("title")) === output.path, `the chip's ref: ${await chip.getAttribute("title")} vs ${output.path}`);
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await chip.$("img"), { timeout: 10_000 });
    const input = page.getByTestId("chat-input");
    check((await input.inputValue()).startsWith("Start from this image"), "the input is prefilled");
    check(await page.evaluate(() => document.activeElement?.id === "chat-input"), "the input has the focus");
    await page.screenshot({ path: path.join(RESULTS, "chat-use-as-init.png") });
    await input.fill(fromResult);
    await input.press("Enter");
    await page.waitForSelector("[data-testid=attached-image]", { state: "detached", timeout: 5_000 });
    await shownWithImage(fromResult, output.path);
    const detail = await nextGeneration(result.generation_id);
    const given = await storedWithImage(fromResult, output.path);
    check(given.source === "output", JSON.stringify(given));
    check(detail.plan?.template === "img2img", `the plan's template: ${detail.plan?.template}`);
    const prompt = await comfyui.promptOf(detail.generation.generation_id);
    const load = nodeOf(prompt, "LoadImage");
    check(load, "no LoadImage in the prompt");
    const stored = Buffer.from(await (await fetch(resultUrl)).arrayBuffer());
    check((await comfyui.inputFile(load.inputs.image)).equals(stored), "ComfyUI's input file is the previous result");
    check(Math.abs(nodeOf(prompt, "KSampler")?.inputs.denoise - 0.8) < 1e-6, "loosely inspired: denoise 0.8");
    await sameAsServer(api, conversationId);
  });

  await step("phone width: every page fits 390 px, the input stays on screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const route of ["/", `/chat/${conversationId}`, "/settings", "/gallery"]) {
      await page.goto(`${stack.url}${route}`);
      await page.waitForSelector(route.startsWith("/chat") ? ".msg" : "h1, h2");
      // Measured once what the page loads has arrived (Settings' health check, the gallery).
      if (!route.startsWith("/chat")) await page.waitForLoadState("networkidle", { timeout: 10_000 }).catch(() => undefined);
      if (route === "/settings") await page.waitForSelector("[data-testid=health-ollama][data-ok]", { timeout: 15_000 });
      await sleep(300);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      const wide = await page.evaluate(() =>
        [...document.querySelectorAll("body *")]
          .filter((el) => el.getBoundingClientRect().right > 392)
          .slice(0, 5)
          .map((el) => `${el.tagName.toLowerCase()}.${el.className}#${el.id} "${(el.textContent ?? "").slice(0, 60)}"`),
      );
      if (width > 392) await page.screenshot({ path: `test-results/phone-${route.replaceAll("/", "_")}.png`, fullPage: true });
      check(width <= 392, `${route} is ${width} px wide: ${wide.join(" | ")}`);
    }
    await page.goto(`${stack.url}/chat/${conversationId}`);
    await page.waitForSelector(".msg");
    const box = await page.getByTestId("chat-input").boundingBox();
    check(box && box.y + box.height <= 844, "the input is visible");
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step("keyboard: Tab reaches the input, with a visible focus ring", async () => {
    await page.goto(`${stack.url}/chat/${conversationId}`);
    await page.waitForSelector(".msg");
    let found = false;
    for (let i = 0; i < 30 && !found; i++) {
      await page.keyboard.press("Tab");
      found = await page.evaluate(() => document.activeElement?.id === "chat-input");
    }
    check(found, "Tab reaches the chat input");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    check(outline !== "none", "the focused input shows a focus ring");
  });

  await step("no page errors or missing files", async () => {
    check(pageErrors.length === 0, pageErrors.join("; "));
  });
} finally {
  watchingPhases = false;
  await phaseWatcher;
  await browser.close();
  await stack.stop();
}

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
