// The client's state: rooms, their messages, members, typing, receipts and
// presence, as the fold of the server's events (docs/protocol.md section 7:
// "a client's view of a room is the fold of the room's events in seq
// order"). No DOM here; the view reads it and subscribes to changes.
//
// Two ways in:
// - live events (ingest): in seq order per room; a duplicate (seq at or
//   below the room's position) is dropped, an event after a hole is held
//   until the hole is filled (onGap asks the app to fetch it);
// - history pages (addPage): older events and `current` (each message as it
//   is now), merged without moving the room's position.

const TYPING_MAX_MS = 12000;   // the server ends typing after 10 s; a safety net

export const MESSAGE_CHANGES = new Set(["message:edited", "message:deleted", "message:reaction"]);
const ROOM_NOTES = new Set(["member:joined", "member:left", "member:updated", "room:updated"]);

let versions = 0;
const bump = (m) => { m.v = ++versions; return m; };

function fromWire(msg, seq) {
  return bump({
    key: msg.id, id: msg.id, seq: msg.seq ?? seq, user: msg.user, kind: msg.kind || "text",
    body: msg.body ?? "", ts: msg.ts, client_msg_id: msg.client_msg_id || null,
    reply_to: msg.reply_to || null, mentions: msg.mentions || [], attachments: msg.attachments || [],
    deleted: !!msg.deleted, edits: msg.edits || 0, edited_at: msg.edited_at || null,
    reactions: { ...(msg.reactions || {}) }, mine: new Set(), replies: msg.replies || 0,
    stateSeq: msg.seq ?? seq, pending: false, failed: null,
  });
}

export class Room {
  constructor(id) {
    this.id = id;
    this.name = id;
    this.kind = "group";
    this.private = false;
    this.description = "";
    this.role = null;
    this.lastSeq = 0;          // the last event applied in order (the resume cursor)
    this.serverSeq = 0;        // room:list's last_seq
    this.readSeq = 0;
    this.unread = 0;
    this.mentions = 0;
    this.countedSeq = 0;       // unread and mentions count events after this
    this.subscribed = false;
    this.listed = false;       // in the last room:list
    this.messages = new Map(); // id -> message
    this.pendings = new Map(); // client_msg_id -> message not yet acked
    this.notes = new Map();    // seq -> {key, seq, system: true, text, ts}
    this.threadCache = new Map();
    this.oldestSeq = null;     // the oldest event of the loaded history
    this.hasMore = true;
    this.historyLoaded = false;
    this.members = new Map();  // user -> {user, role, muted_until}
    this.membersComplete = false;
    this.typing = new Map();   // user -> until (ms)
    this.receipts = new Map(); // user -> {read_seq, delivered_seq}
    this.held = new Map();     // seq -> event after a hole
    this.mentionSeqs = new Set();
  }

  // Messages and notes by seq, then the pending sends in the order written.
  timeline() {
    const all = [...this.messages.values(), ...this.notes.values()];
    all.sort((a, b) => a.seq - b.seq);
    return all.concat([...this.pendings.values()]);
  }

  findMessage(id) {
    return this.messages.get(id) || this.threadCache.get(id) || null;
  }

  newestSeq() {
    let s = 0;
    for (const m of this.messages.values()) if (m.seq > s) s = m.seq;
    return Math.max(s, this.lastSeq);
  }
}

export class Store {
  me = null;          // the user id
  tenant = null;
  rooms = new Map();
  presence = new Map(); // user -> {status, last_seen}
  active = null;        // the open room's id
  early = new Map();    // room -> Set of seqs: mentions in rooms not known yet
  #listeners = new Set();
  #changed = new Set();
  #scheduled = false;
  onGap = () => {};     // (room) the app fetches what is missing
  onMention = () => {}; // (room, msg) a mention of me arrived

  subscribe(fn) { this.#listeners.add(fn); }

  // Changes are announced once per animation frame: what changed ("rooms",
  // "room:<id>", "presence", "me").
  changed(what) {
    this.#changed.add(what);
    if (this.#scheduled) return;
    this.#scheduled = true;
    const run = () => {
      this.#scheduled = false;
      const set = this.#changed;
      this.#changed = new Set();
      for (const fn of this.#listeners) fn(set);
    };
    (typeof requestAnimationFrame === "function" && document.visibilityState === "visible")
      ? requestAnimationFrame(run) : setTimeout(run, 0);
  }

  room(id) {
    let r = this.rooms.get(id);
    if (!r) {
      r = new Room(id);
      this.rooms.set(id, r);
    }
    return r;
  }

  // room:list's answer: names, roles, counts. A room the list no longer has
  // (left, removed) goes unless this connection is subscribed to it.
  setRoomList(list) {
    const seen = new Set();
    for (const e of list) {
      const r = this.room(e.id);
      seen.add(e.id);
      Object.assign(r, { name: e.name || e.id, kind: e.kind || "group", private: !!e.private,
                         role: e.role ?? r.role, listed: true });
      r.serverSeq = e.last_seq || 0;
      r.readSeq = Math.max(r.readSeq, e.read_seq || 0);
      // The list counts what PostgreSQL has (a sync batch behind): mentions
      // that came as events count too.
      for (const seq of this.early.get(e.id) || []) r.mentionSeqs.add(seq);
      this.early.delete(e.id);
      const known = [...r.mentionSeqs].filter((s) => s > r.readSeq).length;
      r.mentions = Math.max(e.mentions || 0, known);
      r.unread = Math.max(e.unread || 0, known);
      r.countedSeq = Math.max(r.countedSeq, e.last_seq || 0);
    }
    for (const [id, r] of this.rooms)
      if (!seen.has(id) && !r.subscribed) this.rooms.delete(id);
      else if (!seen.has(id)) r.listed = false;
    this.changed("rooms");
  }

  setRoomInfo(info) {
    const r = this.room(info.id);
    Object.assign(r, { name: info.name || info.id, kind: info.kind || r.kind,
                       private: !!info.private, description: info.description || "" });
    this.changed("rooms");
    this.changed(`room:${r.id}`);
    return r;
  }

  removeRoom(id) {
    this.rooms.delete(id);
    if (this.active === id) this.active = null;
    this.changed("rooms");
  }

  // ------------------------------------------------------------- joining

  // A room:join / session:resume answer. fresh: it was a join without a
  // position, so its events are the latest page (history), else the events
  // missed since the position asked.
  applyJoin(ack, fresh) {
    const r = this.room(ack.room);
    r.subscribed = true;
    if (ack.role) r.role = ack.role;
    for (const p of ack.presence || []) this.setPresence(p);
    for (const u of ack.typing || [])
      if ((u.user ?? u) !== this.me) r.typing.set(u.user ?? u, Date.now() + TYPING_MAX_MS);
    for (const rc of ack.receipts || []) this.#receipt(r, rc);
    const events = ack.events || [];
    if (fresh) {
      this.addPage(r, events, ack.current, ack.has_more);
      r.lastSeq = Math.max(r.lastSeq, ack.last_seq || 0, ...events.map((e) => e.seq || 0));
      r.countedSeq = Math.max(r.countedSeq, r.lastSeq);
    } else if (ack.recovered === false) {
      // Too much missed: start the room over from its latest page.
      this.resetHistory(r);
      r.lastSeq = ack.last_seq || r.lastSeq;
      r.countedSeq = Math.max(r.countedSeq, r.lastSeq);
    } else {
      for (const ev of events) this.ingest({ ...ev, room: r.id });
      if (ack.last_seq && !events.length && !r.lastSeq) r.lastSeq = ack.last_seq;
    }
    this.changed(`room:${r.id}`);
    this.changed("rooms");
    return r;
  }

  resetHistory(r) {
    r.messages.clear();
    r.notes.clear();
    r.held.clear();
    r.oldestSeq = null;
    r.hasMore = true;
    r.historyLoaded = false;
    this.changed(`room:${r.id}`);
  }

  // ------------------------------------------------------------- events

  event(ev) {
    switch (ev.type) {
    case "typing:update": return this.#typing(ev);
    case "receipt:update": return this.#receiptUpdate(ev);
    case "presence:update": return this.setPresence(ev);
    case "mention:new": return this.#mention(ev);
    default:
      if (ev.room && typeof ev.seq === "number") return this.ingest(ev);
    }
    return undefined;
  }

  // A room event in seq order (a live frame, or one of a resume's events).
  ingest(ev) {
    const r = this.rooms.get(ev.room);
    if (!r) return;
    if (ev.seq <= r.lastSeq) return;                    // seen already
    if (r.lastSeq && ev.seq > r.lastSeq + 1) {          // a hole before it
      r.held.set(ev.seq, ev);
      this.onGap(r);
      return;
    }
    this.#apply(r, ev, true);
    r.lastSeq = ev.seq;
    while (r.held.has(r.lastSeq + 1)) {
      const next = r.held.get(r.lastSeq + 1);
      r.held.delete(r.lastSeq + 1);
      this.#apply(r, next, true);
      r.lastSeq = next.seq;
    }
    for (const s of r.held.keys()) if (s <= r.lastSeq) r.held.delete(s);
    this.changed(`room:${r.id}`);
  }

  #apply(r, ev, live) {
    if (ev.type === "message:new") return this.#newMessage(r, ev, live);
    if (MESSAGE_CHANGES.has(ev.type)) return this.#change(r, ev);
    if (ROOM_NOTES.has(ev.type)) return this.#note(r, ev);
    return undefined;
  }

  #newMessage(r, ev, live) {
    const msg = ev.msg || {};
    const mine = msg.user === this.me;
    if (mine && msg.client_msg_id) r.pendings.delete(msg.client_msg_id);
    if (!r.messages.has(msg.id)) r.messages.set(msg.id, fromWire(msg, ev.seq));
    if (msg.user !== this.me) r.typing.delete(msg.user);
    if (msg.reply_to) {
      const root = r.findMessage(msg.reply_to);
      if (root && live) bump(root).replies++;
    }
    if (live && !mine && ev.seq > r.countedSeq) {
      r.countedSeq = ev.seq;
      if (!msg.deleted) r.unread++;
      if ((msg.mentions || []).includes(this.me) && !r.mentionSeqs.has(ev.seq)) {
        r.mentionSeqs.add(ev.seq);
        r.mentions++;
        this.onMention(r, msg);
      }
      this.changed("rooms");
    }
  }

  // message:edited / deleted / reaction: absolute values, applied only when
  // newer than what the message shows.
  #change(r, ev) {
    const m = r.findMessage(ev.msg_id);
    if (!m || ev.seq <= m.stateSeq) return;
    m.stateSeq = ev.seq;
    if (ev.type === "message:edited") {
      m.body = ev.body ?? m.body;
      m.edits = ev.edits ?? m.edits + 1;
      m.edited_at = ev.edited_at || Date.now();
    } else if (ev.type === "message:deleted") {
      Object.assign(m, { deleted: true, body: "", attachments: [], mentions: [], reactions: {} });
    } else {
      if (ev.count > 0) m.reactions[ev.emoji] = ev.count;
      else delete m.reactions[ev.emoji];
      if (ev.user === this.me) ev.add ? m.mine.add(ev.emoji) : m.mine.delete(ev.emoji);
    }
    bump(m);
  }

  #note(r, ev) {
    if (ev.type === "room:updated") {
      if (ev.name) r.name = ev.name;
      if (ev.description !== undefined) r.description = ev.description || "";
      this.changed("rooms");
    } else if (ev.user) {
      if (ev.type === "member:left") r.members.delete(ev.user);
      else r.members.set(ev.user, { ...(r.members.get(ev.user) || { user: ev.user }),
        ...(ev.role ? { role: ev.role } : {}),
        ...("muted_until" in ev ? { muted_until: ev.muted_until } : {}) });
      if (ev.user === this.me && ev.role) r.role = ev.role;
    }
    r.notes.set(ev.seq, { key: `n${ev.seq}`, seq: ev.seq, system: true, v: ev.seq,
                          text: noteText(ev), ts: ev.ts || null });
  }

  // A page of history (oldest first) with `current`, the page's messages as
  // they are now. It does not move the room's position.
  addPage(r, events, current, hasMore) {
    const max = events.reduce((a, e) => Math.max(a, e.seq || 0), 0);
    for (const ev of events) {
      if (ev.type === "message:new") {
        const now = current && current[ev.msg.id];
        const m = now ? fromWire(now, ev.seq) : fromWire(ev.msg, ev.seq);
        if (now) m.stateSeq = max;
        const had = r.messages.get(m.id);
        if (!had) r.messages.set(m.id, m);
        else if (had.stateSeq < m.stateSeq) r.messages.set(m.id, Object.assign(m, { mine: had.mine }));
        else if (now && now.replies > had.replies) bump(had).replies = now.replies;
        if (ev.msg.client_msg_id) r.pendings.delete(ev.msg.client_msg_id);
      } else if (MESSAGE_CHANGES.has(ev.type)) {
        if (!(current && current[ev.msg_id])) this.#change(r, ev);
        else if (ev.type === "message:reaction" && ev.user === this.me) {
          const m = r.findMessage(ev.msg_id);
          if (m) ev.add ? m.mine.add(ev.emoji) : m.mine.delete(ev.emoji);
        }
      } else if (ROOM_NOTES.has(ev.type) && !r.notes.has(ev.seq)) {
        r.notes.set(ev.seq, { key: `n${ev.seq}`, seq: ev.seq, system: true, v: ev.seq,
                              text: noteText(ev), ts: ev.ts || null });
      }
    }
    const first = events.length ? events[0].seq : null;
    if (first !== null && (r.oldestSeq === null || first < r.oldestSeq)) r.oldestSeq = first;
    if (hasMore !== undefined) r.hasMore = !!hasMore && (r.oldestSeq === null || r.oldestSeq > 1);
    else r.hasMore = r.oldestSeq !== null && r.oldestSeq > 1;
    this.changed(`room:${r.id}`);
  }

  // A message outside the log's events (a thread's), as the store keeps it.
  wire(msg) { return fromWire(msg, msg.seq); }

  // A message changed in place (a reaction of one's own, a retry).
  touch(r, m) {
    bump(m);
    this.changed(`room:${r.id}`);
  }

  // ------------------------------------------------------------- sends

  addPending(r, fields) {
    const m = bump({ key: `p:${fields.client_msg_id}`, id: null, seq: Infinity, user: this.me,
      kind: "text", body: fields.body, ts: Date.now(), client_msg_id: fields.client_msg_id,
      reply_to: fields.reply_to || null, mentions: fields.mentions || [], attachments: [],
      deleted: false, edits: 0, reactions: {}, mine: new Set(), replies: 0, stateSeq: 0,
      pending: true, failed: null });
    r.pendings.set(fields.client_msg_id, m);
    this.changed(`room:${r.id}`);
    return m;
  }

  // The send's ack: the message is written (message:new may come before or
  // after this).
  acked(r, pending, ack) {
    r.pendings.delete(pending.client_msg_id);
    if (!r.messages.has(ack.msg_id)) {
      r.messages.set(ack.msg_id, fromWire({ ...pending, id: ack.msg_id, seq: ack.seq, ts: ack.ts || pending.ts,
                                            reactions: {} }, ack.seq));
    }
    this.changed(`room:${r.id}`);
  }

  failed(r, pending, why) {
    pending.failed = why;
    bump(pending);
    this.changed(`room:${r.id}`);
  }

  // ------------------------------------------------------------- ephemeral

  #typing(ev) {
    const r = this.rooms.get(ev.room);
    if (!r || ev.user === this.me) return;
    if (ev.typing) r.typing.set(ev.user, Date.now() + TYPING_MAX_MS);
    else r.typing.delete(ev.user);
    this.changed(`room:${r.id}`);
  }

  typingNow(r) {
    const now = Date.now();
    for (const [u, until] of r.typing) if (until < now) r.typing.delete(u);
    return [...r.typing.keys()].sort();
  }

  #receipt(r, rc) {
    const had = r.receipts.get(rc.user) || { read_seq: 0, delivered_seq: 0 };
    r.receipts.set(rc.user, { read_seq: Math.max(had.read_seq, rc.read_seq || 0),
                              delivered_seq: Math.max(had.delivered_seq, rc.delivered_seq || 0) });
    if (rc.user === this.me && (rc.read_seq || 0) > r.readSeq) {
      r.readSeq = rc.read_seq;   // read on another device
      this.changed("rooms");
    }
  }

  #receiptUpdate(ev) {
    const r = this.rooms.get(ev.room);
    if (!r) return;
    this.#receipt(r, ev);
    this.changed(`room:${r.id}`);
  }

  // For each message, the other users whose newest read message (of
  // someone else's) it is.
  seenBy(r) {
    const msgs = [...r.messages.values()].filter((m) => !m.pending).sort((a, b) => a.seq - b.seq);
    const out = new Map();
    for (const [user, rc] of r.receipts) {
      if (user === this.me || !rc.read_seq) continue;
      let lo = 0, hi = msgs.length - 1, at = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (msgs[mid].seq <= rc.read_seq) { at = mid; lo = mid + 1; } else hi = mid - 1;
      }
      // Shown under the newest message read that someone else wrote.
      while (at >= 0 && (msgs[at].user === user || msgs[at].deleted)) at--;
      if (at < 0) continue;
      const key = msgs[at].key;
      out.set(key, [...(out.get(key) || []), user].sort());
    }
    return out;
  }

  setPresence(p) {
    if (!p || !p.user) return;
    this.presence.set(p.user, { status: p.status || "offline", last_seen: p.last_seen ?? null });
    this.changed("presence");
  }

  status(user) {
    return (this.presence.get(user) || {}).status || "offline";
  }

  #mention(ev) {
    const r = this.rooms.get(ev.room);
    if (!r) {
      if (!this.early.has(ev.room)) this.early.set(ev.room, new Set());
      this.early.get(ev.room).add(ev.seq);
      this.onMention(null, ev.msg || {}, ev.room);   // a room we do not know yet
      return;
    }
    if (r.subscribed || r.mentionSeqs.has(ev.seq)) return;   // message:new counts it
    r.mentionSeqs.add(ev.seq);
    r.mentions++;
    this.onMention(r, ev.msg || {});
    this.changed("rooms");
  }

  // The open room was seen up to seq: no more unread.
  markRead(r, seq) {
    r.readSeq = Math.max(r.readSeq, seq);
    r.countedSeq = Math.max(r.countedSeq, seq);
    if (r.unread || r.mentions) {
      r.unread = 0;
      r.mentions = 0;
      this.changed("rooms");
    }
  }
}

function noteText(ev) {
  switch (ev.type) {
  case "member:joined": return `${ev.user} joined` + (ev.by && ev.by !== ev.user ? ` (added by ${ev.by})` : "");
  case "member:left":
    return ev.reason === "removed" ? `${ev.user} was removed by ${ev.by}`
      : ev.reason === "banned" ? `${ev.user} was banned by ${ev.by}` : `${ev.user} left`;
  case "member:updated":
    if (ev.role) return `${ev.user} is now ${ev.role}`;
    if ("muted_until" in ev) return ev.muted_until ? `${ev.user} was muted` : `${ev.user} was unmuted`;
    if (ev.banned === false) return `${ev.user} was unbanned`;
    return `${ev.user} was updated`;
  case "room:updated": return `${ev.by || "someone"} renamed the room to "${ev.name}"`;
  default: return ev.type;
  }
}
