"""Delivery guarantees a user notices: nothing lost or doubled when a worker
dies, resends are harmless, resume and history reach past Redis' window,
durability = postgres means the row is there at the ack."""

import asyncio
import os
import signal

from chatd_harness import (ConnectionLost, Session, as_record, describe_difference, drop_waiters,
                           eventually, eventually_async, make_room, message_events, pg_messages,
                           pg_rows, record, redis_client, run, send_pipelined, seqs)


def parent_of(pid):
    assert isinstance(pid, int) and pid > 1, pid  # never kill(0) or kill(-1)
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


async def open_on(server, want, user, tenant, attempts=60, **kw):
    """A session whose hello names a worker for which want(worker) is true."""
    seen = []
    for _ in range(attempts):
        session = await Session.open(server, user, tenant, **kw)
        if want(session.worker):
            return session
        seen.append(session.worker)
        await session.close()
    raise AssertionError(f"no suitable worker in {attempts} connections (saw {sorted(set(seen))})")


# ---------------------------------------------------------- 1. worker crash

SENDERS = 4
PER_SENDER = 500
TOTAL = SENDERS * PER_SENDER
WINDOW = 8


def test_worker_crash_loses_and_doubles_nothing(make_server, tenant):
    # A resuming client may be a thousand or so events behind after the crash;
    # it must get them as events, not as a gap it has to page through.
    srv = make_server(workers=2, max_resume_gap=5000)
    victim = 0

    async def main():
        acks, bodies = {}, {}
        half, replaced = asyncio.Event(), asyncio.Event()
        stats = {"reconnects": 0, "acked_at_kill": None, "retried_unavailable": 0, "resent": 0}
        room_box = []

        class Listener:
            def __init__(self, name):
                self.name = name
                self.seen = []
                self.target = None
                self.complete = asyncio.Event()
                self.session = None

            def on_frame(self, session, frame):
                room = room_box[0] if room_box else None
                if frame.get("type") == "message:new":
                    events = [frame]
                elif frame.get("type") == "ack" and isinstance(frame.get("rooms"), dict):
                    events = frame["rooms"].get(room, {}).get("events", [])
                elif frame.get("type") == "ack" and frame.get("room") == room:
                    events = frame.get("events", [])
                else:
                    return
                self.seen += as_record(message_events(events, room))
                self.check()

            def check(self):
                if self.target is not None and self.seen and self.seen[-1][0] >= self.target:
                    self.complete.set()

        def tracker(box):
            def on_frame(session, frame):
                if frame.get("type") == "message:new":
                    box[0] = max(box[0], frame["seq"])
                elif frame.get("type") == "ack" and isinstance(frame.get("rooms"), dict):
                    for ev in frame["rooms"].get(room_box[0], {}).get("events", []):
                        box[0] = max(box[0], ev["seq"])
            return on_frame

        async def reconnect(user, on_frame, last_seq):
            """After a dropped connection: wait for the replacement worker (the
            killer polls monitoring), open a new connection, resume the room."""
            await asyncio.wait_for(replaced.wait(), 30)
            session = await Session.open(srv, user, tenant, on_frame=on_frame, keep_events=False)
            reply = await session.ok("session:resume", rooms={room_box[0]: last_seq}, timeout=20)
            state = reply["rooms"][room_box[0]]
            assert "error" not in state and state.get("recovered") is True, \
                f"{user}: resume since {last_seq}: {str(state)[:300]}"
            stats["reconnects"] += 1
            return session

        async def sender(session, seen_box, on_frame):
            room = room_box[0]
            unacked = {f"{session.user}-{i}": f"{session.user} says {i}" for i in range(PER_SENDER)}
            bodies.update(unacked)
            while unacked:
                if session.lost:
                    session = await reconnect(session.user, on_frame, seen_box[0])
                queue = list(unacked)
                queue.reverse()
                inflight = {}
                try:
                    while queue or inflight:
                        while queue and len(inflight) < WINDOW:
                            cmid = queue.pop()
                            w = await session.start("message:send", room=room,
                                                    body=unacked[cmid], client_msg_id=cmid)
                            inflight[w] = cmid
                        done, _ = await asyncio.wait(inflight, timeout=15,
                                                     return_when=asyncio.FIRST_COMPLETED)
                        assert done, f"{session}: no reply within 15s ({len(inflight)} in flight)"
                        for w in done:
                            cmid = inflight.pop(w)
                            reply = w.result()  # ConnectionLost when the worker died
                            if reply.get("type") == "ack":
                                assert cmid not in acks, (cmid, acks.get(cmid), reply)
                                acks[cmid] = reply
                                del unacked[cmid]
                                if len(acks) >= TOTAL // 2:
                                    half.set()
                            else:
                                assert reply.get("code") == "unavailable", (cmid, reply)
                                stats["retried_unavailable"] += 1
                                queue.insert(0, cmid)
                except ConnectionLost:
                    stats["resent"] += len(inflight) + 1  # unanswered: sent again
                finally:
                    drop_waiters(inflight)
            return session

        async def listen(listener, session):
            while not listener.complete.is_set():
                if session.lost:
                    last = listener.seen[-1][0] if listener.seen else 0
                    session = await reconnect(listener.name, listener.on_frame, last)
                waits = [asyncio.ensure_future(session.closed.wait()),
                         asyncio.ensure_future(listener.complete.wait())]
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in pending:
                    w.cancel()
            listener.session = session

        async def killer():
            await half.wait()
            pid = srv.worker_pids()[victim]
            assert parent_of(pid) == srv.pid, f"worker pid {pid} is not chatd's child"
            stats["acked_at_kill"] = len(acks)
            os.kill(pid, signal.SIGKILL)

            def new_worker_ready():
                pids = srv.check_workers_ready()
                assert pids[victim] != pid, f"worker {victim} still has pid {pid}"
            await eventually_async(new_worker_ready, timeout=20, what="replacement worker ready")
            replaced.set()

        # 2 senders and 1 listener on each worker; the victim holds half.
        users = [f"sender{i}" for i in range(SENDERS)]
        boxes = [[0] for _ in users]
        trackers = [tracker(b) for b in boxes]
        senders = []
        for i, user in enumerate(users):
            senders.append(await open_on(srv, lambda w, i=i: w == i % 2, user, tenant,
                                         on_frame=trackers[i], keep_events=False))
        listeners = [Listener(f"listener{i}") for i in range(2)]
        sessions = [await open_on(srv, lambda w, i=i: w == i % 2, lst.name, tenant,
                                  on_frame=lst.on_frame, keep_events=False)
                    for i, lst in enumerate(listeners)]
        room_box.append(await make_room(senders[0], *senders[1:], *sessions))

        kill_task = asyncio.ensure_future(killer())
        listen_tasks = [asyncio.ensure_future(listen(lst, s)) for lst, s in zip(listeners, sessions)]
        try:
            await asyncio.wait_for(asyncio.gather(*(sender(s, b, t) for s, b, t in
                                                    zip(senders, boxes, trackers))), 60)
            await asyncio.wait_for(kill_task, 30)
            target = max(a["seq"] for a in acks.values())
            for lst in listeners:
                lst.target = target
                lst.check()
            await asyncio.wait_for(asyncio.gather(*listen_tasks), 30)
        finally:
            kill_task.cancel()
            for t in listen_tasks:
                t.cancel()

        assert 0 < stats["acked_at_kill"] < TOTAL, stats
        assert stats["reconnects"] >= 3, f"the victim's 3 clients did not all reconnect: {stats}"
        assert stats["resent"] > 0, f"no send was in flight at the crash: {stats}"
        assert len(acks) == TOTAL
        assert len({a["msg_id"] for a in acks.values()}) == TOTAL, "one msg_id for two messages"
        # Every message created was acked (resent ones included): no orphan seq.
        assert sorted(a["seq"] for a in acks.values()) == list(range(1, TOTAL + 1))
        expected = record(acks, bodies)
        for lst in listeners:
            await lst.session.settle()
            assert lst.seen == expected, f"{lst.name}: " + describe_difference(lst.seen, expected)
        return room_box[0], expected, stats

    room, expected, stats = run(main(), timeout=120)

    def in_postgres():
        rows = pg_messages(tenant, room)
        assert rows == expected, describe_difference(rows, expected)
    eventually(in_postgres, timeout=15, what="every acked message in PostgreSQL")


# ---------------------------------------------- 5. resume beyond Redis' window

RESUME_TOTAL = 2600


def test_resume_reaches_past_the_redis_stream(make_server, tenant):
    # stream_maxlen stays at its default (1000): the older part of a resume
    # comes from PostgreSQL. max_resume_gap is raised so 1,500 is resumable.
    srv = make_server(max_resume_gap=2000)

    async def main():
        alice = await Session.open(srv, "alice", tenant, keep_events=False)
        room = await make_room(alice)
        msgs = [(f"c{i}", f"message {i}") for i in range(1, RESUME_TOTAL + 1)]
        replies = await asyncio.wait_for(send_pipelined(alice, room, msgs, window=100), 60)
        bad = [r for r in replies.values() if r.get("type") != "ack"]
        assert not bad, f"{len(bad)} sends not acked, e.g. {bad[:3]}"
        expected = record(replies, dict(msgs))
        assert [e[0] for e in expected] == list(range(1, RESUME_TOTAL + 1))

        def synced():
            assert len(pg_messages(tenant, room)) == RESUME_TOTAL
        await eventually_async(synced, timeout=20, what=f"{RESUME_TOTAL} messages in PostgreSQL")
        with redis_client() as r:
            key = f"chatd:{{{tenant}/{room}}}:stream"
            first = r.xrange(key, count=1)
            assert r.xlen(key) <= 1000 and first and int(first[0][0].split(b"-")[0]) > 1100, \
                f"the Redis stream should no longer hold seq 1101: {r.xlen(key)} entries, first {first}"

        # 1. since = last - 1500: all 1,500 in order, then live, nothing twice.
        bob = await Session.open(srv, "bob", tenant)
        since = RESUME_TOTAL - 1500
        joined = await bob.ok("room:join", room=room, since=since, timeout=20)
        assert joined.get("recovered") is True and joined["last_seq"] == RESUME_TOTAL, \
            {k: v for k, v in joined.items() if k != "events"}
        got = as_record(joined["events"])
        want = expected[since:]
        assert got == want, describe_difference(got, want)
        live = await alice.ok("message:send", room=room, body="live", client_msg_id="live-1")
        assert live["seq"] == RESUME_TOTAL + 1
        frame = await bob.wait_event(lambda f: f.get("type") == "message:new", 5, "live message")
        assert frame["seq"] == live["seq"] and frame["msg"]["id"] == live["msg_id"], frame
        await bob.settle()
        assert len(message_events(bob.events, room)) == 1, "duplicates after the resume"

        # 2. too far behind: recovered false, last_seq, no events; page instead.
        carol = await Session.open(srv, "carol", tenant)
        reply = await carol.ok("session:resume", rooms={room: 100}, timeout=20)
        state = reply["rooms"][room]
        assert state.get("recovered") is False and state.get("events") == [] and \
            state.get("last_seq") == RESUME_TOTAL + 1, str(state)[:300]
        paged, after = [], 100
        for _ in range(40):
            page = await carol.ok("message:history", room=room, after=after, limit=100)
            assert page["events"], f"empty page after {after} with has_more: {page}"
            paged += page["events"]
            after = page["events"][-1]["seq"]
            if not page["has_more"]:
                break
        assert seqs(paged) == list(range(101, RESUME_TOTAL + 2))
        assert as_record(paged[:-1]) == expected[100:]
        # carol is subscribed after the resume, even though it could not recover.
        live = await alice.ok("message:send", room=room, body="live 2", client_msg_id="live-2")
        frame = await carol.wait_event(lambda f: f.get("type") == "message:new", 5, "live message")
        assert frame["seq"] == live["seq"] == RESUME_TOTAL + 2, frame
    run(main(), timeout=120)


# ------------------------------------------------------- 6. duplicate sends

def test_duplicate_send_creates_one_message(make_server, tenant):
    first = make_server()
    cmid, body = "dup-1", "said once"

    def same_ack(a, b):
        strip = lambda ack: {k: v for k, v in ack.items() if k != "id"}  # noqa: E731
        assert strip(a) == strip(b), f"acks differ: {a} vs {b}"
        assert set(strip(a)) >= {"type", "msg_id", "seq", "ts"}, a

    async def before_restart():
        alice = await Session.open(first, "alice", tenant)
        bob = await Session.open(first, "bob", tenant)
        room = await make_room(alice, bob)
        first_ack = await alice.ok("message:send", room=room, body=body, client_msg_id=cmid)
        same_ack(first_ack, await alice.ok("message:send", room=room, body=body,
                                           client_msg_id=cmid))
        marker = await alice.ok("message:send", room=room, body="marker", client_msg_id="m-1")
        await bob.wait_event(lambda f: f.get("seq") == marker["seq"], 5, "the marker")

        await alice.close()
        alice = await Session.open(first, "alice", tenant)
        await alice.ok("room:join", room=room)
        same_ack(first_ack, await alice.ok("message:send", room=room, body=body,
                                           client_msg_id=cmid))
        await bob.settle()
        assert seqs(message_events(bob.events, room)) == [first_ack["seq"], marker["seq"]], \
            [(f["seq"], f["msg"]["client_msg_id"]) for f in message_events(bob.events, room)]
        return room, first_ack, marker

    room, first_ack, marker = run(before_restart())
    assert first.stop() == 0  # SIGTERM
    second = make_server()

    async def after_restart():
        alice = await Session.open(second, "alice", tenant)
        bob = await Session.open(second, "bob", tenant)
        joined = await bob.ok("room:join", room=room, since=0)
        await alice.ok("room:join", room=room)
        assert [(e["seq"], e["msg"]["id"]) for e in joined["events"]] == \
            [(first_ack["seq"], first_ack["msg_id"]), (marker["seq"], marker["msg_id"])], joined
        same_ack(first_ack, await alice.ok("message:send", room=room, body=body,
                                           client_msg_id=cmid))
        last = await alice.ok("message:send", room=room, body="after", client_msg_id="m-2")
        assert last["seq"] == marker["seq"] + 1, last
        await bob.wait_event(lambda f: f.get("seq") == last["seq"], 5, "the last message")
        assert seqs(message_events(bob.events, room)) == [last["seq"]], \
            "the resend reached a subscriber"
    run(after_restart())

    def one_row():
        rows = pg_rows("SELECT id, seq, client_msg_id FROM messages "
                       "WHERE tenant = %s AND room_id = %s ORDER BY seq", (tenant, room))
        assert rows == [(first_ack["msg_id"], first_ack["seq"], cmid),
                        (marker["msg_id"], marker["seq"], "m-1"),
                        (rows[-1][0], marker["seq"] + 1, "m-2")], rows
    eventually(one_row, timeout=10, what="one row per message in PostgreSQL")


# ------------------------------------------------- 7. durability = postgres

def test_durability_postgres_acks_after_commit(make_server, tenant):
    srv = make_server(durability="postgres")

    async def chat():
        alice = await Session.open(srv, "alice", tenant, keep_events=False)
        room = await make_room(alice)
        for i in range(1, 31):
            ack = await alice.ok("message:send", room=room, body=f"durable {i}",
                                 client_msg_id=f"d-{i}")
            # Queried at once, in a thread, before anything else happens.
            rows = await asyncio.to_thread(
                pg_rows, "SELECT m.id, m.seq, m.body, e.type FROM messages m "
                "JOIN room_events e USING (tenant, room_id, seq) "
                "WHERE m.tenant = %s AND m.room_id = %s AND m.seq = %s",
                (tenant, room, ack["seq"]))
            assert rows == [(ack["msg_id"], ack["seq"], f"durable {i}", "message:new")], \
                f"ack {ack} but PostgreSQL has {rows}"
        # A pipelined burst too: every ack finds its row.
        msgs = [(f"b-{i}", f"burst {i}") for i in range(50)]
        replies = await send_pipelined(alice, room, msgs, window=25)
        assert all(r["type"] == "ack" for r in replies.values()), replies
        rows = await asyncio.to_thread(
            pg_rows, "SELECT client_msg_id, id, seq FROM messages WHERE tenant = %s "
            "AND room_id = %s AND client_msg_id LIKE 'b-%%'", (tenant, room))
        assert sorted(rows) == sorted((c, r["msg_id"], r["seq"]) for c, r in replies.items())
        # A duplicate still answers the first ack.
        again = await alice.ok("message:send", room=room, body="durable 1", client_msg_id="d-1")
        assert again["seq"] == 1, again
    run(chat(), timeout=60)


# ----------------------------------------------------- 8. history paging

HISTORY_TOTAL = 250


def test_history_pages(make_server, tenant):
    # A short Redis stream: the older pages come from PostgreSQL.
    srv = make_server(stream_maxlen=100)

    async def main():
        alice = await Session.open(srv, "alice", tenant, keep_events=False)
        room = await make_room(alice)
        msgs = [(f"h{i}", f"history {i}") for i in range(1, HISTORY_TOTAL + 1)]
        replies = await send_pipelined(alice, room, msgs, window=50)
        assert all(r["type"] == "ack" for r in replies.values())
        expected = record(replies, dict(msgs))
        assert [e[0] for e in expected] == list(range(1, HISTORY_TOTAL + 1))

        def synced():
            assert len(pg_messages(tenant, room)) == HISTORY_TOTAL
        await eventually_async(synced, timeout=15, what="all messages in PostgreSQL")

        async def page(session=alice, **q):
            reply = await session.ok("message:history", room=room, **q)
            got = as_record(reply["events"])
            span = [e[0] for e in got]
            if got:
                assert got == expected[span[0] - 1:span[-1]], f"{q}: wrong events {span}"
            return span, reply["has_more"], reply.get("last_seq")

        def r(a, b):
            return list(range(a, b + 1))

        assert await page() == (r(201, 250), True, 250)
        assert await page(limit=100) == (r(151, 250), True, 250)
        assert await page(limit=1000) == (r(151, 250), True, 250)  # capped at 100
        assert await page(before=201, limit=100) == (r(101, 200), True, 250)
        assert await page(before=101, limit=100) == (r(1, 100), False, 250)
        assert await page(before=51, limit=20) == (r(31, 50), True, 250)
        assert await page(before=11, limit=20) == (r(1, 10), False, 250)
        assert (await page(before=1))[:2] == ([], False)
        assert await page(after=0, limit=100) == (r(1, 100), True, 250)
        assert await page(after=120, limit=30) == (r(121, 150), True, 250)
        assert await page(after=200, limit=100) == (r(201, 250), False, 250)
        assert await page(after=150, limit=100) == (r(151, 250), False, 250)
        assert await page(after=250) == ([], False, 250)
        err = await alice.request("message:history", room=room, before=10, after=5)
        assert err["type"] == "error" and err["code"] == "bad_request", err

        # Walking back from the newest, 37 at a time, gives everything once.
        walked, before = [], None
        for _ in range(20):
            q = {"limit": 37} if before is None else {"limit": 37, "before": before}
            span, more, _ = await page(**q)
            walked = span + walked
            if not more:
                break
            before = span[0]
        assert walked == r(1, HISTORY_TOTAL)

        # A member who has not joined on this connection may read too.
        bob = await Session.open(srv, "bob", tenant)
        await bob.ok("room:join", room=room)
        await bob.close()
        bob = await Session.open(srv, "bob", tenant)
        assert await page(session=bob, before=61, limit=10) == (r(51, 60), True, 250)
    run(main(), timeout=60)
