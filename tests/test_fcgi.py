"""chatd-fcgi behind Debian's nginx (docs/fcgi.md): conf/nginx/chatd.conf as
it is, its four marked values replaced, in front of chatd and chatd-fcgi on
the test services. A message posted with curl through nginx -> chatd-fcgi
reaches a WebSocket client and an event-stream client (both through nginx);
the same Idempotency-Key twice is one message; errors keep their statuses
through FastCGI; chatd-fcgi's own figures; every process stops cleanly,
chatd-fcgi's log checked for sanitizer reports like chatd's."""

import asyncio
import fcntl
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chatd_harness import (REPO, Client, Server, Stream, chatd_env, check_message_new, child_env,
                           eventually, free_port, http_get, make_token, pg_messages, run,
                           sanitizer_reports, unique_id)
from conftest import shut_down

NGINX = "/usr/sbin/nginx"
SITE = REPO / "conf" / "nginx" / "chatd.conf"
# What conf/nginx/chatd.conf marks to change: each line is in it once.
LISTEN = "listen 127.0.0.1:8000;"
CHATD = "server 127.0.0.1:8080;"
FCGI = "server unix:/run/chatd/fcgi.sock;"


def fcgi_binary():
    """CHATD_FCGI_BIN, else chatd-fcgi beside CHATD_BIN (build/asan/)."""
    path = os.environ.get("CHATD_FCGI_BIN") or \
        os.path.join(os.path.dirname(chatd_env()["CHATD_BIN"]), "chatd-fcgi")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no chatd-fcgi binary at {path}: run `make asan`")
    return path


class Fcgi:
    """chatd-fcgi with chatd's configuration file (fcgi_socket set in it)."""

    def __init__(self, workdir, conf_path, sock):
        self.conf_path, self.sock = conf_path, sock
        self.log_path = workdir / "chatd-fcgi.log"
        self.proc = None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout=15):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([fcgi_binary(), "-c", str(self.conf_path)], stdout=log,
                                         stderr=subprocess.STDOUT, env=child_env(), cwd=REPO,
                                         start_new_session=True)

        def listening():
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"chatd-fcgi exited with {rc}:\n{self.log()[-3000:]}")
            assert self.sock.is_socket(), f"no socket at {self.sock}"
            log = self.log()
            assert "redis command link connected" in log and "postgres requests connection up" \
                in log, "backends not connected yet"
        eventually(listening, timeout, what="chatd-fcgi listening")
        return self

    def stop(self, timeout=15):
        """SIGTERM; the exit code (the process is killed and the test fails
        if it is still running after timeout seconds)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise AssertionError(f"chatd-fcgi did not exit within {timeout}s of SIGTERM")


class Nginx:
    """Debian's nginx as this user, on a free loopback port, everything it
    writes under workdir; the site is conf/nginx/chatd.conf."""

    def __init__(self, workdir, chatd_port, sock):
        self.workdir = workdir
        self.port = free_port()
        site = SITE.read_text()
        for mark, value in ((LISTEN, f"listen 127.0.0.1:{self.port};"),
                            (CHATD, f"server 127.0.0.1:{chatd_port};"),
                            (FCGI, f"server unix:{sock};")):
            assert site.count(mark) == 1, f"{SITE}: '{mark}' must be in it once"
            site = site.replace(mark, value)
        (workdir / "site.conf").write_text(site)
        # `include fastcgi_params` is relative to the main file's directory.
        shutil.copy("/etc/nginx/fastcgi_params", workdir / "fastcgi_params")
        temp = "".join(f"    {kind}_temp_path {workdir}/temp/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # As root, nginx would run its workers as nobody; keep them ours.
        user = ""
        if os.geteuid() == 0:
            user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};\n"
        (workdir / "nginx.conf").write_text(
            f"{user}worker_processes 1;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {workdir}/access.log;\n{temp}"
            f"    include {workdir}/site.conf;\n}}\n")
        self.proc = None

    def ws_url(self, token=None):
        return f"ws://127.0.0.1:{self.port}/ws" + (f"?token={token}" if token else "")

    def error_log(self):
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout=15):
        assert os.access(NGINX, os.X_OK), f"{NGINX} missing: run scripts/deps.sh (Debian's nginx)"
        (self.workdir / "temp").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"), "-g",
             f"daemon off; pid {self.workdir}/nginx.pid; error_log {self.workdir}/error.log;"],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "nginx.out", "ab"),
            start_new_session=True)

        def up():
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"nginx exited with {rc}: "
                                   f"{(self.workdir / 'nginx.out').read_text()}{self.error_log()}")
            status, _, _ = http_get(self.port, "/health", timeout=1)
            assert status == 200, f"/health through nginx: {status}"
        eventually(up, timeout, what="nginx up")
        return self

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: open requests finish
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise AssertionError(f"nginx did not exit within {timeout}s of SIGQUIT")


class Site:
    """chatd, chatd-fcgi and nginx in front of both; port and ws_url are
    nginx's, so the harness's Client connects through it."""

    def __init__(self, workdir):
        self.sock = workdir / "fcgi.sock"
        assert len(str(self.sock)) < 100, f"socket path too long for sun_path: {self.sock}"
        # Monitoring by admin token only: nginx's address (127.0.0.1) is
        # every client's here.
        self.chatd = Server(workdir / "chatd", fcgi_socket=str(self.sock), fcgi_threads=4,
                            monitoring_trusted="")
        self.fcgi = Fcgi(workdir, self.chatd.conf_path, self.sock)
        self.nginx = Nginx(workdir, self.chatd.port, self.sock)

    @property
    def port(self):
        return self.nginx.port

    def ws_url(self, token=None):
        return self.nginx.ws_url(token)


@pytest.fixture(scope="module")
def site(env, tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("fcgi"))
    problems = []
    try:
        s.chatd.start()
        s.fcgi.start()
        s.nginx.start()
        yield s
    finally:
        if s.nginx.proc is not None:
            try:
                s.nginx.stop()
            except AssertionError as e:
                problems.append(str(e))
        if s.fcgi.proc is not None:
            try:
                rc = s.fcgi.stop()
                if rc != 0:
                    problems.append(f"chatd-fcgi exited {rc}:\n{s.fcgi.log()[-2000:]}")
            except AssertionError as e:
                problems.append(str(e))
        reports = sanitizer_reports(s.fcgi.log())
        if reports:
            problems.append(f"chatd-fcgi: sanitizer report in {s.fcgi.log_path}:\n"
                            + "\n".join(reports[:10]))
        if s.fcgi.proc is not None and s.sock.exists():
            problems.append(f"chatd-fcgi left its socket {s.sock}")
        shut_down([s.chatd])
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def curl(site, method, path, body=None, token=None, headers=None, data=None):
    """One request with curl through nginx: (status, {lower-case header:
    value}, the JSON body or the raw bytes)."""
    args = ["curl", "-sS", "-i", "--max-time", "10", "-X", method, "-H", "Expect:"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    payload = data if data is not None else (json.dumps(body).encode() if body is not None
                                             else None)
    if payload is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    args.append(f"http://127.0.0.1:{site.port}{path}")
    proc = subprocess.run(args, input=payload or b"", capture_output=True, timeout=20)
    assert proc.returncode == 0, f"curl {method} {path}: {proc.stderr.decode()}"
    head, _, rest = proc.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    if hdrs.get("content-type") == "application/json":
        rest = json.loads(rest)
    return int(lines[0].split()[1]), hdrs, rest


def err(result, status, code):
    """A chatd-fcgi error: the status, the code, the REST API's format."""
    st, hdrs, body = result
    assert st == status, result
    assert hdrs["content-type"] == "application/json" and hdrs["cache-control"] == "no-store", hdrs
    assert body["code"] == code and body["status"] == status and body["error"], body
    return hdrs


def test_curl_message_reaches_websocket_and_event_stream(site, tenant):
    alice = make_token("alice", tenant)

    def post(body, key):
        return curl(site, "POST", f"/api/rooms/{room}/messages", {"body": body}, alice,
                    {"Idempotency-Key": key})

    async def main():
        st, _, created = await asyncio.to_thread(
            curl, site, "POST", "/api/rooms", {"room": room, "name": "Through nginx",
                                               "members": ["bob", "carol"]}, alice)
        assert st == 201 and created["room"]["id"] == room, created
        bob = await Client.connect(site, "bob", tenant)  # ws://nginx/ws
        await bob.ok("room:join", room=room)
        carol = await asyncio.to_thread(Stream, site.port, f"/api/events?rooms={room}",
                                        {"Authorization": f"Bearer {make_token('carol', tenant)}"})
        try:
            assert carol.status == 200 and carol.head["content-type"] == "text/event-stream", \
                carol.head
            await asyncio.to_thread(carol.take, 1, lambda e: e["type"] == "room:joined")

            key = unique_id("key")
            st, _, ack = await asyncio.to_thread(post, "hello through nginx", key)
            assert st == 201 and ack["seq"] == 1, ack
            frame = await bob.next_event("message:new", timeout=10)
            check_message_new(frame, room, ack, "alice", "hello through nginx", key)
            got = await asyncio.to_thread(carol.take, 1, lambda e: e["type"] == "message:new")
            check_message_new(got[0], room, ack, "alice", "hello through nginx", key)

            # The same key again: the first answer, and no event.
            st, _, again = await asyncio.to_thread(post, "hello through nginx", key)
            assert st == 201 and again == ack, (again, ack)
            # The next event either client gets is a later message's.
            key2 = unique_id("key")
            st, _, marker = await asyncio.to_thread(post, "after the repeat", key2)
            assert st == 201 and marker["seq"] == ack["seq"] + 1, marker
            frame = await bob.next_event("message:new", timeout=10)
            check_message_new(frame, room, marker, "alice", "after the repeat", key2)
            assert bob.buffered("message:new") == []
            got = await asyncio.to_thread(carol.take, 1, lambda e: e["type"] == "message:new")
            check_message_new(got[0], room, marker, "alice", "after the repeat", key2)
        finally:
            carol.close()
        st, _, page = await asyncio.to_thread(
            curl, site, "GET", f"/api/rooms/{room}/messages?limit=10", None,
            make_token("bob", tenant))
        assert st == 200 and [(e["seq"], e["msg"]["client_msg_id"]) for e in page["events"]] == \
            [(1, key), (2, key2)], page
        return key, key2

    room = unique_id("room")
    key, key2 = run(main())
    # One message for the key in PostgreSQL too, once the sync wrote them.
    def synced():
        rows = [(r[0], r[2]) for r in pg_messages(tenant, room)]
        assert rows == [(1, key), (2, key2)], rows
    eventually(synced, timeout=10, what="both messages in PostgreSQL, once each")


def test_concurrent_posts_use_every_thread(site, tenant):
    """More requests at once than chatd-fcgi has threads: each answered,
    each its own seq."""
    tok = make_token("alice", tenant)
    room = unique_id("room")
    assert curl(site, "POST", "/api/rooms", {"room": room, "name": "busy"}, tok)[0] == 201

    def post(i):
        return curl(site, "POST", f"/api/rooms/{room}/messages", {"body": f"m{i}"}, tok,
                    {"Idempotency-Key": f"c-{i}"})
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(post, range(24)))
    assert all(st == 201 for st, _, _ in results), [r[:1] + r[2:] for r in results if r[0] != 201]
    assert sorted(body["seq"] for _, _, body in results) == list(range(1, 25))


def test_errors_through_fastcgi(site, tenant):
    tok, eve = make_token("alice", tenant), make_token("eve", tenant)
    assert curl(site, "POST", "/api/rooms", {"room": "p", "name": "P", "private": True},
                tok)[0] == 201
    hdrs = err(curl(site, "GET", "/api/rooms"), 401, "unauthorized")
    assert hdrs["www-authenticate"] == "Bearer", hdrs
    err(curl(site, "GET", "/api/rooms", token="not.a.token"), 401, "unauthorized")
    err(curl(site, "GET", "/api/rooms/nope", token=tok), 404, "not_found")
    err(curl(site, "POST", "/api/rooms/nope/messages", {"body": "x"}, tok), 404, "not_found")
    err(curl(site, "GET", "/api/rooms/p", token=eve), 403, "forbidden")
    err(curl(site, "GET", "/api/no/such/route", token=tok), 404, "not_found")
    hdrs = err(curl(site, "PUT", "/api/rooms/p", {}, tok), 405, "bad_request")
    assert hdrs["allow"] == "GET", hdrs
    err(curl(site, "POST", "/api/rooms", data=b"not json", token=tok), 400, "bad_request")
    err(curl(site, "GET", "/api/rooms/p/messages?limit=abc", token=tok), 400, "bad_request")
    err(curl(site, "POST", "/api/rooms/p/messages", {"body": "x"}, tok,
             {"Idempotency-Key": "has space"}), 400, "bad_request")
    err(curl(site, "POST", "/api/rooms", {"room": "p", "name": "again"}, tok), 409, "conflict")
    # Over 64 KiB: chatd-fcgi's 413, the body not read; over nginx's
    # client_max_body_size (1m): nginx's own.
    err(curl(site, "POST", "/api/rooms/p/messages", data=b"x" * 70000, token=tok),
        413, "too_large")
    st, _, _ = curl(site, "POST", "/api/rooms/p/messages", data=b"x" * (1024 * 1024 + 1),
                    token=tok)
    assert st == 413
    # The connection is good after each: a message still goes through.
    assert curl(site, "POST", "/api/rooms/p/messages", {"body": "still fine"}, tok)[0] == 201


def test_monitoring_through_nginx(site):
    admin = make_token("ops", "t1", role="admin")
    err(curl(site, "GET", "/api/monitoring/fcgi"), 401, "unauthorized")
    err(curl(site, "GET", "/api/monitoring/fcgi", token=make_token("bob")), 401, "unauthorized")
    st, _, own = curl(site, "GET", "/api/monitoring/fcgi", token=admin)
    assert st == 200 and own["process"] == "chatd-fcgi" and own["pid"] == site.fcgi.proc.pid, own
    assert own["threads"] == {"configured": 4, "running": 4}, own
    assert own["redis"]["connected"] and own["postgres"]["connected"], own
    assert own["requests"]["total"] >= 3 and own["requests"]["answered"]["4xx"] >= 2, own
    # chatd's monitoring is chatd's (proxied): every worker.
    st, _, workers = curl(site, "GET", "/api/monitoring/websocket", token=admin)
    assert st == 200 and len(workers["workers"]) == site.chatd.workers, workers
    assert curl(site, "GET", "/api/monitoring/websocket")[0] == 401


def test_socket_in_use_is_refused(site, tenant):
    """A second chatd-fcgi on the running one's socket exits 2 and leaves it
    alone (libfcgi alone would replace the file)."""
    proc = subprocess.run([fcgi_binary(), "-c", str(site.chatd.conf_path)], env=child_env(),
                          cwd=REPO, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert "is in use" in proc.stderr and not sanitizer_reports(proc.stderr), proc.stderr
    assert curl(site, "GET", "/api/rooms", token=make_token("alice", tenant))[0] == 200


def test_straight_on_the_socket(site, tenant):
    """What nginx never sends: a body over 64 KiB without CONTENT_LENGTH is
    found while reading (413); no path at all is 400; a body within the
    bound without CONTENT_LENGTH is read to its end."""
    tok = make_token("alice", tenant)
    out = fcgi_request(site.sock, "POST", "/api/rooms", tok, b"x" * 70000, length=False)
    assert out.startswith(b"Status: 413 Content Too Large\r\n") and b'"too_large"' in out, out
    out = fcgi_request(site.sock, "GET", None, tok)
    assert out.startswith(b"Status: 400 Bad Request\r\n"), out
    room = unique_id("room")
    body = json.dumps({"room": room, "name": "n" * 40}).encode()
    out = fcgi_request(site.sock, "POST", "/api/rooms", tok, body, length=False)
    assert out.startswith(b"Status: 201 Created\r\n") and room.encode() in out, out


def second_fcgi(site, workdir, **conf):
    """Another chatd-fcgi: the site's configuration with its own socket and
    conf added."""
    sock = workdir / "second.sock"
    text = site.chatd.conf_path.read_text().replace(str(site.sock), str(sock))
    text += "".join(f"{k} = {v};\n" for k, v in conf.items())
    (workdir / "chatd.conf").write_text(text)
    return Fcgi(workdir, workdir / "chatd.conf", sock).start()


def stopped_cleanly(fcgi):
    rc = fcgi.stop()
    assert rc == 0, fcgi.log()[-2000:]
    assert not fcgi.sock.exists(), "socket left behind"
    assert not sanitizer_reports(fcgi.log()), fcgi.log()[-3000:]


def test_an_answer_that_does_not_come(site, tenant, tmp_path, redis_db):
    """Redis paused past fcgi_timeout_ms: the request is answered 503 in
    time, the command's late answer is dropped, the next request is served."""
    other = second_fcgi(site, tmp_path, fcgi_timeout_ms=1000)
    tok, admin = make_token("alice", tenant), make_token("ops", role="admin")
    try:
        assert fcgi_request(other.sock, "GET", "/api/users/bob/presence", tok) \
            .startswith(b"Status: 200 OK\r\n")
        redis_db.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        start = time.monotonic()
        out = fcgi_request(other.sock, "GET", "/api/users/bob/presence", tok)
        waited = time.monotonic() - start
        assert out.startswith(b"Status: 503 Service Unavailable\r\n"), out
        assert b"Retry-After: 1" in out and b"no answer in time" in out, out
        assert 0.9 < waited < 4.5, waited
        # After the pause: the late answer went nowhere, the next is served.
        time.sleep(max(0.0, start + 5.3 - time.monotonic()))
        out = fcgi_request(other.sock, "GET", "/api/users/bob/presence", tok)
        assert out.startswith(b"Status: 200 OK\r\n"), out
        figures = json.loads(fcgi_request(other.sock, "GET", "/api/monitoring/fcgi", admin)
                             .partition(b"\r\n\r\n")[2])
        assert figures["requests"]["timeouts"] == 1, figures
        assert "not answered in 1000 ms: 503" in other.log()
    finally:
        redis_db.execute_command("CLIENT", "UNPAUSE")
        stopped_cleanly(other)


def test_sigterm_answers_the_request_it_holds(site, tenant, tmp_path):
    """A second chatd-fcgi (same configuration, its own socket) gets SIGTERM
    while a request is half sent (its body still coming): it waits for it,
    answers it 503 (draining), exits 0 and removes its socket."""
    other = second_fcgi(site, tmp_path)
    sock = other.sock
    tok = make_token("alice", tenant)
    try:
        assert fcgi_request(sock, "GET", "/api/rooms", tok).startswith(b"Status: 200 OK\r\n")
        with FcgiClient(sock) as client:
            client.begin("POST", "/api/rooms", tok, b'{"room":"late","name":"Late"}')
            client.wait_read()  # a thread took it and waits for the body's end
            other.proc.send_signal(signal.SIGTERM)
            def draining():
                assert "signal 15: draining" in other.log()
            eventually(draining, 5, what="chatd-fcgi draining")
            time.sleep(0.3)
            assert other.proc.poll() is None, "exited with a request half read"
            out = client.finish()
        assert out.startswith(b"Status: 503 Service Unavailable\r\n"), out[:300]
        assert b'"code":"unavailable"' in out and b"Retry-After: 1" in out, out
    finally:
        stopped_cleanly(other)


# ------------------------------------------------------- a FastCGI client

def _record(rtype, content=b"", request_id=1):
    return bytes([1, rtype, request_id >> 8, request_id & 255, len(content) >> 8,
                  len(content) & 255, 0, 0]) + content


def _pair(name, value):
    def length(n):
        return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")
    return length(len(name)) + length(len(value)) + name + value


class FcgiClient:
    """A web server's side of one FastCGI responder request, straight on a
    chatd-fcgi socket: begin() sends the parameters and the body but not
    its end, finish() ends the body and returns the FCGI_STDOUT bytes."""

    def __init__(self, sock, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(sock))
        self.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def begin(self, method, path, token=None, body=b"", length=True):
        """length False: no CONTENT_LENGTH; path None: no path at all."""
        params = {b"REQUEST_METHOD": method.encode(), b"QUERY_STRING": b"",
                  b"REMOTE_ADDR": b"127.0.0.1"}
        if path is not None:
            params[b"DOCUMENT_URI"] = path.encode()
        if length:
            params[b"CONTENT_LENGTH"] = str(len(body)).encode()
        if token:
            params[b"HTTP_AUTHORIZATION"] = f"Bearer {token}".encode()
        data = _record(1, bytes([0, 1, 0, 0, 0, 0, 0, 0]))  # BEGIN_REQUEST: responder
        data += _record(4, b"".join(_pair(k, v) for k, v in params.items())) + _record(4)
        for i in range(0, len(body), 32768):
            data += _record(5, body[i:i + 32768])
        self.sock.sendall(data)

    def wait_read(self, timeout=10):
        """Until chatd-fcgi has read every byte sent so far (the socket's
        send queue, SIOCOUTQ, is empty)."""
        def drained():
            left = struct.unpack("i", fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ,
                                                  b"\0" * 4))[0]
            assert left == 0, f"{left} bytes not read yet"
        eventually(drained, timeout, what="chatd-fcgi reading the request")

    def finish(self):
        self.sock.sendall(_record(5))
        buf, out = b"", b""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        while len(buf) >= 8:
            rtype, clen, pad = buf[1], buf[4] << 8 | buf[5], buf[6]
            if rtype == 6:  # FCGI_STDOUT
                out += buf[8:8 + clen]
            buf = buf[8 + clen + pad:]
        return out


def fcgi_request(sock, method, path, token=None, body=b"", length=True):
    with FcgiClient(sock) as client:
        client.begin(method, path, token, body, length)
        return client.finish()
