// chatd's web client: sign-in, the connection (WebSocket first, SSE + REST
// when the WebSocket is blocked or ?transport=sse), subscriptions and their
// resume after a reconnect. The room view, composer and message actions are
// in ui.js; the state in store.js; the wire in transport.js. What the
// client does: docs/client.md.
//
// For tests and scripts: #app carries data-state (signin | connecting |
// live | reconnecting), data-transport (ws | sse) and data-reconnects;
// window.chatd is {store, transport, drop()} (drop: close the connection
// as a network failure would).

import { HttpTransport, RequestError, WsTransport, tokenClaims } from "./transport.js";
import { Store } from "./store.js";
import { Ui } from "./ui.js";
import { roomTitle } from "./view.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "chatd.token";
const DEV_KEY = "chatd.dev";          // {user, tenant} of a dev sign-in: it can be renewed
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const ROOM_LIST_EVERY_MS = 60000;
const params = new URLSearchParams(location.search);
const FORCE_SSE = params.get("transport") === "sse";

const app = $("app");
const store = new Store();
let token = null;
let transport = null;
let wsBlocked = FORCE_SSE;   // the WebSocket failed while HTTP worked: stay on SSE
let connecting = false;
let reconnects = 0;
let refusals = 0;
let wake = null;             // ends the backoff wait early (online, "retry now")
let lastListAt = 0;
let renewTimer = null;
let listTimer = null;

const ui = new Ui(store, {
  request: (type, fields) => request(type, fields),
  supports: (type) => !!transport && transport.supports(type),
  subscribe: (rooms) => subscribe(rooms),
  unsubscribe: (room) => transport && transport.unsubscribe(room),
  toast,
});

function request(type, fields) {
  if (!transport) return Promise.reject(new RequestError("disconnected", "not connected"));
  return transport.request(type, fields);
}

window.chatd = {
  store,
  get transport() { return transport; },
  drop() { if (transport) transport.drop(); },
};

// ------------------------------------------------------------------ sign-in

function setState(state, text, via = "") {
  app.dataset.state = state;
  const pill = $("conn");
  pill.dataset.state = state;
  pill.textContent = text || state;
  if (via) {
    const s = document.createElement("span");
    s.className = "via";
    s.textContent = ` · ${via}`;
    pill.append(s);
  }
}

function showSignIn(error = "") {
  setState("signin", "signed out");
  $("signin").hidden = false;
  $("chat").hidden = true;
  $("whoami").hidden = true;
  $("signin-error").textContent = error;
}

async function offerDevSignIn() {
  try {
    const r = await fetch("/dev/token", { cache: "no-store" });
    if (!r.ok) return;
    const info = await r.json();
    $("dev-form").hidden = false;
    $("dev-tenant").placeholder = info.tenant || "";
  } catch { /* no dev sign-in here */ }
}

async function devToken(user, tenant) {
  const r = await fetch("/dev/token", {
    method: "POST", headers: { "Content-Type": "application/json" }, cache: "no-store",
    body: JSON.stringify(tenant ? { user, tenant } : { user }),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data.token;
}

function signIn(tok, dev = null) {
  const claims = tokenClaims(tok);
  if (!claims || !claims.sub) return showSignIn("That is not a token (a JWT has three parts separated by dots).");
  if (claims.exp && claims.exp * 1000 < Date.now()) return showSignIn("That token has expired.");
  token = tok;
  sessionStorage.setItem(TOKEN_KEY, tok);
  if (dev) sessionStorage.setItem(DEV_KEY, JSON.stringify(dev));
  else sessionStorage.removeItem(DEV_KEY);
  store.me = claims.sub;
  store.tenant = claims.tenant || null;
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("whoami").hidden = false;
  $("me-name").textContent = claims.sub;
  scheduleRenew(claims);
  connect();
}

function signOut(why = "") {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(DEV_KEY);
  clearTimeout(renewTimer);
  if (transport) transport.close();
  transport = null;
  clearInterval(listTimer);
  store.rooms.clear();
  store.presence.clear();
  store.early.clear();
  store.active = null;
  ui.reset();
  showSignIn(why);
}

// A dev token is renewed before it ends: a new one from /dev/token, handed
// to the open connection with auth:refresh.
function scheduleRenew(claims) {
  clearTimeout(renewTimer);
  const dev = JSON.parse(sessionStorage.getItem(DEV_KEY) || "null");
  if (!dev || !claims.exp) return;
  const wait = Math.max(claims.exp * 1000 - Date.now() - 5 * 60 * 1000, 10000);
  renewTimer = setTimeout(async () => {
    try {
      const tok = await devToken(dev.user, dev.tenant);
      token = tok;
      sessionStorage.setItem(TOKEN_KEY, tok);
      if (transport && transport.kind === "ws") await request("auth:refresh", { token: tok });
      scheduleRenew(tokenClaims(tok));
    } catch { /* the next connect will say so */ }
  }, Math.min(wait, 2 ** 31 - 1));
}

// ------------------------------------------------------------------ connection

const handlers = {
  onJoined: (room, ack, fresh) => joined(room, ack, fresh),
  cursor: () => Object.fromEntries([...store.rooms.values()].filter((r) => r.lastSeq > 0)
    .map((r) => [r.id, r.lastSeq])),
  onEvent: (frame) => event(frame),
  onDown: (why) => down(why),
  onState: (s) => {
    if (s === "retrying") setState("reconnecting", "reconnecting (SSE)…");
    else if (transport) live();
  },
};

function live() {
  setState("live", "live", transport.kind === "ws" ? "WebSocket" : "SSE");
  app.dataset.transport = transport.kind;
}

// Is chatd there at all (the WebSocket may fail for other reasons)?
async function health() {
  try {
    const r = await fetch("/health", { cache: "no-store" });
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  }
}

async function openTransport() {
  if (wsBlocked) return HttpTransport.connect(token, handlers);
  try {
    return await WsTransport.connect(token, handlers);
  } catch (e) {
    if (e.opened) throw e;   // the socket opened: the server is there, retry it
    // Never opened: chatd is down, the WebSocket is blocked on the way, or
    // the upgrade was refused (a bad token, limits, draining).
    const h = await health();
    if (!h) throw e;
    try {
      const t = await HttpTransport.connect(token, handlers);
      wsBlocked = true;
      return t;
    } catch (e2) {
      if (e2.code === "unauthorized") throw e2;
      if (!h.draining) refusals++;
      throw new RequestError("refused", "the WebSocket was refused and SSE is not available");
    }
  }
}

async function connect() {
  if (connecting || !token) return;
  connecting = true;
  let attempt = 0;
  try {
    for (;;) {
      setState(reconnects || attempt ? "reconnecting" : "connecting",
               reconnects || attempt ? "reconnecting…" : "connecting…");
      try {
        const t = await openTransport();
        if (!token) { t.close(); return; }
        transport = t;
        refusals = 0;
        break;
      } catch (e) {
        if (!token) return;
        if (e.code === "unauthorized") return signOut("The server refused the token.");
        if (refusals >= 5) return signOut("The server refuses the connection: is the token valid?");
        const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] * (0.75 + Math.random() / 2);
        attempt++;
        setState("reconnecting", `offline · retrying in ${Math.ceil(delay / 1000)} s`);
        await new Promise((resolve) => {
          wake = resolve;
          setTimeout(resolve, delay);
        });
        wake = null;
      }
    }
  } finally {
    connecting = false;
  }
  await connected();
}

function down(why) {
  transport = null;
  if (!token) return;
  if (why && why.code === 4001) {
    // The token ended: a dev sign-in gets a new one, anyone else signs in again.
    const dev = JSON.parse(sessionStorage.getItem(DEV_KEY) || "null");
    if (!dev) return signOut("Your session has expired: sign in again.");
    devToken(dev.user, dev.tenant).then((tok) => signIn(tok, dev), () => signOut("Your session has expired."));
    return;
  }
  reconnects++;
  app.dataset.reconnects = reconnects;
  connect();
}

// Connected (the first time, or again): the room list, every room
// subscribed from the position the client has (session:resume), the open
// room's history, and the sends still pending.
async function connected() {
  const t = transport;
  if (t.hello.user) store.me = t.hello.user;
  live();
  try {
    const list = t.firstList || await t.request("room:list");
    t.firstList = null;
    lastListAt = Date.now();
    store.setRoomList(list.rooms || []);
    await subscribeAll();
    await ui.roomReady();
    ui.resendPending();
    directPresence();
  } catch (e) {
    if (e.code !== "disconnected") toast(`Could not load the rooms: ${e.message}`);
  }
  clearInterval(listTimer);
  listTimer = setInterval(() => refreshRooms(), ROOM_LIST_EVERY_MS);
}

// Every room the user is in, from its last position (or the room list's).
async function subscribeAll() {
  const max = (transport.hello.limits && transport.hello.limits.max_rooms_per_conn) || 100;
  const rooms = {};
  for (const r of store.rooms.values()) {
    if (Object.keys(rooms).length >= max) break;
    if (!r.lastSeq) r.lastSeq = r.serverSeq;
    rooms[r.id] = r.lastSeq;
  }
  await subscribe(rooms);
}

// rooms: {room: since | null}. null: a fresh join (the latest events).
// Each room's answer goes through joined() as it comes.
async function subscribe(rooms) {
  if (!transport || !Object.keys(rooms).length) return {};
  const res = await transport.subscribe(rooms);
  for (const [id, ack] of Object.entries(res)) {
    if (ack.error && (ack.error.code === "forbidden" || ack.error.code === "not_found")) {
      store.removeRoom(id);
      toast(`${id}: ${ack.error.message}`);
    }
  }
  return res;
}

// A room's join answer (room:join, session:resume, the event stream's
// room:joined), before the events that follow it.
function joined(id, ack, fresh) {
  const r = store.applyJoin({ ...ack, room: id }, fresh);
  if (fresh) r.historyLoaded = false;   // ui reads the latest page, with `current`
  if (ack.recovered === false && store.active === id) ui.reloadActive();
}

// The other user of each direct room, for the room list's dots (the joins'
// presence lists only who is online; this gives last_seen too).
async function directPresence() {
  const users = new Set();
  for (const r of store.rooms.values())
    if (r.kind === "direct")
      for (const u of roomTitle(r, store.me).split(", ")) if (/^[A-Za-z0-9._:-]{1,64}$/.test(u)) users.add(u);
  if (!users.size || !transport || !transport.supports("presence:get")) return;
  try {
    const ack = await request("presence:get", { users: [...users].slice(0, 100) });
    for (const p of ack.presence || []) store.setPresence(p);
  } catch { /* the dots stay as the events leave them */ }
}

async function refreshRooms() {
  if (!transport) return;
  try {
    const list = await request("room:list");
    lastListAt = Date.now();
    const before = new Set(store.rooms.keys());
    store.setRoomList(list.rooms || []);
    const added = {};
    for (const r of store.rooms.values()) {
      if (before.has(r.id) && r.subscribed) continue;
      r.lastSeq = r.serverSeq;
      added[r.id] = r.serverSeq;
    }
    await subscribe(added);
  } catch { /* the next refresh */ }
}

// ------------------------------------------------------------------ events

const gapTimers = new Map();

function event(frame) {
  switch (frame.type) {
  case "hello":
    return;
  case "room:gap":
    // This connection lost events of the room: join again from where it is.
    // (An event stream ends after it and resumes by itself with Last-Event-ID.)
    if (transport && transport.kind === "ws") subscribe({ [frame.room]: store.room(frame.room).lastSeq });
    return undefined;
  case "room:removed":
    store.removeRoom(frame.room);
    ui.roomRemoved(frame.room);
    return toast(`You are no longer in ${frame.room} (${frame.reason || "removed"}).`);
  case "error":
    return console.warn("chatd:", frame.code, frame.message);
  default:
    store.event(frame);
  }
}

// Events after a hole in a room's seqs: fetch the missing ones, unless they
// arrive by themselves within a second.
store.onGap = (r) => {
  if (gapTimers.has(r.id)) return;
  gapTimers.set(r.id, setTimeout(async () => {
    gapTimers.delete(r.id);
    if (!r.held.size || !transport) return;
    try {
      for (let i = 0; i < 10 && r.held.size; i++) {
        const page = await request("message:history", { room: r.id, after: r.lastSeq, limit: 100 });
        for (const ev of page.events || []) store.ingest({ ...ev, room: r.id });
        if (!page.has_more) break;
      }
    } catch { /* the next event tries again */ }
  }, 1000));
};

store.onMention = (r, msg, unknownRoom) => {
  if (!r) {
    // A room the list does not have yet: read the list, then say where.
    refreshRooms().then(() => {
      const known = store.rooms.get(unknownRoom);
      toast(`${msg.user || "Someone"} mentioned you in ${known ? known.name : unknownRoom}`);
    });
    return;
  }
  if (store.active !== r.id || document.visibilityState !== "visible")
    toast(`${msg.user} mentioned you in ${r.name}`);
};

// ------------------------------------------------------------------ misc

let toastTimer = null;
function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 5000);
}

function wire() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token-input").value.trim());
  });
  $("dev-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const user = $("dev-user").value.trim(), tenant = $("dev-tenant").value.trim();
    try {
      signIn(await devToken(user, tenant), { user, tenant });
    } catch (err) {
      $("signin-error").textContent = `Dev sign-in failed: ${err.message}`;
    }
  });
  $("signout").addEventListener("click", () => signOut());
  $("refresh-rooms").addEventListener("click", () => refreshRooms());
  $("conn").addEventListener("click", () => { if (wake) wake(); });
  window.addEventListener("online", () => { if (wake) wake(); });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && Date.now() - lastListAt > 30000) refreshRooms();
  });
}

wire();
offerDevSignIn();
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved, JSON.parse(sessionStorage.getItem(DEV_KEY) || "null"));
else showSignIn();
