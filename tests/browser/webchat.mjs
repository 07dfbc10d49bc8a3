// Drive chatd's web client (/) in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core from scripts/web/node_modules,
// as two users in two browser contexts. Run by tests/test_webchat.py;
// prints one JSON object per line on stdout: progress lines
// {"phase": ...} and, last, {"phase": "result", "ok": ..., ...}.
//
//   node tests/browser/webchat.mjs --url http://127.0.0.1:PORT --out DIR
//       --tenant T --bob-token JWT --history-room R --history-count N
//       [--typing 1] [--receipts 1] [--mode chat|sse]
//
// chat: alice signs in with the dev sign-in (/dev/token), bob with a pasted
//   token; alice creates a room with bob and mentions him; bob finds it in
//   his list (unread and mention badges), opens it, replies; alice edits,
//   bob deletes, both react; typing and "seen by" when the server has them;
//   presence in the members panel; bob pages back through the history
//   room; bob's connection drops while alice writes, and bob resumes; the
//   phone layout.
// sse: bob's browser has no working WebSocket (it fails before opening, as
//   behind a proxy that blocks it): the client goes on over SSE + REST.
//
// Every request not to 127.0.0.1 is blocked (route) and reported. Every wait
// is bounded (--timeout seconds each).
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../../scripts/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

function args() {
  const a = { mode: "chat", timeout: 20, chromium: "/usr/bin/chromium", typing: "0", receipts: "0" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) a[argv[i].replace(/^--/, "")] = argv[i + 1];
  a.timeout = Number(a.timeout) * 1000;
  a.typing = a.typing === "1";
  a.receipts = a.receipts === "1";
  a.historyCount = Number(a["history-count"] || 0);
  if (!a.url || !a.out || !a.tenant || !a["bob-token"])
    throw new Error("usage: webchat.mjs --url URL --out DIR --tenant T --bob-token JWT ...");
  return a;
}

const opt = args();
const T = opt.timeout;
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const report = { console_errors: [], page_errors: [], blocked: [], screenshots: {}, checks: {} };
const pages = {};
let closing = false;

async function newUser(browser, name, { viewport = { width: 1280, height: 800 }, mobile = false, noWs = false } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, isMobile: mobile, hasTouch: mobile });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    let host = "";
    try { host = new URL(url).hostname; } catch { /* data: */ }
    if (host === "127.0.0.1") return route.continue();
    report.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  if (noWs) {
    // A WebSocket that fails before it opens, as one blocked on the way does.
    await context.addInitScript(() => {
      window.WebSocket = class BlockedWebSocket extends EventTarget {
        static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
        constructor(url) {
          super();
          this.url = url;
          this.readyState = 0;
          setTimeout(() => {
            this.readyState = 3;
            if (this.onerror) this.onerror(new Event("error"));
            if (this.onclose) this.onclose({ code: 1006, reason: "", wasClean: false });
          }, 20);
        }
        send() { throw new Error("not open"); }
        close() {}
      };
    });
  }
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !closing)
      report.console_errors.push({ user: name, text: m.text(), url: m.location().url || "" });
  });
  page.on("pageerror", (e) => report.page_errors.push({ user: name, error: String(e && e.stack || e) }));
  pages[name] = page;
  return { context, page };
}

async function shot(page, name) {
  mkdirSync(opt.out, { recursive: true });
  const file = path.resolve(opt.out, name);
  await page.screenshot({ path: file });
  report.screenshots[name.replace(/\.png$/, "")] = file;
}

const live = (page, transport) => page.waitForFunction((t) => {
  const a = document.getElementById("app");
  return a.dataset.state === "live" && (!t || a.dataset.transport === t);
}, transport, { timeout: T, polling: 50 });

async function devSignIn(page, user, path = "/") {
  await page.goto(opt.url + path, { waitUntil: "load", timeout: T });
  await page.waitForSelector("#dev-form:not([hidden])", { timeout: T });
  await page.fill("#dev-user", user);
  await page.fill("#dev-tenant", opt.tenant);
  await page.click("#dev-form button[type=submit]");
}

async function tokenSignIn(page, token) {
  await page.goto(opt.url + "/", { waitUntil: "load", timeout: T });
  await page.fill("#token-input", token);
  await page.click("#token-form button[type=submit]");
}

const msg = (page, text) => page.locator("#messages > li.msg", { hasText: text }).first();

async function waitMsg(page, text) {
  const li = msg(page, text);
  await li.waitFor({ timeout: T });
  return li;
}

async function send(page, text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");
  // Acked: no longer pending, with a seq.
  await page.waitForFunction((t) => [...document.querySelectorAll("#messages > li.msg")]
    .some((li) => li.textContent.includes(t) && !li.hasAttribute("data-pending") && li.dataset.seq),
  text, { timeout: T, polling: 50 });
}

async function act(page, text, action) {
  const li = msg(page, text);
  await li.hover();
  await li.locator(`.actions button[data-act=${action}]`).click();
  return li;
}

// Delete in two clicks; the confirmation reverts after 5 s, so a slow click
// starts over (at most three times).
async function remove(page, text) {
  for (let i = 0; ; i++) {
    const li = await act(page, text, "delete");
    try {
      await li.locator(".actions button[data-act=delete-confirm]").click({ timeout: 4000 });
      return;
    } catch (e) {
      if (i === 2) throw e;
    }
  }
}

async function openRoom(page, id) {
  await page.click(`#rooms li[data-room="${id}"] button`);
  await page.waitForFunction((r) => document.getElementById("room").dataset.room === r &&
    !document.getElementById("room-view").hidden, id, { timeout: T });
}

const roomItem = (page, id) => page.evaluate((r) => {
  const li = document.querySelector(`#rooms li[data-room="${r}"]`);
  return li && { unread: Number(li.dataset.unread), mentions: Number(li.dataset.mentions), text: li.textContent };
}, id);

// ------------------------------------------------------------------ chat

async function chat(browser) {
  const A = (await newUser(browser, "alice")).page;
  const B = (await newUser(browser, "bob")).page;

  await devSignIn(A, "alice");
  await tokenSignIn(B, opt["bob-token"]);
  await live(A, "ws");
  await live(B, "ws");
  say({ phase: "signed-in" });

  // alice: a new room with bob, and a message that mentions him.
  await A.click("#new-room");
  await A.fill("#create-name", "Plans");
  await A.fill("#create-members", "bob");
  await A.click("#create-form button[type=submit]");
  await A.waitForFunction(() => document.getElementById("room-name").textContent === "Plans" &&
    document.getElementById("room").dataset.room, null, { timeout: T });
  const room = await A.evaluate(() => document.getElementById("room").dataset.room);
  report.room = room;
  await send(A, "Hi @bob, welcome to Plans");
  say({ phase: "room-created", room });

  // bob: the mention brings the room into his list, with its badges.
  await B.waitForSelector(`#rooms li[data-room="${room}"]:not([data-mentions="0"])`, { timeout: T });
  report.checks.bob_badges = await roomItem(B, room);
  await shot(B, "bob-badges.png");
  await openRoom(B, room);
  const hi = await waitMsg(B, "welcome to Plans");
  report.checks.mention_highlighted = await hi.evaluate((li) => li.classList.contains("mentioned") &&
    !!li.querySelector(".mention.me"));
  await B.waitForFunction((r) => document.querySelector(`#rooms li[data-room="${r}"]`).dataset.unread === "0",
    room, { timeout: T });
  say({ phase: "bob-opened" });

  // Typing: bob types, alice sees it.
  if (opt.typing) {
    await B.click("#input");
    await B.keyboard.type("Hello al", { delay: 30 });
    await A.waitForFunction(() => document.getElementById("typing").textContent.includes("bob is typing"),
      null, { timeout: T, polling: 50 });
    report.checks.typing_seen = await A.evaluate(() => document.getElementById("typing").textContent);
    await shot(A, "alice-typing.png");
    await B.fill("#input", "");
    say({ phase: "typing" });
  }

  // bob replies to alice's message.
  await act(B, "welcome to Plans", "reply");
  await B.waitForSelector("#compose-ctx:not([hidden])", { timeout: T });
  await send(B, "Hello alice, thanks!");
  const reply = await waitMsg(A, "Hello alice, thanks!");
  report.checks.reply_quote = await reply.locator(".quote").textContent({ timeout: T });
  if (opt.typing) {
    await A.waitForFunction(() => document.getElementById("typing").textContent === "", null,
      { timeout: T, polling: 50 });
  }
  say({ phase: "reply" });

  // The thread: alice opens it from the root's "1 reply".
  await msg(A, "welcome to Plans").locator("button.replies").click();
  await A.waitForFunction(() => !document.getElementById("thread").hidden &&
    document.querySelectorAll("#thread-messages > li.msg").length === 2, null, { timeout: T });
  report.checks.thread = await A.evaluate(() =>
    [...document.querySelectorAll("#thread-messages > li.msg .body")].map((b) => b.textContent));
  await A.click("#panel-close");
  say({ phase: "thread" });

  // alice edits her message; bob sees the new text.
  await act(A, "welcome to Plans", "edit");
  await A.waitForSelector("#composer[data-mode=edit]", { timeout: T });
  await A.fill("#input", "Hi @bob, welcome to Plans (now with a agenda)");
  await A.press("#input", "Enter");
  const edited = await waitMsg(B, "now with a agenda");
  report.checks.edited_mark = await edited.locator(".edited").textContent({ timeout: T });
  say({ phase: "edit" });

  // bob sends a message and deletes it; alice sees a tombstone.
  await send(B, "oops, wrong room");
  await waitMsg(A, "oops, wrong room");
  await remove(B, "oops, wrong room");
  await A.waitForFunction(() => {
    const dead = document.querySelectorAll("#messages > li.msg[data-deleted]");
    return dead.length === 1 && dead[0].textContent.includes("message deleted") &&
      !document.getElementById("messages").textContent.includes("oops, wrong room");
  }, null, { timeout: T, polling: 50 });
  report.checks.tombstone = await A.locator("#messages > li.msg[data-deleted] .body").textContent();
  say({ phase: "delete" });

  // Reactions: alice 👍 on bob's reply, then bob adds his: 2 on both sides.
  const r1 = await act(A, "Hello alice, thanks!", "palette");
  await r1.locator(".palette button[data-emoji='👍']").click();
  await B.waitForSelector("#messages > li.msg .chip[data-emoji='👍'][data-count='1']", { timeout: T });
  await B.locator("#messages > li.msg .chip[data-emoji='👍']").click();
  await A.waitForSelector("#messages > li.msg .chip[data-emoji='👍'][data-count='2']", { timeout: T });
  await B.waitForSelector("#messages > li.msg .chip[data-emoji='👍'][data-count='2'][aria-pressed=true]", { timeout: T });
  report.checks.reaction_count = 2;
  say({ phase: "react" });

  // Read receipts: bob has the room open at its end; alice sees "Seen by bob".
  if (opt.receipts) {
    await A.waitForSelector("#messages .seen[data-users*=bob]", { timeout: T });
    report.checks.seen = await A.locator("#messages .seen").first().textContent();
    say({ phase: "seen" });
  }

  // Presence: bob is online in alice's member list.
  await A.click("#toggle-members");
  await A.waitForSelector("#members li[data-user=bob][data-status=online]", { timeout: T });
  report.checks.presence_bob = "online";
  // alice goes away; bob sees it.
  await A.selectOption("#me-status", "away");
  await B.click("#toggle-members");
  await B.waitForSelector("#members li[data-user=alice][data-status=away]", { timeout: T });
  report.checks.presence_alice = "away";
  await shot(A, "alice-desktop.png");
  await shot(B, "bob-desktop.png");
  say({ phase: "presence" });

  // History: bob pages back to the first message of the history room.
  if (opt["history-room"]) {
    const hr = opt["history-room"];
    await B.waitForSelector(`#rooms li[data-room="${hr}"]`, { timeout: T });
    await openRoom(B, hr);
    await waitMsg(B, `history ${opt.historyCount}`);
    report.checks.history_first_page = await B.locator("#messages > li.msg").count();
    // "Load older" until the first message is there (a page is 50).
    const bodies = () => B.evaluate(() =>
      [...document.querySelectorAll("#messages > li.msg .body")].map((b) => b.textContent));
    for (let i = 0; i < 10 && !(await bodies()).includes("history 1"); i++) {
      const before = (await bodies()).length;
      if (await B.locator("#older:not([hidden])").count()) await B.click("#older");
      await B.waitForFunction((n) => document.querySelectorAll("#messages > li.msg").length > n,
        before, { timeout: T, polling: 50 });
    }
    await B.waitForFunction((n) => {
      const bodies = [...document.querySelectorAll("#messages > li.msg .body")].map((b) => b.textContent);
      return bodies.includes("history 1") && bodies.filter((b) => b.startsWith("history ")).length === n;
    }, opt.historyCount, { timeout: T, polling: 100 });
    report.checks.history_all = await B.locator("#messages > li.msg").count();
    report.checks.history_older_hidden = await B.locator("#older[hidden]").count() === 1;
    await openRoom(B, room);
    say({ phase: "history" });
  }

  // Reconnect and resume: bob's connection drops and cannot come back while
  // alice writes; then it comes back and bob sees the message.
  let blockWs = false;
  await B.context().routeWebSocket(/\/ws/, (ws) => (blockWs ? ws.close() : ws.connectToServer()));
  blockWs = true;
  const reconnectsBefore = Number(await B.evaluate(() =>
    document.getElementById("app").dataset.reconnects));
  await B.evaluate(() => window.chatd.drop());
  // The drop is seen: reconnecting (blocked), or, should the route not
  // have taken hold yet, already back live with one more reconnect.
  await B.waitForFunction((n) => {
    const app = document.getElementById("app").dataset;
    return app.state === "reconnecting" || Number(app.reconnects) > n;
  }, reconnectsBefore, { timeout: T, polling: 20 });
  await send(A, "while you were away");
  blockWs = false;
  // "retry now"; the client may have come back by itself meanwhile.
  if (await B.evaluate(() => document.getElementById("app").dataset.state !== "live"))
    await B.click("#conn", { timeout: 3000 }).catch(() => {});
  await live(B);
  await waitMsg(B, "while you were away");
  report.checks.reconnects = Number(await B.evaluate(() => document.getElementById("app").dataset.reconnects));
  // And the reverse: bob's pending send during an outage goes out after it.
  say({ phase: "resume" });

  // A direct room: named after the other user, with a presence dot.
  await A.click("#new-room");
  await A.selectOption("#create-kind", "direct");
  await A.fill("#create-members", "bob");
  await A.click("#create-form button[type=submit]");
  await A.waitForFunction(() => document.getElementById("room-name").textContent === "bob", null, { timeout: T });
  const direct = await A.evaluate(() => document.getElementById("room").dataset.room);
  await send(A, "just between us");
  await B.click("#refresh-rooms");
  await B.waitForSelector(`#rooms li[data-room="${direct}"] .dot[data-status=away]`, { timeout: T });
  report.checks.direct = await roomItem(B, direct);
  say({ phase: "direct" });

  // The phone layout: bob on a narrow screen, the room list then the room.
  const P = (await newUser(browser, "bob-phone", { viewport: { width: 390, height: 844 }, mobile: true })).page;
  await tokenSignIn(P, opt["bob-token"]);
  await live(P, "ws");
  await P.waitForSelector(`#rooms li[data-room="${room}"]`, { timeout: T });
  await shot(P, "phone-rooms.png");
  await openRoom(P, room);
  await waitMsg(P, "while you were away");
  await shot(P, "phone-room.png");
  report.checks.phone = await P.evaluate(() => ({
    scroll_width: document.documentElement.scrollWidth, client_width: document.documentElement.clientWidth,
    sidebar_hidden: getComputedStyle(document.getElementById("sidebar")).display === "none",
  }));
  say({ phase: "phone" });

  // A token with a bad signature: back to the sign-in, saying why.
  const M = (await newUser(browser, "bad-token")).page;
  await tokenSignIn(M, opt["bob-token"].slice(0, -2) + (opt["bob-token"].endsWith("AA") ? "BB" : "AA"));
  await M.waitForFunction(() => document.getElementById("app").dataset.state === "signin" &&
    document.getElementById("signin-error").textContent !== "", null, { timeout: T });
  report.checks.bad_token = await M.locator("#signin-error").textContent();
  say({ phase: "bad-token" });
}

// ------------------------------------------------------------------ sse

async function sse(browser) {
  const A = (await newUser(browser, "alice")).page;
  const B = (await newUser(browser, "bob", { noWs: true })).page;
  const C = (await newUser(browser, "carol")).page;
  await devSignIn(A, "alice");
  await tokenSignIn(B, opt["bob-token"]);
  await devSignIn(C, "carol", "/?transport=sse");   // SSE asked for, the WebSocket untried
  await live(A, "ws");
  await live(B, "sse");
  await live(C, "sse");
  say({ phase: "signed-in" });

  await A.click("#new-room");
  await A.fill("#create-name", "Fallback");
  await A.fill("#create-members", "bob carol");
  await A.click("#create-form button[type=submit]");
  await A.waitForFunction(() => document.getElementById("room-name").textContent === "Fallback",
    null, { timeout: T });
  const room = await A.evaluate(() => document.getElementById("room").dataset.room);
  await send(A, "Hi @bob over there");
  await B.click("#refresh-rooms");
  await B.waitForSelector(`#rooms li[data-room="${room}"]`, { timeout: T });
  await openRoom(B, room);
  await waitMsg(B, "Hi @bob over there");
  await send(B, "Hello from SSE and REST");
  await waitMsg(A, "Hello from SSE and REST");
  await send(A, "live to the event stream");
  await waitMsg(B, "live to the event stream");
  await act(A, "Hi @bob over there", "edit");
  await A.fill("#input", "Hi @bob, edited");
  await A.press("#input", "Enter");
  await waitMsg(B, "Hi @bob, edited");
  const r1 = await act(B, "live to the event stream", "palette");
  await r1.locator(".palette button[data-emoji='🎉']").click();
  await A.waitForSelector("#messages > li.msg .chip[data-emoji='🎉'][data-count='1']", { timeout: T });
  report.checks.sse_transport = await B.evaluate(() => document.getElementById("app").dataset.transport);
  await shot(B, "bob-sse.png");
  say({ phase: "sse" });

  // carol (?transport=sse) finds the room, writes, deletes her message.
  await C.click("#refresh-rooms");
  await C.waitForSelector(`#rooms li[data-room="${room}"]`, { timeout: T });
  await openRoom(C, room);
  await waitMsg(C, "live to the event stream");
  await send(C, "carol was here");
  await waitMsg(B, "carol was here");
  await remove(C, "carol was here");
  await A.waitForSelector("#messages > li.msg[data-deleted][data-user=carol]", { timeout: T });
  await B.waitForSelector("#messages > li.msg[data-deleted][data-user=carol]", { timeout: T });
  report.checks.carol_transport = await C.evaluate(() => document.getElementById("app").dataset.transport);
  say({ phase: "forced-sse" });
}

// ------------------------------------------------------------------ main

const browser = await chromium.launch({
  executablePath: opt.chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  timeout: T,
});
let ok = false;
try {
  await (opt.mode === "sse" ? sse(browser) : chat(browser));
  ok = true;
} catch (e) {
  report.error = String(e && e.stack || e);
  for (const [name, page] of Object.entries(pages)) {
    report[`state_${name}`] = await page.evaluate(() => ({
      app: { ...document.getElementById("app").dataset },
      room: document.getElementById("room").dataset.room,
      messages: [...document.querySelectorAll("#messages > li")].slice(-12).map((li) => li.textContent.slice(0, 120)),
      toast: document.getElementById("toast").textContent,
    })).catch(() => null);
    await shot(page, `failure-${opt.mode}-${name}.png`).catch(() => {});
  }
} finally {
  closing = true;
  await browser.close().catch(() => {});
}
say({ phase: "result", ok, mode: opt.mode, ...report });
process.exit(0);
