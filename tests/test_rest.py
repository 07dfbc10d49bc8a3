"""The REST API (docs/protocol.md section 9, docs/rest.md): every route's
success and its error statuses, the same rules as the WebSocket, raw
HTTP/1.1 keep-alive and pipelining with answers that wait on a backend."""

import asyncio
import json
import re
import socket
import subprocess
from pathlib import Path

from chatd_harness import (Client, eventually_async, make_room, make_token, run, services,
                           unique_id)

REPO = Path(__file__).resolve().parent.parent


def call(srv, method, path, body=None, token=None, headers=None, raw=None, timeout=10):
    """One request on a fresh connection: (status, headers, json body)."""
    h = {"Host": "127.0.0.1", "Connection": "close"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = b""
    if raw is not None:
        data = raw
    elif body is not None:
        data = json.dumps(body).encode()
    if data:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(data))
    h.update(headers or {})
    req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as s:
        s.sendall(req.encode() + b"\r\n" + data)
        resp = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    head, _, rest = resp.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    return status, hdrs, json.loads(rest) if rest else None


def err(result, status, code):
    st, hdrs, body = result
    assert st == status, result
    assert body["code"] == code and body["status"] == status and body["error"], body
    assert hdrs["content-type"] == "application/json" and hdrs["cache-control"] == "no-store"
    return body


def test_every_route_succeeds(server, tenant):
    async def main():
        tok, bob = make_token("alice", tenant), make_token("bob", tenant)
        st, _, room = call(server, "POST", "/api/rooms", {"room": "r1", "name": "One",
                                                          "members": ["bob"]}, tok)
        assert st == 201 and room["room"]["id"] == "r1" and room["created"], room
        st, _, info = call(server, "GET", "/api/rooms/r1", token=tok)
        assert st == 200 and info["room"]["name"] == "One" and info["role"] == "admin", info
        st, _, lst = call(server, "GET", "/api/rooms", token=bob)
        assert st == 200 and [r["id"] for r in lst["rooms"]] == ["r1"], lst
        st, _, mem = call(server, "GET", "/api/rooms/r1/members?limit=10", token=tok)
        assert st == 200 and {m["user"] for m in mem["members"]} == {"alice", "bob"}, mem
        st, hdrs, sent = call(server, "POST", "/api/rooms/r1/messages", {"body": "hello rest"},
                              tok, headers={"Idempotency-Key": "k-1"})
        assert st == 201 and sent["seq"] == 1 and sent["msg_id"], sent
        again = call(server, "POST", "/api/rooms/r1/messages", {"body": "hello rest"}, tok,
                     headers={"Idempotency-Key": "k-1"})
        assert again[0] == 201 and again[2] == sent, again
        st, _, page = call(server, "GET", "/api/rooms/r1/messages?limit=10", token=bob)
        assert st == 200 and [e["msg"]["body"] for e in page["events"]] == ["hello rest"], page
        st, _, ed = call(server, "PATCH", f"/api/rooms/r1/messages/{sent['msg_id']}",
                         {"body": "edited"}, tok)
        assert st == 200 and ed["edits"] == 1, ed
        st, _, rx = call(server, "POST", f"/api/rooms/r1/messages/{sent['msg_id']}/reactions",
                         {"emoji": "+1", "add": True}, bob)
        assert st == 200 and rx["count"] == 1, rx
        st, _, found = call(server, "GET", "/api/search?q=edited", token=bob)
        assert st == 200 and [m["msg"]["id"] for m in found["messages"]] in \
            ([sent["msg_id"]], []), found
        st, _, pres = call(server, "GET", "/api/users/bob/presence", token=tok)
        assert st == 200 and pres["presence"][0]["user"] == "bob", pres
        st, _, dl = call(server, "DELETE", f"/api/rooms/r1/messages/{sent['msg_id']}", token=tok)
        assert st == 200 and dl["seq"] > ed["seq"], dl
        st, _, page = call(server, "GET", "/api/rooms/r1/messages?after=0", token=bob)
        assert page["events"][0]["msg"]["deleted"] is True, page
    run(main())


def test_error_statuses(make_server, tenant):
    srv = make_server(rate_send="2/60")

    async def main():
        tok, eve = make_token("alice", tenant), make_token("eve", tenant)
        assert call(srv, "POST", "/api/rooms", {"room": "p", "name": "P", "private": True},
                    tok)[0] == 201
        err(call(srv, "GET", "/api/rooms"), 401, "unauthorized")
        err(call(srv, "GET", "/api/rooms", token="not.a.token"), 401, "unauthorized")
        err(call(srv, "GET", "/api/rooms/p", token=eve), 403, "forbidden")
        err(call(srv, "POST", "/api/rooms/p/messages", {"body": "x"}, eve), 403, "forbidden")
        err(call(srv, "GET", "/api/rooms/nope", token=tok), 404, "not_found")
        err(call(srv, "PATCH", "/api/rooms/p/messages/nope", {"body": "x"}, tok),
            404, "not_found")
        st, hdrs, _ = call(srv, "PUT", "/api/rooms/p", {}, tok)
        assert st == 405 and hdrs["allow"] == "GET", hdrs
        err(call(srv, "POST", "/api/rooms", {"room": "p", "name": "again"}, tok),
            409, "conflict")
        err(call(srv, "POST", "/api/rooms", raw=b"not json", token=tok), 400, "bad_request")
        err(call(srv, "POST", "/api/rooms", raw=b"[1]", token=tok), 400, "bad_request")
        body = err(call(srv, "POST", "/api/rooms/p/messages", {"body": 5}, tok),
                   400, "bad_request")
        assert "body" in body["error"], body
        err(call(srv, "GET", "/api/rooms/p/messages?limit=abc", token=tok), 400, "bad_request")
        err(call(srv, "POST", "/api/rooms/p/messages", {"body": "x"}, tok,
                 headers={"Idempotency-Key": "has space"}), 400, "bad_request")
        body = err(call(srv, "POST", "/api/rooms/p/messages", {"body": "x" * 20000}, tok),
                   413, "too_large")
        st, _, _ = call(srv, "POST", "/api/rooms/p/messages", raw=b"x" * 70000, token=tok)
        assert st == 413
        for i in range(2):
            assert call(srv, "POST", "/api/rooms/p/messages", {"body": f"m{i}"}, tok)[0] == 201
        st, hdrs, body = call(srv, "POST", "/api/rooms/p/messages", {"body": "one more"}, tok)
        assert st == 429 and body["code"] == "rate_limited", body
        assert int(hdrs["retry-after"]) >= 1 and body["retry_after_ms"] > 0, (hdrs, body)
    run(main())


def test_keep_alive_and_pipelining_wait_for_each_answer(server, tenant):
    """Three requests in one write, each answered after Redis or
    PostgreSQL: the answers come back in order on one connection."""
    async def main():
        tok = make_token("alice", tenant)
        room = unique_id("r")
        assert call(server, "POST", "/api/rooms", {"room": room, "name": "n"}, tok)[0] == 201
        reqs = b""
        for i in range(3):
            body = json.dumps({"body": f"p{i}"}).encode()
            reqs += (f"POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {tok}\r\nContent-Length: {len(body)}\r\n"
                     f"Idempotency-Key: pipe-{i}\r\n\r\n").encode() + body
        reqs += (f"GET /api/rooms/{room}/messages HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {tok}\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(reqs)
            resp = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                resp += chunk
        parts = re.split(rb"HTTP/1\.1 ", resp)[1:]
        assert [int(p.split()[0]) for p in parts] == [201, 201, 201, 200], resp[:400]
        seqs = [json.loads(p.split(b"\r\n\r\n", 1)[1])["seq"] for p in parts[:3]]
        assert seqs == [1, 2, 3], seqs
        page = json.loads(parts[3].split(b"\r\n\r\n", 1)[1])
        assert [e["msg"]["body"] for e in page["events"]] == ["p0", "p1", "p2"], page
    run(main())


def test_a_rest_message_reaches_websocket_subscribers(server, tenant):
    async def main():
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(bob)
        tok = make_token("alice", tenant)
        # alice is not a member of... a public room: she may post once joined
        # as a member; REST posts need membership.
        err(call(server, "POST", f"/api/rooms/{room}/messages", {"body": "x"}, tok),
            403, "forbidden")
        await bob.ok("member:add", room=room, user="alice")
        st, _, ack = call(server, "POST", f"/api/rooms/{room}/messages",
                          {"body": "via rest", "mentions": ["bob"]}, tok)
        assert st == 201, ack
        frame = await bob.take(lambda f: f.get("type") == "message:new"
                               and f.get("seq") == ack["seq"], 5, "message:new")
        assert frame["msg"]["body"] == "via rest" and frame["msg"]["user"] == "alice"
        await bob.take(lambda f: f.get("type") == "mention:new", 5, "mention:new")
    run(main())


def test_docs_rest_examples_run(server, tenant):
    """Every curl example of docs/rest.md, with its status."""
    text = (REPO / "docs" / "rest.md").read_text()
    examples = re.findall(r"```sh\n(.*?)```", text, re.S)
    assert examples, "no examples in docs/rest.md"
    env = {"PATH": "/usr/bin:/bin", "CHATD": f"http://127.0.0.1:{server.port}",
           "TOKEN": make_token("alice", tenant), "TOKEN_BOB": make_token("bob", tenant),
           "ROOM": unique_id("docs")}
    ran = 0
    for block in examples:
        for cmd, want in re.findall(r"^(curl .*?)\n# (\d{3})", block, re.M | re.S):
            cmd = cmd.replace("\\\n", " ")
            out = subprocess.run(["bash", "-c", cmd + " -o /dev/null -w '%{http_code}'"],
                                 env=env, capture_output=True, text=True, timeout=15)
            assert out.stdout.strip() == want, (cmd, out.stdout, out.stderr)
            ran += 1
    assert ran >= 8, ran


def test_unavailable_is_503(make_server, tenant):
    """A command whose backend is down answers 503 with the same error
    body: a message posted while Redis is stopped."""
    srv = make_server()

    async def main():
        tok = make_token("alice", tenant)
        room = unique_id("r")
        assert call(srv, "POST", "/api/rooms", {"room": room, "name": "n"}, tok)[0] == 201
        services("stop-redis")
        try:
            body = err(call(srv, "POST", f"/api/rooms/{room}/messages", {"body": "x"}, tok),
                       503, "unavailable")
            assert "retry" in body["error"], body
        finally:
            services("start-redis")
        await eventually_async(lambda: srv.check_workers_ready(), timeout=20,
                               what="Redis back")
        st = None
        for _ in range(50):
            st, _, _ = call(srv, "POST", f"/api/rooms/{room}/messages", {"body": "y"}, tok)
            if st == 201:
                break
            await asyncio.sleep(0.1)
        assert st == 201
    run(main(), timeout=60)
