"""HTTP/1.1 on the wire: chatd's own HTTP layer, with raw bytes on sockets.

What the transport must do, case by case: HTTP/1.1 status lines on every
answer (errors included), keep-alive and pipelining (answers in order,
framed by Content-Length), `Connection: close` and HTTP/1.0 ending the
connection, 404 JSON for unknown paths, 405 + Allow, HEAD without a body,
limits (414 request line, 431 headers, 413 declared body) each followed by
the server closing the connection, 408 for a request that does not arrive
within handshake_timeout_s, static assets with ETag/Cache-Control/304 and
no way out of the assets directory, the monitoring event stream, and a
draining server turning new requests away without hanging.

Every read is bounded; nothing sleeps to synchronise (reads go until the
expected answer or EOF).
"""

import json
import re
import select
import signal
import socket
import time

import pytest

from chatd_harness import REPO, Server, unique_id
from test_rfc6455 import RawWs, stop_checked

READ_TIMEOUT = 5.0
EOF_WITHIN = 2.0
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5]\d\d ")


# ------------------------------------------------------------- raw client

def request(method="GET", path="/health", headers=(), version="HTTP/1.1", host=True,
            body=b""):
    lines = [f"{method} {path} {version}"]
    if host:
        lines.append("Host: 127.0.0.1")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Response:
    def __init__(self, status_line, status, headers, body):
        self.status_line, self.status, self.headers, self.body = status_line, status, headers, body

    def __repr__(self):
        return f"<{self.status_line!r} {self.headers} {self.body[:120]!r}>"

    def json(self):
        return json.loads(self.body)


class HttpConn:
    """One TCP connection; responses parsed from the bytes as they come."""

    def __init__(self, port, timeout=READ_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False
        self.reset = False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline, what):
        """More bytes into buf; False at EOF (a reset counts as EOF)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} within the deadline (buffered {self.buf[:200]!r})")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no {what} within the deadline "
                                 f"(buffered {self.buf[:200]!r})") from None
        except ConnectionResetError:
            self.reset = True
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_head(self, timeout=READ_TIMEOUT):
        """(status line, status, {lower-case name: value}); fails at EOF."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline, "response head"):
                raise AssertionError(f"EOF (reset={self.reset}) before a complete response "
                                     f"head: {self.buf[:300]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        m = re.match(rb"HTTP/\d\.\d (\d{3})", lines[0])
        assert m, f"not a status line: {lines[0][:200]!r}"
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            assert sep, f"malformed header line {line!r}"
            name, value = name.strip().lower(), value.strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        return lines[0], int(m.group(1)), headers

    def _take(self, n, deadline, what):
        while len(self.buf) < n:
            if not self._fill(deadline, what):
                raise AssertionError(f"EOF after {len(self.buf)} of {n} bytes of {what}")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self, deadline, what):
        while b"\r\n" not in self.buf:
            if not self._fill(deadline, what):
                raise AssertionError(f"EOF inside {what}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def response(self, method="GET", timeout=READ_TIMEOUT):
        """The next complete response: body framed by Content-Length, chunked
        encoding, or EOF; no body for HEAD, 1xx, 204 and 304."""
        deadline = time.monotonic() + timeout
        status_line, status, headers = self.read_head(timeout)
        if method == "HEAD" or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._line(deadline, "chunk size").split(b";")[0], 16)
                body += self._take(size, deadline, "chunk")
                self._take(2, deadline, "chunk end")
                if size == 0:
                    break
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]), deadline, "body")
        else:
            while self._fill(deadline, "body up to EOF"):
                pass
            body, self.buf = self.buf, b""
        return Response(status_line, status, headers, body)

    def expect_eof(self, within=EOF_WITHIN, what="EOF"):
        """Nothing more from the server, and EOF (or a reset) within `within` s."""
        deadline = time.monotonic() + within
        while not self.eof:
            if not self._fill(deadline, what):
                break
        assert not self.buf, f"bytes after the last response: {self.buf[:200]!r}"


def exchange(port, data, method="GET", timeout=READ_TIMEOUT):
    """One request on a fresh connection: (response, connection)."""
    conn = HttpConn(port)
    conn.send(data)
    return conn.response(method, timeout), conn


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tenant_m():
    return unique_id("h11")


@pytest.fixture(scope="module")
def slow_server(env, tmp_path_factory):
    """A chatd that gives a request (or an upgrade) 2 s to arrive."""
    srv = Server(tmp_path_factory.mktemp("chatd-slow"), workers=1,
                 handshake_timeout_s=2).start()
    yield srv
    stop_checked(srv)


# ------------------------------------------------------------ status lines

STATUS_CASES = {
    "get-health": (request("GET", "/health"), "GET"),
    "get-ready": (request("GET", "/ready"), "GET"),
    "get-missing": (request("GET", "/nope"), "GET"),
    "post-health": (request("POST", "/health", ["Content-Length: 0"]), "POST"),
    "head-health": (request("HEAD", "/health"), "HEAD"),
    "http10": (request("GET", "/health", version="HTTP/1.0"), "GET"),
    "garbage": (b"HELLO\r\n\r\n", "GET"),
    "monitoring-page": (request("GET", "/monitoring"), "GET"),
    "ws-no-token": (request("GET", "/ws", ["Upgrade: websocket", "Connection: Upgrade",
                                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                          "Sec-WebSocket-Version: 13"]), "GET"),
    "ws-bad-version": (request("GET", "/ws", ["Upgrade: websocket", "Connection: Upgrade",
                                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                             "Sec-WebSocket-Version: 8"]), "GET"),
    "ws-other-path": (request("GET", "/nope", ["Upgrade: websocket", "Connection: Upgrade",
                                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                              "Sec-WebSocket-Version: 13"]), "GET"),
}


@pytest.mark.parametrize("case", list(STATUS_CASES))
def test_status_line_is_http11(server, case):
    data, method = STATUS_CASES[case]
    resp, conn = exchange(server.port, data, method)
    conn.close()
    assert STATUS_LINE.match(resp.status_line), resp.status_line


# ------------------------------------------------- keep-alive, pipelining

def test_keep_alive_two_requests_on_one_connection(server):
    with HttpConn(server.port) as conn:
        for _ in range(2):
            conn.send(request("GET", "/health"))
            resp = conn.response()
            assert resp.status == 200, resp
            assert "content-length" in resp.headers, resp.headers
            assert resp.json()["status"] == "ok"


def test_pipelined_requests_answered_in_order(server):
    with HttpConn(server.port) as conn:
        conn.send(request("GET", "/health") + request("GET", "/ready") + request("GET", "/nope"))
        first, second, third = conn.response(), conn.response(), conn.response()
    assert first.status == 200 and first.json()["status"] == "ok", first
    assert second.status in (200, 503) and "ready" in second.json(), second
    assert third.status == 404, third
    for resp in (first, second, third):
        assert "content-length" in resp.headers, resp.headers


def test_connection_close_ends_the_connection(server):
    resp, conn = exchange(server.port, request("GET", "/health", ["Connection: close"]))
    with conn:
        assert resp.status == 200, resp
        conn.expect_eof()


def test_http10_is_answered_then_closed(server):
    resp, conn = exchange(server.port, request("GET", "/health", version="HTTP/1.0"))
    with conn:
        assert resp.status == 200, resp
        assert resp.status_line.startswith(b"HTTP/1.1 "), resp.status_line
        conn.expect_eof()


# ---------------------------------------------------------------- routes

def test_unknown_path_is_404_json(server):
    resp, conn = exchange(server.port, request("GET", "/no/such/route"))
    conn.close()
    assert resp.status == 404, resp
    assert "json" in resp.headers.get("content-type", ""), resp.headers
    assert isinstance(resp.json(), dict), resp.body


def test_post_health_is_405_with_allow(server):
    resp, conn = exchange(server.port, request("POST", "/health", ["Content-Length: 0"]), "POST")
    conn.close()
    assert resp.status == 405, resp
    allowed = {m.strip().upper() for m in resp.headers.get("allow", "").split(",")}
    assert {"GET", "HEAD"} <= allowed, resp.headers


# Every method http-parser knows, up to SOURCE (33): a route's method set is
# 64 bits wide, so none of them may shift a 32-bit mask too far (UBSan
# stops the worker).
@pytest.mark.parametrize("method", ["PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE"])
def test_late_methods_are_405_and_404(server, method):
    with HttpConn(server.port) as conn:
        conn.send(request(method, "/health") + request(method, "/dev/token") + request("GET", "/health"))
        resp = conn.response(method)
        assert resp.status == 405, resp
        resp = conn.response(method)
        assert resp.status == 404, resp     # dev_tokens is 0: the route is not there
        resp = conn.response()
        assert resp.status == 200 and resp.json()["status"] == "ok", resp


def test_head_health_has_no_body(server):
    with HttpConn(server.port) as conn:
        # HEAD then GET, pipelined: if HEAD's answer carried a body, the GET's
        # answer would not start where HEAD's head ends.
        conn.send(request("HEAD", "/health") + request("GET", "/health"))
        head = conn.response("HEAD")
        assert head.status == 200, head
        assert int(head.headers.get("content-length", -1)) > 0, head.headers
        get = conn.response("GET")
        assert get.status == 200 and get.json()["status"] == "ok", get
        assert len(get.body) == int(head.headers["content-length"]), (head, get)


# ---------------------------------------------------------------- limits

def limit_answer(port, data):
    """Send data; the answer, then the server must close the connection."""
    conn = HttpConn(port)
    try:
        try:
            conn.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before all was sent: the answer may still be readable
        resp = conn.response()
        conn.expect_eof()
        return resp
    finally:
        conn.close()


def test_request_line_over_8k_is_414(server):
    resp = limit_answer(server.port, request("GET", "/" + "a" * 9000))
    assert resp.status == 414, resp


def test_one_9k_header_is_431(server):
    resp = limit_answer(server.port, request("GET", "/health", ["X-Big: " + "b" * 9 * 1024]))
    assert resp.status == 431, resp


def test_200_small_headers_are_431(server):
    # 200 headers of ~55 bytes: over 8 KiB in all (and a lot of headers).
    headers = [f"X-Header-Number-{i:03d}: " + "v" * 30 for i in range(200)]
    assert sum(len(h) + 2 for h in headers) > 8 * 1024
    resp = limit_answer(server.port, request("GET", "/health", headers))
    assert resp.status == 431, resp


def test_garbage_request_line_is_400(server):
    resp = limit_answer(server.port, b"HELLO\r\n\r\n")
    assert resp.status == 400, resp


def test_declared_body_too_large_is_413(server):
    # The body is announced, never sent: the answer must not wait for it.
    resp, conn = exchange(server.port, request("GET", "/health", ["Content-Length: 100000"]))
    conn.close()
    assert resp.status == 413, resp


# ------------------------------------------------------------- slowloris

def test_partial_request_gets_408_then_close(slow_server):
    with HttpConn(slow_server.port) as conn:
        t0 = time.monotonic()
        conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        resp = conn.response(timeout=4.5)
        elapsed = time.monotonic() - t0
        assert resp.status == 408, resp
        assert 1.0 <= elapsed <= 4.0, f"408 after {elapsed:.2f}s (handshake_timeout_s = 2)"
        conn.expect_eof()


def test_silent_connection_is_closed(slow_server):
    with HttpConn(slow_server.port) as conn:
        t0 = time.monotonic()
        deadline = t0 + 4.5
        while conn._fill(deadline, "EOF of a silent connection"):
            pass
        elapsed = time.monotonic() - t0
        assert elapsed <= 4.0, f"closed after {elapsed:.2f}s (handshake_timeout_s = 2)"
        if conn.buf:  # a 408 is fine, anything else is not
            assert re.match(rb"HTTP/1\.1 408 ", conn.buf), conn.buf[:200]


def test_trickled_request_is_cut_at_the_timeout(slow_server):
    """Slowloris proper: a header line every 0.4 s never completes the
    request; the timeout counts from the connection, not from the last byte.
    Between lines the client waits for the server to speak (select), so it
    stops trickling as soon as the server answers or hangs up."""
    with HttpConn(slow_server.port) as conn:
        t0 = time.monotonic()
        try:
            conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            for i in range(11):
                readable, _, _ = select.select([conn.sock], [], [], 0.4)
                if readable:
                    break  # an answer or EOF: the server acted
                conn.send(f"X-Slow-{i}: y\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server hung up: what it said before is still readable
        # Whatever arrives (a 408, or nothing) the connection must end by ~4 s.
        deadline = t0 + 4.0
        while not conn.eof:
            conn._fill(deadline, "the end of a trickled request (handshake_timeout_s = 2)")
        if conn.buf:
            assert re.match(rb"HTTP/1\.1 408 ", conn.buf), conn.buf[:200]


# ---------------------------------------------------------- static assets

@pytest.mark.parametrize("path", ["/", "/chat/", "/monitoring", "/monitoring/index.html"])
def test_static_page_has_etag_and_304(server, path):
    with HttpConn(server.port) as conn:
        conn.send(request("GET", path))
        resp = conn.response()
        assert resp.status == 200, resp
        assert resp.headers.get("content-type", "").startswith("text/html"), resp.headers
        assert re.search(rb"<!doctype html|<html", resp.body, re.I), resp.body[:100]
        etag = resp.headers.get("etag")
        assert etag, resp.headers
        assert "cache-control" in resp.headers, resp.headers
        # Conditional GET, then another request pipelined behind it: a 304
        # with a body would break the framing of the next answer.
        conn.send(request("GET", path, [f"If-None-Match: {etag}"]) + request("GET", "/health"))
        cond = conn.response()
        assert cond.status == 304, cond
        assert cond.headers.get("etag") == etag, cond.headers
        after = conn.response()
        assert after.status == 200 and after.json()["status"] == "ok", after


def test_static_if_none_match_other_etag_is_200(server):
    with HttpConn(server.port) as conn:
        conn.send(request("GET", "/monitoring", ['If-None-Match: "not-the-etag"']))
        resp = conn.response()
        assert resp.status == 200 and resp.body, resp


def test_static_missing_file_is_404(server):
    resp, conn = exchange(server.port, request("GET", "/monitoring/no-such-file.js"))
    conn.close()
    assert resp.status == 404, resp


SECRET_FILE = REPO / "chatd.conf"  # one level above assets/


@pytest.mark.parametrize("path", [
    "/../chatd.conf", "/monitoring/../../chatd.conf", "/%2e%2e/chatd.conf",
    "/monitoring/%2e%2e/%2e%2e/chatd.conf", "/..%2fchatd.conf", "/monitoring/..%2f..%2fchatd.conf",
    "/..\\chatd.conf", "/./../chatd.conf"])
def test_path_escaping_assets_is_refused(server, path):
    secret = SECRET_FILE.read_bytes()
    resp, conn = exchange(server.port, request("GET", path))
    conn.close()
    assert resp.status in (400, 404), resp
    assert secret[:60] not in resp.body, "a file outside assets/ was served"


# ------------------------------------------------------- monitoring stream

def test_monitoring_stream_sends_events(server):
    """/api/monitoring/stream (server-sent events; loopback is trusted):
    200 text/event-stream, then a `data: {json}` event about every second
    on a connection that stays open. (Not built in the lws server.)"""
    with HttpConn(server.port) as conn:
        t0 = time.monotonic()
        conn.send(request("GET", "/api/monitoring/stream", ["Accept: text/event-stream"]))
        _, status, headers = conn.read_head()
        assert status == 200, (status, headers)
        assert headers.get("content-type", "").startswith("text/event-stream"), headers
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        deadline = t0 + 3.5
        stream, events = b"", []
        while len(events) < 2:
            if chunked:
                # De-chunk what is buffered; keep an incomplete chunk.
                while True:
                    m = re.match(rb"([0-9A-Fa-f]+)[^\r\n]*\r\n", conn.buf)
                    if not m or len(conn.buf) < m.end() + int(m.group(1), 16) + 2:
                        break
                    size = int(m.group(1), 16)
                    assert size, "the stream ended (last chunk)"
                    stream += conn.buf[m.end():m.end() + size]
                    conn.buf = conn.buf[m.end() + size + 2:]
            else:
                stream, conn.buf = stream + conn.buf, b""
            stream = stream.replace(b"\r\n", b"\n")
            while b"\n\n" in stream:
                block, stream = stream.split(b"\n\n", 1)
                data = [line[5:].lstrip(b" ") for line in block.split(b"\n")
                        if line.startswith(b"data:")]
                if data:
                    value = json.loads(b"\n".join(data))
                    assert isinstance(value, dict), value
                    events.append(value)
            if len(events) >= 2:
                break
            assert conn._fill(deadline, f"2 events (got {len(events)})"), \
                f"the server closed the stream after {len(events)} events"


# ---------------------------------------------------------------- draining

def test_draining_server_turns_requests_away_and_closes_ws_1001(make_server, tenant_m):
    """SIGTERM with a WebSocket open: that client gets close 1001, and a new
    HTTP request meanwhile is refused (listener closed) or answered 503; it
    never hangs. (Drives the process with a signal.)"""
    srv = make_server(workers=1)
    ws = RawWs.open(srv.port, tenant_m, user="drainee")
    try:
        srv.send_signal(signal.SIGTERM)
        ws.expect_close(1001, eof=False)
        # The worker is draining now (its only client has not answered).
        outcome = None
        try:
            with HttpConn(srv.port, timeout=3) as conn:
                conn.send(request("GET", "/health"))
                deadline = time.monotonic() + 3
                while b"\r\n\r\n" not in conn.buf and conn._fill(deadline, "an answer"):
                    pass
                if conn.buf:
                    m = re.match(rb"HTTP/1\.1 (\d{3})", conn.buf)
                    assert m, conn.buf[:200]
                    outcome = int(m.group(1))
                else:
                    outcome = "EOF"  # accepted from the backlog as the listener closed
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
            outcome = type(e).__name__
        assert outcome in (503, "ConnectionRefusedError", "ConnectionResetError",
                           "BrokenPipeError", "EOF"), f"a request while draining: {outcome}"
        ws.expect_eof()
    finally:
        ws.close()
    assert srv.wait(10) == 0, srv.log()[-2000:]
