// Drive chatd's monitoring dashboard in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core from scripts/web/node_modules.
// Run by tests/test_dashboard.py; prints one JSON object per line on stdout:
// progress lines {"phase": ...} and, last, {"phase": "result", ...}.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT --out DIR --mode steady
//       load /monitoring at 1280x800 and 390x844, wait until messages/s > 0
//       and the worker table has --workers rows, save desktop.png and phone.png
//   ... --mode restart
//       wait until live, print {"phase":"live"}; wait until the page shows
//       "reconnecting" (the test stops chatd), print {"phase":"reconnecting"};
//       wait until live again with other worker pids (the test starts a new
//       chatd on the same port), print {"phase":"live-again"}
//
// Every request not to 127.0.0.1 is blocked (page.route) and reported.
// Every wait is bounded (--timeout seconds, for each wait).
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../../scripts/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

function args() {
  const a = { mode: "steady", timeout: 30, workers: 2, chromium: "/usr/bin/chromium" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) a[argv[i].replace(/^--/, "")] = argv[i + 1];
  a.timeout = Number(a.timeout) * 1000;
  a.workers = Number(a.workers);
  if (!a.url || !a.out) throw new Error("usage: dashboard.mjs --url URL --out DIR [--mode steady|restart]");
  return a;
}

const opt = args();
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const report = { console_errors: [], page_errors: [], blocked: [], failed: [], screenshots: {} };
let closing = false;
let current = null;   // the page a failure's screenshot shows

async function newPage(browser, viewport, mobile) {
  const context = await browser.newContext({
    viewport, deviceScaleFactor: 1, isMobile: mobile, hasTouch: mobile,
  });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    let host = "";
    try { host = new URL(url).hostname; } catch { /* data: and the like */ }
    if (host === "127.0.0.1") return route.continue();
    report.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  const page = await context.newPage();
  current = page;
  page.on("console", (m) => {
    if (m.type() === "error") report.console_errors.push({ text: m.text(), url: m.location().url || "" });
  });
  page.on("pageerror", (e) => report.page_errors.push(String(e && e.stack || e)));
  page.on("requestfailed", (r) => {
    if (!closing) report.failed.push({ url: r.url(), error: r.failure() && r.failure().errorText });
  });
  return { context, page };
}

const state = (page) => page.evaluate(() => {
  const d = document.getElementById("dash");
  return {
    state: d.dataset.state,
    pill: document.getElementById("conn-state").textContent,
    updates: Number(d.dataset.updates || 0),
    msg_rate: d.dataset.msgRate === "" || d.dataset.msgRate === undefined ? null : Number(d.dataset.msgRate),
    del_rate: d.dataset.delRate === "" || d.dataset.delRate === undefined ? null : Number(d.dataset.delRate),
    connections: d.dataset.connections === undefined ? null : Number(d.dataset.connections),
    points: Number(d.dataset.points || 0),
    worker_rows: document.querySelectorAll("#workers-body tr[data-pid]").length,
    pids: (d.dataset.workerPids || "").split(",").filter(Boolean).map(Number),
    verdict: document.getElementById("verdict").textContent,
    charts: document.querySelectorAll(".chart .uplot canvas").length,
    scroll_width: document.documentElement.scrollWidth,
    client_width: document.documentElement.clientWidth,
  };
});

// Until the page shows messages/s > 0 and the worker table's rows.
async function waitLoaded(page, workers) {
  await page.waitForFunction((n) => {
    const d = document.getElementById("dash");
    return d.dataset.state === "live" && Number(d.dataset.msgRate) > 0 &&
      document.querySelectorAll("#workers-body tr[data-pid]").length === n &&
      Number(d.dataset.points) >= 3;
  }, opt.workers, { timeout: opt.timeout, polling: 100 });
}

async function shot(page, name) {
  mkdirSync(opt.out, { recursive: true });
  const file = path.resolve(opt.out, name);
  await page.screenshot({ path: file, fullPage: true });
  report.screenshots[name.replace(/\.png$/, "")] = file;
  return file;
}

async function steady(browser) {
  const desk = await newPage(browser, { width: 1280, height: 800 }, false);
  await desk.page.goto(opt.url + "/monitoring", { waitUntil: "load", timeout: opt.timeout });
  await waitLoaded(desk.page);
  report.desktop = await state(desk.page);
  await shot(desk.page, "desktop.png");

  const phone = await newPage(browser, { width: 390, height: 844 }, true);
  await phone.page.goto(opt.url + "/monitoring", { waitUntil: "load", timeout: opt.timeout });
  await waitLoaded(phone.page);
  report.phone = await state(phone.page);
  await shot(phone.page, "phone.png");
}

async function restart(browser) {
  const { page } = await newPage(browser, { width: 1280, height: 800 }, false);
  await page.goto(opt.url + "/monitoring", { waitUntil: "load", timeout: opt.timeout });
  await page.waitForFunction((n) => {
    const d = document.getElementById("dash");
    return d.dataset.state === "live" && document.querySelectorAll("#workers-body tr[data-pid]").length === n;
  }, opt.workers, { timeout: opt.timeout, polling: 100 });
  report.before = await state(page);
  say({ phase: "live", pids: report.before.pids });

  await page.waitForFunction(() => document.getElementById("dash").dataset.state === "reconnecting",
    null, { timeout: opt.timeout, polling: 50 });
  report.during = await state(page);
  await shot(page, "reconnecting.png");
  say({ phase: "reconnecting", pill: report.during.pill });

  await page.waitForFunction(({ n, old }) => {
    const d = document.getElementById("dash");
    const pids = (d.dataset.workerPids || "").split(",").filter(Boolean).map(Number);
    return d.dataset.state === "live" && pids.length === n && pids.every((p) => !old.includes(p));
  }, { n: opt.workers, old: report.before.pids }, { timeout: opt.timeout, polling: 100 });
  report.after = await state(page);
  await shot(page, "after-restart.png");
  say({ phase: "live-again", pids: report.after.pids });
}

const browser = await chromium.launch({
  executablePath: opt.chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage"],
  timeout: opt.timeout,
});
let ok = false;
try {
  await (opt.mode === "restart" ? restart(browser) : steady(browser));
  ok = true;
} catch (e) {
  report.error = String(e && e.stack || e);
  if (current) {
    report.last_state = await state(current).catch(() => null);
    await shot(current, `failure-${opt.mode}.png`).catch(() => {});
  }
} finally {
  closing = true;
  await browser.close().catch(() => {});
}
say({ phase: "result", ok, mode: opt.mode, ...report });
process.exit(0);
