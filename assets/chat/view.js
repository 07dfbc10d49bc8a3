// DOM for the chat client: the room list, a room's messages, members,
// typing. Text from the server only ever goes in as text (textContent,
// text nodes), never as HTML.
//
// For tests and scripts the elements carry data-* attributes: a room item
// data-room, data-unread, data-mentions; a message data-key, data-msg-id,
// data-seq, data-user, data-pending, data-deleted, data-mentioned; a
// reaction chip data-emoji and data-count.

export const EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
const KIND_MARK = { group: "#", direct: "@", support: "?", broadcast: "!" };

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "title" || k === "type" || k === "role")
      el.setAttribute(k, v === true ? "" : String(v));
    else el[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const pad = (n) => String(n).padStart(2, "0");
export function clock(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  const today = new Date();
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.toDateString() === today.toDateString() ? hm
    : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}

// A direct room's name without oneself ("alice, bob" seen by alice: "bob").
export function roomTitle(room, me) {
  if (room.kind !== "direct") return room.name;
  const others = room.name.split(/[,&]/).map((s) => s.trim()).filter((s) => s && s !== me);
  return others.length ? others.join(", ") : room.name;
}

// ------------------------------------------------------------- room list

export function renderRooms(store, ul) {
  const rooms = [...store.rooms.values()].sort((a, b) =>
    roomTitle(a, store.me).localeCompare(roomTitle(b, store.me)) || a.id.localeCompare(b.id));
  const keep = new Set();
  const have = new Map([...ul.children].map((li) => [li.dataset.room, li]));
  let i = 0;
  for (const r of rooms) {
    keep.add(r.id);
    const title = roomTitle(r, store.me);
    const other = r.kind === "direct" ? title : null;
    const sig = [title, r.kind, r.unread, r.mentions, r.id === store.active,
                 other ? store.status(other) : ""].join("|");
    let li = have.get(r.id);
    if (!li || li.dataset.sig !== sig) {
      const fresh = h("li", { "data-room": r.id, "data-unread": r.unread, "data-mentions": r.mentions,
                              class: "room-item" + (r.id === store.active ? " active" : "") },
        h("button", { type: "button", "data-act": "open", "data-room": r.id, title: r.id },
          other ? h("span", { class: "dot", "data-status": store.status(other) })
            : h("span", { class: "mark", text: KIND_MARK[r.kind] || "#" }),
          h("span", { class: "name", text: title }),
          r.mentions ? h("span", { class: "badge mention", title: "mentions", text: `@${r.mentions}` }) : null,
          r.unread ? h("span", { class: "badge", title: "unread",
                                 text: r.unread >= 1000 ? "999+" : r.unread }) : null));
      fresh.dataset.sig = sig;
      if (li) li.replaceWith(fresh); else ul.append(fresh);
      li = fresh;
    }
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    i++;
  }
  for (const li of [...ul.children]) if (!keep.has(li.dataset.room)) li.remove();
}

// ------------------------------------------------------------- messages

// Body text with @mentions of the message's mentioned users marked.
function bodyNodes(m, me) {
  const out = [];
  const names = new Set(m.mentions || []);
  const re = /@([A-Za-z0-9._:-]{1,64})/g;
  let last = 0, hit;
  while ((hit = re.exec(m.body)) !== null) {
    if (!names.has(hit[1])) continue;
    out.push(m.body.slice(last, hit.index));
    out.push(h("span", { class: "mention" + (hit[1] === me ? " me" : ""), text: hit[0] }));
    last = hit.index + hit[0].length;
  }
  out.push(m.body.slice(last));
  return out;
}

function attachments(m) {
  if (!m.attachments || !m.attachments.length) return null;
  return h("ul", { class: "attachments" }, m.attachments.map((a) => {
    const ok = /^https?:\/\//i.test(a.url || "");
    return h("li", {}, ok ? h("a", { href: a.url, target: "_blank", rel: "noopener noreferrer",
                                     text: `${a.kind === "image" ? "🖼" : "📎"} ${a.name}` })
      : h("span", { text: a.name }), h("span", { class: "muted", text: ` ${sizeText(a.size)}` }));
  }));
}

function sizeText(n) {
  if (!(n >= 0)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function quote(room, m) {
  if (!m.reply_to) return null;
  const p = room.findMessage(m.reply_to);
  const text = !p ? "a message" : p.deleted ? `${p.user}: (deleted)` : `${p.user}: ${p.body.slice(0, 120)}`;
  return h("button", { type: "button", class: "quote", "data-act": "goto", "data-target": m.reply_to,
                       title: "Show the message this replies to" }, "↪ ", text);
}

// ctx: {me, canModerate, seen: [users], cont: same author as the previous,
//       inThread, confirming: the key of the message whose Delete asks for
//       confirmation}
export function messageEl(store, room, m, ctx) {
  if (m.system)
    return h("li", { class: "note", "data-key": m.key, "data-seq": m.seq }, m.text);
  const mine = m.user === ctx.me;
  const mentioned = (m.mentions || []).includes(ctx.me) && !mine;
  const li = h("li", {
    class: "msg" + (ctx.cont ? " cont" : "") + (mentioned ? " mentioned" : ""),
    "data-key": m.key, "data-msg-id": m.id || "", "data-seq": Number.isFinite(m.seq) ? m.seq : "",
    "data-user": m.user, "data-mine": mine, "data-pending": m.pending || false,
    "data-deleted": m.deleted, "data-mentioned": mentioned, "data-failed": !!m.failed,
  });
  li.append(h("div", { class: "meta" },
    h("span", { class: "dot", "data-status": store.status(m.user) }),
    h("span", { class: "author", text: m.user }),
    h("time", { text: clock(m.ts), title: m.ts ? new Date(m.ts).toLocaleString() : "" }),
    m.edits && !m.deleted ? h("span", { class: "edited", text: "(edited)" }) : null,
    m.pending && !m.failed ? h("span", { class: "state", text: "sending…" }) : null));
  li.append(quote(room, m) || "");
  if (m.deleted) {
    li.append(h("div", { class: "body tombstone", text: "message deleted" }));
  } else {
    li.append(h("div", { class: "body" }, bodyNodes(m, ctx.me)));
    li.append(attachments(m) || "");
  }
  const reactions = Object.entries(m.reactions || {}).filter(([, n]) => n > 0);
  if (reactions.length && !m.deleted)
    li.append(h("div", { class: "reactions" }, reactions.map(([e, n]) =>
      h("button", { type: "button", class: "chip", "data-act": "toggle-react", "data-emoji": e,
                    "data-count": n, "aria-pressed": m.mine.has(e) ? "true" : "false",
                    title: m.mine.has(e) ? "Remove your reaction" : "React" }, `${e} ${n}`))));
  const foot = [];
  if (m.replies > 0 && !ctx.inThread)
    foot.push(h("button", { type: "button", class: "link replies", "data-act": "thread",
                            text: m.replies === 1 ? "1 reply" : `${m.replies} replies` }));
  if (ctx.seen && ctx.seen.length)
    foot.push(h("span", { class: "seen", "data-users": ctx.seen.join(","),
                          text: `Seen by ${ctx.seen.join(", ")}` }));
  if (foot.length) li.append(h("div", { class: "foot" }, foot));
  if (m.failed) {
    li.append(h("div", { class: "failed" }, `Not sent: ${m.failed} `,
      h("button", { type: "button", class: "link", "data-act": "retry", text: "retry" }), " ",
      h("button", { type: "button", class: "link", "data-act": "discard", text: "discard" })));
  }
  if (!m.pending && !m.deleted) li.append(actions(m, mine, ctx));
  return li;
}

function actions(m, mine, ctx) {
  const b = (act, text, extra = {}) => h("button", { type: "button", "data-act": act, text, ...extra });
  return h("div", { class: "actions" },
    b("reply", "Reply"),
    !ctx.inThread ? b("thread", "Thread") : null,
    b("palette", "React", { "aria-label": "Add a reaction" }),
    mine ? b("edit", "Edit") : null,
    !(mine || ctx.canModerate) ? null : ctx.confirming === m.key
      ? b("delete-confirm", "Confirm delete", { class: "danger" }) : b("delete", "Delete"),
    h("span", { class: "palette", hidden: true },
      EMOJI.map((e) => b("react", e, { "data-emoji": e, "aria-label": `React ${e}` }))));
}

// Make ol show items (keyed by .key), reusing the elements whose message
// and surroundings did not change.
export function syncList(store, room, ol, items, ctx) {
  const seen = ctx.inThread ? new Map() : store.seenBy(room);
  const have = new Map([...ol.children].map((li) => [li.dataset.key, li]));
  const keep = new Set();
  let prev = null;
  items.forEach((m, i) => {
    const cont = !!(prev && !prev.system && !m.system && prev.user === m.user && !m.reply_to &&
                    m.ts && prev.ts && m.ts - prev.ts < 5 * 60 * 1000);
    const who = seen.get(m.key) || [];
    const sig = `${m.v}|${cont}|${who.join(",")}|${store.status(m.user)}|${ctx.canModerate}|` +
                (m.reply_to ? (room.findMessage(m.reply_to) || {}).v : "");
    keep.add(m.key);
    let el = have.get(m.key);
    if (!el || el.dataset.sig !== sig) {
      const fresh = messageEl(store, room, m, { ...ctx, cont, seen: who });
      fresh.dataset.sig = sig;
      if (el) el.replaceWith(fresh);
      el = fresh;
    }
    if (ol.children[i] !== el) ol.insertBefore(el, ol.children[i] || null);
    prev = m;
  });
  for (const li of [...ol.children]) if (!keep.has(li.dataset.key)) li.remove();
}

// ------------------------------------------------------------- members, typing

export function renderMembers(store, room, ul) {
  const list = [...room.members.values()].sort((a, b) => {
    const on = (u) => (store.status(u.user) === "offline" ? 1 : 0);
    return on(a) - on(b) || a.user.localeCompare(b.user);
  });
  ul.replaceChildren(...list.map((m) => h("li", { "data-user": m.user, "data-status": store.status(m.user) },
    h("span", { class: "dot", "data-status": store.status(m.user) }),
    h("span", { class: "name", text: m.user + (m.user === store.me ? " (you)" : "") }),
    m.role && m.role !== "member" ? h("span", { class: "muted", text: ` ${m.role}` }) : null,
    h("span", { class: "muted status", text: ` ${statusText(store, m.user)}` }))));
  if (!room.membersComplete)
    ul.append(h("li", { class: "muted", text: "(more members not listed)" }));
}

function statusText(store, user) {
  const p = store.presence.get(user);
  if (!p || p.status !== "offline" || !p.last_seen) return store.status(user);
  return `offline, seen ${clock(p.last_seen)}`;
}

export function typingText(users) {
  if (!users.length) return "";
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  return "Several people are typing…";
}
