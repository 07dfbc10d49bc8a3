"""The monitoring document (docs/monitoring.md): its figures agree exactly
with what a test did on a fresh chatd with two workers."""

import asyncio
import http.client
import json
import os
import signal
import socket
import time
import urllib.parse

from prometheus_client.parser import text_string_to_metric_families

from chatd_harness import (Client, eventually, eventually_async, make_room, make_token, run,
                           run_chatd, services, unique_id, write_config, ws_handshake_status)


def monitoring(srv):
    return srv.monitoring()


async def connect_spread(srv, users, tenant, n):
    """At least n clients (users in turn) covering both workers; all kept."""
    clients = []
    while len(clients) < n or len({c.worker for c in clients}) < 2:
        assert len(clients) < n + 40, "the connections never reached both workers"
        clients.append(await Client.connect(srv, users[len(clients) % len(users)], tenant))
    return clients


def test_document_has_every_documented_section(make_server):
    srv = make_server(workers=2)
    doc = monitoring(srv)
    for key in ("connections", "workers", "rooms", "messages", "latency", "errors",
                "security", "slow_consumers", "redis", "postgres", "sync", "process",
                "machine", "health", "output"):
        assert key in doc, key
    assert doc["workers_configured"] == 2 and doc["workers_live"] == 2
    assert doc["connections"]["active"] == 0 and doc["connections"]["users"] == 0
    assert doc["machine"]["cpus"] == os.cpu_count()
    assert doc["health"]["status"] == "ok", doc["health"]
    for w in doc["workers"]:
        assert w["alive"] and w["pid"] > 1 and w["restarts"] == 0, w

    def stat_figures():
        doc = monitoring(srv)
        for w in doc["workers"]:
            assert w["rss_kb"] > 0 and w["cpu_pct"] >= 0, w
        assert doc["redis"]["used_memory_bytes"] > 0, doc["redis"]
    eventually(stat_figures, timeout=5, what="every worker's /proc figures, Redis' memory")


def test_figures_agree_with_what_the_test_did(make_server):
    srv = make_server(workers=2, rate_send="3/3")
    tenant = unique_id("t")
    users = ["ann", "bob", "cat"]

    async def main():
        clients = await connect_spread(srv, users, tenant, 6)
        by_worker = {w: sum(1 for c in clients if c.worker == w) for w in (0, 1)}
        room = await make_room(clients[0], *clients[1:])

        # Messages: each user sends one (well within the burst of 3).
        acks = []
        for c in clients[:3]:
            acks.append(await c.say(room, f"hello from {c.user}"))
        for c in clients:
            await c.collect("message:new", len(acks))

        # A flood by one user in a room of its own: some sends are refused.
        spam_room = await make_room(clients[0])
        replies = [await clients[0].request("message:send", room=spam_room, body=f"x{i}",
                                            client_msg_id=unique_id("s")) for i in range(8)]
        spam_acks = [r for r in replies if r["type"] == "ack"]
        limited = [r for r in replies if r.get("code") == "rate_limited"]
        assert limited and len(spam_acks) + len(limited) == 8, replies
        await clients[0].collect("message:new", len(spam_acks))

        # Refused handshakes: a bad token (401) and a plain GET of /ws (426).
        assert ws_handshake_status(srv.port, f"/ws?token={make_token('x', tenant)}x") == 401
        assert srv.get("/ws")[0] == 426

        sent = len(acks) + len(spam_acks)
        deliveries = len(acks) * len(clients) + len(spam_acks)

        def agrees():
            doc = monitoring(srv)
            conns = doc["connections"]
            assert conns["active"] == len(clients) and conns["total"] == len(clients), conns
            assert conns["closed"] == 0 and conns["users"] == len(users), conns
            assert abs(conns["per_user"] - len(clients) / len(users)) < 1e-6, conns
            for w in doc["workers"]:
                assert w["connections"] == by_worker[w["index"]], (w, by_worker)
            assert doc["messages"]["sent"] == sent, doc["messages"]
            assert doc["deliveries"] == deliveries, (doc["deliveries"], deliveries)
            assert doc["latency"]["ack"]["count_total"] == sent, doc["latency"]
            assert 1 <= doc["latency"]["delivery"]["count_total"] <= deliveries, doc["latency"]
            assert doc["errors"]["by_code"]["rate_limited"] == len(limited), doc["errors"]
            assert doc["errors"]["total"] == len(limited), doc["errors"]
            assert doc["security"]["rate_limited"] == len(limited), doc["security"]
            refused = doc["security"]["handshakes_refused"]
            assert refused["auth"] == 1 and refused["upgrade_required"] == 1, refused
            assert refused["total"] == 2, refused
            assert doc["rooms"]["with_subscribers"] == 2, doc["rooms"]
            # Joins checked membership in PostgreSQL: timed queries.
            assert doc["postgres"]["join_checks"] >= 1, doc["postgres"]
            assert doc["postgres"]["query"]["count_total"] >= doc["postgres"]["join_batches"]
            return doc
        await eventually_async(agrees, timeout=5, what="the figures")

        # The last second's figures: messages/s once the tick has seen them.
        one = await clients[1].say(room, "timed")
        for c in clients:
            await c.next_event("message:new")

        def rates_seen():
            doc = monitoring(srv)
            lat = doc["latency"]
            assert doc["messages"]["per_s"] >= 1 and lat["ack"]["count"] >= 1, doc["messages"]
            assert lat["ack"]["p50_ms"] > 0 and lat["ack"]["max_ms"] >= lat["ack"]["p50_ms"], lat
            assert lat["delivery"]["count"] >= 1, lat
            assert doc["messages"]["deliveries_per_s"] >= len(clients), doc["messages"]
        await eventually_async(rates_seen, timeout=5, interval=0.2, what="per-second figures")
        assert one["seq"] > 0

        # A normal close by the client.
        leaver = clients.pop()
        by_worker[leaver.worker] -= 1
        await leaver.close()

        def closed():
            conns = monitoring(srv)["connections"]
            assert conns["active"] == len(clients) and conns["closed"] == 1, conns
            assert conns["closed_by_reason"]["normal"] == 1, conns
        await eventually_async(closed, timeout=5, what="the close, by reason")

        # A killed worker: restarted once, its connections gone, users recounted.
        victim = 1
        pid = srv.worker_pids()[victim]
        assert isinstance(pid, int) and pid > 1
        os.kill(pid, signal.SIGKILL)
        survivors = [c for c in clients if c.worker != victim]

        def restarted():
            doc = monitoring(srv)
            w = doc["workers"][victim]
            assert w["alive"] and w["pid"] != pid and w["restarts"] == 1, w
            assert w["restarts_5min"] == 1 and w["connections"] == 0, w
            assert doc["connections"]["active"] == len(survivors), doc["connections"]
            assert doc["connections"]["users"] == len({c.user for c in survivors}), \
                doc["connections"]
            assert doc["workers_live"] == 2
        await eventually_async(restarted, timeout=15, interval=0.2, what="the restart")
    run(main(), timeout=60)


def test_health_names_a_worker_restarting_too_often(make_server):
    srv = make_server(workers=2)
    for n in range(3):
        pid = srv.worker_pids()[0]
        assert isinstance(pid, int) and pid > 1
        os.kill(pid, signal.SIGKILL)

        def replaced(n=n, pid=pid):
            w = monitoring(srv)["workers"][0]
            assert w["alive"] and w["pid"] != pid and w["restarts"] == n + 1, w
        eventually(replaced, timeout=15, interval=0.2, what=f"restart {n + 1}")
    health = monitoring(srv)["health"]
    assert health["status"] == "degraded", health
    assert "worker 0 restarted 3 times in 5 min" in health["reasons"], health
    assert len(health["recommendations"]) == len(health["reasons"]), health


# ------------------------------------------------------------------ /metrics

def scrape(srv):
    """{(family name, sample name, frozen labels without worker): value summed
    over workers}, after checking the content type and parsing with the
    prometheus_client parser."""
    status, headers, body = srv.get("/metrics")
    assert status == 200, (status, body[:200])
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", headers
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "worker"))
            key = (s.name, labels)
            out[key] = out.get(key, 0) + s.value
    return out, body.decode()


def test_metrics_parse_and_counters_move(make_server):
    srv = make_server(workers=2, rate_send="2/2")
    tenant = unique_id("t")
    before, text = scrape(srv)
    assert "# TYPE chatd_messages_total counter" in text
    assert "# TYPE chatd_delivery_latency_seconds histogram" in text
    assert 'chatd_connections{worker="0"} 0' in text and 'chatd_connections{worker="1"} 0' in text
    assert before[("chatd_messages_total", ())] == 0
    assert before[("chatd_redis_up", ())] == 2 and before[("chatd_postgres_up", ())] == 2
    assert before[("chatd_worker_up", ())] == 2

    async def main():
        a = await Client.connect(srv, "pa", tenant)
        b = await Client.connect(srv, "pb", tenant)
        room = await make_room(a, b)
        acks = [await a.say(room, f"m{i}") for i in range(2)]
        limited = 0
        for i in range(3):
            r = await a.request("message:send", room=room, body="more",
                                client_msg_id=unique_id("x"))
            if r.get("code") == "rate_limited":
                limited += 1
            else:
                acks.append(r)
        assert limited >= 1
        await b.collect("message:new", len(acks))
        await a.collect("message:new", len(acks))
        assert ws_handshake_status(srv.port, f"/ws?token={make_token('x', tenant)}x") == 401

        def moved():
            m, _ = scrape(srv)
            assert m[("chatd_connections", ())] == 2
            assert m[("chatd_connections_opened_total", ())] == 2
            assert m[("chatd_users", ())] == 2
            assert m[("chatd_messages_total", ())] == len(acks)
            assert m[("chatd_deliveries_total", ())] == 2 * len(acks)
            assert m[("chatd_errors_total", (("code", "rate_limited"),))] == limited
            assert m[("chatd_rate_limited_total", ())] == limited
            assert m[("chatd_handshakes_refused_total", (("reason", "auth"),))] == 1
            assert m[("chatd_ack_latency_seconds_count", ())] == len(acks)
            inf = m[("chatd_ack_latency_seconds_bucket", (("le", "+Inf"),))]
            assert inf == len(acks) and m[("chatd_ack_latency_seconds_sum", ())] > 0
            assert 1 <= m[("chatd_delivery_latency_seconds_count", ())] <= 2 * len(acks)
            assert m[("chatd_worker_resident_memory_bytes", ())] > 0
            assert m.get(("chatd_redis_used_memory_bytes", ()), 0) > 0
            assert m[("chatd_postgres_query_seconds_count", ())] >= 1
        await eventually_async(moved, timeout=5, what="the counters")
        await b.close()

        def closed():
            m, _ = scrape(srv)
            assert m[("chatd_connections_closed_total", (("reason", "normal"),))] == 1
            assert m[("chatd_connections", ())] == 1 and m[("chatd_users", ())] == 1
        await eventually_async(closed, timeout=5, what="the close")
    run(main(), timeout=60)


# ------------------------------------------------------------ the SSE stream

def read_events(port, n, timeout=5.0, headers=()):
    """The first n `data:` documents of /api/monitoring/stream."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = "".join(f"{h}\r\n" for h in headers)
        s.sendall(f"GET /api/monitoring/stream HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        buf, events = b"", []
        while len(events) < n:
            assert time.monotonic() < deadline, f"{len(events)} of {n} events in {timeout}s"
            chunk = s.recv(65536)
            assert chunk, "the stream ended"
            buf += chunk
            if not buf.startswith(b"HTTP/1.1 200"):
                raise AssertionError(buf[:200])
            while b"\n\n" in buf.split(b"\r\n\r\n", 1)[-1]:
                head_, body = buf.split(b"\r\n\r\n", 1)
                block, rest = body.split(b"\n\n", 1)
                buf = head_ + b"\r\n\r\n" + rest
                data = [ln[5:].strip() for ln in block.split(b"\n") if ln.startswith(b"data:")]
                if data:
                    events.append(json.loads(b"\n".join(data)))
        return events


def test_stream_sends_the_whole_document(make_server):
    srv = make_server(workers=1)
    tenant = unique_id("t")

    async def main():
        await Client.connect(srv, "viewer-test", tenant)
        events = await asyncio.to_thread(read_events, srv.port, 2)
        for doc in events:
            assert doc["connections"]["active"] == 1 and doc["connections"]["users"] == 1, doc
            for key in ("latency", "errors", "health", "machine", "workers"):
                assert key in doc, key
            assert "cpu_pct" in doc["workers"][0], doc["workers"]
        assert events[1]["now_ms"] > events[0]["now_ms"]
    run(main(), timeout=30)


# ------------------------------------------------------------------ access

MONITORING_ROUTES = ["/api/monitoring/websocket", "/api/monitoring/stream", "/metrics",
                     "/monitoring", "/monitoring/"]


def request(port, method, path, headers=None, body=None):
    """(status, {lower-case header: value}, body bytes), one request per connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        # An admitted stream never ends: its head is enough.
        data = b"" if path.endswith("/stream") and resp.status == 200 else resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def test_untrusted_peer_needs_an_admin_token(make_server):
    srv = make_server(workers=1, monitoring_trusted="")
    admin = make_token("boss", role="admin")
    member = make_token("pleb")
    for path in MONITORING_ROUTES:
        status, headers, body = request(srv.port, "GET", path)
        assert status == 401, (path, status)
        if path in ("/monitoring", "/monitoring/"):
            assert headers["content-type"].startswith("text/html"), (path, headers)
            assert b'action="/monitoring/login"' in body and b'name="token"' in body, body
        else:
            assert json.loads(body)["status"] == 401, (path, body)
        status, _, _ = request(srv.port, "GET", path, {"Authorization": f"Bearer {member}"})
        assert status == 401, (path, "member token", status)
        status, _, _ = request(srv.port, "GET", path, {"Authorization": f"Bearer {admin}x"})
        assert status == 401, (path, "bad signature", status)
        status, _, _ = request(srv.port, "GET", path, {"Authorization": f"Bearer {admin}"})
        assert status == 200, (path, "admin token", status)
        status, _, _ = request(srv.port, "GET", path, {"Cookie": f"a=b; chatd_admin={admin}"})
        assert status == 200, (path, "admin cookie", status)
        status, _, _ = request(srv.port, "GET", path, {"Cookie": f"chatd_admin={member}"})
        assert status == 401, (path, "member cookie", status)
    # The page's files are protected too, answered in JSON (not the form).
    status, headers, body = request(srv.port, "GET", "/monitoring/no-such-file.js")
    assert status == 401 and json.loads(body)["status"] == 401, (status, body)
    status, _, _ = request(srv.port, "GET", "/monitoring/no-such-file.js",
                           {"Authorization": f"Bearer {admin}"})
    assert status == 404
    # Everything else is as open as before; "/" is the chat client, for anyone.
    assert request(srv.port, "GET", "/health")[0] == 200
    for path in ("/", "/chat/", "/chat/app.js"):
        status, headers, body = request(srv.port, "GET", path)
        assert status == 200, (path, status)
    assert b'src="/chat/app.js"' in request(srv.port, "GET", "/")[2]


def test_login_form_sets_the_admin_cookie(make_server):
    srv = make_server(workers=1, monitoring_trusted="")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    admin = make_token("boss", role="admin")
    status, headers, _ = request(srv.port, "POST", "/monitoring/login", form,
                                 urllib.parse.urlencode({"token": admin}))
    assert status == 303 and headers["location"] == "/monitoring", (status, headers)
    cookie = headers["set-cookie"]
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0] == f"chatd_admin={admin}", cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(parts[1:]), cookie
    status, headers, body = request(srv.port, "GET", "/monitoring", {"Cookie": parts[0]})
    assert status == 200 and headers["content-type"].startswith("text/html"), status
    assert request(srv.port, "GET", "/api/monitoring/websocket", {"Cookie": parts[0]})[0] == 200

    for bad in (make_token("pleb"), admin + "x", "", "a\r\nX-Evil: 1"):
        status, headers, body = request(srv.port, "POST", "/monitoring/login", form,
                                        urllib.parse.urlencode({"token": bad}))
        assert status == 401 and "set-cookie" not in headers, (bad, status, headers)
        assert b'name="token"' in body
    assert request(srv.port, "GET", "/monitoring/login")[0] == 405


def test_trusted_list_takes_cidrs(make_server):
    srv = make_server(workers=1, monitoring_trusted="10.0.0.0/8, 127.0.0.2/32")
    assert request(srv.port, "GET", "/metrics")[0] == 401  # from 127.0.0.1
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5,
                                  source_address=("127.0.0.2", 0)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 200"), "127.0.0.2 is trusted"


def test_bad_trusted_list_stops_the_start(env, tmp_path):
    proc = run_chatd("-t", "-c", write_config(tmp_path / "bad.conf",
                                              monitoring_trusted="127.0.0.1/33"))
    assert proc.returncode != 0
    assert "monitoring_trusted" in proc.stderr and "127.0.0.1/33" in proc.stderr, proc.stderr


def test_event_log_and_top_clients(make_server):
    srv = make_server(workers=2)
    tenant = unique_id("t")

    async def main():
        clients = [await Client.connect(srv, f"ev{i}", tenant) for i in range(3)]
        assert ws_handshake_status(srv.port, f"/ws?token={make_token('ev', tenant)}x") == 401
        await clients[0].close()

        def logged():
            doc = monitoring(srv)
            events = doc["events"]
            kinds = [e["kind"] for e in events]
            assert kinds.count("connect") == 3 and kinds.count("refused") == 1, events
            assert kinds.count("disconnect") == 1, events
            assert [e["ts_ms"] for e in events] == sorted((e["ts_ms"] for e in events),
                                                          reverse=True), events
            connects = sorted(e["user"] for e in events if e["kind"] == "connect")
            assert connects == ["ev0", "ev1", "ev2"], events
            assert {(e["worker"], e["user"]) for e in events if e["kind"] == "connect"} == \
                {(c.worker, c.user) for c in clients}, events
            gone = next(e for e in events if e["kind"] == "disconnect")
            assert gone["user"] == "ev0" and gone["reason"] == "normal", gone
            assert gone["code"] == 1000 and gone["tenant"] == tenant, gone
            refused = next(e for e in events if e["kind"] == "refused")
            assert refused["code"] == 401 and refused["ip"] == "127.0.0.1", refused
            assert refused["user"] == "" and refused["reason"], refused
            assert all(e["ip"] == "127.0.0.1" for e in events), events
            top = doc["clients"]
            assert top["top_ips"] == [{"ip": "127.0.0.1", "count": 3}], top
            assert sum(u["count"] for u in top["top_user_agents"]) == 3, top
            assert all("websockets" in u["user_agent"] for u in top["top_user_agents"]), top
        await eventually_async(logged, timeout=5, what="the event log")
    run(main(), timeout=30)


def test_health_says_redis_is_down_and_recovers(make_server):
    srv = make_server(workers=2)
    assert monitoring(srv)["health"]["status"] == "ok"
    try:
        services("stop-redis")

        def down():
            doc = monitoring(srv)
            health = doc["health"]
            assert doc["redis"]["connected"] is False, doc["redis"]
            assert health["status"] == "critical", health
            assert "Redis down: messages cannot be sent" in health["reasons"], health
            i = health["reasons"].index("Redis down: messages cannot be sent")
            assert "Redis" in health["recommendations"][i], health
        eventually(down, timeout=10, interval=0.2, what="the verdict: Redis down")
        m, _ = scrape(srv)
        assert m[("chatd_redis_up", ())] == 0
    finally:
        services("start-redis")

    def back():
        doc = monitoring(srv)
        assert doc["redis"]["connected"] is True, doc["redis"]
        assert doc["health"]["status"] == "ok", doc["health"]
        assert doc["redis"]["reconnects"] >= 2, doc["redis"]
    eventually(back, timeout=20, interval=0.2, what="the verdict: ok again")
