"""The room event stream, GET /api/events (docs/protocol.md section 9):
Server-Sent Events parsed from raw bytes, resumed with Last-Event-ID with no
gap and no duplicate, across a worker kill -9 and a Redis flush."""

import asyncio
import os
import signal
import socket
import time

from chatd_harness import (Client, Session, Stream, eventually_async, make_room, make_token,
                           pg_rows, run, send_pipelined, unique_id)


def stream(srv, user, tenant, rooms, last_id=None, bearer=True):
    token = make_token(user, tenant)
    path = f"/api/events?rooms={','.join(rooms)}"
    headers = {}
    if bearer:
        headers["Authorization"] = f"Bearer {token}"
    else:
        path += f"&token={token}"
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    # As EventSource does: a connection refused or reset (a worker just
    # killed) is tried again.
    for attempt in range(20):
        try:
            return Stream(srv.port, path, headers)
        except (ConnectionResetError, ConnectionRefusedError, AssertionError):
            if attempt == 19:
                raise
            time.sleep(0.1)


def news(events):
    return [e for e in events if e["type"] == "message:new"]


def test_stream_head_history_live_and_cursor(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room = await make_room(alice, members=["bob"], private=True)
        first = await alice.say(room, "before")
        s = await asyncio.to_thread(stream, server, "bob", tenant, [room], None, False)
        assert s.status == 200, s.head
        assert s.head["content-type"] == "text/event-stream", s.head
        assert s.head["x-accel-buffering"] == "no", s.head
        joined = await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "room:joined")
        assert joined[0]["room"] == room and joined[0]["last_seq"] == first["seq"], joined
        old = await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "message:new")
        assert old[0]["msg"]["body"] == "before"
        assert s.last_id == f"{room}={first['seq']}", s.last_id
        ack = await alice.say(room, "live")
        live = await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "message:new")
        assert live[0]["seq"] == ack["seq"] and live[0]["msg"]["body"] == "live"
        s.close()
    run(main())


def test_stream_refusals(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room = await make_room(alice, private=True)
        s = Stream(server.port, f"/api/events?rooms={room}")
        assert s.status == 401, s.status
        s = Stream(server.port, "/api/events",
                   {"Authorization": f"Bearer {make_token('bob', tenant)}"})
        assert s.status == 400 and "rooms" in s.body()["error"]
        s = Stream(server.port, "/api/events?rooms=a,a",
                   {"Authorization": f"Bearer {make_token('bob', tenant)}"})
        assert s.status == 400
        s = Stream(server.port, f"/api/events?rooms={room}",
                   {"Authorization": f"Bearer {make_token('bob', tenant)}",
                    "Last-Event-ID": f"{room}=x"})
        assert s.status == 400 and "Last-Event-ID" in s.body()["error"]
        # A room the user may not read: an error event, the stream stays.
        other = await make_room(alice, private=False)
        s = await asyncio.to_thread(stream, server, "bob", tenant, [room, other])
        errs = await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "error")
        assert errs[0]["room"] == room and errs[0]["code"] == "forbidden", errs
        await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "room:joined")
        s.close()
    run(main())


def test_personal_events_reach_the_stream(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room = await make_room(alice, members=["bob"], private=True)
        other = await make_room(alice, members=["bob"], private=True)
        s = await asyncio.to_thread(stream, server, "bob", tenant, [room])
        await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "room:joined")
        # A mention in a room the stream did not ask for still arrives.
        await alice.ok("message:send", room=other, client_msg_id=unique_id("m"), body="@bob",
                       mentions=["bob"])
        got = await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "mention:new")
        assert got[0]["room"] == other
        await alice.ok("member:remove", room=room, user="bob")
        got = await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "room:removed")
        assert got[0]["room"] == room and got[0]["reason"] == "removed"
        s.close()
    run(main())


def resume_case(srv, tenant, disrupt, total=2000):
    """A stream reads part of `total` messages, drops, `disrupt` happens,
    and a new stream with its Last-Event-ID ends with each message exactly
    once, in order."""
    async def main():
        alice = await Session.open(srv, "alice", tenant)
        room = await make_room(alice, members=["bob"], private=True)
        s = await asyncio.to_thread(stream, srv, "bob", tenant, [room])
        await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "room:joined")
        sender = asyncio.create_task(send_pipelined(
            alice, room, [(unique_id("m"), f"m{i}") for i in range(total)], timeout=30))
        first = await asyncio.to_thread(s.take, total * 3 // 5, lambda e: e["type"] == "message:new",
                                        30)
        last_id = s.last_id
        s.close()
        await sender
        await disrupt(room)
        seen = [e["seq"] for e in first]
        assert last_id is not None
        cursor_seq = int(last_id.split("=")[1])
        assert cursor_seq >= seen[-1], (last_id, seen[-1])
        s = await asyncio.to_thread(stream, srv, "bob", tenant, [room], last_id)
        joined = await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "room:joined", 30)
        assert joined[0]["recovered"] is True, joined
        rest = await asyncio.to_thread(s.take, total - cursor_seq,
                                       lambda e: e["type"] == "message:new", 60)
        s.close()
        got = [e["seq"] for e in first if e["seq"] <= cursor_seq] + [e["seq"] for e in rest]
        assert got == list(range(1, total + 1)), \
            (len(got), [x for x in got[:3]], cursor_seq)
        bodies = [e["msg"]["body"] for e in first if e["seq"] <= cursor_seq] + \
            [e["msg"]["body"] for e in rest]
        assert bodies == [f"m{i}" for i in range(total)]
    return main


def test_resume_with_last_event_id(server, tenant):
    async def nothing(room):
        pass
    run(resume_case(server, tenant, nothing)(), timeout=120)


def test_resume_across_a_worker_kill(make_server, tenant):
    srv = make_server(workers=2)

    async def kill(room):
        pid = srv.worker_pids()[0]
        assert isinstance(pid, int) and pid > 1
        os.kill(pid, signal.SIGKILL)
        await eventually_async(lambda: srv.check_workers_ready(), timeout=20,
                               what="the worker back")
    run(resume_case(srv, tenant, kill)(), timeout=120)


def test_resume_after_a_redis_flush(make_server, tenant, redis_db):
    srv = make_server(workers=2)

    async def flush(room):
        def synced():
            rows = pg_rows("SELECT coalesce(max(seq), 0) FROM room_events"
                           " WHERE tenant = %s AND room_id = %s", (tenant, room))
            assert rows[0][0] == 2000, rows
        await eventually_async(synced, timeout=60, what="the messages in PostgreSQL")
        redis_db.flushall()
    run(resume_case(srv, tenant, flush)(), timeout=150)


def test_a_slow_stream_gets_a_gap_then_ends_and_resumes(make_server, tenant):
    """A stream that does not read: its bounded queue fills, what it holds
    goes out, then room:gap, then the stream ends; a reconnect with its
    Last-Event-ID gets every later message once."""
    srv = make_server(outbound_max_bytes=8192, socket_sndbuf=4096)
    total = 400

    async def main():
        alice = await Session.open(srv, "alice", tenant)
        room = await make_room(alice, members=["bob"], private=True)
        s = await asyncio.to_thread(stream, srv, "bob", tenant, [room])
        s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await asyncio.to_thread(s.take, 1, lambda e: e["type"] == "room:joined")
        await send_pipelined(alice, room, [(unique_id("m"), "x" * 200 + str(i))
                                           for i in range(total)], timeout=30)
        got, gap, ended = [], None, True
        for etype, data in s.events(time.monotonic() + 15):
            if etype == "message:new":
                got.append(data["seq"])
            elif etype == "room:gap":
                gap = data
        assert gap is not None and gap["room"] == room, (gap, len(got))
        assert got == list(range(1, len(got) + 1)) and len(got) < total, len(got)
        assert gap["after_seq"] >= got[-1] if got else True, (gap, got[-1:])
        last_id = s.last_id
        s.close()
        resumed = int(last_id.split("=")[1]) if last_id else 0
        s = await asyncio.to_thread(stream, srv, "bob", tenant, [room], last_id)
        rest = await asyncio.to_thread(s.take, total - resumed,
                                       lambda e: e["type"] == "message:new", 30)
        s.close()
        assert [e["seq"] for e in rest] == list(range(resumed + 1, total + 1))
        assert ended
    run(main(), timeout=90)
