// How the chat client talks to chatd: one small interface, two transports.
//
//   const t = await WsTransport.connect(token, handlers)    // /ws, chat.v1
//   const t = await HttpTransport.connect(token, handlers)  // /api/events + REST
//   t.kind                      "ws" | "sse"
//   t.hello                     {user, tenant, role, limits, ...}
//   t.request(type, fields)     -> Promise of the ack's fields; rejects with
//                                  a RequestError {code, message, retryAfterMs}
//   t.supports(type)            false for commands the transport cannot carry
//   t.subscribe({room: since})  -> Promise of {room: join ack | {error}};
//                                  since null: a fresh join (the latest events)
//   t.unsubscribe(room)
//   t.close()
//   handlers.onJoined(room, ack, fresh)  a room's join answer, before any of
//                               its events that follow it
//   handlers.onEvent(frame)     every event, as the WebSocket frame
//   handlers.onDown(why)        the transport is gone for good (reconnect)
//   handlers.onState(state)     "live" | "retrying" (SSE reconnecting by itself)
//   handlers.cursor()           {room: last seq} the client has (SSE resumes)
//
// The protocol: docs/protocol.md (sections 1-8: WebSocket; 9: SSE and REST).

export class RequestError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.code = code;
    this.retryAfterMs = extra.retryAfterMs || 0;
    this.status = extra.status || 0;
  }
}

// Errors that mean "try again later, the same request": the client keeps a
// pending send and retries it after the reconnect.
export const RETRYABLE = new Set(["unavailable", "disconnected", "timeout"]);

const REQUEST_TIMEOUT_MS = 15000;
const CONNECT_TIMEOUT_MS = 8000;

// The token's claims, read without checking the signature (the server does
// that): who we are before any hello, and when the token ends.
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - part.length % 4) % 4)));
  } catch {
    return null;
  }
}

// ------------------------------------------------------------- WebSocket

export class WsTransport {
  static connect(token, handlers, timeoutMs = CONNECT_TIMEOUT_MS) {
    return new WsTransport(token, handlers).#open(timeoutMs);
  }

  kind = "ws";
  hello = null;
  #ws = null;
  #next = 1;
  #pending = new Map();   // request id -> {resolve, reject, timer}
  #handlers;
  #token;
  #down = false;

  constructor(token, handlers) {
    this.#token = token;
    this.#handlers = handlers;
  }

  #open(timeoutMs) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}/ws?token=${encodeURIComponent(this.#token)}`;
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new WebSocket(url, "chat.v1");
      this.#ws = ws;
      const timer = setTimeout(() => {
        const err = new RequestError("connect_failed", "no hello in time");
        err.opened = opened;
        reject(err);
        this.#down = true;
        ws.close();
      }, timeoutMs);
      ws.onopen = () => { opened = true; };
      ws.onmessage = (m) => {
        let frame;
        try { frame = JSON.parse(m.data); } catch { return; }
        if (!this.hello) {
          if (frame.type !== "hello") return;
          this.hello = frame;
          clearTimeout(timer);
          resolve(this);
          return;
        }
        this.#frame(frame);
      };
      ws.onclose = (e) => {
        clearTimeout(timer);
        if (this.#down && !this.hello) return;   // timed out above
        if (!this.hello) {
          const err = new RequestError("connect_failed", `WebSocket closed (${e.code})`);
          err.opened = opened;
          err.closeCode = e.code;
          reject(err);
          return;
        }
        this.#gone({ code: e.code, reason: e.reason });
      };
    });
  }

  #frame(frame) {
    const waiter = frame.id !== undefined ? this.#pending.get(frame.id) : undefined;
    if (waiter && (frame.type === "ack" || frame.type === "error" || frame.type === "pong")) {
      this.#pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.type === "error")
        waiter.reject(new RequestError(frame.code, frame.message, { retryAfterMs: frame.retry_after_ms }));
      else
        waiter.resolve(frame);
      return;
    }
    this.#handlers.onEvent(frame);
  }

  #gone(why) {
    if (this.#down) return;
    this.#down = true;
    for (const w of this.#pending.values()) {
      clearTimeout(w.timer);
      w.reject(new RequestError("disconnected", "connection lost"));
    }
    this.#pending.clear();
    this.#handlers.onDown(why);
  }

  supports() { return true; }

  request(type, fields = {}) {
    if (this.#down || this.#ws.readyState !== WebSocket.OPEN)
      return Promise.reject(new RequestError("disconnected", "not connected"));
    const id = `r${this.#next++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RequestError("timeout", `${type}: no answer in ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.#pending.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...fields, type, id }));
    });
  }

  // Rooms with a known position resume from it in one session:resume (at
  // most 100 a request); rooms without join afresh (the latest events).
  async subscribe(rooms) {
    const out = {};
    const known = Object.entries(rooms).filter(([, s]) => s !== null && s !== undefined);
    const fresh = Object.keys(rooms).filter((r) => rooms[r] === null || rooms[r] === undefined);
    for (let i = 0; i < known.length; i += 100) {
      const ack = await this.request("session:resume", { rooms: Object.fromEntries(known.slice(i, i + 100)) });
      for (const [room, a] of Object.entries(ack.rooms || {})) {
        if (!a.error) this.#handlers.onJoined(room, a, false);
        out[room] = a;
      }
    }
    await Promise.all(fresh.map(async (room) => {
      try {
        out[room] = await this.request("room:join", { room });
        this.#handlers.onJoined(room, out[room], true);
      } catch (e) {
        out[room] = { error: { code: e.code, message: e.message } };
      }
    }));
    return out;
  }

  unsubscribe(room) {
    return this.request("room:leave", { room }).catch(() => {});
  }

  // For tests and the "drop connection" debug helper: close as a network
  // failure would (the client reconnects and resumes).
  drop() { this.#ws.close(4000, "dropped by the client"); }

  close() {
    this.#down = true;
    try { this.#ws.close(1000, "bye"); } catch { /* already closed */ }
  }
}

// ---------------------------------------------------------- SSE and REST

// Commands as REST routes (docs/protocol.md section 9): [method, path,
// body, headers]. A command not here is not carried over HTTP.
const enc = encodeURIComponent;
function query(o) {
  const p = Object.entries(o).filter(([, v]) => v !== undefined && v !== null);
  return p.length ? "?" + p.map(([k, v]) => `${k}=${enc(v)}`).join("&") : "";
}
function only(o, keys) {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}
const room = (f) => `/api/rooms/${enc(f.room)}`;
const message = (f) => `${room(f)}/messages/${enc(f.msg_id)}`;
const REST = {
  "room:list": () => ["GET", "/api/rooms"],
  "room:create": (f) => ["POST", "/api/rooms", f],
  "room:info": (f) => ["GET", room(f)],
  "room:members": (f) => ["GET", `${room(f)}/members${query(only(f, ["after", "limit"]))}`],
  "message:send": (f) => ["POST", `${room(f)}/messages`,
    only(f, ["body", "kind", "reply_to", "mentions", "attachments"]),
    { "Idempotency-Key": f.client_msg_id }],
  "message:history": (f) => ["GET", `${room(f)}/messages${query(only(f, ["before", "after", "limit"]))}`],
  "message:edit": (f) => ["PATCH", message(f), { body: f.body }],
  "message:delete": (f) => ["DELETE", message(f)],
  "message:react": (f) => ["POST", `${message(f)}/reactions`, { emoji: f.emoji, add: f.add }],
  "message:search": (f) => ["GET", `/api/search${query(only(f, ["q", "room", "before", "limit"]))}`],
};

// The event types an EventSource listens for (SSE names each event).
const EVENT_TYPES = [
  "hello", "room:joined", "message:new", "message:edited", "message:deleted", "message:reaction",
  "mention:new", "room:updated", "room:removed", "room:gap", "member:joined", "member:left",
  "member:updated", "typing:update", "receipt:update", "presence:update", "error",
];

export class HttpTransport {
  // Checks the token and the routes with GET /api/rooms: 401 is a bad token,
  // anything else but 200 means the server has no REST routes.
  static async connect(token, handlers) {
    const t = new HttpTransport(token, handlers);
    const list = await t.request("room:list");
    const claims = tokenClaims(token) || {};
    t.hello = { type: "hello", user: claims.sub, tenant: claims.tenant, role: claims.role || "member",
                limits: {}, transport: "sse" };
    t.firstList = list;
    return t;
  }

  kind = "sse";
  hello = null;
  firstList = null;
  #token;
  #handlers;
  #rooms = new Set();     // the stream's rooms
  #fresh = new Set();     // rooms asked without a position (their latest events)
  #waiting = new Map();   // room -> resolve, until its room:joined or error
  #es = null;
  #old = null;
  #down = false;

  constructor(token, handlers) {
    this.#token = token;
    this.#handlers = handlers;
  }

  supports(type) { return type in REST || type === "presence:get"; }

  async request(type, fields = {}) {
    if (type === "presence:get") return this.#presence(fields.users || []);
    const route = REST[type];
    if (!route) throw new RequestError("unsupported", `${type} is not carried over HTTP`);
    const [method, path, body, extra] = route(fields);
    return this.#fetch(method, path, body, extra);
  }

  async #fetch(method, path, body, extra = {}) {
    if (this.#down) throw new RequestError("disconnected", "not connected");
    const headers = { Authorization: `Bearer ${this.#token}`, ...extra };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(path, { method, headers, signal: ctl.signal, cache: "no-store",
                                 body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new RequestError(e.name === "AbortError" ? "timeout" : "unavailable", String(e.message || e));
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try { data = await resp.json(); } catch { /* an empty or non-JSON body */ }
    if (resp.ok) return data || {};
    const retry = Number(resp.headers.get("Retry-After"));
    const code = (data && data.code) || { 400: "bad_request", 401: "unauthorized", 403: "forbidden",
      404: "not_found", 409: "conflict", 413: "too_large", 429: "rate_limited",
      503: "unavailable" }[resp.status] || "internal";
    throw new RequestError(code, (data && data.error) || `HTTP ${resp.status}`,
                           { status: resp.status, retryAfterMs: retry > 0 ? retry * 1000 : 0 });
  }

  async #presence(users) {
    const one = async (u) => {
      const r = await this.#fetch("GET", `/api/users/${enc(u)}/presence`);
      return Array.isArray(r.presence) ? r.presence[0] : r;
    };
    return { presence: await Promise.all(users.map(one)) };
  }

  // A stream's event: room:joined and a room's error answer a subscribe;
  // the rest goes to the app.
  #deliver(m) {
    let frame;
    try { frame = JSON.parse(m.data); } catch { return; }
    const r = frame.room;
    if (frame.type === "room:joined") {
      const fresh = this.#fresh.delete(r);
      this.#handlers.onJoined(r, { ...frame, events: [] }, fresh);
      this.#settle(r, frame);
    } else if (frame.type === "error" && r && !frame.id) {
      this.#rooms.delete(r);
      this.#settle(r, { error: { code: frame.code, message: frame.message } });
    } else {
      this.#handlers.onEvent(frame);
    }
  }

  #settle(room, answer) {
    const resolve = this.#waiting.get(room);
    this.#waiting.delete(room);
    if (resolve) resolve(answer);
  }

  // A new room set is a new EventSource, resumed with the position of each
  // room the client has (last_event_id); the old stream stays open until
  // the new one is, so nothing falls between them (duplicates are dropped
  // by seq). Resolves true once open, false if refused.
  #stream() {
    const cursor = Object.entries(this.#handlers.cursor())
      .filter(([r, seq]) => this.#rooms.has(r) && !this.#fresh.has(r) && Number.isInteger(seq) && seq >= 0)
      .map(([r, seq]) => `${r}=${seq}`).join(",");
    const url = `/api/events?rooms=${enc([...this.#rooms].join(","))}&token=${enc(this.#token)}` +
      (cursor ? `&last_event_id=${enc(cursor)}` : "");
    if (this.#old) this.#old.close();
    this.#old = this.#es;
    const es = new EventSource(url);
    this.#es = es;
    for (const type of EVENT_TYPES) es.addEventListener(type, (m) => this.#deliver(m));
    es.onmessage = (m) => this.#deliver(m);
    return new Promise((resolve) => {
      let opened = false;
      es.onopen = () => {
        if (this.#es === es && this.#old) {
          this.#old.close();
          this.#old = null;
        }
        if (opened) this.#handlers.onState("live");   // reconnected by itself
        opened = true;
        resolve(true);
      };
      es.onerror = () => {
        if (this.#es !== es) return;   // replaced by a newer stream
        if (es.readyState === EventSource.CLOSED) {
          resolve(false);
          this.#gone({ code: "sse_closed" });
        } else {
          // EventSource reconnects by itself with Last-Event-ID.
          this.#handlers.onState("retrying");
        }
      };
    });
  }

  #gone(why) {
    if (this.#down) return;
    this.#down = true;
    this.close();
    for (const r of [...this.#waiting.keys()]) this.#settle(r, { error: { code: "disconnected", message: "stream ended" } });
    this.#handlers.onDown(why);
  }

  // rooms: {room: since | null}. The stream is opened again with them; each
  // room answers with room:joined (handlers.onJoined) or an error.
  async subscribe(rooms) {
    const out = {};
    const asked = Object.keys(rooms);
    if (!asked.length) return out;
    for (const [r, since] of Object.entries(rooms)) {
      this.#rooms.add(r);
      if (since === null || since === undefined) this.#fresh.add(r); else this.#fresh.delete(r);
    }
    const answers = asked.map((r) => new Promise((resolve) => {
      this.#settle(r, { error: { code: "superseded", message: "asked again" } });
      const waiter = (answer) => {
        clearTimeout(timer);
        resolve(answer);
      };
      const timer = setTimeout(() => {
        if (this.#waiting.get(r) === waiter)
          this.#settle(r, { error: { code: "timeout", message: "no room:joined in time" } });
      }, REQUEST_TIMEOUT_MS);
      this.#waiting.set(r, waiter);
    }));
    await this.#stream();
    (await Promise.all(answers)).forEach((a, i) => { out[asked[i]] = a; });
    return out;
  }

  unsubscribe(r) {
    if (this.#rooms.delete(r) && this.#rooms.size) this.#stream();
  }

  drop() { this.#gone({ code: "dropped" }); }

  close() {
    this.#down = true;
    for (const es of [this.#es, this.#old]) if (es) es.close();
  }
}
