"""Attacks on chatd: forged tokens, foreign origins, floods, hostile frames,
slow consumers and slow handshakes, hostile ids, cross-room and cross-tenant
access, token expiry on an open connection.

Every test sends the attack, checks the exact answer, then checks the server
still serves a normal client (connect, join, send, receive).
"""

import asyncio
import hashlib
import hmac
import json
import os
import select
import socket
import subprocess
import time

import websockets
from websockets.frames import Opcode

import chatd_harness
from chatd_harness import (SECRET, Client, Session, b64url, connect_from, eventually,
                           eventually_async, make_room, make_token, open_ws, run, send_pipelined,
                           unique_id, upgrade_request, ws_handshake_status)

HOST = "127.0.0.1"


# ------------------------------------------------------------------ helpers

def claims_for(user, tenant="t1", ttl=3600, **extra):
    now = int(time.time())
    claims = {"sub": user, "tenant": tenant, "iat": now, "exp": now + ttl}
    claims.update({k: v for k, v in extra.items() if v is not None})
    return claims


def signing_input(alg, claims):
    header = {"alg": alg, "typ": "JWT"}
    return (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()))


def hs256_token(claims, secret):
    data = signing_input("HS256", claims)
    key = secret if isinstance(secret, bytes) else secret.encode()
    return data + "." + b64url(hmac.new(key, data.encode(), hashlib.sha256).digest())


def openssl(*args, input=None):
    proc = subprocess.run(["openssl", *map(str, args)], input=input, capture_output=True,
                          timeout=30)
    assert proc.returncode == 0, f"openssl {' '.join(map(str, args))}: {proc.stderr!r}"
    return proc.stdout


def der_ecdsa_to_raw(der, size=32):
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r || s (JWS)."""
    assert der[0] == 0x30, der
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02, der
        n = der[i + 1]
        value = der[i + 2:i + 2 + n].lstrip(b"\x00")
        assert len(value) <= size, der
        out += value.rjust(size, b"\x00")
        i += 2 + n
    return out


def pkey_token(alg, claims, key_path):
    """RS256 / ES256 signed by openssl dgst with the private key at key_path."""
    data = signing_input(alg, claims)
    sig = openssl("dgst", "-sha256", "-sign", key_path, input=data.encode())
    if alg == "ES256":
        sig = der_ecdsa_to_raw(sig)
    return data + "." + b64url(sig)


def rsa_keypair(tmp_path, name="rsa"):
    key, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub.pem"
    openssl("genrsa", "-out", key, "2048")
    openssl("rsa", "-in", key, "-pubout", "-out", pub)
    return key, pub


def ec_keypair(tmp_path, name="ec"):
    key, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub.pem"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("ec", "-in", key, "-pubout", "-out", pub)
    return key, pub


def handshake(port, token=None, headers=None, source=None, path="/ws", timeout=5):
    """A WebSocket upgrade by hand, optionally from another loopback address;
    the status code of the answer, or None if the server hangs up."""
    return ws_handshake_status(port, path + (f"?token={token}" if token else ""), headers,
                               timeout, source)


async def chat_works(server, tenant=None, source=None, **options):
    """A normal client still gets service: connect, create, join, send, and
    both it and a second client receive the message."""
    tenant = tenant or unique_id("t")
    a = await connect_from(server, unique_id("u"), tenant, source=source, **options)
    b = await connect_from(server, unique_id("u"), tenant, source=source, **options)
    room = await make_room(a, b)
    ack = await a.say(room, "still alive")
    for c in (a, b):
        frame = await c.next_event("message:new")
        assert frame["room"] == room and frame["seq"] == ack["seq"], frame
        assert frame["msg"]["body"] == "still alive", frame
    await a.close()
    await b.close()


def chat_works_sync(server, **kw):
    run(chat_works(server, **kw))


async def close_frame(ws, timeout=10, abort=True):
    """The code of the server's close frame, as soon as it is read. The TCP
    close comes later (see test_server_close_completes_promptly): unless
    abort is false, drop our end at once rather than wait for it."""
    await asyncio.wait_for(asyncio.shield(ws.transfer_data_task), timeout)
    assert ws.close_rcvd is not None, f"connection lost without a close frame ({ws.close_code})"
    if abort:
        ws.transport.abort()
    return ws.close_rcvd.code


def security(server):
    return server.monitoring()["security"]


def slow_consumers(server):
    return server.monitoring()["slow_consumers"]


def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def server_rss_kb(server):
    """VmRSS of the parent and its workers."""
    return vm_rss_kb(server.pid) + sum(vm_rss_kb(p) for p in server.worker_pids().values())


def small_asan_quarantine(monkeypatch):
    """ASan keeps freed memory resident in its quarantine (256 MB a process
    by default), which would swamp an RSS bound: make it small for the
    servers of this test (child_env() keeps an ASAN_OPTIONS already set)."""
    base = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    monkeypatch.setenv("ASAN_OPTIONS", base + ":quarantine_size_mb=8")


def no_sanitizer_reports(server):
    reports = chatd_harness.sanitizer_reports(server.log())
    assert not reports, "\n".join(reports[:10])


# ------------------------------------------------------------------- tokens

def test_forged_hs256_tokens_are_refused(server):
    now = int(time.time())
    bad = {
        "alg-none": make_token("mallory", alg="none"),
        "alg-none-signed": make_token("mallory", alg="none")[:-1] + ".c2ln",
        "expired": make_token("mallory", exp=now - 3600),
        "not-yet-valid": make_token("mallory", nbf=now + 3600),  # leeway is 30 s
        "bad-signature": make_token("mallory", secret="wrong-secret"),
        "tampered-claims": (lambda t: t.split(".")[0] + "." +
                            b64url(json.dumps(claims_for("admin", role="admin")).encode()) +
                            "." + t.split(".")[2])(make_token("mallory")),
    }
    before = security(server)["handshakes_refused_auth"]
    got = {name: handshake(server.port, tok) for name, tok in bad.items()}
    assert got == {name: 401 for name in bad}, got
    assert security(server)["handshakes_refused_auth"] - before >= len(bad)
    # Within the leeway, nbf is accepted.
    assert handshake(server.port, make_token("alice", nbf=now + 5)) == 101
    chat_works_sync(server)


def test_rs256_server_refuses_confusion_and_wrong_claims(make_server, tmp_path):
    key, pub = rsa_keypair(tmp_path)
    other_key, _ = rsa_keypair(tmp_path, "other")
    srv = make_server(jwt_alg="RS256", jwt_public_key_file=str(pub), jwt_secret=None,
                      jwt_issuer="https://issuer.test", jwt_audience="chatd-test")
    good = dict(iss="https://issuer.test", aud="chatd-test")
    now = int(time.time())
    pem = pub.read_bytes()
    bad = {
        # HS/RS confusion: HMAC keyed with the server's public key text.
        "hs256-with-public-key": hs256_token(claims_for("mallory", **good), pem),
        "hs256-with-public-key-stripped": hs256_token(claims_for("mallory", **good),
                                                      pem.strip()),
        "hs256-with-test-secret": hs256_token(claims_for("mallory", **good), SECRET),
        "alg-none": signing_input("none", claims_for("mallory", **good)) + ".",
        "other-rsa-key": pkey_token("RS256", claims_for("mallory", **good), other_key),
        "expired": pkey_token("RS256", claims_for("mallory", ttl=-3600, **good), key),
        "not-yet-valid": pkey_token("RS256", claims_for("mallory", nbf=now + 3600, **good), key),
        "wrong-iss": pkey_token("RS256", claims_for("mallory", iss="https://evil.test",
                                                    aud="chatd-test"), key),
        "no-iss": pkey_token("RS256", claims_for("mallory", aud="chatd-test"), key),
        "wrong-aud": pkey_token("RS256", claims_for("mallory", iss="https://issuer.test",
                                                    aud="other-app"), key),
        "wrong-aud-list": pkey_token("RS256", claims_for("mallory", iss="https://issuer.test",
                                                         aud=["a", "b"]), key),
        "no-aud": pkey_token("RS256", claims_for("mallory", iss="https://issuer.test"), key),
    }
    got = {name: handshake(srv.port, tok) for name, tok in bad.items()}
    assert got == {name: 401 for name in bad}, got
    assert security(srv)["handshakes_refused_auth"] >= len(bad)

    tenant = unique_id("t")
    ok = pkey_token("RS256", claims_for("alice", tenant, **good), key)
    ok_list = pkey_token("RS256", claims_for("bob", tenant, iss="https://issuer.test",
                                             aud=["x", "chatd-test"]), key)
    assert handshake(srv.port, ok) == 101
    assert handshake(srv.port, ok_list) == 101

    async def main():
        a = await connect_from(srv, "alice", tenant, token=ok)
        b = await connect_from(srv, "bob", tenant, token=ok_list)
        assert (a.hello["user"], b.hello["user"]) == ("alice", "bob")
        room = await make_room(a, b)
        ack = await a.say(room, "signed with RS256")
        assert (await b.next_event("message:new"))["seq"] == ack["seq"]
    run(main())


def test_es256_server(make_server, tmp_path):
    key, pub = ec_keypair(tmp_path)
    other, _ = ec_keypair(tmp_path, "other")
    rsa_key, _ = rsa_keypair(tmp_path)
    srv = make_server(jwt_alg="ES256", jwt_public_key_file=str(pub), jwt_secret=None)
    tenant = unique_id("t")
    bad = {
        "hs256-with-public-key": hs256_token(claims_for("mallory"), pub.read_bytes()),
        "rs256": pkey_token("RS256", claims_for("mallory"), rsa_key),
        "other-ec-key": pkey_token("ES256", claims_for("mallory"), other),
        "der-signature": (lambda d: d + "." + b64url(openssl(
            "dgst", "-sha256", "-sign", key, input=d.encode())))(
                signing_input("ES256", claims_for("mallory"))),
        "expired": pkey_token("ES256", claims_for("mallory", ttl=-3600), key),
        "alg-none": signing_input("none", claims_for("mallory")) + ".",
    }
    got = {name: handshake(srv.port, tok) for name, tok in bad.items()}
    assert got == {name: 401 for name in bad}, got

    async def main():
        a = await connect_from(srv, "alice", tenant,
                               token=pkey_token("ES256", claims_for("alice", tenant), key))
        b = await connect_from(srv, "bob", tenant,
                               token=pkey_token("ES256", claims_for("bob", tenant), key))
        room = await make_room(a, b)
        ack = await a.say(room, "signed with ES256")
        assert (await b.next_event("message:new"))["seq"] == ack["seq"]
    run(main())


# ------------------------------------------------------------------ origins

def test_foreign_origin_is_refused(make_server):
    srv = make_server(allowed_origins="https://chat.example.com, https://app.example.com")
    token = make_token("alice")
    same = f"http://{HOST}:{srv.port}"
    cases = {
        "foreign": ("https://evil.example.net", 403),
        "listed-prefix": ("https://chat.example.com.evil.net", 403),
        "listed-as-suffix": ("https://evil-chat.example.com", 403),
        "null": ("null", 403),
        "same-origin-other-port": (f"http://{HOST}:{srv.port + 1}", 403),
        "same-origin": (same, 101),
        "listed": ("https://chat.example.com", 101),
        "listed-second": ("https://app.example.com", 101),
    }
    before = security(srv)["handshakes_refused_origin"]
    got = {name: handshake(srv.port, token, {"Origin": origin}) for name, (origin, _) in
           cases.items()}
    assert got == {name: want for name, (_, want) in cases.items()}, got
    assert security(srv)["handshakes_refused_origin"] - before == 5
    # No Origin (not a browser) is allowed by default.
    assert handshake(srv.port, token) == 101
    chat_works_sync(srv, origin="https://chat.example.com")

    strict = make_server(allow_missing_origin=False)
    assert handshake(strict.port, token) == 403
    assert handshake(strict.port, token, {"Origin": "https://evil.example.net"}) == 403
    assert handshake(strict.port, token, {"Origin": f"http://{HOST}:{strict.port}"}) == 101
    assert security(strict)["handshakes_refused_origin"] == 2
    chat_works_sync(strict, origin=f"http://{HOST}:{strict.port}")


# ------------------------------------------------------------- per-IP limits

def test_connection_attempt_flood_from_one_ip(make_server):
    srv = make_server(conn_attempts_per_ip=20, conn_attempts_window_s=10)
    token = make_token("alice")
    start = time.monotonic()
    statuses = [handshake(srv.port, token) for _ in range(50)]
    assert time.monotonic() - start < 9, "the flood took too long to stay in one window"
    assert statuses == [101] * 20 + [429] * 30, statuses
    assert security(srv)["handshakes_refused_rate"] == 30
    # Another source address has its own count.
    assert handshake(srv.port, token, source="127.0.0.2") == 101
    chat_works_sync(srv, source="127.0.0.3")


def test_auth_failures_block_the_ip(make_server):
    srv = make_server(auth_failures_per_ip=5, auth_failures_window_s=60)
    bad = make_token("alice", secret="guessed")
    good = make_token("alice")
    assert [handshake(srv.port, bad) for _ in range(5)] == [401] * 5
    # Even a good token now waits.
    assert handshake(srv.port, good) == 429
    assert handshake(srv.port, bad) == 429
    sec = security(srv)
    assert sec["handshakes_refused_auth"] == 5 and sec["handshakes_refused_rate"] == 2, sec
    assert handshake(srv.port, good, source="127.0.0.2") == 101
    chat_works_sync(srv, source="127.0.0.2")


def test_third_connection_of_a_user_is_refused(make_server):
    srv = make_server(max_conns_per_user=2)
    tenant = unique_id("t")

    async def main():
        token = make_token("alice", tenant)
        first = await connect_from(srv, "alice", tenant, token=token)
        await connect_from(srv, "alice", tenant, token=token)
        assert await asyncio.to_thread(handshake, srv.port, token) == 429
        # The same user id in another tenant is another user.
        other = await connect_from(srv, "alice", unique_id("t"))
        await other.close()
        assert security(srv)["handshakes_refused_rate"] == 1
        await first.close()
        def third_fits():
            status = handshake(srv.port, token)
            assert status == 101, status
        await eventually_async(third_fits, what="a slot freed by a close")
        await chat_works(srv, tenant)
    run(main())


async def hold_connections(port, tokens, sources, in_flight=256, timeout=120):
    """Open one raw WebSocket connection per token (spread over the loopback
    source addresses), each read up to its hello, and return the sockets,
    held open. A refused or failed one fails the test."""
    sem = asyncio.Semaphore(in_flight)

    async def one(i, token):
        async with sem:
            reader, writer = await asyncio.open_connection(
                HOST, port, local_addr=(sources[i % len(sources)], 0))
            writer.write(upgrade_request(port, f"/ws?token={token}"))
            data = b""
            while b'"type":"hello"' not in data:
                chunk = await reader.read(4096)
                assert chunk, f"connection {i} closed before its hello: {data[:200]!r}"
                data += chunk
            assert data.startswith(b"HTTP/1.1 101"), data[:200]
            return writer

    return await asyncio.wait_for(
        asyncio.gather(*(one(i, t) for i, t in enumerate(tokens))), timeout)


def test_user_limit_holds_with_many_users_connected(make_server):
    """The per-user connection limit applies however many users are
    connected. The handshake limits live in a table in shared memory; it had
    16,384 slots, one per address and one per user, and once they were
    taken the limits were not applied to new users: with 17,000 users
    connected, each new user could open any number of connections. The
    table now grows (guard.c)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = 17000
    assert hard > n + 500, f"open files hard limit {hard} is below {n} connections"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = make_server(workers=2, max_conns_per_user=1, max_conns_per_ip=1000000,
                      conn_attempts_per_ip=10000000, conn_attempts_window_s=1,
                      handshake_timeout_s=60)
    tenant = unique_id("t")
    tokens = [make_token(f"u{i}", tenant) for i in range(n)]

    async def main():
        held = await hold_connections(srv.port, tokens, ["127.0.0.2", "127.0.0.3"])
        try:
            assert srv.monitoring()["connections"]["active"] == n
            # A second connection is refused to the first user, to the last
            # one, and to a user who comes after all of them.
            for token in (tokens[0], tokens[-1]):
                assert await asyncio.to_thread(handshake, srv.port, token) == 429
            late = make_token("late", tenant)
            first = await connect_from(srv, "late", tenant, token=late)
            assert await asyncio.to_thread(handshake, srv.port, late) == 429
            assert security(srv)["handshakes_refused_rate"] == 3
            await first.close()
        finally:
            for w in held:
                w.transport.abort()
        # Closed connections give their places back.
        def first_user_fits():
            status = handshake(srv.port, tokens[0])
            assert status == 101, status
        await eventually_async(first_user_fits, timeout=30, what="the first user's place freed")
        await chat_works(srv, tenant)
    try:
        run(main(), timeout=150)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ----------------------------------------------------------------- flooding

def test_message_flood_is_limited_across_workers(make_server):
    burst, window_s = 10, 2  # 10 per 2 s: 5 a second, 10 at once
    rate = burst / window_s
    srv = make_server(rate_send=f"{burst}/{window_s}")
    tenant = unique_id("t")

    async def main():
        a, b = await chatd_harness.connect_on_distinct_workers(srv, 2, tenant,
                                                                users=["flood", "flood"])
        assert a.worker != b.worker
        room = await make_room(a, b)
        # Another user's first message seeds the room's seq counter (see
        # test_first_send_in_a_new_room_costs_one_token).
        warm = await connect_from(srv, "warmer", tenant)
        await warm.ok("room:join", room=room)
        await warm.say(room, "warm up")
        for c in (a, b):
            await c.next_event("message:new")
        before = security(srv)["rate_limited"]

        async def flood(client, n):
            ids = []
            for i in range(n):
                rid = f"f-{client.worker}-{i}"
                ids.append(rid)
                await client.send({"type": "message:send", "id": rid, "room": room,
                                   "client_msg_id": rid, "body": f"flood {i}"})
            return [await client.take(lambda f, r=r: f.get("id") == r, 10, f"reply {r}")
                    for r in ids]

        start = time.monotonic()
        replies = await asyncio.gather(flood(a, 20), flood(b, 20))
        elapsed = time.monotonic() - start
        all_replies = replies[0] + replies[1]
        acked = [r for r in all_replies if r["type"] == "ack"]
        limited = [r for r in all_replies if r["type"] == "error"]
        assert all(r["code"] == "rate_limited" for r in limited), limited
        assert all(isinstance(r.get("retry_after_ms"), int) and r["retry_after_ms"] > 0
                   for r in limited), limited[:3]
        # One bucket for the user, not one per worker.
        assert burst <= len(acked) <= burst + rate * elapsed + 2, (len(acked), elapsed)
        assert len(limited) == 40 - len(acked)
        assert security(srv)["rate_limited"] - before >= len(limited)

        # A repeat of an acked client_msg_id costs nothing: acked again, same seq.
        first = acked[0]
        owner = a if first["id"].startswith(f"f-{a.worker}-") else b
        again = await owner.ok("message:send", room=room, client_msg_id=first["id"],
                               body="repeat")
        assert (again["seq"], again["msg_id"]) == (first["seq"], first["msg_id"])

        # Every acked message was delivered once to both connections, in order.
        await a.settle()
        await b.settle()
        want = sorted(r["seq"] for r in acked)
        for c in (a, b):
            got = [f["seq"] for f in c.buffered("message:new") if f["room"] == room]
            assert got == want, (c, got, want)
        await chat_works(srv)  # another user is not limited by flood's bucket
    run(main())


def test_first_send_in_a_new_room_costs_one_token(make_server):
    """The send script takes a token before it finds the room's seq counter
    missing; the retry after seeding it from PostgreSQL takes another."""
    burst = 3
    srv = make_server(rate_send=f"{burst}/{burst}")  # 1 a second

    async def main():
        client = await connect_from(srv, "alice", unique_id("t"))
        room = await make_room(client)
        replies = [await client.request("message:send", room=room, client_msg_id=f"c{i}",
                                        body="x") for i in range(burst)]
        assert [r["type"] for r in replies] == ["ack"] * burst, replies
    run(main())


# --------------------------------------------------------------- bad frames

def test_two_mib_frame_closes_1009(server):
    async def main():
        client = await Client.connect(server, "alice", unique_id("t"))
        frame = json.dumps({"type": "ping", "pad": "x" * (2 * 1024 * 1024)})
        try:
            await client.ws.send(frame)
        except websockets.ConnectionClosed:
            pass
        assert await close_frame(client.ws) == 1009
        await chat_works(server)
    run(main())
    assert server.running()


def test_deeply_nested_json_is_bad_request(server):
    async def main():
        client = await Client.connect(server, "alice", unique_id("t"))
        deep = "[" * 1000 + "]" * 1000
        frames = [
            '{"type":"ping","id":"deep-1","x":' + deep + "}",
            deep,
            '{"type":"message:send","id":"deep-3","room":"r","client_msg_id":"c",'
            '"body":"b","attachments":' + deep + "}",
            '{"type":"ping","id":"deep-4","x":' + "{\"a\":" * 1000 + "1" + "}" * 1000 + "}",
        ]
        for text in frames:
            await client.send_raw(text)
            error = await client.next_event("error")
            assert error["code"] == "bad_request", error
        # Exactly 32 levels is fine; 33 is not.
        ok = '{"type":"ping","id":"d32","x":' + "[" * 31 + "]" * 31 + "}"
        await client.send_raw(ok)
        assert (await client.take(lambda f: f.get("id") == "d32", 5, "pong"))["type"] == "pong"
        assert (await client.request("ping"))["type"] == "pong"
        await chat_works(server)
    run(main())


def test_invalid_utf8_closes_1007(server):
    async def main():
        client = await Client.connect(server, "alice", unique_id("t"))
        await client.ws.write_frame(True, Opcode.TEXT, b'{"type":"ping","x":"\xc3\x28"}')
        assert await close_frame(client.ws) == 1007
        # The bare bytes too.
        other = await Client.connect(server, "alice", unique_id("t"))
        await other.ws.write_frame(True, Opcode.TEXT, b"\xc3\x28")
        assert await close_frame(other.ws) == 1007
        await chat_works(server)
    run(main())
    assert server.running()


def test_server_close_completes_promptly(server):
    """After the server's close frame and our close reply, the server should
    close the TCP connection (RFC 6455 7.1.1) rather than leave the client
    waiting for a timeout."""
    async def main():
        ws = await open_ws(server, make_token("alice", unique_id("t")), close_timeout=10)
        chatd_harness._live_clients.add(Client(ws, {}))
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.write_frame(True, Opcode.TEXT, b"\xc3\x28")
        assert await close_frame(ws, abort=False) == 1007
        frame_at = time.monotonic()
        await asyncio.wait_for(ws.wait_closed(), 15)
        lag = time.monotonic() - frame_at
        assert lag < 2, f"TCP close {lag:.1f}s after the close frame"
    run(main())


# ------------------------------------------------------------ slow consumers

N_FLOOD = 10_000
BODY = "x" * 500


def test_slow_consumer_gets_gap_and_recovers(make_server, monkeypatch):
    small_asan_quarantine(monkeypatch)
    srv = make_server(outbound_max_frames=1000, stall_timeout_ms=30000)
    tenant = unique_id("t")

    async def main():
        sub_seqs = []
        publisher = await Session.open(srv, "pub", tenant, keep_events=False)
        subscriber = await Session.open(
            srv, "sub", tenant, keep_events=False,
            on_frame=lambda s, f: f.get("type") == "message:new" and sub_seqs.append(f["seq"]))
        room = unique_id("room")
        await publisher.ok("room:create", room=room, name="flood")
        await publisher.ok("room:join", room=room)
        await subscriber.ok("room:join", room=room)

        # The slow client: tiny kernel receive buffer, tiny websockets buffers.
        slow_ws = await open_ws(srv, make_token("slow", tenant), rcvbuf=4096, max_queue=1,
                                read_limit=4096)
        chatd_harness._live_clients.add(Client(slow_ws, {}))
        hello = json.loads(await asyncio.wait_for(slow_ws.recv(), 5))
        assert hello["type"] == "hello"
        await slow_ws.send(json.dumps({"type": "room:join", "id": "j0", "room": room}))
        ack = json.loads(await asyncio.wait_for(slow_ws.recv(), 5))
        assert ack["type"] == "ack" and ack["id"] == "j0", ack
        assert ack["last_seq"] == 0

        rss0 = server_rss_kb(srv)
        gaps0 = slow_consumers(srv)["gaps"]
        # It stops reading now (no recv) while 10,000 messages are published.
        start = time.monotonic()
        peak = [rss0]

        async def watch_rss():
            while True:
                peak[0] = max(peak[0], await asyncio.to_thread(server_rss_kb, srv))
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch_rss())
        try:
            replies = await send_pipelined(
                publisher, room, [(f"m{i}", f"{i} {BODY}") for i in range(N_FLOOD)],
                window=200, timeout=20)
            assert all(r["type"] == "ack" for r in replies.values()), \
                [r for r in replies.values() if r["type"] != "ack"][:3]
            assert sorted(r["seq"] for r in replies.values()) == list(range(1, N_FLOOD + 1))
            await eventually_async(lambda: assert_len(sub_seqs, N_FLOOD), timeout=20,
                                   what="the subscriber's 10,000 events")
            publish_s = time.monotonic() - start
            await asyncio.sleep(max(0, 10 - publish_s))  # the client stays away 10 s
        finally:
            watcher.cancel()
        assert sub_seqs == list(range(1, N_FLOOD + 1)), "another subscriber lost events"
        assert slow_ws.open, f"slow client closed: {slow_ws.close_code}"
        grew_mb = (peak[0] - rss0) / 1024
        assert grew_mb < 100, f"server RSS grew {grew_mb:.0f} MB"
        assert slow_consumers(srv)["gaps"] > gaps0

        # It reads again.
        got, gaps, joins = [], [], 0
        cursor = 0
        rid = 0

        async def recv(timeout=10):
            return json.loads(await asyncio.wait_for(slow_ws.recv(), timeout))

        def apply(seq, where):
            nonlocal cursor
            assert seq == cursor + 1, f"{where}: seq {seq} after {cursor}"
            cursor = seq
            got.append(seq)

        while cursor < N_FLOOD:
            frame = await recv()
            if frame["type"] == "message:new":
                assert frame["room"] == room
                apply(frame["seq"], "live")
                continue
            assert frame["type"] == "room:gap", frame
            assert frame["room"] == room and frame["after_seq"] == cursor, (frame, cursor)
            gaps.append(frame)
            # Resume from after_seq; page history while the join cannot
            # return everything in its ack.
            while True:
                rid += 1
                joins += 1
                await slow_ws.send(json.dumps({"type": "room:join", "id": f"j{rid}",
                                               "room": room, "since": cursor}))
                ack = await recv_reply(recv, f"j{rid}")
                assert ack["type"] == "ack", ack
                if ack["recovered"]:
                    for ev in ack["events"]:
                        apply(ev["seq"], "join ack")
                    break
                assert ack["events"] == [], ack
                while cursor < ack["last_seq"]:
                    rid += 1
                    await slow_ws.send(json.dumps({"type": "message:history", "id": f"h{rid}",
                                                   "room": room, "after": cursor,
                                                   "limit": 100}))
                    page = await recv_reply(recv, f"h{rid}")
                    assert page["type"] == "ack" and page["events"], page
                    for ev in page["events"]:
                        apply(ev["seq"], "history")
        assert got == list(range(1, N_FLOOD + 1))
        assert gaps and joins >= 1
        print(f"slow consumer: {len(gaps)} gap(s), {joins} join(s), after_seq "
              f"{[g['after_seq'] for g in gaps]}, RSS +{grew_mb:.0f} MB")
        # Nothing more, nothing twice: a ping round trip ends the stream.
        await slow_ws.send(json.dumps({"type": "ping", "id": "last"}))
        frame = await recv()
        assert frame.get("id") == "last", f"unexpected frame after recovery: {frame}"
        await chat_works(srv)
        return len(gaps), joins

    run(main(), timeout=90)
    no_sanitizer_reports(srv)


def assert_len(items, n):
    assert len(items) >= n, f"{len(items)} of {n}"


async def recv_reply(recv, rid):
    """Frames for a gapped room stop until the join: only the reply can come."""
    frame = await recv()
    assert frame.get("id") == rid, f"expected reply {rid}, got {frame}"
    return frame


def test_stalled_consumer_is_closed_1013(make_server, monkeypatch):
    small_asan_quarantine(monkeypatch)
    stall_ms = 3000
    # A small kernel send buffer, so 3,000 messages are more than the
    # kernel can hold for the stalled reader and chatd's own queue stalls.
    srv = make_server(stall_timeout_ms=stall_ms, outbound_max_frames=1000, socket_sndbuf=65536)
    tenant = unique_id("t")

    async def main():
        publisher = await Session.open(srv, "pub", tenant, keep_events=False)
        room = unique_id("room")
        await publisher.ok("room:create", room=room, name="stall")
        await publisher.ok("room:join", room=room)
        stalled_ws = await open_ws(srv, make_token("stalled", tenant), rcvbuf=4096,
                                   max_queue=1, read_limit=4096)
        chatd_harness._live_clients.add(Client(stalled_ws, {}))
        assert json.loads(await stalled_ws.recv())["type"] == "hello"
        await stalled_ws.send(json.dumps({"type": "room:join", "id": "j", "room": room}))
        assert json.loads(await stalled_ws.recv())["id"] == "j"
        rss0 = server_rss_kb(srv)
        closed0 = slow_consumers(srv)["closed"]

        # Never read again; publish until the server's writes to it stall.
        replies = await send_pipelined(publisher, room,
                                       [(f"m{i}", f"{i} {BODY}") for i in range(3000)],
                                       window=200, timeout=20)
        assert all(r["type"] == "ack" for r in replies.values())
        published = time.monotonic()
        await eventually_async(lambda: assert_gt(slow_consumers(srv)["closed"], closed0),
                               timeout=stall_ms / 1000 + 5, what="a slow-consumer close")
        took = time.monotonic() - published
        assert took < stall_ms / 1000 + 3, took
        assert (server_rss_kb(srv) - rss0) / 1024 < 100
        # Reading again now: what was in flight, then the close frame.
        try:
            while True:
                await asyncio.wait_for(stalled_ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        await publisher.settle()
        await chat_works(srv)
        # Last, so the rest is checked either way.
        assert stalled_ws.close_rcvd is not None and stalled_ws.close_rcvd.code == 1013, \
            f"no 1013 close frame: close code {stalled_ws.close_code}, " \
            f"frame received {stalled_ws.close_rcvd}"

    run(main(), timeout=60)
    no_sanitizer_reports(srv)


def assert_gt(a, b):
    assert a > b, f"{a} <= {b}"


def test_slow_handshake_is_dropped(make_server):
    timeout_s = 3
    srv = make_server(handshake_timeout_s=timeout_s)
    request = upgrade_request(srv.port, f"/ws?token={make_token('alice')}")
    start = time.monotonic()
    dropped_after = None
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        for i, byte in enumerate(request):
            try:
                s.sendall(bytes([byte]))
            except OSError:
                dropped_after = time.monotonic() - start
                break
            ready, _, _ = select.select([s], [], [], 1.0)  # one byte a second
            if ready:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                assert not data.startswith(b"HTTP/1.1 101"), data
                dropped_after = time.monotonic() - start
                break
            if time.monotonic() - start > timeout_s + 12:
                break
    assert i < len(request) - 1, "the whole handshake went through"
    assert dropped_after is not None, f"still connected after {time.monotonic() - start:.1f}s"
    chat_works_sync(srv)
    assert dropped_after <= timeout_s + 3, \
        f"handshake_timeout_s={timeout_s} but dropped after {dropped_after:.1f}s"


# -------------------------------------------------------------- hostile ids

HOSTILE_IDS = {
    "star": "room*",
    "spaces": "my room",
    "10kb": "r" * 10240,
    "sql": "'; DROP TABLE rooms;--",
    "redis-crlf": "a\r\nPUBLISH x y",
    "nul": "a\x00b",
    "slash": "../../etc/passwd",
    "non-ascii": "r\u00e9sum\u00e9",
}


def test_hostile_room_ids_are_bad_request(server, db):
    tenant = unique_id("t")

    async def main():
        client = await Client.connect(server, "alice", tenant)
        real = await make_room(client)
        bad = {}
        for name, rid in HOSTILE_IDS.items():
            for type, fields in (("room:join", {"room": rid}),
                                 ("room:create", {"room": rid, "name": "x"}),
                                 ("message:send", {"room": rid, "client_msg_id": "c1",
                                                   "body": "hi"}),
                                 ("message:send", {"room": real, "client_msg_id": rid,
                                                   "body": "hi"}),
                                 ("message:history", {"room": rid}),
                                 ("room:leave", {"room": rid})):
                if "\x00" in rid:
                    # jansson refuses \u0000 before the id is read: the
                    # error comes without our id.
                    await client.send({"type": type, **fields})
                    reply = await client.next_event("error")
                else:
                    reply = await client.request(type, **fields)
                if reply.get("type") != "error" or reply.get("code") != "bad_request":
                    bad[f"{type} {name}"] = reply
        assert not bad, bad
        assert (await client.request("ping"))["type"] == "pong"
        await chat_works(server)
    run(main())
    with db.cursor() as cur:
        cur.execute("SELECT to_regclass('rooms') IS NOT NULL")
        assert cur.fetchone()[0]


# ------------------------------------------------------------ access rules

def test_private_and_foreign_tenant_rooms(server):
    tenant, other_tenant = unique_id("t"), unique_id("t")

    async def main():
        owner = await Client.connect(server, "owner", tenant)
        private = await make_room(owner, private=True)
        public = await make_room(owner)
        outsider = await Client.connect(server, "outsider", tenant)
        await outsider.error("room:join", "forbidden", room=private)
        await outsider.error("message:send", "forbidden", room=private, client_msg_id="c1",
                             body="let me in")
        await outsider.error("message:history", "forbidden", room=private)
        foreigner = await Client.connect(server, "owner", other_tenant)  # same user id
        for room in (private, public):
            await foreigner.error("room:join", "not_found", room=room)
            await foreigner.error("message:history", "not_found", room=room)
        await foreigner.error("session:resume", "bad_request", rooms=[])
        reply = await foreigner.ok("session:resume", rooms={public: 0})
        assert reply["rooms"][public]["error"]["code"] == "not_found", reply
        await owner.say(private, "secret")
        await owner.settle()
        await outsider.settle()
        await foreigner.settle()
        assert not outsider.buffered("message:new") and not foreigner.buffered("message:new")
        await chat_works(server)
    run(main())


def test_message_ids_of_other_rooms(server, db):
    """A message id is only good in its own room and tenant: through another
    room or tenant it is not_found (not someone else's message); another
    member's message is forbidden to edit."""
    tenant, other_tenant = unique_id("t"), unique_id("t")

    def body_in_db(msg_id):
        with db.cursor() as cur:
            cur.execute("SELECT body FROM messages WHERE tenant = %s AND id = %s", (tenant, msg_id))
            row = cur.fetchone()
        return row[0] if row else None

    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        room_a = await make_room(alice, bob)
        room_b = await make_room(alice, bob)
        ack = await alice.say(room_a, "original")
        def synced():
            assert body_in_db(ack["msg_id"]) == "original"
        await eventually_async(synced, what="the message in PostgreSQL")
        edit = await alice.ok("message:edit", room=room_a, msg_id=ack["msg_id"], body="edited")
        frame = await bob.take(lambda f: f.get("type") == "message:edited", 5, "message:edited")
        assert (frame["room"], frame["msg_id"], frame["body"]) == (room_a, ack["msg_id"], "edited")
        assert frame["seq"] == edit["seq"] == ack["seq"] + 1, (frame, edit, ack)
        # The same id through another room of the same members: not there.
        await alice.error("message:edit", "not_found", room=room_b, msg_id=ack["msg_id"], body="x")
        # Another member's message.
        await bob.error("message:edit", "forbidden", room=room_a, msg_id=ack["msg_id"], body="x")
        # Another tenant with the same user id and the same room id.
        foreigner = await Client.connect(server, "alice", other_tenant)
        await foreigner.ok("room:create", room=room_a, name="same id, other tenant")
        await foreigner.ok("room:join", room=room_a)
        await foreigner.error("message:edit", "not_found", room=room_a, msg_id=ack["msg_id"],
                              body="x")
        # Reading: room_b's history does not hold room_a's message.
        page = await alice.ok("message:history", room=room_b)
        assert all(e.get("msg", {}).get("id") != ack["msg_id"] for e in page["events"]), page
        assert not foreigner.buffered("message:edited")
        await chat_works(server)
    run(main())

    def edited_in_db():
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM messages WHERE tenant = %s AND body = 'edited'"
                        " AND edited_at IS NOT NULL", (tenant,))
            assert cur.fetchone()[0] == 1
    eventually(edited_in_db, what="the edit in the messages projection")


# ------------------------------------------------------------- token expiry

def test_token_expiry_on_open_connection(make_server):
    srv = make_server(jwt_leeway_s=0)
    tenant = unique_id("t")

    async def main():
        exp = int(time.time()) + 3
        short = make_token("alice", tenant, exp=exp)
        expiring = await Client.connect(srv, token=short)
        refreshed = await Client.connect(srv, token=short)
        # Another user's token cannot take over the connection.
        await refreshed.error("auth:refresh", "forbidden", token=make_token("bob", tenant))
        await refreshed.error("auth:refresh", "forbidden",
                              token=make_token("alice", unique_id("t")))
        await refreshed.error("auth:refresh", "unauthorized",
                              token=make_token("alice", tenant, secret="nope"))
        await refreshed.error("auth:refresh", "unauthorized",
                              token=make_token("alice", tenant, alg="none"))
        new = make_token("alice", tenant, ttl=3600)
        ack = await refreshed.ok("auth:refresh", token=new)
        assert ack["exp"] == chatd_harness.token_claims(new)["exp"], ack
        expired0 = security(srv)["tokens_expired"]

        code = await close_frame(expiring.ws, timeout=exp - time.time() + 3)
        assert code == 4001, (code, expiring.ws.close_rcvd)
        assert time.time() >= exp, "closed before exp"
        assert security(srv)["tokens_expired"] - expired0 == 1
        # The refreshed one outlives the first one's expiry and still works.
        await asyncio.sleep(max(0, exp + 2 - time.time()))
        assert (await refreshed.request("ping"))["type"] == "pong"
        assert refreshed.ws.open
        room = await make_room(refreshed)
        await refreshed.say(room, "still here")
        await chat_works(srv, tenant)
    run(main(), timeout=30)
