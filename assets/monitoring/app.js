// chatd monitoring dashboard: live over /api/monitoring/stream (Server-Sent
// Events, one document a second), charts of the last 15 minutes with uPlot
// (/monitoring/vendor/, copied from npm by `make`). No build step, no network
// beyond this server.
//
// The monitoring JSON is documented in docs/monitoring.md and still grows:
// every field is read defensively (a missing one shows "—"), and rates the
// document does not give are derived from its counters.
//
// For tests and scripts, #dash carries the latest figures as data-*
// attributes: data-state (connecting | live | reconnecting | login),
// data-updates, data-msg-rate, data-del-rate, data-connections,
// data-workers, data-worker-pids, data-points.
"use strict";

(() => {
  const STREAM = "/api/monitoring/stream";
  const JSON_URL = "/api/monitoring/websocket";
  const LOGIN = "/monitoring/login";
  const POINTS = 900;          // 15 minutes at one document a second
  const STALE_MS = 5000;       // no document for this long: reconnect

  const $ = (id) => document.getElementById(id);
  const dash = $("dash");
  const DASH = "—";

  // ------------------------------------------------------------ field access

  const get = (o, path) => path.split(".").reduce((a, k) => (a == null ? undefined : a[k]), o);
  function pick(o, ...paths) {
    for (const p of paths) {
      const v = get(o, p);
      if (v !== undefined && v !== null) return v;
    }
    return undefined;
  }
  // A number, or an object's total / value; anything else is undefined.
  function num(v) {
    if (typeof v === "number" && Number.isFinite(v)) return v;
    if (typeof v === "string" && v.trim() !== "" && Number.isFinite(+v)) return +v;
    if (v && typeof v === "object") {
      for (const k of ["total", "value", "count", "active"])
        if (typeof v[k] === "number") return v[k];
    }
    return undefined;
  }
  const pickNum = (o, ...paths) => {
    for (const p of paths) {
      const v = num(get(o, p));
      if (v !== undefined) return v;
    }
    return undefined;
  };
  const bool = (v) => (typeof v === "boolean" ? v : undefined);

  // --------------------------------------------------------------- formatting

  function fmtNum(v, digits = 1) {
    if (v === undefined || v === null || !Number.isFinite(v)) return DASH;
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  }
  function fmtMs(v) {
    if (v === undefined || !Number.isFinite(v)) return DASH;
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v >= 10) return v.toFixed(0) + " ms";
    if (v === 0) return "0 ms";
    return (v >= 1 ? v.toFixed(1) : String(+v.toFixed(2))) + " ms";
  }
  function fmtS(v) {
    if (v === undefined || !Number.isFinite(v)) return DASH;
    return v < 10 ? v.toFixed(1) + " s" : fmtDuration(v);
  }
  function fmtDuration(s) {
    if (s === undefined || !Number.isFinite(s)) return DASH;
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600),
          m = Math.floor((s % 3600) / 60);
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  }
  function fmtKb(kb) {
    if (kb === undefined || !Number.isFinite(kb)) return DASH;
    if (kb >= 1024 * 1024) return (kb / 1048576).toFixed(2) + " GiB";
    if (kb >= 1024) return (kb / 1024).toFixed(1) + " MiB";
    return kb.toFixed(0) + " KiB";
  }
  function fmtTime(v) {
    let ms;
    if (typeof v === "number") ms = v > 1e12 ? v : v > 1e9 ? v * 1000 : undefined;
    else if (typeof v === "string") ms = Date.parse(v);
    if (ms === undefined || !Number.isFinite(ms)) return v === undefined ? DASH : String(v);
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }
  function setText(id, text) {
    const el = $(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  // -------------------------------------------------------------------- rates

  // Per-second rate of a counter between two documents; undefined on the first
  // one and when the counter went down (chatd restarted).
  const prevCounters = new Map();
  function rateOf(key, value, tMs) {
    const prev = prevCounters.get(key);
    if (value === undefined) { prevCounters.delete(key); return undefined; }
    prevCounters.set(key, { value, tMs });
    if (!prev || value < prev.value || tMs <= prev.tMs) return undefined;
    return (value - prev.value) / ((tMs - prev.tMs) / 1000);
  }

  function sumValues(o) {
    if (!o || typeof o !== "object") return undefined;
    let s = 0, any = false;
    for (const v of Object.values(o)) if (typeof v === "number") { s += v; any = true; }
    return any ? s : undefined;
  }

  // The figures the dashboard shows, from one document.
  function figures(doc, tMs) {
    const f = {};
    f.connections = pickNum(doc, "connections.active", "connections");
    f.connectionsTotal = pickNum(doc, "connections.total", "connections.opened_total");
    f.users = pickNum(doc, "users.distinct", "users.active", "users", "connections.users",
                      "distinct_users");
    f.perUser = pickNum(doc, "users.connections_per_user", "users.avg_connections",
                        "connections.per_user", "connections.avg_per_user");
    f.rooms = pickNum(doc, "rooms.with_subscribers", "rooms");

    const msgTotal = pickNum(doc, "messages.in_total", "messages.in", "messages.received",
                             "messages.sent", "messages.total");
    const delTotal = pickNum(doc, "deliveries.out_total", "deliveries.total", "deliveries.out",
                             "deliveries");
    f.msgTotal = msgTotal;
    f.delTotal = delTotal;
    const msgRate = rateOf("msg", msgTotal, tMs);
    const delRate = rateOf("del", delTotal, tMs);
    f.msgRate = pickNum(doc, "messages.in_per_s", "messages.per_s", "messages.rate",
                        "rates.messages_in_per_s", "rates.messages_per_s", "rates.messages") ?? msgRate;
    f.delRate = pickNum(doc, "messages.deliveries_per_s", "deliveries.out_per_s", "deliveries.per_s", "deliveries.rate",
                        "rates.deliveries_out_per_s", "rates.deliveries_per_s", "rates.deliveries") ?? delRate;

    // Errors: a number, an object by code (with or without a total), or the
    // older errors_sent counter.
    let errTotal = pickNum(doc, "errors.total", "errors_total");
    if (errTotal === undefined && doc && doc.errors && typeof doc.errors === "object")
      errTotal = sumValues(doc.errors.by_code) ?? sumValues(doc.errors);
    if (errTotal === undefined) errTotal = pickNum(doc, "errors", "errors_sent");
    f.errTotal = errTotal;
    const errRate = rateOf("err", errTotal, tMs);
    f.errRate = pickNum(doc, "errors.per_s", "errors.rate", "rates.errors_per_s", "rates.errors") ?? errRate;
    f.rateLimited = pickNum(doc, "security.rate_limited", "errors.by_code.rate_limited", "rate_limited");
    f.refused = pickNum(doc, "security.handshakes_refused.total", "security.handshakes_refused");
    f.openedRate = pickNum(doc, "connections.opened_per_s");
    f.closedRate = pickNum(doc, "connections.closed_per_s");
    f.load1 = pickNum(doc, "machine.load1", "load.load1", "load1");
    f.cpus = pickNum(doc, "machine.cpus");

    const lat = (kind) => {
      const o = pick(doc, `latency.${kind}`, `latency_ms.${kind}`, `latency.${kind}_ms`,
                     `${kind}_latency`, `latency_${kind}`);
      const out = {};
      for (const q of ["p50", "p90", "p99", "max"]) {
        let v = pickNum(o, `${q}_ms`, q);
        if (v === undefined) {
          const us = pickNum(o, `${q}_us`);
          if (us !== undefined) v = us / 1000;
        }
        out[q] = v;
      }
      return out;
    };
    f.delivery = lat("delivery");
    f.ack = lat("ack");

    f.syncLag = pickNum(doc, "sync.lag_s", "sync.lag_seconds");
    f.syncPending = pickNum(doc, "sync.pending", "sync.lag");
    return f;
  }

  // ------------------------------------------------------------------- charts

  const xs = [];
  const charts = [];   // { plot, keys: [figure getter...], ys: [[]...] }

  const COLORS = ["#1a73e8", "#e8710a", "#d01884", "#137333", "#9334e6"];

  const chartHeight = () => (window.matchMedia("(max-width: 600px)").matches ? 140 : 170);
  function clock(tS, seconds) {
    if (tS == null) return "";
    const d = new Date(tS * 1000), p = (n) => String(n).padStart(2, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}` + (seconds ? `:${p(d.getSeconds())}` : "");
  }

  function yRange(u, min, max) {
    return [0, max > 0 ? max * 1.15 : 1];
  }

  function chart(id, series, fmt) {
    const el = $(id);
    const ys = series.map(() => []);
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: chartHeight(),
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: (u, min, max) => [Math.min(min, max - 60), max] },
        y: { range: yRange },
      },
      axes: [
        { stroke: "#687082", grid: { stroke: "#eef0f2" }, ticks: { stroke: "#e3e5e8" },
          values: (u, vals) => vals.map((v) => clock(v, u.scales.x.max - u.scales.x.min < 600)) },
        { stroke: "#687082", size: 52, grid: { stroke: "#eef0f2" }, ticks: { stroke: "#e3e5e8" },
          values: (u, vals) => vals.map((v) => fmt(v)) },
      ],
      series: [
        { label: "time", value: (u, v) => (v == null ? DASH : clock(v, true)) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || COLORS[i % COLORS.length],
          width: 1.5,
          fill: series.length === 1 ? (s.color || COLORS[0]) + "22" : undefined,
          spanGaps: false,
          value: (u, v) => (v == null ? DASH : fmt(v)),
        })),
      ],
    };
    const plot = new uPlot(opts, [xs, ...ys], el);
    const c = { plot, el, series, ys };
    charts.push(c);
    return c;
  }

  function initCharts() {
    if (typeof uPlot !== "function") {
      // vendor/ missing (not built): the figures and tables still work.
      for (const id of ["c-conns", "c-msg", "c-del", "c-lat", "c-lag", "c-err"])
        $(id).textContent = "charts unavailable: /monitoring/vendor/uPlot.iife.min.js missing (run make)";
      return;
    }
    const n = (v) => fmtNum(v);
    chart("c-conns", [{ label: "open", get: (f) => f.connections, color: "#1a73e8" }], n);
    chart("c-msg", [{ label: "messages/s", get: (f) => f.msgRate, color: "#137333" }], n);
    chart("c-del", [{ label: "deliveries/s", get: (f) => f.delRate, color: "#9334e6" }], n);
    chart("c-lat", [
      { label: "p50", get: (f) => f.delivery.p50, color: "#1a73e8" },
      { label: "p90", get: (f) => f.delivery.p90, color: "#e8710a" },
      { label: "p99", get: (f) => f.delivery.p99, color: "#d01884" },
      { label: "max", get: (f) => f.delivery.max, color: "#687082" },
    ], (v) => (v == null ? DASH : fmtNum(v, 2)));
    chart("c-lag", [{ label: "lag (s)", get: (f) => f.syncLag, color: "#e8710a" }], (v) => fmtNum(v, 1));
    chart("c-err", [{ label: "errors/s", get: (f) => f.errRate, color: "#b3261e" }], n);

    const ro = new ResizeObserver(() => {
      for (const c of charts) {
        const w = Math.max(c.el.clientWidth, 200), h = chartHeight();
        if (w !== c.plot.width || h !== c.plot.height) c.plot.setSize({ width: w, height: h });
      }
    });
    for (const c of charts) ro.observe(c.el);
  }

  // Append one point per series (null: a gap, while disconnected).
  function pushPoint(tS, f) {
    if (xs.length && tS <= xs[xs.length - 1]) return;
    xs.push(tS);
    for (const c of charts)
      c.series.forEach((s, i) => {
        const v = f ? s.get(f) : undefined;
        c.ys[i].push(v === undefined ? null : v);
      });
    if (xs.length > POINTS) {
      const drop = xs.length - POINTS;
      xs.splice(0, drop);
      for (const c of charts) for (const y of c.ys) y.splice(0, drop);
    }
    if (document.hidden) return;   // drawn when the page is visible again
    for (const c of charts) c.plot.setData([xs, ...c.ys]);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) for (const c of charts) c.plot.setData([xs, ...c.ys]);
  });

  // ----------------------------------------------------------------- rendering

  function renderKpis(doc, f) {
    setText("k-conns", fmtNum(f.connections));
    setText("k-conns-sub", f.openedRate !== undefined || f.closedRate !== undefined
      ? `+${fmtNum(f.openedRate)} / −${fmtNum(f.closedRate)} per s`
      : f.connectionsTotal !== undefined ? `${fmtNum(f.connectionsTotal)} opened since start` : "");
    setText("k-users", fmtNum(f.users));
    setText("k-users-sub", f.perUser !== undefined ? `${fmtNum(f.perUser, 2)} conn. per user` :
                           f.rooms !== undefined ? `${fmtNum(f.rooms)} rooms with subscribers` : "");
    setText("k-msg", fmtNum(f.msgRate));
    setText("k-msg-sub", f.msgTotal !== undefined ? `${fmtNum(f.msgTotal)} since start` : "");
    setText("k-del", fmtNum(f.delRate));
    setText("k-del-sub", f.delTotal !== undefined ? `${fmtNum(f.delTotal)} since start` : "");
    setText("k-p99", fmtMs(f.delivery.p99));
    setText("k-p99-sub", `p50 ${fmtMs(f.delivery.p50)} · ack ${fmtMs(f.ack.p99)}`);
    setText("k-lag", fmtS(f.syncLag));
    setText("k-lag-sub", f.syncPending !== undefined ? `${fmtNum(f.syncPending)} pending` : "");
    setText("k-err", fmtNum(f.errRate));
    setText("k-err-sub", [f.errTotal !== undefined ? `${fmtNum(f.errTotal)} since start` : "",
                          f.rateLimited ? `${fmtNum(f.rateLimited)} rate-limited` : "",
                          f.refused ? `${fmtNum(f.refused)} refused handshakes` : ""]
                          .filter(Boolean).join(" · "));
    const workers = Array.isArray(doc.workers) ? doc.workers : [];
    const live = pickNum(doc, "workers_live");
    setText("k-workers", workers.length ? `${live ?? workers.length}/${workers.length}` : DASH);
    $("k-workers").className = live !== undefined && live < workers.length ? "bad" : "";
    $("k-lag").className = f.syncLag > 30 ? "bad" : f.syncLag > 5 ? "warn" : "";
    setText("k-uptime", [pickNum(doc, "uptime_s") !== undefined ? `up ${fmtDuration(doc.uptime_s)}` : "",
                         f.load1 !== undefined ? `load ${f.load1.toFixed(2)}${f.cpus ? "/" + f.cpus : ""}` : ""]
                         .filter(Boolean).join(" · "));
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  const yesNo = (v) => (v === true ? ["up", "ok"] : v === false ? ["down", "bad"] : [DASH, ""]);

  function renderWorkers(doc) {
    const workers = Array.isArray(doc.workers) ? doc.workers : [];
    const body = $("workers-body");
    const frag = document.createDocumentFragment();
    for (const w of workers) {
      const tr = document.createElement("tr");
      tr.dataset.pid = w.pid ?? "";
      if (w.alive === false) tr.className = "bad";
      cell(tr, String(w.index ?? DASH));
      cell(tr, String(w.pid ?? DASH));
      cell(tr, fmtDuration(pickNum(w, "uptime_s")));
      const restarts = pickNum(w, "restarts");
      const r5 = pickNum(w, "restarts_5min");
      cell(tr, fmtNum(restarts) + (r5 > 0 ? ` (${r5} in 5 min)` : ""), r5 > 0 ? "bad" : restarts > 0 ? "warn" : "");
      cell(tr, fmtNum(pickNum(w, "connections")));
      cell(tr, fmtNum(pickNum(w, "messages_per_s")));
      let cpu = pickNum(w, "cpu_pct", "cpu_percent", "cpu");
      if (cpu === undefined && pickNum(w, "cpu_pct_x100") !== undefined) cpu = w.cpu_pct_x100 / 100;
      cell(tr, cpu === undefined ? DASH : cpu.toFixed(1), cpu >= 90 ? "bad" : "");
      let rss = pickNum(w, "rss_kb", "rss_kib");
      if (rss === undefined && pickNum(w, "rss_bytes", "rss") !== undefined) rss = pickNum(w, "rss_bytes", "rss") / 1024;
      cell(tr, fmtKb(rss));
      const r = yesNo(bool(pick(w, "redis_connected", "redis.connected")));
      cell(tr, r[0], r[1]);
      const p = yesNo(bool(pick(w, "postgres_connected", "postgres.connected")));
      cell(tr, p[0], p[1]);
      frag.appendChild(tr);
    }
    if (!workers.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 10; td.className = "muted"; td.textContent = DASH;
      tr.appendChild(td); frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    dash.dataset.workers = String(workers.length);
    dash.dataset.workerPids = workers.map((w) => w.pid).filter((p) => p != null).join(",");
  }

  function renderDl(id, rows) {
    const dl = $(id);
    const frag = document.createDocumentFragment();
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      frag.append(dt, dd);
    }
    dl.replaceChildren(frag);
  }
  function dot(id, state) { $(id).className = "dot " + (state || ""); }

  function renderBackends(doc, f) {
    const r = doc.redis || {};
    const rc = bool(r.connected);
    dot("redis-dot", rc === true ? "ok" : rc === false ? "bad" : "");
    renderDl("redis-dl", [
      ["connected", yesNo(rc)[0]],
      ["last ping", fmtMs(pickNum(r, "last_ping_ms", "ping_ms"))],
      ["errors", fmtNum(pickNum(r, "errors"))],
      ["reconnects", fmtNum(pickNum(r, "reconnects"))],
      ["memory used", pickNum(r, "used_memory_bytes", "memory_used_bytes") !== undefined
        ? fmtKb(pickNum(r, "used_memory_bytes", "memory_used_bytes") / 1024)
        : fmtKb(pickNum(r, "memory_used_kb"))],
    ]);
    const p = doc.postgres || {};
    const pc = bool(p.connected);
    dot("pg-dot", pc === true ? "ok" : pc === false ? "bad" : "");
    renderDl("pg-dl", [
      ["connected", yesNo(pc)[0]],
      ["query time", fmtMs(pickNum(p, "query.p50_ms", "query_ms"))],
      ["errors", fmtNum(pickNum(p, "errors"))],
      ["join checks", fmtNum(pickNum(p, "join_checks"))],
    ]);
    const s = doc.sync || {};
    const lag = f.syncLag;
    dot("sync-dot", lag === undefined ? "" : lag > 30 ? "bad" : lag > 5 ? "warn" : "ok");
    renderDl("sync-dl", [
      ["lag", fmtS(lag)],
      ["pending", fmtNum(pickNum(s, "pending"))],
      ["synced", fmtNum(pickNum(s, "synced"))],
      ["failed", fmtNum(pickNum(s, "failed"))],
      ["last batch", fmtMs(pickNum(s, "batch_ms", "last_batch_ms"))],
    ]);
  }

  // The server's verdict (doc.health) when it gives one; otherwise one the
  // dashboard derives from the figures, labelled as such.
  function reasonText(r) {
    if (typeof r === "string") return r;
    if (r && typeof r === "object")
      return pick(r, "message", "text", "reason", "detail", "summary") ?? JSON.stringify(r);
    return String(r);
  }
  function renderHealth(doc, f) {
    const h = doc.health;
    let verdict, reasons = [], recs = [], src = "";
    if (h !== undefined && h !== null) {
      verdict = typeof h === "string" ? h : pick(h, "verdict", "status", "level", "state");
      const rs = typeof h === "object" ? pick(h, "reasons", "problems", "issues") : undefined;
      const rc = typeof h === "object" ? pick(h, "recommendations", "advice") : undefined;
      if (Array.isArray(rs)) reasons = rs.map(reasonText);
      if (Array.isArray(rc)) recs = rc.map(reasonText);
      if (Array.isArray(rs))
        for (const r of rs) if (r && typeof r === "object" && r.recommendation) recs.push(String(r.recommendation));
      src = "from chatd";
    } else {
      const workers = Array.isArray(doc.workers) ? doc.workers : [];
      let level = 0;
      const live = pickNum(doc, "workers_live");
      if (live !== undefined && workers.length && live < workers.length) {
        reasons.push(`${workers.length - live} of ${workers.length} workers down`); level = 2;
      }
      if (doc.redis && doc.redis.connected === false) { reasons.push("Redis disconnected"); level = 2; }
      if (doc.postgres && doc.postgres.connected === false) { reasons.push("PostgreSQL disconnected"); level = 2; }
      if (f.syncLag > 5) { reasons.push(`sync lag ${fmtS(f.syncLag)}`); level = Math.max(level, f.syncLag > 30 ? 2 : 1); }
      const restarts = workers.reduce((a, w) => a + (pickNum(w, "restarts") || 0), 0);
      if (restarts > 0) { reasons.push(`${restarts} worker restart${restarts > 1 ? "s" : ""} since start`); level = Math.max(level, 1); }
      verdict = ["ok", "degraded", "critical"][level];
      src = "derived by the dashboard (no health in the JSON)";
    }
    const v = verdict === undefined ? "unknown" : String(verdict).toLowerCase();
    $("health").dataset.verdict = v;
    setText("verdict", verdict === undefined ? DASH : String(verdict));
    setText("verdict-src", src);
    const ul = $("reasons");
    const frag = document.createDocumentFragment();
    // recommendations[i] is what to look at for reasons[i] (docs/monitoring.md).
    const paired = recs.length === reasons.length;
    reasons.forEach((r, i) => {
      const li = document.createElement("li");
      li.textContent = r;
      if (paired && recs[i]) {
        const rec = document.createElement("div");
        rec.className = "rec";
        rec.textContent = "→ " + recs[i];
        li.appendChild(rec);
      }
      frag.appendChild(li);
    });
    if (!paired)
      for (const r of recs) { const li = document.createElement("li"); li.className = "rec"; li.textContent = "→ " + r; frag.appendChild(li); }
    ul.replaceChildren(frag);
  }

  const TIME_KEYS = ["ts_ms", "time_ms", "t_ms", "at_ms", "ts", "time", "t", "at"];
  const tsOf = (e) => {
    const k = TIME_KEYS.find((key) => e && e[key] !== undefined);
    const v = k ? e[k] : undefined;
    return typeof v === "number" ? (v > 1e12 ? v : v * 1000) : typeof v === "string" ? Date.parse(v) : NaN;
  };

  // One line of details for an event (docs/monitoring.md, `events`); fields
  // the dashboard does not know are shown as key=value.
  function eventDetails(e, skip) {
    const parts = [];
    const who = e.user ? (e.tenant ? `${e.user} (${e.tenant})` : String(e.user)) : "";
    if (who) parts.push(who);
    if (e.ip) parts.push(`from ${e.ip}`);
    if (e.worker !== undefined && e.worker !== null) parts.push(`worker ${e.worker}`);
    if (e.code) parts.push(`code ${e.code}`);
    if (e.reason) parts.push(String(e.reason));
    const known = new Set(["user", "tenant", "ip", "worker", "code", "reason", ...skip]);
    for (const [k, v] of Object.entries(e)) {
      if (known.has(k) || v === "" || v === null || v === undefined) continue;
      parts.push(`${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
    }
    return parts.join(" · ");
  }

  function renderEvents(doc) {
    const evs = pick(doc, "events", "connection_events", "event_log", "connections.events");
    const body = $("events-body");
    const frag = document.createDocumentFragment();
    // Newest first, whatever order the document has.
    const list = Array.isArray(evs)
      ? evs.map((e, i) => [e, tsOf(e), i]).sort((a, b) =>
          (Number.isFinite(b[1]) && Number.isFinite(a[1]) ? b[1] - a[1] : 0) || a[2] - b[2])
          .slice(0, 100).map((x) => x[0])
      : [];
    for (const e of list) {
      const tr = document.createElement("tr");
      if (e && typeof e === "object") {
        const tKey = TIME_KEYS.find((k) => e[k] !== undefined);
        const typeKey = ["kind", "type", "event"].find((k) => e[k] !== undefined);
        cell(tr, fmtTime(tKey ? e[tKey] : undefined));
        const type = typeKey ? String(e[typeKey]) : DASH;
        cell(tr, type, /refus|error|kill|slow/i.test(type) ? "bad" : type === "disconnect" ? "muted" : "");
        cell(tr, eventDetails(e, [tKey, typeKey]));
      } else {
        cell(tr, DASH); cell(tr, String(e)); cell(tr, "");
      }
      frag.appendChild(tr);
    }
    if (!list.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 3; td.className = "muted";
      td.textContent = Array.isArray(evs) ? "no events yet" : "— (no event log in this chatd's monitoring JSON)";
      tr.appendChild(td); frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    renderTop("top-ips", pick(doc, "clients.top_ips", "top_ips", "connections.top_ips"), "ip");
    renderTop("top-uas", pick(doc, "clients.top_user_agents", "top_user_agents", "connections.top_user_agents"), "user_agent");
  }

  function renderTop(id, arr, key) {
    const body = $(id);
    if (!body) return;
    const frag = document.createDocumentFragment();
    const list = Array.isArray(arr) ? arr.slice(0, 10) : [];
    for (const x of list) {
      const tr = document.createElement("tr");
      cell(tr, String((x && x[key]) ?? DASH));
      cell(tr, fmtNum(pickNum(x, "count")));
      frag.appendChild(tr);
    }
    if (!list.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 2; td.className = "muted"; td.textContent = DASH;
      tr.appendChild(td); frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }

  function render(doc) {
    const tMs = Date.now();
    const f = figures(doc, tMs);
    renderHealth(doc, f);
    renderKpis(doc, f);
    renderWorkers(doc);
    renderBackends(doc, f);
    renderEvents(doc);
    pushPoint(tMs / 1000, f);
    const n = Number(dash.dataset.updates || 0) + 1;
    dash.dataset.updates = String(n);
    dash.dataset.msgRate = f.msgRate === undefined ? "" : String(f.msgRate);
    dash.dataset.delRate = f.delRate === undefined ? "" : String(f.delRate);
    dash.dataset.connections = f.connections === undefined ? "" : String(f.connections);
    dash.dataset.points = String(xs.length);
    setText("updated", "updated " + new Date(tMs).toLocaleTimeString([], { hour12: false }));
  }

  // ------------------------------------------------------------- connection

  const STATES = {
    connecting: "connecting…",
    live: "live",
    reconnecting: "disconnected — reconnecting…",
    login: "sign-in required",
  };
  let lastVerdict = null;
  function setState(s) {
    if (dash.dataset.state === s) return;
    if (s === "reconnecting" || s === "login") {
      // The last verdict is not today's: say so instead of showing it.
      const h = $("health");
      if (h.dataset.verdict !== "stale") lastVerdict = $("verdict").textContent;
      h.dataset.verdict = "stale";
      setText("verdict", "no data");
      setText("verdict-src", `stream lost at ${clockNow()}` +
        (lastVerdict && lastVerdict !== DASH ? ` · last verdict: ${lastVerdict}` : ""));
      $("reasons").replaceChildren();
    }
    dash.dataset.state = s;
    const pill = $("conn-state");
    pill.dataset.state = s;
    pill.textContent = STATES[s] || s;
    $("login").hidden = s !== "login";
  }

  function clockNow() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  let es = null;
  let lastEventAt = 0;
  let connectedAt = 0;
  let retryTimer = null;

  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    connectedAt = Date.now();
    es = new EventSource(STREAM, { withCredentials: true });
    es.addEventListener("monitoring", (ev) => {
      let doc;
      try { doc = JSON.parse(ev.data); } catch { return; }   // a torn document: skip it
      lastEventAt = Date.now();
      setState("live");
      render(doc);
    });
    es.onerror = () => {
      if (dash.dataset.state === "live" || dash.dataset.state === "connecting") {
        setState("reconnecting");
        pushPoint(Date.now() / 1000, null);   // a gap in the charts
      }
      // CONNECTING: the browser retries by itself. CLOSED: the answer was not
      // an event stream (401? 404?): find out, then retry or ask for a token.
      if (es.readyState === EventSource.CLOSED) probe();
    };
  }

  async function probe() {
    try {
      const r = await fetch(JSON_URL, { cache: "no-store", credentials: "same-origin" });
      if (r.status === 401 || r.status === 403) { setState("login"); return; }
    } catch { /* chatd down: retry below */ }
    retryTimer = setTimeout(connect, 2000);
  }

  // A stream that went quiet (half-open connection, chatd stopped without
  // closing it): drop it and open a new one.
  setInterval(() => {
    const now = Date.now();
    if (dash.dataset.state === "login") return;
    if (now - Math.max(lastEventAt, connectedAt) > STALE_MS) {
      if (dash.dataset.state === "live") {
        setState("reconnecting");
        pushPoint(now / 1000, null);
      }
      connect();
    }
  }, 1000);

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setText("login-error", "");
    const token = $("login-token").value;
    try {
      const r = await fetch(LOGIN, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }).toString(),
      });
      if (!r.ok) { setText("login-error", r.status === 401 || r.status === 403 ? "token refused" : `login failed (${r.status})`); return; }
      $("login-token").value = "";
      setState("connecting");
      connect();
    } catch (e) {
      setText("login-error", "chatd unreachable");
    }
  });

  initCharts();
  connect();
})();
