// The chat client's screen: the room list, the open room (history with
// paging, the composer, message actions), the members and thread panel,
// typing and read receipts. It reads the store and talks to chatd through
// the functions app.js gives it (request, subscribe, ...), whatever the
// transport.

import { RETRYABLE } from "./transport.js";
import { renderMembers, renderRooms, roomTitle, syncList, typingText } from "./view.js";

const $ = (id) => document.getElementById(id);
const TYPING_EVERY_MS = 1000;     // typing:start at most once a second
const READ_DELAY_MS = 300;
const PAGE = 50;

function randomId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return "c" + [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

export class Ui {
  constructor(store, api) {
    this.store = store;
    this.api = api;
    this.compose = null;          // {reply: msg} | {edit: msg}
    this.typing = null;           // {room, at}: typing:start sent
    this.confirming = null;       // the message whose Delete was clicked once
    this.noTyping = false;        // the server has no typing:* (yet)
    this.noReceipts = false;      // the server has no receipt:* (yet): room:read instead
    this.readSent = new Map();    // room -> the last seq marked read
    this.readTimer = null;
    this.loadingOlder = false;
    this.anchor = null;           // keep the view still while older messages arrive
    this.panel = null;            // "members" | "thread"
    this.threadRoot = null;
    store.subscribe((what) => this.render(what));
    this.#wire();
    setInterval(() => this.#renderTyping(), 1000);
  }

  reset() {
    this.compose = null;
    this.typing = null;
    this.readSent.clear();
    this.#closePanel();
    this.render(new Set(["rooms"]));
    this.#showRoom();
  }

  // ------------------------------------------------------------ rendering

  render(what) {
    const s = this.store;
    if (what.has("rooms") || what.has("presence")) renderRooms(s, $("rooms"));
    const r = s.active && s.rooms.get(s.active);
    if (!r) return;
    if (what.has(`room:${r.id}`) || what.has("presence") || what.has("rooms")) this.#renderRoom(r);
  }

  #renderRoom(r) {
    const log = $("log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    $("room-name").textContent = roomTitle(r, this.store.me);
    $("room-desc").textContent = r.description || (r.kind !== "group" ? r.kind : "");
    $("room").dataset.room = r.id;
    $("room").dataset.hasMore = r.hasMore;
    const items = r.timeline();
    syncList(this.store, r, $("messages"), items, this.#ctx(r, false));
    $("older").hidden = !(r.historyLoaded && r.hasMore);
    if (this.anchor) {
      log.scrollTop = log.scrollHeight - this.anchor;
      this.anchor = null;
    } else if (atBottom || this.stick) {
      log.scrollTop = log.scrollHeight;
      this.stick = false;
    } else if (items.length && this.#unseen(r)) {
      $("jump").hidden = false;
    }
    this.#renderTyping();
    if (this.panel === "members") renderMembers(this.store, r, $("members"));
    if (this.panel === "thread") this.#renderThread(r);
    this.#markReadSoon();
  }

  #ctx(r, inThread) {
    return { me: this.store.me, canModerate: r.role === "admin" || r.role === "moderator", inThread,
             confirming: this.confirming };
  }

  #unseen(r) {
    return r.newestSeq() > (this.readSent.get(r.id) || 0);
  }

  #renderTyping() {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    const el = $("typing");
    const users = r ? this.store.typingNow(r) : [];
    const text = typingText(users);
    if (el.textContent !== text) el.textContent = text;
    el.dataset.users = users.join(",");
  }

  // ------------------------------------------------------------ rooms

  async open(id) {
    const s = this.store;
    const r = s.rooms.get(id);
    if (!r) return;
    if (s.active !== id) {
      this.#stopTyping();
      this.#setCompose(null);
      if (this.panel === "thread") this.#closePanel();
    }
    s.active = id;
    this.stick = true;
    this.#showRoom(r);
    s.changed("rooms");
    s.changed(`room:${id}`);
    await this.roomReady();
  }

  // The open room needs its subscription, its latest page and its members.
  async roomReady() {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    if (!r) return;
    try {
      if (!r.subscribed) await this.api.subscribe({ [r.id]: r.lastSeq || null });
      if (!r.historyLoaded) await this.#loadLatest(r);
      this.#loadMembers(r);
    } catch (e) {
      if (!RETRYABLE.has(e.code)) this.api.toast(`${r.name}: ${e.message}`);
    }
  }

  reloadActive() {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    if (r) this.#loadLatest(r).catch(() => {});
  }

  async #loadLatest(r) {
    const page = await this.api.request("message:history", { room: r.id, limit: PAGE });
    this.store.addPage(r, page.events || [], page.current, page.has_more);
    r.historyLoaded = true;
    this.stick = true;
    this.store.changed(`room:${r.id}`);
  }

  async #older() {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    if (!r || this.loadingOlder || !r.hasMore || r.oldestSeq === null) return;
    this.loadingOlder = true;
    try {
      const page = await this.api.request("message:history", { room: r.id, before: r.oldestSeq, limit: PAGE });
      const log = $("log");
      this.anchor = log.scrollHeight - log.scrollTop;
      this.store.addPage(r, page.events || [], page.current, page.has_more);
      if (!(page.events || []).length) r.hasMore = false;
    } catch (e) {
      this.api.toast(`Older messages: ${e.message}`);
    } finally {
      this.loadingOlder = false;
    }
  }

  async #loadMembers(r) {
    try {
      const ack = await this.api.request("room:members", { room: r.id, limit: 200 });
      r.members = new Map((ack.members || []).map((m) => [m.user, m]));
      r.membersComplete = !ack.has_more;
      for (const m of ack.members || [])
        if (m.status) this.store.setPresence(m);
      this.store.changed(`room:${r.id}`);
    } catch { /* members are a nicety */ }
  }

  roomRemoved(id) {
    if (this.store.active === null || this.store.active === id) this.#showRoom();
  }

  #showRoom(r) {
    $("no-room").hidden = !!r;
    $("room-view").hidden = !r;
    document.getElementById("app").dataset.view = r ? "room" : "list";
    $("back").hidden = !r;
    if (!r) $("room").dataset.room = "";
  }

  async #create(e) {
    e.preventDefault();
    const members = $("create-members").value.split(/[\s,]+/).filter(Boolean);
    const fields = { name: $("create-name").value.trim(), kind: $("create-kind").value };
    if (members.length) fields.members = members;
    if ($("create-private").checked) fields.private = true;
    if ($("create-id").value.trim()) fields.room = $("create-id").value.trim();
    if (fields.kind === "direct" && !fields.name) fields.name = [this.store.me, ...members].join(", ");
    $("create-error").textContent = "";
    if (!fields.name) {
      $("create-error").textContent = "A room needs a name.";
      return;
    }
    try {
      const ack = await this.api.request("room:create", fields);
      const r = this.store.setRoomInfo(ack.room);
      r.listed = true;
      r.role = "admin";
      $("create-form").reset();
      $("create-form").hidden = true;
      await this.open(r.id);
    } catch (err) {
      $("create-error").textContent = err.message;
    }
  }

  async #join(e) {
    e.preventDefault();
    const id = $("join-id").value.trim();
    $("join-error").textContent = "";
    try {
      const res = await this.api.subscribe({ [id]: null });
      if (res[id] && res[id].error) throw new Error(res[id].error.message);
      $("join-form").reset();
      await this.open(id);
      const info = await this.api.request("room:info", { room: id }).catch(() => null);
      if (info && info.room) this.store.setRoomInfo(info.room);
    } catch (err) {
      this.store.rooms.get(id) && !this.store.rooms.get(id).listed && this.store.removeRoom(id);
      $("join-error").textContent = err.message;
    }
  }

  async #leave() {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    if (!r) return;
    try {
      await this.api.request("member:remove", { room: r.id, user: this.store.me });
    } catch (e) {
      return this.api.toast(`Leave ${r.name}: ${e.message}`);
    }
    this.api.unsubscribe(r.id);
    this.store.removeRoom(r.id);
    this.#showRoom();
  }

  // ------------------------------------------------------------ composer

  #setCompose(c) {
    this.compose = c;
    $("compose-ctx").hidden = !c;
    $("composer").dataset.mode = c ? (c.edit ? "edit" : "reply") : "";
    if (!c) return;
    const m = c.edit || c.reply;
    $("compose-what").textContent = c.edit ? "Editing your message" : `Replying to ${m.user}: ${m.body.slice(0, 80)}`;
    if (c.edit) $("input").value = m.body;
    $("input").focus();
  }

  // @name of a room member becomes a mention (any name when the member
  // list is not complete: the server checks).
  #mentions(r, body) {
    const names = new Set();
    for (const hit of body.matchAll(/@([A-Za-z0-9._:-]{1,64})/g)) {
      const u = hit[1];
      if (u !== this.store.me && (!r.membersComplete || r.members.has(u))) names.add(u);
    }
    return [...names].slice(0, 50);
  }

  async #submit(e) {
    e.preventDefault();
    const r = this.store.active && this.store.rooms.get(this.store.active);
    const input = $("input");
    const body = input.value.replace(/\s+$/, "");
    if (!r || !body.trim()) return;
    $("compose-error").textContent = "";
    this.#stopTyping();
    const c = this.compose;
    if (c && c.edit) {
      try {
        await this.api.request("message:edit", { room: r.id, msg_id: c.edit.id, body });
        input.value = "";
        this.#setCompose(null);
      } catch (err) {
        $("compose-error").textContent = `Not edited: ${err.message}`;
      }
      return;
    }
    const fields = { room: r.id, client_msg_id: randomId(), body };
    if (c && c.reply) fields.reply_to = c.reply.id;
    const mentions = this.#mentions(r, body);
    if (mentions.length) fields.mentions = mentions;
    const pending = this.store.addPending(r, fields);
    pending.fields = fields;
    input.value = "";
    this.#setCompose(null);
    this.stick = true;
    this.#deliver(r, pending);
  }

  // One try of a pending send; a lost connection leaves it pending (sent
  // again, with the same client_msg_id, once connected: resendPending).
  async #deliver(r, pending) {
    try {
      const ack = await this.api.request("message:send", pending.fields);
      this.store.acked(r, pending, ack);
    } catch (e) {
      if (RETRYABLE.has(e.code)) return;
      if (e.code === "rate_limited") {
        setTimeout(() => this.#deliver(r, pending), Math.max(e.retryAfterMs, 500));
        return;
      }
      this.store.failed(r, pending, e.message);
    }
  }

  resendPending() {
    for (const r of this.store.rooms.values())
      for (const p of r.pendings.values())
        if (!p.failed && p.fields) this.#deliver(r, p);
  }

  #typed() {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    if (!r || this.noTyping || !this.api.supports("typing:start")) return;
    if (!$("input").value.trim() || (this.compose && this.compose.edit)) return this.#stopTyping();
    const now = Date.now();
    if (this.typing && this.typing.room === r.id && now - this.typing.at < TYPING_EVERY_MS) return;
    this.typing = { room: r.id, at: now };
    this.api.request("typing:start", { room: r.id }).catch((e) => this.#typingFailed(e));
  }

  #stopTyping() {
    if (!this.typing) return;
    const room = this.typing.room;
    this.typing = null;
    this.api.request("typing:stop", { room }).catch((e) => this.#typingFailed(e));
  }

  #typingFailed(e) {
    if (e.code === "bad_request") this.noTyping = true;   // an older chatd: no typing:*
  }

  // ------------------------------------------------------------ read receipts

  // The newest message is on screen (the open room, scrolled to the end,
  // the page visible): tell the server, at most once per new seq.
  #markReadSoon() {
    if (this.readTimer) return;   // a throttle, not a debounce: busy rooms are read too
    this.readTimer = setTimeout(() => {
      this.readTimer = null;
      this.#markRead();
    }, READ_DELAY_MS);
  }

  async #markRead() {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    const log = $("log");
    if (!r || document.visibilityState !== "visible" || !r.historyLoaded) return;
    if (log.scrollHeight - log.scrollTop - log.clientHeight > 40) return;
    $("jump").hidden = true;
    const seq = r.lastSeq;
    if (!seq || seq <= (this.readSent.get(r.id) || 0)) {
      this.store.markRead(r, seq);
      return;
    }
    this.readSent.set(r.id, seq);
    this.store.markRead(r, seq);
    try {
      if (!this.noReceipts && this.api.supports("receipt:read")) {
        try {
          await this.api.request("receipt:read", { room: r.id, seq });
          return;
        } catch (e) {
          if (e.code !== "bad_request" || !/type/i.test(e.message)) throw e;
          this.noReceipts = true;   // an older chatd: room:read keeps unread counts right
        }
      }
      if (this.api.supports("room:read")) await this.api.request("room:read", { room: r.id, seq });
    } catch {
      this.readSent.delete(r.id);   // tried again at the next change
    }
  }

  // ------------------------------------------------------------ message actions

  #message(li) {
    const r = this.store.active && this.store.rooms.get(this.store.active);
    if (!r || !li) return [r, null];
    const key = li.dataset.key;
    const m = r.messages.get(key) || r.threadCache.get(key) ||
      [...r.pendings.values()].find((p) => p.key === key) || null;
    return [r, m];
  }

  async #act(e) {
    const btn = e.target.closest("button[data-act]");
    if (!btn) return;
    const li = btn.closest("li[data-key]");
    const [r, m] = this.#message(li);
    if (!r || !m) return;
    const act = btn.dataset.act;
    try {
      switch (act) {
      case "reply": return this.#setCompose({ reply: m });
      case "edit": return this.#setCompose({ edit: m });
      case "thread": return this.#openThread(r, m);
      case "goto": return this.#goto(btn.dataset.target);
      case "palette": {
        const p = li.querySelector(".palette");
        p.hidden = !p.hidden;
        return undefined;
      }
      case "react":
        li.querySelector(".palette").hidden = true;
        return await this.#react(r, m, btn.dataset.emoji, true, false);
      case "toggle-react":
        return await this.#react(r, m, btn.dataset.emoji, !m.mine.has(btn.dataset.emoji), true);
      case "delete":
        // A second click confirms, within 5 s; the state outlives a redraw of the row.
        this.confirming = m.key;
        this.store.touch(r, m);
        setTimeout(() => {
          if (this.confirming !== m.key) return;
          this.confirming = null;
          this.store.touch(r, m);
        }, 5000);
        return undefined;
      case "delete-confirm":
        this.confirming = null;
        return await this.api.request("message:delete", { room: r.id, msg_id: m.id });
      case "retry":
        m.failed = null;
        this.store.touch(r, m);
        return this.#deliver(r, m);
      case "discard":
        r.pendings.delete(m.client_msg_id);
        return this.store.changed(`room:${r.id}`);
      default: return undefined;
      }
    } catch (err) {
      this.api.toast(`${act}: ${err.message}`);
    }
    return undefined;
  }

  // A chip toggles the user's reaction. Whether the user has reacted is
  // known from the events this page saw; when the server says nothing
  // changed (a reaction from before, or another device), the toggle meant
  // the other way.
  async #react(r, m, emoji, add, toggle) {
    const fields = { room: r.id, msg_id: m.id, emoji };
    const ack = await this.api.request("message:react", { ...fields, add });
    if (toggle && ack.changed === false) {
      add = !add;
      await this.api.request("message:react", { ...fields, add });
    }
    // The count comes with the message:reaction event (none when nothing changed).
    if (add) m.mine.add(emoji); else m.mine.delete(emoji);
    this.store.touch(r, m);
  }

  #goto(id) {
    const el = $("messages").querySelector(`li[data-key="${CSS.escape(id)}"]`);
    if (!el) return this.api.toast("That message is further back: load older messages.");
    el.scrollIntoView({ block: "center" });
    el.classList.add("flash");
    setTimeout(() => el.classList.remove("flash"), 1500);
    return undefined;
  }

  // ------------------------------------------------------------ panel: members, thread

  #togglePanel(what) {
    if (this.panel === what) return this.#closePanel();
    this.panel = what;
    $("panel").hidden = false;
    $("members").hidden = what !== "members";
    $("thread").hidden = what !== "thread";
    $("panel-title").textContent = what === "members" ? "Members" : "Thread";
    const r = this.store.active && this.store.rooms.get(this.store.active);
    if (r) this.store.changed(`room:${r.id}`);
    return undefined;
  }

  #closePanel() {
    this.panel = null;
    this.threadRoot = null;
    $("panel").hidden = true;
  }

  async #openThread(r, m) {
    const rootId = m.reply_to || m.id;
    const ack = await this.api.request("message:thread", { room: r.id, msg_id: rootId, limit: 100 });
    const keep = (x) => {
      if (!r.messages.has(x.id)) r.threadCache.set(x.id, this.store.wire(x));
    };
    if (ack.root) keep(ack.root);
    for (const x of ack.messages || []) keep(x);
    this.threadRoot = ack.root ? ack.root.id : rootId;
    if (this.panel !== "thread") this.#togglePanel("thread");
    this.store.changed(`room:${r.id}`);
  }

  #renderThread(r) {
    const root = r.findMessage(this.threadRoot);
    if (!root) return;
    const replies = new Map();
    for (const x of [...r.threadCache.values(), ...r.messages.values()])
      if (x.reply_to === root.id) replies.set(x.id, r.messages.get(x.id) || x);
    const items = [root, ...[...replies.values()].sort((a, b) => a.seq - b.seq)];
    syncList(this.store, r, $("thread-messages"), items, this.#ctx(r, true));
  }

  // ------------------------------------------------------------ wiring

  #wire() {
    $("rooms").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-act=open]");
      if (b) this.open(b.dataset.room);
    });
    $("messages").addEventListener("click", (e) => this.#act(e));
    $("thread-messages").addEventListener("click", (e) => this.#act(e));
    $("composer").addEventListener("submit", (e) => this.#submit(e));
    $("input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("composer").requestSubmit();
      } else if (e.key === "Escape" && this.compose) {
        if (this.compose.edit) $("input").value = "";
        this.#setCompose(null);
      }
    });
    $("input").addEventListener("input", () => this.#typed());
    $("input").addEventListener("blur", () => this.#stopTyping());
    $("compose-cancel").addEventListener("click", () => {
      if (this.compose && this.compose.edit) $("input").value = "";
      this.#setCompose(null);
    });
    $("older").addEventListener("click", () => this.#older());
    $("log").addEventListener("scroll", () => {
      if ($("log").scrollTop < 60) this.#older();
      this.#markReadSoon();
    });
    $("jump").addEventListener("click", () => {
      $("log").scrollTop = $("log").scrollHeight;
      $("jump").hidden = true;
    });
    document.addEventListener("visibilitychange", () => this.#markReadSoon());
    $("new-room").addEventListener("click", () => {
      $("create-form").hidden = !$("create-form").hidden;
      if (!$("create-form").hidden) $("create-name").focus();
    });
    $("create-cancel").addEventListener("click", () => { $("create-form").hidden = true; });
    $("create-form").addEventListener("submit", (e) => this.#create(e));
    $("join-form").addEventListener("submit", (e) => this.#join(e));
    $("leave-room").addEventListener("click", () => this.#leave());
    $("toggle-members").addEventListener("click", () => this.#togglePanel("members"));
    $("panel-close").addEventListener("click", () => this.#closePanel());
    $("back").addEventListener("click", () => {
      this.store.active = null;
      this.#closePanel();
      this.#showRoom();
      this.store.changed("rooms");
    });
    $("me-status").addEventListener("change", async () => {
      const status = $("me-status").value;
      try {
        await this.api.request("presence:set", { status });
        $("me-dot").dataset.status = status === "invisible" ? "offline" : status;
      } catch (e) {
        this.api.toast(`Status: ${e.message}`);
      }
    });
  }
}
