"""Helpers for the delivery and recovery tests: a WebSocket session with a
reader task (requests can be pipelined, every frame is seen in arrival order),
pipelined sending, control of the test services, fresh PostgreSQL queries.

Every wait is bounded, as in chatd_harness.
"""

import asyncio
import json
import subprocess

import psycopg2
import redis
import websockets

import chatd_harness
from chatd_harness import REPO, chatd_env, make_token, unique_id

SERVICES = REPO / "scripts" / "services.sh"


class ConnectionLost(Exception):
    """The connection closed before the reply to a request arrived."""


class Session:
    """A WebSocket connection read by its own task.

    on_frame(session, frame) is called for every frame after hello, in arrival
    order, before the reply's waiter is woken: a test can fold history in
    acks and live events into one ordered record.
    Frames without a pending request id are kept in `events` unless
    keep_events is false."""

    def __init__(self, ws, hello, on_frame=None, keep_events=True):
        self.ws = ws
        self.hello = hello
        self.user = hello.get("user")
        self.worker = hello.get("worker")
        self.on_frame = on_frame
        self.keep_events = keep_events
        self.events = []
        self.pending = {}
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()  # set when a kept event or the close arrives
        self.lost = False
        self._next_id = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, server, user, tenant, on_frame=None, keep_events=True, timeout=5):
        ws, hello = await chatd_harness.open_hello(server, make_token(user, tenant),
                                                   timeout=timeout)
        session = cls(ws, hello, on_frame, keep_events)
        # close_all_clients() in chatd_harness.run() closes it at the end.
        chatd_harness._live_clients.add(session)
        return session

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

    async def ok(self, type, timeout=10, **fields):
        reply = await self.request(type, timeout, **fields)
        assert reply.get("type") == "ack", f"{self}: {type} {fields} -> {reply}"
        return reply

    async def settle(self, timeout=10):
        """A ping round trip: every frame queued before the pong has been read."""
        pong = await self.request("ping", timeout)
        assert pong.get("type") == "pong", pong

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
        chatd_harness._live_clients.discard(self)
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        finally:
            self._reader.cancel()


def drop_waiters(waiters):
    """Retrieve the outcome of futures we give up on (no 'never retrieved')."""
    for w in waiters:
        if w.done() and not w.cancelled():
            w.exception()
        else:
            w.cancel()


async def send_pipelined(session, room, messages, window=50, timeout=15):
    """Send [(client_msg_id, body)] with up to `window` requests in flight.
    Returns {client_msg_id: reply} (acks and errors)."""
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


def message_events(frames, room):
    return [f for f in frames if f.get("type") == "message:new" and f.get("room") == room]


async def new_room(creator, *others):
    room = unique_id("room")
    ack = await creator.ok("room:create", room=room, name=f"name of {room}")
    assert ack["room"]["id"] == room, ack
    for session in (creator, *others):
        await session.ok("room:join", room=room)
    return room


def record(acks, bodies):
    """[(seq, msg_id, client_msg_id, body)] by seq, as every reader should see it."""
    return sorted((a["seq"], a["msg_id"], cmid, bodies[cmid]) for cmid, a in acks.items())


def as_record(events):
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


# ---------------------------------------------------------------- services

def services(command, timeout=60):
    """scripts/services.sh COMMAND test (stop-redis, start-redis, stop-pg, start-pg)."""
    proc = subprocess.run([str(SERVICES), command, "test"], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"services.sh {command} test: rc {proc.returncode}\n" \
                                 f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pg_rows(sql, params=(), timeout=5):
    """One query on a fresh connection (survives a PostgreSQL restart)."""
    try:
        conn = psycopg2.connect(chatd_env()["DATABASE_URL"], connect_timeout=timeout)
    except psycopg2.OperationalError as e:  # retried by eventually()
        raise AssertionError(f"PostgreSQL unreachable: {e}") from None
    try:
        conn.autocommit = True
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

