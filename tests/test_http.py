"""Plain HTTP routes, configuration checks, and the schema check at start."""

import http.client
import json
import re
import socket
import statistics
import subprocess
import time
from urllib.parse import urlsplit

import pytest

from chatd_harness import (Client, make_token, run, run_chatd, token_claims, unique_id,
                           upgrade_request, write_config)


def test_health(server):
    assert server.get_json("/health") is not None


def test_ready_when_backends_up(server):
    # Each worker answers for its own connections: ask a few times.
    for _ in range(6):
        assert server.get_json("/ready") is not None


def test_monitoring_page_is_html(server):
    status, headers, body = server.get("/monitoring")
    assert status == 200
    assert "text/html" in headers.get("content-type", ""), headers
    assert re.search(rb"<!doctype html|<html", body, re.I), body[:200]
    assert b"chatd monitoring" in body, body[:300]


def test_root_is_the_chat_client(server):
    status, headers, body = server.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html"), headers
    assert b'<script type="module" src="/chat/app.js">' in body, body[:500]
    assert server.get("/chat/index.html")[2] == body
    for name in ("app.js", "transport.js", "store.js", "ui.js", "view.js"):
        status, headers, _ = server.get(f"/chat/{name}")
        assert status == 200 and headers["content-type"].startswith("text/javascript"), (name, headers)


# ------------------------------------------------------- dev sign-in

def post(port, path, body, ctype="application/json", method="POST"):
    """(status, headers, body bytes) of one request with a body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        data = json.dumps(body) if ctype == "application/json" and not isinstance(body, str) else body
        conn.request(method, path, body=data, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_dev_token_is_off_by_default(server):
    assert server.get("/dev/token")[0] == 404
    assert post(server.port, "/dev/token", {"user": "alice"})[0] == 404
    assert post(server.port, "/dev/token", "", method="PUT")[0] == 404


def test_dev_token_signs_like_chatd_token(make_server, tenant):
    srv = make_server(workers=1, dev_tokens=1)
    status, headers, body = srv.get("/dev/token")
    assert status == 200 and json.loads(body) == {"dev_tokens": True, "tenant": "default"}, body
    assert headers["cache-control"] == "no-store", headers

    status, headers, body = post(srv.port, "/dev/token", {"user": "alice", "tenant": tenant})
    assert status == 200 and headers["cache-control"] == "no-store", (status, body)
    answer = json.loads(body)
    claims = token_claims(answer["token"])
    assert (claims["sub"], claims["tenant"]) == ("alice", tenant) and "role" not in claims, claims
    assert claims["exp"] == answer["exp"] and 11 * 3600 < claims["exp"] - time.time() <= 12 * 3600
    assert (answer["user"], answer["tenant"]) == ("alice", tenant), answer

    async def hello():
        c = await Client.connect(srv, token=answer["token"])
        return c.hello
    h = run(hello())
    assert (h["user"], h["tenant"]) == ("alice", tenant), h

    # A form, and the default tenant.
    status, _, body = post(srv.port, "/dev/token", "user=bob", "application/x-www-form-urlencoded")
    assert status == 200 and token_claims(json.loads(body)["token"])["tenant"] == "default", body
    for bad in ({}, {"user": "a b"}, {"user": 7}, {"user": "x" * 65}, {"user": "ok", "tenant": "t t"}):
        status, _, body = post(srv.port, "/dev/token", bad)
        assert status == 400 and json.loads(body)["status"] == 400, (bad, status, body)
    assert post(srv.port, "/dev/token", "user=bob", "text/plain")[0] == 400
    status, headers, _ = post(srv.port, "/dev/token", "", method="PUT")
    assert status == 405 and headers["allow"] == "GET, HEAD, POST", headers
    assert "dev token for alice@" in srv.log() and answer["token"] not in srv.log()


def test_dev_token_only_for_trusted_peers(make_server):
    srv = make_server(workers=1, dev_tokens=1, monitoring_trusted="10.1.2.0/24")
    assert srv.get("/dev/token")[0] == 404
    assert post(srv.port, "/dev/token", {"user": "alice"})[0] == 404


def test_dev_tokens_need_hs256(env, tmp_path):
    conf = write_config(tmp_path / "rs.conf", port=8080, dev_tokens=1, jwt_alg="RS256",
                        jwt_public_key_file=str(tmp_path / "none.pem"))
    proc = run_chatd("-t", "-c", conf)
    assert proc.returncode != 0
    # The key file is checked first; with a key, dev_tokens is the complaint.
    pem = tmp_path / "pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(tmp_path / "key.pem")], check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "key.pem"), "-pubout", "-out", str(pem)],
                   check=True, capture_output=True, timeout=30)
    conf = write_config(tmp_path / "rs.conf", port=8080, dev_tokens=1, jwt_alg="RS256",
                        jwt_public_key_file=str(pem))
    proc = run_chatd("-t", "-c", conf)
    assert proc.returncode == 1 and "dev_tokens = 1 needs jwt_alg HS256" in proc.stderr, proc.stderr


@pytest.mark.parametrize("path", ["/no-such-file.css", "/static/no/such/file.js"])
def test_missing_file_is_404(server, path):
    status, _, _ = server.get(path, timeout=5)
    assert status == 404


def test_monitoring_json_is_json(server):
    status, headers, body = server.get("/api/monitoring/websocket")  # loopback is trusted
    assert status == 200 and "json" in headers.get("content-type", ""), headers
    assert isinstance(json.loads(body), dict)


def test_check_good_config(env, tmp_path):
    proc = run_chatd("-t", "-c", write_config(tmp_path / "good.conf", port=8080))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("key,value", [("port", "abc"), ("workers", -3), ("port", 70000),
                                       ("bogus", 1)])
def test_check_bad_config_names_the_key(env, tmp_path, key, value):
    proc = run_chatd("-t", "-c", write_config(tmp_path / "bad.conf", **{"port": 8080, key: value}))
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if re.search(rf"\b{key}\b", line)]
    assert len(lines) == 1, proc.stdout + proc.stderr


@pytest.fixture
def empty_database(env, db):
    name = unique_id("chatd_empty").replace("-", "_")
    with db.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield urlsplit(env["DATABASE_URL"])._replace(path=f"/{name}").geturl()
    with db.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_refuses_to_start_on_unmigrated_schema(make_server, empty_database):
    srv = make_server(wait=False, database_url=empty_database)
    rc = srv.wait(10)
    assert rc not in (None, 0), f"exit code {rc} (None: still running)"
    assert re.search(r"make migrate|scripts/migrate\.sh", srv.log()), srv.log()[-2000:]


def test_monitoring_reports_memory_parts(server):
    """process: the worker's heap (allocated, free) and what the connections
    hold (conn_heap_kb: socket, strings, queues, frame readers), which grows
    with connections by well under 1 KiB each (bench/README splits an idle
    connection's memory with these)."""
    from chatd_harness import close_all_clients, eventually_async, open_hello, run

    def conn_kb():
        proc = server.get_json("/api/monitoring/websocket")["process"]
        for k in ("answering_worker_heap_used_kb", "answering_worker_heap_free_kb"):
            assert isinstance(proc[k], int) and proc[k] >= 0, proc
        return proc["conn_heap_kb"]

    async def main():
        before = conn_kb()
        tenant = unique_id("mem")
        for i in range(100):
            await open_hello(server, make_token(f"u{i}", tenant=tenant))

        def grew():
            # ~0.5 KiB per idle connection: the libuv handle and chatd's own
            # state; the handshake's buffers are gone once the hello is out.
            grown = conn_kb() - before
            assert 25 <= grown <= 100, (before, conn_kb())
        await eventually_async(grew, timeout=5, what="conn_heap_kb to grow with 100 connections")
        await close_all_clients()
    run(main(), timeout=30)


def handshake_seconds(port, token):
    """Time from the upgrade request to having both the 101 and the hello
    frame; also checks what arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        request = upgrade_request(port, f"/ws?token={token}")
        t0 = time.monotonic()
        sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf or b'"type":"hello"' not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"closed during the handshake: {buf[:200]!r}"
            buf += chunk
        elapsed = time.monotonic() - t0
    assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
    return elapsed


def test_hello_follows_the_upgrade_at_once(server):
    """chatd holds the 101 back (TCP_CORK) so that it leaves with the hello
    in one segment; the hold must end with the hello's write, not with the
    kernel's 200 ms cork timer."""
    times = [handshake_seconds(server.port, make_token(f"h{i}", unique_id("t")))
             for i in range(20)]
    assert statistics.median(times) < 0.1, \
        f"101 + hello took {statistics.median(times) * 1000:.0f} ms (median of 20)"
