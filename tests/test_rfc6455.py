"""RFC 6455 on the wire: chatd's WebSocket transport, byte by byte.

A tiny raw client (a plain socket, a frame builder that can break every rule
on purpose, a reader that checks every server frame) pins down what the
server does with each handshake and frame case. The expected behaviour is
the transport's spec, written down here case by case:

- handshake: 426 + `Sec-WebSocket-Version: 13` for a version other than 13
  (or none), 400 for a missing or bad key, 101 with the right accept value,
  `chat.v1` echoed when offered, 4xx for a non-GET upgrade, 404 elsewhere;
- protocol errors (unmasked frame, RSV bits, reserved opcodes, bad control
  frames, bad fragmentation, bad close codes, 63-bit lengths) close with 1002;
  invalid UTF-8 (in text or in a close reason) closes with 1007, as soon as
  the first bad byte is read; a message over max_frame_bytes closes with 1009
  as soon as its header says so;
- every close frame the server sends is followed by the server closing TCP
  within 2 s, whether or not the client answers it.

Every read is bounded (5 s for an answer, 2 s for the EOF after a close);
nothing sleeps to synchronise: a test reads until the frame it expects, or
EOF. The reader fails a test on any masked, reserved-bit, unknown-opcode,
oversized-control, non-minimal-length or non-UTF-8/non-JSON server frame,
and on any byte after the server's close frame.
"""

import base64
import hashlib
import json
import os
import re
import socket
import struct
import time

import pytest

from chatd_harness import Server, make_token, sanitizer_reports, unique_id

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
READ_TIMEOUT = 5.0   # any expected answer
EOF_WITHIN = 2.0     # TCP closed after the server's close frame

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KNOWN_OPCODES = (CONT, TEXT, BINARY, CLOSE, PING, PONG)
RSV1, RSV2, RSV3 = 0b100, 0b010, 0b001


# ------------------------------------------------------------------ frames

def apply_mask(data, key):
    """data XOR the 4-byte key repeated (RFC 6455 5.3)."""
    if not data:
        return b""
    stream = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def build_frame(opcode, payload=b"", *, fin=True, rsv=0, mask=True, mask_key=None,
                length=None, enc=None):
    """A client frame, correct by default, broken on request.

    rsv: RSV1|RSV2|RSV3 bits; mask=False: an unmasked frame; length: the
    length announced in the header (default len(payload)); enc: 7, 16 or 64,
    the length encoding (default the shortest); opcode: any 4-bit value."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    if enc is None:
        enc = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mbit = 0x80 if mask else 0
    if enc == 7:
        head = bytes([b0, mbit | n])
    elif enc == 16:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = mask_key or os.urandom(4)
        return head + key + apply_mask(payload, key)
    return head + payload


def close_body(code, reason=b""):
    return struct.pack("!H", code) + (reason.encode() if isinstance(reason, str) else reason)


def ping_json(rid, **extra):
    return json.dumps({"type": "ping", "id": rid, **extra}, separators=(",", ":")).encode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def server_may_send_close_code(code):
    """Codes a close frame may carry on the wire (RFC 6455 7.4.1/7.4.2)."""
    return (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999)


class Frame:
    def __init__(self, fin, opcode, payload):
        self.fin, self.opcode, self.payload = fin, opcode, payload

    def __repr__(self):
        return f"<frame fin={int(self.fin)} op={self.opcode:#x} {self.payload[:80]!r}>"

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def json(self):
        return json.loads(self.payload)


# -------------------------------------------------------------- raw client

def upgrade_bytes(port, path="/ws", *, method="GET", key="random", version="13",
                  protocol=None, extra=()):
    """An upgrade request by hand; key/version None leave the header out."""
    if key == "random":
        key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


class RawWs:
    """One TCP connection: the upgrade, then frames in both directions, each
    server frame checked as it is read."""

    def __init__(self, port, timeout=READ_TIMEOUT):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.status = None
        self.version = None
        self.headers = {}
        self.head = b""
        self.server_msg_op = None   # opcode of a fragmented server message in progress
        self.server_msg = b""
        self.close_frame = None     # the server's close frame, once read
        self.closed_at = None
        self.reset = False          # the server reset the connection (RST)

    # -- handshake

    def handshake(self, path="/ws", **kw):
        """Send an upgrade request; read the status line and headers.
        Returns the status code (None if the server hung up without one)."""
        request, self.key = upgrade_bytes(self.port, path, **kw)
        self.sock.sendall(request)
        deadline = time.monotonic() + READ_TIMEOUT
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline, "the handshake answer"):
                break
        if b"\r\n\r\n" not in self.buf:
            self.head, self.buf = self.buf, b""
        else:
            self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = self.head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/(\d\.\d) (\d{3})", lines[0])
        if not m:
            return None
        self.version, self.status = m.group(1), int(m.group(2))
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                name = name.strip().lower()
                value = value.strip()
                self.headers[name] = (self.headers[name] + ", " + value
                                      if name in self.headers else value)
        return self.status

    @classmethod
    def open(cls, port, tenant, user="raw", **kw):
        """A connection past the 101 and the hello frame."""
        ws = cls(port)
        status = ws.handshake(f"/ws?token={make_token(user, tenant)}", **kw)
        assert status == 101, f"upgrade answered {status}: {ws.head[:300]!r}"
        hello = ws.next_message()
        assert hello.opcode == TEXT and hello.json().get("type") == "hello", hello
        return ws

    def close(self):
        self.sock.close()

    # -- bytes

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def _fill(self, deadline, what):
        """Read more bytes into buf; False at EOF (or a reset)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} within the deadline (buffered: {self.buf[:100]!r})")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no {what} within the deadline "
                                 f"(buffered: {self.buf[:100]!r})") from None
        except ConnectionResetError:
            self.reset = True
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    # -- server frames

    def read_frame(self, timeout=READ_TIMEOUT, what="frame"):
        """The next server frame, checked; None at EOF."""
        assert self.close_frame is None, "reading past the server's close frame"
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if not self._fill(deadline, what):
                assert not self.buf, f"EOF inside a server frame: {self.buf[:100]!r}"
                return None

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin, rsv, opcode = bool(b[0] & 0x80), (b[0] >> 4) & 7, b[0] & 0x0F
        masked, n, off = bool(b[1] & 0x80), b[1] & 0x7F, 2
        assert not masked, f"server frame is masked: {b[:16]!r}"
        assert rsv == 0, f"server frame has RSV bits {rsv:03b} (no extension agreed): {b[:16]!r}"
        assert opcode in KNOWN_OPCODES, f"server frame with reserved opcode {opcode:#x}"
        if n == 126:
            if len(b) < 4:
                return None
            n, off = struct.unpack("!H", b[2:4])[0], 4
            assert n >= 126, f"server frame length {n} not in its shortest encoding"
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = struct.unpack("!Q", b[2:10])[0], 10
            assert n >= 65536 and not n >> 63, f"server frame length {n:#x} badly encoded"
        if opcode >= 0x8:
            assert fin, f"fragmented server control frame {opcode:#x}"
            assert n <= 125, f"server control frame {opcode:#x} of {n} bytes"
        if len(b) < off + n:
            return None
        frame = Frame(fin, opcode, b[off:off + n])
        self.buf = b[off + n:]
        self._check(frame)
        return frame

    def _check(self, frame):
        """Fragmentation, UTF-8 + JSON of text, close frame rules."""
        op = frame.opcode
        if op == CONT:
            assert self.server_msg_op is not None, "server CONT frame without a message"
            self.server_msg += frame.payload
        elif op in (TEXT, BINARY):
            assert self.server_msg_op is None, "server data frame inside a fragmented message"
            self.server_msg_op, self.server_msg = op, frame.payload
        elif op == CLOSE:
            body = frame.payload
            assert len(body) != 1, "server close frame with a 1-byte body"
            if body:
                code = frame.close_code
                assert server_may_send_close_code(code), \
                    f"server sent close code {code} (close payload {body[:40]!r})"
                try:
                    body[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise AssertionError(f"server close {code} with a reason that is not "
                                         f"UTF-8: {body[2:]!r}") from None
            self.close_frame = frame
            self.closed_at = time.monotonic()
            return
        else:
            return
        if frame.fin:
            if self.server_msg_op == TEXT:
                try:
                    text = self.server_msg.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise AssertionError(f"server text frame is not UTF-8: {e}: "
                                         f"{self.server_msg[:200]!r}") from None
                value = json.loads(text)
                assert isinstance(value, dict), f"server text frame is not a JSON object: {text}"
            self.server_msg_op = None

    def next_message(self, timeout=READ_TIMEOUT, what="message"):
        """The next control frame, or complete data message (as one Frame);
        None at EOF."""
        deadline = time.monotonic() + timeout
        parts, op = [], None
        while True:
            frame = self.read_frame(max(deadline - time.monotonic(), 0.001), what)
            if frame is None:
                return None
            if frame.opcode >= 0x8:
                return frame
            if frame.opcode != CONT:
                op = frame.opcode
            parts.append(frame.payload)
            if frame.fin:
                return Frame(True, op, b"".join(parts))

    def reply(self, rid, timeout=READ_TIMEOUT):
        """The next text message, which must be the reply with this id."""
        msg = self.next_message(timeout, f"reply {rid!r}")
        assert msg is not None, f"EOF instead of the reply {rid!r}"
        assert msg.opcode == TEXT, f"expected the reply {rid!r}, got {msg}"
        value = msg.json()
        assert value.get("id") == rid, f"expected the reply {rid!r}, got {value}"
        return value

    def expect_pong(self, rid, timeout=READ_TIMEOUT):
        value = self.reply(rid, timeout)
        assert value.get("type") == "pong", value
        return value

    def expect_close(self, code, timeout=READ_TIMEOUT, eof=True):
        """Read until the server's close frame (other frames before it are
        allowed); it must carry code (code None: an empty close or 1000).
        Then, unless eof=False, the server must close TCP within EOF_WITHIN s
        without the client answering. Returns the frames before the close."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            msg = self.next_message(max(deadline - time.monotonic(), 0.001),
                                    f"close frame {code}")
            assert msg is not None, (f"the server hung up without a close frame "
                                     f"(expected {code}; reset={self.reset}; frames: {before})")
            if msg.opcode == CLOSE:
                break
            before.append(msg)
        got = msg.close_code
        if code is None:
            assert got in (None, 1000), f"expected an empty close or 1000, got {got} {msg}"
        else:
            assert got == code, f"expected close {code}, got {got} ({msg.payload[2:]!r}); " \
                                f"frames before: {before}"
        if eof:
            self.expect_eof()
        return before

    def expect_eof(self, within=EOF_WITHIN):
        """After the server's close frame: nothing more, and EOF within
        `within` s of that frame (a reset counts as the end too)."""
        assert self.close_frame is not None
        deadline = self.closed_at + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"TCP still open {within}s after the server's close frame")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"TCP still open {within}s after the server's close "
                                     "frame (the client did not answer it)") from None
            except ConnectionResetError:
                self.reset = True
                return
            if not chunk:
                return
            raise AssertionError(f"bytes after the server's close frame: {chunk[:100]!r}")

    def read_to_eof(self, timeout=READ_TIMEOUT):
        """Every message until EOF (the close frame included, last)."""
        deadline = time.monotonic() + timeout
        out = []
        while self.close_frame is None:
            msg = self.next_message(max(deadline - time.monotonic(), 0.001), "EOF")
            if msg is None:
                return out
            out.append(msg)
        self.expect_eof(max(deadline - time.monotonic(), 0.001))
        return out


# ---------------------------------------------------------------- fixtures

def stop_checked(srv):
    """Stop a module's own server (as conftest's teardown does): fail on a
    hang, a crash or a sanitizer report."""
    try:
        srv.stop(timeout=15)
    finally:
        reports = sanitizer_reports(srv.log())
        if reports:
            pytest.fail(f"port {srv.port}: crash or sanitizer report in {srv.log_path}:\n"
                        + "\n".join(reports[:10]), pytrace=False)


@pytest.fixture(scope="module")
def tenant_m():
    return unique_id("rfc")


@pytest.fixture
def ws(server, tenant_m):
    conn = RawWs.open(server.port, tenant_m)
    yield conn
    conn.close()


MAX_FRAME = 4096


@pytest.fixture(scope="module")
def small_server(env, tmp_path_factory):
    """A chatd whose largest incoming message is 4096 bytes."""
    srv = Server(tmp_path_factory.mktemp("chatd-small"), workers=1,
                 max_frame_bytes=MAX_FRAME).start()
    yield srv
    stop_checked(srv)


@pytest.fixture
def small_ws(small_server, tenant_m):
    conn = RawWs.open(small_server.port, tenant_m)
    yield conn
    conn.close()


# --------------------------------------------------------------- handshake

def test_handshake_101_accept_and_hello(server, tenant_m):
    ws = RawWs(server.port)
    try:
        status = ws.handshake(f"/ws?token={make_token('hs', tenant_m)}")
        assert status == 101, ws.head
        assert ws.head.startswith(b"HTTP/1.1 101 "), ws.head[:40]
        h = ws.headers
        assert h.get("sec-websocket-accept") == accept_for(ws.key), (ws.key, h)
        assert h.get("upgrade", "").lower() == "websocket", h
        assert "upgrade" in [t.strip().lower() for t in h.get("connection", "").split(",")], h
        assert "sec-websocket-protocol" not in h, h
        hello = ws.next_message()
        assert hello is not None and hello.opcode == TEXT, hello
        assert hello.json()["type"] == "hello"
    finally:
        ws.close()


@pytest.mark.parametrize("offer", ["chat.v1", "foo, chat.v1"])
def test_handshake_subprotocol_echoed(server, tenant_m, offer):
    ws = RawWs.open(server.port, tenant_m, protocol=offer)
    try:
        assert ws.headers.get("sec-websocket-protocol") == "chat.v1", ws.headers
        ws.send_frame(TEXT, ping_json("sp"))
        ws.expect_pong("sp")
    finally:
        ws.close()


@pytest.mark.parametrize("version", [None, "8", "12", "14", "13x"],
                         ids=["missing", "8", "12", "14", "13x"])
def test_handshake_bad_version_is_426(server, tenant_m, version):
    ws = RawWs(server.port)
    try:
        status = ws.handshake(f"/ws?token={make_token('hs', tenant_m)}", version=version)
        assert status == 426, ws.head[:300]
        assert ws.headers.get("sec-websocket-version") == "13", ws.headers
    finally:
        ws.close()


@pytest.mark.parametrize("key", [
    None, "", "not base64 at all!",
    base64.b64encode(b"x" * 15).decode(), base64.b64encode(b"x" * 17).decode()],
    ids=["missing", "empty", "not-base64", "15-bytes", "17-bytes"])
def test_handshake_bad_key_is_400(server, tenant_m, key):
    ws = RawWs(server.port)
    try:
        status = ws.handshake(f"/ws?token={make_token('hs', tenant_m)}", key=key)
        assert status == 400, ws.head[:300]
    finally:
        ws.close()


def test_handshake_post_is_refused(server, tenant_m):
    ws = RawWs(server.port)
    try:
        status = ws.handshake(f"/ws?token={make_token('hs', tenant_m)}", method="POST",
                              extra=["Content-Length: 0"])
        # 405 (or 400); in any case a 4xx, never a 101.
        assert status is not None and 400 <= status < 500, ws.head[:300]
    finally:
        ws.close()


def test_handshake_other_path_is_404(server, tenant_m):
    ws = RawWs(server.port)
    try:
        status = ws.handshake(f"/nope?token={make_token('hs', tenant_m)}")
        assert status == 404, ws.head[:300]
    finally:
        ws.close()


# ---------------------------------------------------- framing: 1002 cases

def test_unmasked_frame_is_1002_then_prompt_eof(ws):
    ws.send_frame(TEXT, ping_json("u"), mask=False)
    ws.expect_close(1002)  # and EOF within 2 s of it, without the client answering


@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3], ids=["rsv1", "rsv2", "rsv3"])
def test_rsv_bits_are_1002(ws, rsv):
    ws.send_frame(TEXT, ping_json("r"), rsv=rsv)
    before = ws.expect_close(1002)
    assert not before, f"the frame with RSV bits was executed: {before}"


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF],
                         ids=lambda op: f"op{op:x}")
def test_reserved_opcodes_are_1002(ws, opcode):
    ws.send_frame(opcode, b"x")
    ws.expect_close(1002)


def test_control_frame_over_125_bytes_is_1002(ws):
    ws.send_frame(PING, b"p" * 126)
    before = ws.expect_close(1002)
    assert all(f.opcode != PONG for f in before), before


def test_fragmented_ping_is_1002(ws):
    ws.send_frame(PING, b"frag", fin=False)
    before = ws.expect_close(1002)
    assert all(f.opcode != PONG for f in before), before


def test_64bit_length_with_top_bit_is_1002(ws):
    # Only the header (2 + 8 + mask key): the close must not wait for a payload.
    head = bytes([0x80 | TEXT, 0x80 | 127]) + struct.pack("!Q", (1 << 63) | 16) + os.urandom(4)
    ws.send(head)
    ws.expect_close(1002)


def test_continuation_without_message_is_1002(ws):
    ws.send_frame(CONT, ping_json("c"))
    before = ws.expect_close(1002)
    assert not before, before


def test_new_text_inside_fragmented_message_is_1002(ws):
    ws.send_frame(TEXT, b'{"type":"ping",', fin=False)
    ws.send_frame(TEXT, ping_json("n"))
    before = ws.expect_close(1002)
    assert not before, before


# ------------------------------------------------------------ ping / pong

def test_ping_payload_is_echoed_in_pong(ws):
    payload = b"hello \x00\xff ping"  # a ping payload is binary
    ws.send_frame(PING, payload)
    frame = ws.next_message()
    assert frame is not None and frame.opcode == PONG, frame
    assert frame.payload == payload


def test_ten_pings_in_one_write_get_ten_pongs_in_order(ws):
    payloads = [f"p{i}".encode() for i in range(10)]
    ws.send(b"".join(build_frame(PING, p) for p in payloads))
    got = []
    for _ in payloads:
        frame = ws.next_message()
        assert frame is not None and frame.opcode == PONG, (frame, got)
        got.append(frame.payload)
    assert got == payloads
    ws.send_frame(TEXT, ping_json("after-pings"))
    ws.expect_pong("after-pings")


def test_empty_ping_gets_empty_pong(ws):
    ws.send_frame(PING)
    frame = ws.next_message()
    assert frame is not None and frame.opcode == PONG and frame.payload == b"", frame


# ----------------------------------------------------------- fragmentation

def test_fragmented_text_is_reassembled(ws):
    text = b'{"type":"ping","id":"f"}'
    ws.send(build_frame(TEXT, text[:7], fin=False) + build_frame(CONT, text[7:15], fin=False)
            + build_frame(CONT, text[15:]))
    ws.expect_pong("f")


def test_ping_between_fragments_is_answered_in_place(ws):
    text = b'{"type":"ping","id":"g"}'
    ws.send(build_frame(TEXT, text[:10], fin=False) + build_frame(PING, b"mid"))
    frame = ws.next_message()
    assert frame is not None and frame.opcode == PONG and frame.payload == b"mid", frame
    ws.send(build_frame(CONT, text[10:18], fin=False) + build_frame(CONT, text[18:]))
    ws.expect_pong("g")


def test_empty_fragments_are_fine(ws):
    text = b'{"type":"ping","id":"e"}'
    ws.send(build_frame(TEXT, b"", fin=False) + build_frame(CONT, text, fin=False)
            + build_frame(CONT, b""))
    ws.expect_pong("e")


# ---------------------------------------------------------- close handshake

def test_close_1000_is_echoed_then_eof(ws):
    ws.send_frame(CLOSE, close_body(1000, "bye"))
    ws.expect_close(1000)


@pytest.mark.parametrize("code", [1001, 1012, 1013, 3000, 4999])
def test_valid_close_codes_are_echoed(ws, code):
    ws.send_frame(CLOSE, close_body(code, "ok"))
    ws.expect_close(code)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_invalid_close_codes_are_1002(ws, code):
    ws.send_frame(CLOSE, close_body(code))
    ws.expect_close(1002)


def test_one_byte_close_body_is_1002(ws):
    ws.send_frame(CLOSE, b"\x03")
    ws.expect_close(1002)


def test_empty_close_is_answered(ws):
    ws.send_frame(CLOSE)
    ws.expect_close(None)  # an empty close or 1000, then EOF


def test_close_reason_not_utf8_is_1007(ws):
    ws.send_frame(CLOSE, close_body(1000, b"\xff\xfe"))
    ws.expect_close(1007)


def test_frames_after_client_close_are_not_executed(ws):
    ws.send(build_frame(CLOSE, close_body(1000)) + build_frame(TEXT, ping_json("after")))
    frames = ws.read_to_eof()
    assert frames and frames[-1].opcode == CLOSE and frames[-1].close_code == 1000, frames
    for f in frames:
        assert not (f.opcode == TEXT and f.json().get("id") == "after"), \
            f"a frame sent after the close was executed: {frames}"


def test_server_closes_tcp_even_if_client_never_answers_close(ws):
    # Any close the server starts (here a protocol error) is followed by the
    # server's own TCP close within 2 s; the client sends nothing more.
    ws.send_frame(TEXT, ping_json("x"), mask=False)
    ws.expect_close(1002, eof=False)
    ws.expect_eof(EOF_WITHIN)  # counted from the close frame's arrival


# -------------------------------------------------------------------- UTF-8

def test_invalid_utf8_text_is_1007(ws):
    ws.send_frame(TEXT, b'{"type":"ping","id":"\xff"}')
    ws.expect_close(1007)


def test_invalid_utf8_in_first_fragment_is_1007_at_once(ws):
    # The rest of the message is never sent: the close must not wait for it.
    ws.send_frame(TEXT, b'{"type":"ping","id":"\xfe', fin=False)
    ws.expect_close(1007)


def test_invalid_utf8_inside_unfinished_frame_is_1007_at_once(ws):
    # A header announcing 100 bytes, then only 10 of them (an invalid byte
    # among them): the server validates as the bytes come.
    payload = b'{"id":"\xff' + b"a" * 92
    assert len(payload) == 100
    frame = build_frame(TEXT, payload)
    ws.send(frame[:len(frame) - 90])
    ws.expect_close(1007)


@pytest.mark.parametrize("bad", [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                                 b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80"],
                         ids=["overlong-2", "overlong-3", "surrogate", "above-10ffff",
                              "5-byte"])
def test_invalid_utf8_forms_are_1007(ws, bad):
    ws.send_frame(TEXT, b'{"type":"ping","id":"v","x":"' + bad + b'"}')
    ws.expect_close(1007)


def test_truncated_utf8_at_message_end_is_1007(ws):
    # Valid so far, but the message ends inside a character.
    ws.send_frame(TEXT, b'{"type":"ping","id":"t"}\xe2\x82')
    ws.expect_close(1007)


def test_multibyte_character_split_across_fragments_is_accepted(ws):
    text = '{"type":"ping","id":"mb","x":"\u20ac\U0001F600"}'.encode()
    cut = text.index(b"\xe2") + 1      # inside the euro sign
    cut2 = text.index(b"\xf0") + 2     # inside the emoji
    ws.send(build_frame(TEXT, text[:cut], fin=False) + build_frame(CONT, text[cut:cut2], fin=False)
            + build_frame(CONT, text[cut2:]))
    ws.expect_pong("mb")


# ------------------------------------------------------------ max_frame_bytes

def test_frame_header_over_max_frame_bytes_is_1009(small_ws):
    head = build_frame(TEXT, b"", length=MAX_FRAME + 1)  # header + mask key, no payload
    assert len(head) == 8
    small_ws.send(head)
    small_ws.expect_close(1009)


def test_message_of_exactly_max_frame_bytes_is_accepted(small_ws):
    base = len(ping_json("big", pad=""))
    text = ping_json("big", pad="a" * (MAX_FRAME - base))
    assert len(text) == MAX_FRAME
    small_ws.send_frame(TEXT, text)
    # A pong (or an error for the extra field, still with the id): not a close.
    reply = small_ws.reply("big")
    assert reply["type"] in ("pong", "error"), reply


def test_fragmented_message_of_exactly_max_frame_bytes_is_accepted(small_ws):
    base = len(ping_json("bigf", pad=""))
    text = ping_json("bigf", pad="a" * (MAX_FRAME - base))
    small_ws.send(build_frame(TEXT, text[:2000], fin=False) + build_frame(CONT, text[2000:]))
    reply = small_ws.reply("bigf")
    assert reply["type"] in ("pong", "error"), reply


def test_fragments_summing_over_max_frame_bytes_are_1009(small_ws):
    base = len(ping_json("x", pad=""))
    text = ping_json("x", pad="a" * (MAX_FRAME + 1 - base))
    assert len(text) == MAX_FRAME + 1
    # The first fragment whole, the second one's header only: the header
    # already makes the message too large.
    small_ws.send(build_frame(TEXT, text[:2048], fin=False)
                  + build_frame(CONT, b"", length=len(text) - 2048))
    small_ws.expect_close(1009)


# ------------------------------------------------------------ application

def test_binary_frame_gets_bad_request_and_stays_open(ws):
    ws.send_frame(BINARY, ping_json("bin"))
    msg = ws.next_message()
    assert msg is not None and msg.opcode == TEXT, msg
    err = msg.json()
    assert err.get("type") == "error" and err.get("code") == "bad_request", err
    ws.send_frame(TEXT, ping_json("after-bin"))
    ws.expect_pong("after-bin")


def test_deeply_nested_json_gets_one_bad_request_with_its_id(ws):
    deep = b'{"id":"deep","type":"ping","x":' + b"[" * 40 + b"]" * 40 + b"}"
    ws.send_frame(TEXT, deep)
    err = ws.reply("deep")
    assert err.get("type") == "error" and err.get("code") == "bad_request", err
    # Exactly one reply: the next frame is the answer to the next request.
    ws.send_frame(TEXT, ping_json("after-deep"))
    ws.expect_pong("after-deep")


def test_server_frames_are_unmasked_utf8_json(ws):
    """The reader checks every server frame (unmasked, no RSV, minimal length,
    UTF-8 JSON objects in text); drive a few kinds of them."""
    ws.send_frame(TEXT, ping_json("s1"))
    ws.expect_pong("s1")
    ws.send_frame(TEXT, json.dumps({"type": "no:such:type", "id": "s2"}).encode())
    assert ws.reply("s2")["type"] == "error"
    ws.send_frame(TEXT, b'{"id":"s3","type":')  # not JSON: an error without an id
    msg = ws.next_message()
    assert msg is not None and msg.opcode == TEXT, msg
    assert msg.json().get("type") == "error", msg
    ws.send_frame(TEXT, ping_json("s4"))
    ws.expect_pong("s4")


def test_error_naming_a_cut_multibyte_type_is_still_utf8(ws):
    """An unknown type of many 2-byte characters, at an odd byte offset: an
    error message that quotes it cut to a byte limit must not cut a
    character in half (the reader fails on a non-UTF-8 text frame)."""
    weird = "a" + "\u00e9" * 60
    ws.send_frame(TEXT, json.dumps({"type": weird, "id": "w"}, ensure_ascii=False).encode())
    err = ws.reply("w")
    assert err.get("type") == "error" and err.get("code") == "bad_request", err
