"""The one harness of chatd's integration tests: every test module imports
its helpers from here.

A test starts real chatd processes (`Server`) against the private test Redis
and PostgreSQL, talks to them over WebSocket and HTTP, and checks exactly what
a user would see. Two kinds of WebSocket connection:

- `Client`: read on demand; replies are matched by request id, every other
  frame is buffered until the test asks for it.
- `Session`: read by its own task, so requests can be pipelined
  (`send_pipelined`) and every frame is seen in arrival order (the delivery,
  fan-out and recovery tests).

An event stream (`Stream`, GET /api/events) is read from a raw socket.

Also: control of the test services (`services`), queries on fresh PostgreSQL
and Redis connections (`pg_rows`, `pg_messages`, `redis_client`) and the
records the delivery tests compare (`record`, `as_record`,
`describe_difference`).

Every wait is bounded: a hung server fails the test instead of hanging the
suite.
"""

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import uuid
from functools import lru_cache
from pathlib import Path

import psycopg2
import redis
import websockets

REPO = Path(__file__).resolve().parent.parent
ENV_FILE = REPO / ".run" / "test" / "env"
SERVICES = REPO / "scripts" / "services.sh"
ENV_KEYS = ("CHATD_BIN", "REDIS_URL", "DATABASE_URL", "REDIS_PORT", "PG_PORT", "RUN_DIR")
# Environment variables that would win over the config file the test writes.
# The operations with a rate limit: key rate_<op>, "N/W" (docs/configuration.md).
RATE_OPS = ("send", "join", "edit", "delete", "react", "member", "search", "presence",
            "typing", "receipt")
CHATD_OVERRIDES = ("CHATD_PORT", "CHATD_LISTEN", "CHATD_WORKERS", "CHATD_INSTANCE",
                   "REDIS_URL", "DATABASE_URL", "CHATD_JWT_SECRET", "CHATD_ASSETS",
                   "CHATD_LOG_LEVEL", *(f"CHATD_RATE_{op.upper()}" for op in RATE_OPS))
# Lines that mean a chatd process crashed or misbehaved, whatever the test saw.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "Assertion `")
SECRET = "test-secret"
ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


# ---------------------------------------------------------------- environment

@lru_cache(maxsize=None)
def chatd_env():
    """CHATD_BIN, REDIS_URL, DATABASE_URL, ...: from the environment (`make test`
    exports them), else from .run/test/env written by scripts/services.sh."""
    env = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "export":
                words = words[1:]
            for word in words:
                key, sep, value = word.partition("=")
                if sep:
                    env[key] = value
    env.update({k: os.environ[k] for k in ENV_KEYS if os.environ.get(k)})
    env.setdefault("CHATD_BIN", "build/asan/chatd")
    env["CHATD_BIN"] = str(REPO / env["CHATD_BIN"])  # no-op for an absolute path
    missing = [k for k in ("REDIS_URL", "DATABASE_URL") if not env.get(k)]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} unset and {ENV_FILE} missing: "
                           "start the test services (scripts/services.sh start test) "
                           "or run `make test`")
    if not os.access(env["CHATD_BIN"], os.X_OK):
        raise RuntimeError(f"no chatd binary at {env['CHATD_BIN']}: run `make asan`")
    return env


def child_env():
    """The environment for a chatd process: no overrides of the config file,
    sanitizer reports on stderr (which goes to the server's log)."""
    env = {k: v for k, v in os.environ.items() if k not in CHATD_OVERRIDES}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")  # as `make test`
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def sanitizer_reports(text):
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def unique_id(prefix):
    """An id matching [A-Za-z0-9._:-]{1,64}, unique per call (rooms, tenants)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------- tokens

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(user, tenant="t1", role=None, ttl=3600, secret=SECRET, exp=None, nbf=None,
               alg="HS256"):
    """A JWT as chatd expects it. ttl=None and exp=None: no exp claim at all.
    alg="none": an unsigned token (which chatd must refuse)."""
    now = int(time.time())
    claims = {"sub": user, "tenant": tenant, "iat": now}
    if role is not None:
        claims["role"] = role
    if exp is not None:
        claims["exp"] = exp
    elif ttl is not None:
        claims["exp"] = now + ttl
    if nbf is not None:
        claims["nbf"] = nbf
    header = {"alg": alg, "typ": "JWT"}
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode()))
    if alg == "none":
        return signing_input + "."
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def token_claims(token):
    return json.loads(b64url_decode(token.split(".")[1]))


# ---------------------------------------------------------------------- HTTP

def http_get(port, path, headers=None, timeout=5):
    """(status, {lower-case header: value}, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def upgrade_request(port, path="/ws", headers=None):
    """The bytes of a WebSocket upgrade request, for clients done by hand."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_handshake_status(port, path="/ws", headers=None, timeout=5, source=None):
    """Send a WebSocket upgrade by hand (from the loopback address source, if
    given) and return the status code of the answer, or None when the server
    hangs up without a status line. chatd answers a refused handshake as
    HTTP/1.1 with a JSON body; any HTTP version is accepted all the same."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
        s.sendall(upgrade_request(port, path, headers))
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    m = re.match(rb"HTTP/\d(?:\.\d)? (\d{3})", data)
    return int(m.group(1)) if m else None


# -------------------------------------------------------------------- polling

RETRYABLE = (AssertionError, OSError, http.client.HTTPException, ValueError)


def eventually(check, timeout=5.0, interval=0.05, what="condition"):
    """Call check() until it returns without raising; its last failure is the
    error when the deadline passes. Returns check()'s result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except RETRYABLE as e:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not true within {timeout}s: {e}") from e
        time.sleep(interval)


async def eventually_async(check, timeout=5.0, interval=0.05, what="condition"):
    """eventually() for async tests: check() runs in a thread (it may do HTTP)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.to_thread(check)
        except RETRYABLE as e:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not true within {timeout}s: {e}") from e
        await asyncio.sleep(interval)


# -------------------------------------------------------------------- configs

def conf_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_conf():
    env = chatd_env()
    return {"listen": "127.0.0.1", "workers": 2, "redis_url": env["REDIS_URL"],
            "database_url": env["DATABASE_URL"], "jwt_secret": SECRET,
            "assets": str(REPO / "assets"), "drain_timeout_ms": 5000,
            # Abuse limits out of the way, except in the tests about them.
            **{f"rate_{op}": "1000000/1" for op in RATE_OPS},
            "conn_attempts_per_ip": 1000000, "auth_failures_per_ip": 1000000,
            "max_conns_per_ip": 1000000, "max_conns_per_user": 1000000}


def write_config(path, **overrides):
    """Write a libconfig file: the test defaults plus overrides (None drops a key)."""
    conf = {**default_conf(), **overrides}
    path.write_text("".join(f"{k} = {conf_value(v)};\n" for k, v in conf.items() if v is not None))
    return path


def run_chatd(*args, timeout=10):
    """Run a short chatd command (-t, token); fails on a sanitizer report."""
    proc = subprocess.run([chatd_env()["CHATD_BIN"], *map(str, args)], env=child_env(),
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    reports = sanitizer_reports(proc.stdout + proc.stderr)
    assert not reports, f"chatd {' '.join(map(str, args))}: crash or sanitizer report:\n" + proc.stderr
    return proc


# --------------------------------------------------------------------- server

class Server:
    """One chatd (parent + workers) on a free port with a config written here."""

    def __init__(self, workdir, **conf):
        workdir.mkdir(parents=True, exist_ok=True)
        # binary: another chatd build; prefix: a wrapper such as valgrind.
        self.binary = conf.pop("binary", None) or chatd_env()["CHATD_BIN"]
        self.prefix = list(conf.pop("prefix", None) or [])
        self.port = conf.pop("port", None) or free_port()
        self.workers = conf.get("workers", default_conf()["workers"])
        self.conf_path = write_config(workdir / "chatd.conf", port=self.port, **conf)
        self.log_path = workdir / "chatd.log"
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def ws_url(self, token=None):
        return f"ws://127.0.0.1:{self.port}/ws" + (f"?token={token}" if token else "")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, wait=True, timeout=15):
        with open(self.log_path, "ab") as log:
            # Own process group: teardown can kill orphaned workers too.
            self.proc = subprocess.Popen([*self.prefix, self.binary, "-c", str(self.conf_path)],
                                         stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                         cwd=REPO, start_new_session=True)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.kill_group()
                self.proc.wait(5)
                raise
        return self

    def wait_ready(self, timeout=15):
        """Until /health answers and every worker is up with its backends."""
        def ready():
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"chatd exited with {rc} while starting:\n{self.log()[-3000:]}")
            status, _, _ = http_get(self.port, "/health", timeout=1)
            assert status == 200, f"/health answered {status}"
            self.check_workers_ready()
        eventually(ready, timeout, what=f"chatd on port {self.port} ready")

    def check_workers_ready(self):
        """Monitoring shows every worker alive, connected to Redis and PostgreSQL
        (a worker connects after it forks, so a new one needs a moment).
        Returns {worker index: pid}."""
        stats = self.monitoring()
        pids = {w["index"]: w["pid"] for w in stats["workers"]}
        assert all(pids.values()) and len(pids) == (self.workers or len(pids)), stats["workers"]
        assert stats["redis"]["connected"], stats["redis"]
        assert stats.get("postgres", {}).get("connected", True), stats["postgres"]
        return pids

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """The exit code, or None if still running after timeout seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the parent and return its exit code; kill everything and fail
        if it is still running after timeout seconds."""
        if self.running():
            self.send_signal(sig)
        rc = self.wait(timeout)
        self.kill_group()
        if rc is None:
            self.proc.wait(5)
            raise AssertionError(f"chatd did not exit within {timeout}s of signal {sig}")
        return rc

    def kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def get(self, path, headers=None, timeout=5):
        return http_get(self.port, path, headers, timeout)

    def get_json(self, path, **kw):
        status, _, body = self.get(path, **kw)
        assert status == 200, f"GET {path}: {status} {body[:200]!r}"
        return json.loads(body)

    def monitoring(self):
        admin = make_token("monitor", role="admin")
        return self.get_json("/api/monitoring/websocket",
                             headers={"Authorization": f"Bearer {admin}"})

    def worker_pids(self):
        return {w["index"]: w["pid"] for w in self.monitoring()["workers"]}


# ------------------------------------------------------------------ backends

def services(command, timeout=60):
    """scripts/services.sh COMMAND test (stop-redis, start-redis, stop-pg, start-pg)."""
    proc = subprocess.run([str(SERVICES), command, "test"], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"services.sh {command} test: rc {proc.returncode}\n" \
                                 f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pg_connect(timeout=5):
    """A new autocommit connection to the test database."""
    conn = psycopg2.connect(chatd_env()["DATABASE_URL"], connect_timeout=timeout)
    conn.autocommit = True
    return conn


def pg_rows(sql, params=(), timeout=5):
    """One query on a fresh connection (survives a PostgreSQL restart)."""
    try:
        conn = pg_connect(timeout)
    except psycopg2.OperationalError as e:  # retried by eventually()
        raise AssertionError(f"PostgreSQL unreachable: {e}") from None
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def pg_messages(tenant, room):
    """[(seq, id, client_msg_id, body)] of a room, by seq."""
    return pg_rows("SELECT seq, id, client_msg_id, body FROM messages "
                   "WHERE tenant = %s AND room_id = %s ORDER BY seq", (tenant, room))


def redis_client():
    return redis.Redis.from_url(chatd_env()["REDIS_URL"], socket_timeout=5)


# ---------------------------------------------------------------- connections

async def open_ws(server, token, source=None, rcvbuf=None, timeout=5, **options):
    """websockets.connect to server (token in the query unless None), over a
    socket of our own when source or rcvbuf is given: bound to another
    loopback address and/or with a small receive buffer (set before connect,
    so the kernel does not autotune it and back-pressure reaches the server)."""
    sock = None
    if source or rcvbuf:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            sock.bind((source, 0))
        sock.setblocking(False)
    opts = dict(max_size=None, max_queue=None, ping_interval=None, close_timeout=2,
                open_timeout=timeout)
    opts.update(options)
    try:
        if sock is not None:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                sock, ("127.0.0.1", server.port)), timeout)
        return await asyncio.wait_for(websockets.connect(server.ws_url(token), sock=sock, **opts),
                                      timeout)
    except BaseException:
        if sock is not None:
            sock.close()
        raise


async def read_hello(ws, timeout=5):
    """The first frame, which must be the hello; closes ws if it is not."""
    try:
        hello = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        assert hello.get("type") == "hello", f"first frame is not hello: {hello}"
    except BaseException:
        await ws.close()
        raise
    return hello


async def open_hello(server, token, bearer=False, timeout=5):
    """Open a WebSocket (token in the query, or in an Authorization header
    when bearer) and read the hello frame: (ws, hello)."""
    headers = {"Authorization": f"Bearer {token}"} if bearer else None
    ws = await open_ws(server, None if bearer else token, timeout=timeout,
                       extra_headers=headers)
    return ws, await read_hello(ws, timeout)


_live_clients = set()  # Clients and Sessions that run() closes at the end


class _Connection:
    """What Client and Session share: the hello, request ids, ok(), settle()
    and close(). Subclasses provide request() and reply_timeout."""

    reply_timeout = 5

    def __init__(self, ws, hello):
        self.ws = ws
        self.hello = hello
        self.user = hello.get("user")
        self.worker = hello.get("worker")
        self._next_id = 0

    @classmethod
    def tracked(cls, ws, hello, *args):
        """A new one that run() closes if the test leaves it open."""
        conn = cls(ws, hello, *args)
        _live_clients.add(conn)
        return conn

    async def ok(self, type, timeout=None, **fields):
        """request() that must be acked."""
        reply = await self.request(type, self.reply_timeout if timeout is None else timeout,
                                   **fields)
        assert reply.get("type") == "ack", f"{self}: {type} {fields} -> {reply}"
        return reply

    async def settle(self, timeout=None):
        """A ping round trip: every frame the server queued for this connection
        before the pong has been read."""
        pong = await self.request("ping", self.reply_timeout if timeout is None else timeout)
        assert pong.get("type") == "pong", pong

    async def close(self):
        _live_clients.discard(self)
        await asyncio.wait_for(self.ws.close(), 5)


class Client(_Connection):
    """A WebSocket session read on demand: replies are matched by request id,
    every other frame is buffered until a test asks for it."""

    def __init__(self, ws, hello):
        super().__init__(ws, hello)
        self.frames = []  # received, not yet consumed

    @classmethod
    async def connect(cls, server, user="alice", tenant="t1", role=None, token=None,
                      bearer=False, timeout=5):
        """Connect (token in the query, or in an Authorization header when
        bearer) and return once the hello frame is read."""
        ws, hello = await open_hello(server, token or make_token(user, tenant, role),
                                     bearer, timeout)
        return cls.tracked(ws, hello)

    def __repr__(self):
        return f"<{self.user}@worker{self.worker}>"

    async def wait_closed(self, timeout=10):
        """Wait until the server closes the connection; returns the close code."""
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code

    async def send(self, frame):
        await self.send_raw(json.dumps(frame))

    async def send_raw(self, text):
        await asyncio.wait_for(self.ws.send(text), 5)

    async def take(self, match, timeout, what):
        """Remove and return the first frame (buffered or new) for which
        match(frame) is true; other frames are buffered."""
        for i, frame in enumerate(self.frames):
            if match(frame):
                return self.frames.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                seen = [f.get("type") for f in self.frames][-20:]
                raise AssertionError(f"{self}: no {what} within {timeout}s "
                                     f"(buffered types: {seen})") from None
            frame = json.loads(raw)
            if match(frame):
                return frame
            self.frames.append(frame)

    async def request(self, type, timeout=5, **fields):
        """Send a request with a fresh id; return its reply (ack, error, pong)."""
        self._next_id += 1
        rid = f"req-{self._next_id}"
        await self.send({"type": type, "id": rid, **fields})
        return await self.take(lambda f: f.get("id") == rid, timeout, f"reply to {type} {rid}")

    async def error(self, type, code, timeout=5, **fields):
        """request() that must fail with the given error code."""
        reply = await self.request(type, timeout, **fields)
        assert reply.get("type") == "error" and reply.get("code") == code, \
            f"{self}: {type} {fields}: expected error {code}, got {reply}"
        return reply

    async def say(self, room, body, client_msg_id=None, timeout=5):
        """message:send; returns the ack."""
        return await self.ok("message:send", timeout, room=room, body=body,
                             client_msg_id=client_msg_id or unique_id("m"))

    async def next_event(self, type=None, timeout=5):
        return await self.take(lambda f: type is None or f.get("type") == type, timeout,
                               type or "frame")

    async def collect(self, type, n, timeout=10):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        out = []
        while len(out) < n:
            try:
                out.append(await self.next_event(type, max(deadline - loop.time(), 0)))
            except AssertionError:
                raise AssertionError(f"{self}: {len(out)} of {n} {type} within {timeout}s") \
                    from None
        return out

    def buffered(self, type):
        return [f for f in self.frames if f.get("type") == type]


class ConnectionLost(Exception):
    """The connection closed before the reply to a request arrived."""


class Session(_Connection):
    """A WebSocket connection read by its own task: requests can be pipelined,
    every frame is seen in arrival order.

    on_frame(session, frame) is called for every frame after hello, in arrival
    order, before the reply's waiter is woken: a test can fold history in
    acks and live events into one ordered record.
    Frames without a pending request id are kept in `events` unless
    keep_events is false."""

    reply_timeout = 10

    def __init__(self, ws, hello, on_frame=None, keep_events=True):
        super().__init__(ws, hello)
        self.on_frame = on_frame
        self.keep_events = keep_events
        self.events = []
        self.pending = {}
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()  # set when a kept event or the close arrives
        self.lost = False
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, server, user, tenant, on_frame=None, keep_events=True, timeout=5):
        ws, hello = await open_hello(server, make_token(user, tenant), timeout=timeout)
        return cls.tracked(ws, hello, on_frame, keep_events)

    def __repr__(self):
        return f"<session {self.user}@worker{self.worker}>"

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                rid = frame.get("id")
                waiter = self.pending.pop(rid, None) if rid is not None else None
                if self.on_frame is not None:
                    self.on_frame(self, frame)
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result(frame)
                elif self.keep_events:
                    self.events.append(frame)
                    self._arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.lost = True
            self.closed.set()
            self._arrived.set()
            for waiter in self.pending.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionLost(f"{self}: connection closed"))
            self.pending.clear()

    async def start(self, type, **fields):
        """Send a request; return the future of its reply (ack, error, pong).
        The future fails with ConnectionLost if the connection goes first."""
        if self.lost:
            raise ConnectionLost(f"{self}: connection closed")
        self._next_id += 1
        rid = f"r{self._next_id}"
        waiter = asyncio.get_running_loop().create_future()
        self.pending[rid] = waiter
        try:
            await asyncio.wait_for(self.ws.send(json.dumps({"type": type, "id": rid, **fields})), 5)
        except websockets.ConnectionClosed:
            self.pending.pop(rid, None)
            raise ConnectionLost(f"{self}: connection closed") from None
        return waiter

    async def request(self, type, timeout=10, **fields):
        waiter = await self.start(type, **fields)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self}: no reply to {type} {fields} within {timeout}s") from None

    async def wait_event(self, match, timeout, what):
        """The first kept event (already read or new) for which match() is true."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        checked = 0
        while True:
            for frame in self.events[checked:]:
                if match(frame):
                    return frame
            checked = len(self.events)
            if self.lost:
                raise ConnectionLost(f"{self}: closed while waiting for {what}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                types = [f.get("type") for f in self.events[-10:]]
                raise AssertionError(f"{self}: no {what} within {timeout}s (last: {types})") \
                    from None

    async def close(self):
        try:
            await super().close()
        finally:
            self._reader.cancel()


async def close_all_clients():
    clients = list(_live_clients)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def run(coro, timeout=30):
    """Run an async test body, bounded; close every Client and Session it left open."""
    async def main():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError as e:
            raise AssertionError(f"timed out (test bound {timeout}s or an inner wait)") from e
        finally:
            await close_all_clients()
    return asyncio.run(main())


async def connect_where(server, want, user, tenant, attempts=60, timeout=10):
    """Connect until hello names a worker for which want(worker) is true;
    bounded by attempts and by a deadline (a worker may still be starting)."""
    deadline = time.monotonic() + timeout
    seen = []
    for _ in range(attempts):
        client = await Client.connect(server, user, tenant)
        if want(client.worker):
            return client
        seen.append(client.worker)
        await client.close()
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no suitable worker in {len(seen)} connections (saw {sorted(set(seen))})")


async def connect_on_worker(server, worker, user, tenant):
    return await connect_where(server, lambda w: w == worker, user, tenant)


async def connect_on_distinct_workers(server, n, tenant="t1", users=None):
    """n clients whose hellos name n different workers (users[i] for the i-th)."""
    users = users or [f"user{i}" for i in range(n)]
    clients = []
    for user in users:
        taken = {c.worker for c in clients}
        clients.append(await connect_where(server, lambda w: w not in taken, user, tenant))
    return clients


async def connect_from(server, user, tenant, source=None, token=None, timeout=5, **options):
    """A Client over open_ws(): from another source address if given, with
    websockets.connect options."""
    ws = await open_ws(server, token or make_token(user, tenant), source=source,
                       timeout=timeout, **options)
    return Client.tracked(ws, await read_hello(ws, timeout))


# ------------------------------------------------------------- event streams

class Stream:
    """An SSE client on a raw socket: the head checked, then events as the
    HTML spec parses them (event, data, id; a blank line dispatches; an id
    with no data only sets the last event id)."""

    def __init__(self, port, path, headers=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.last_id = None
        self.status, self.head = self._read_head()

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed before the head: {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        return status, {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
                        for l in lines[1:]}

    def body(self):
        """The rest of a non-stream answer (Content-Length)."""
        n = int(self.head.get("content-length", "0"))
        while len(self.buf) < n:
            self.buf += self.sock.recv(65536)
        return json.loads(self.buf[:n])

    def events(self, deadline):
        """Yields (type, data) as they come, until deadline (monotonic) or
        the stream ends."""
        etype, data = None, []
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return
                if not chunk:
                    return
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.decode()
            if line == "":
                if data:
                    yield etype or "message", json.loads("\n".join(data))
                etype, data = None, []
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    etype = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    self.last_id = value

    def take(self, n, match, timeout=10):
        got = []
        deadline = time.monotonic() + timeout
        for etype, data in self.events(deadline):
            assert etype == data.get("type"), (etype, data)
            if match(data):
                got.append(data)
                if len(got) == n:
                    return got
        raise AssertionError(f"{len(got)} of {n} events within {timeout}s")

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- chat steps

async def session_where(server, want, user, tenant, attempts=60, **kw):
    """A Session whose hello names a worker for which want(worker) is true."""
    seen = []
    for _ in range(attempts):
        s = await Session.open(server, user, tenant, **kw)
        if want(s.worker):
            return s
        seen.append(s.worker)
        await s.close()
    raise AssertionError(f"no suitable worker for {user} in {attempts} tries (saw {set(seen)})")


def stamp_arrival(session, frame):
    """Session on_frame: when each frame arrived (monotonic), as frame["_at"]."""
    frame["_at"] = time.monotonic()


async def ack_of(conn, type, **fields):
    """A request that must be acked; the ack."""
    reply = await conn.request(type, **fields)
    assert reply.get("type") == "ack", f"{conn}: {type} {fields} -> {reply}"
    return reply


async def make_room(creator, *members, **fields):
    """Create a room (unique id) and have creator and members join it
    (Clients or Sessions)."""
    room = unique_id("room")
    # The room id travels as `room`: `id` is the request id of the envelope.
    ack = await creator.ok("room:create", room=room, name=f"name of {room}", **fields)
    assert ack["room"]["id"] == room, ack
    for client in (creator, *members):
        await client.ok("room:join", room=room)
    return room


def check_message_new(frame, room, ack, user, body, client_msg_id):
    """A message:new frame is the event the ack announced."""
    assert frame["type"] == "message:new" and frame["room"] == room, frame
    assert frame["seq"] == ack["seq"], (frame, ack)
    msg = frame["msg"]
    assert msg["id"] == ack["msg_id"] and msg["seq"] == ack["seq"], (msg, ack)
    assert msg["ts"] == ack["ts"], (msg, ack)
    assert (msg["user"], msg["kind"], msg["body"], msg["client_msg_id"]) == \
        (user, "text", body, client_msg_id), msg


def seqs(frames):
    return [f["seq"] for f in frames]


def drop_waiters(waiters):
    """Retrieve the outcome of futures we give up on (no 'never retrieved')."""
    for w in waiters:
        if w.done() and not w.cancelled():
            w.exception()
        else:
            w.cancel()


async def send_pipelined(session, room, messages, window=50, timeout=15):
    """Send [(client_msg_id, body)] on a Session with up to `window` requests
    in flight. Returns {client_msg_id: reply} (acks and errors)."""
    replies = {}
    inflight = {}
    todo = list(messages)
    todo.reverse()
    try:
        while todo or inflight:
            while todo and len(inflight) < window:
                cmid, body = todo.pop()
                waiter = await session.start("message:send", room=room, body=body,
                                             client_msg_id=cmid)
                inflight[waiter] = cmid
            done, _ = await asyncio.wait(inflight, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            assert done, f"{session}: no reply to message:send within {timeout}s " \
                         f"({len(inflight)} in flight, {len(replies)} answered)"
            for waiter in done:
                replies[inflight.pop(waiter)] = waiter.result()
    finally:
        drop_waiters(inflight)
    return replies


# ------------------------------------------------------------ delivery records

def message_events(frames, room):
    return [f for f in frames if f.get("type") == "message:new" and f.get("room") == room]


def record(acks, bodies):
    """[(seq, msg_id, client_msg_id, body)] by seq, as every reader should see it."""
    return sorted((a["seq"], a["msg_id"], cmid, bodies[cmid]) for cmid, a in acks.items())


def as_record(events):
    """[(seq, msg_id, client_msg_id, body)] of message:new events, as they came."""
    return [(e["seq"], e["msg"]["id"], e["msg"]["client_msg_id"], e["msg"]["body"])
            for e in events]


def describe_difference(seen, expected):
    """A short account of how a subscriber's record differs from the acks."""
    got = [s[0] for s in seen]
    want = {e[0]: e for e in expected}
    dups = sorted({s for s in got if got.count(s) > 1}) if len(got) != len(set(got)) else []
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    disorder = [(a, b) for a, b in zip(got, got[1:]) if b <= a][:5]
    wrong = [s for s in seen if s[0] in want and s != want[s[0]]][:3]
    return (f"{len(got)} events for {len(want)} acks; duplicates {dups[:10]}; "
            f"missing {missing[:10]} ({len(missing)}); extra {extra[:10]}; "
            f"out of order {disorder}; differing {wrong}")
