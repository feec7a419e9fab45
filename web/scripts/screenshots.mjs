// Regenerates docs/screenshots/*.png: every page at desktop and phone width, the chat
// both mid-discussion and complete. Runs against tests/e2e_stack.py (scripted team,
// ComfyUI test double), so the pictures are the same on every run.
//
//   npm run build && npm run screenshots
import { mkdirSync } from "node:fs";
import path from "node:path";
import { ROOT, apiClient, launchBrowser, sleep, startStack } from "./lib.mjs";

const OUT = path.join(ROOT, "docs", "screenshots");
mkdirSync(OUT, { recursive: true });
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

const stack = await startStack({ delay: Number(process.env.SCREENSHOT_DELAY || 0.08), stepDelay: 0.08 });
const api = apiClient(stack.url);
const browser = await launchBrowser();
const shots = [];
try {
  const desktop = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1, colorScheme: "dark" });
  const phone = await browser.newContext({
    viewport: PHONE,
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    colorScheme: "dark",
  });
  const page = await desktop.newPage();
  const shoot = async (p, name, fullPage = false) => {
    const file = path.join(OUT, `${name}.png`);
    await p.screenshot({ path: file, fullPage });
    shots.push(file);
  };

  // An earlier session, so the landing page and the gallery have history.
  const earlier = await api.startConversation("a lighthouse in a storm, painted like Turner", "Lighthouse studies");
  await api.waitStatus(earlier.conversation.id, (d) => d.status === "complete", 180_000);

  // The main conversation, through the UI, with an interjection.
  await page.goto(`${stack.url}/`);
  await page.getByLabel("Your first request").fill("a cyberpunk street at night, neon signs in the rain");
  await page.getByRole("button", { name: "Start the discussion" }).click();
  await page.waitForURL(/\/chat\//);
  const conversationId = page.url().split("/chat/")[1];
  await page.waitForFunction(() => document.querySelectorAll('.msg[data-role="style"]').length >= 1);
  await page.waitForSelector('.msg[data-role="composition"][data-streaming]');
  await sleep(500);
  const input = page.getByTestId("chat-input");
  await input.fill("Frame, try a low angle with the neon reflected in puddles");
  await input.press("Enter");
  await page.waitForFunction(() => {
    const last = [...document.querySelectorAll(".msg")].pop();
    return last && last.getAttribute("data-role") === "composition" && last.hasAttribute("data-streaming")
      && (last.textContent ?? "").split(" ").length > 6;
  }, null, { timeout: 30_000 });
  await shoot(page, "chat-streaming");

  const phonePage = await phone.newPage();
  await phonePage.goto(`${stack.url}/chat/${conversationId}`);
  await phonePage.waitForSelector(".msg[data-streaming]", { timeout: 30_000 });
  await sleep(300);
  await shoot(phonePage, "chat-streaming-phone");

  await page.waitForSelector('[data-testid=generation] [role=progressbar]', { timeout: 180_000 });
  await page.waitForFunction(() => {
    const bar = document.querySelector("[data-testid=generation] [role=progressbar]");
    return !bar || Number(bar.getAttribute("aria-valuenow") || 0) >= 40;
  }, null, { timeout: 60_000 });
  if (await page.$("[data-testid=generation] [role=progressbar]")) await shoot(page, "chat-generating");

  await page.waitForSelector('[data-testid=generation][data-status="complete"] [data-testid=result-image]', { timeout: 180_000 });
  await api.waitStatus(conversationId, (d) => !d.running, 60_000);
  await sleep(600);
  await shoot(page, "chat-complete");
  await phonePage.waitForSelector('[data-testid=generation][data-status="complete"]', { timeout: 60_000 });
  await sleep(600);
  await shoot(phonePage, "chat-complete-phone");

  for (const [route, name] of [
    ["/", "landing"],
    ["/settings", "settings"],
    ["/gallery", "gallery"],
  ]) {
    for (const [p, suffix] of [
      [page, ""],
      [phonePage, "-phone"],
    ]) {
      await p.goto(`${stack.url}${route}`);
      await p.waitForLoadState("networkidle");
      if (route === "/gallery") await p.waitForSelector("[data-testid=gallery-item] img");
      if (route === "/settings") await p.waitForSelector("[data-testid=model-row-style]");
      await sleep(300);
      // The settings page is long: show all of it on the desktop shot.
      await shoot(p, `${name}${suffix}`, route === "/settings" && suffix === "");
    }
  }
} finally {
  await browser.close();
  await stack.stop();
}
console.log(shots.map((f) => path.relative(ROOT, f)).join("\n"));
