"""Requests that arrive together. The message:send / message:edit requests of
one room read in one loop turn may reach Redis as one batch; what a client
sees must be what it sees for requests sent one by one: one reply per
request, seqs consecutive per room and in send order per connection, a
repeated client_msg_id acked with the first ack and delivered once, a rate
limit per user, seeding from PostgreSQL after Redis lost the counters.

Every burst is written as masked WebSocket frames in ONE transport write
(one send(2) on loopback), so the server reads the frames back to back.
"""

import asyncio
import json
import os
import socket
import struct
import time

from websockets.utils import apply_mask

from chatd_harness import (check_message_new, connect_on_distinct_workers, connect_on_worker,
                           eventually_async, make_room, pg_messages, run, seqs)

EVENTS = ("message:new", "message:edited")


def ws_frame(text):
    """One masked, unfragmented client text frame."""
    data, mask = text.encode(), os.urandom(4)
    n = len(data)
    head = (struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else
            struct.pack("!BBH", 0x81, 0xFE, n) if n < 1 << 16 else
            struct.pack("!BBQ", 0x81, 0xFF, n))
    return head + mask + apply_mask(data, mask)


def write_burst(client, requests):
    """All requests in one write on the client's socket (a send buffer large
    enough that send(2) takes it whole); awaits no reply."""
    sock = client.ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    client.ws.transport.write(b"".join(ws_frame(json.dumps(r)) for r in requests))


async def pipeline(client, requests):
    write_burst(client, requests)
    await asyncio.wait_for(client.ws.drain(), 5)


def send(rid, room, cmid, body):
    return {"type": "message:send", "id": rid, "room": room, "client_msg_id": cmid, "body": body}


def body_for(i):
    """Bodies of varying length with quotes, backslashes and non-ASCII text."""
    return f"m{i} " + 'q"b\\é✓ ' * (i % 9)


async def replies(client, requests, timeout=20):
    """The reply to each request, in request order; exactly one per request id
    (a ping round trip afterwards finds no second one)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    out = []
    for r in requests:
        rid = r["id"]
        out.append(await client.take(
            lambda f, rid=rid: f.get("id") == rid and f.get("type") in ("ack", "error"),
            max(end - loop.time(), 0.1), f"reply to {rid} ({len(out)} of {len(requests)})"))
    await client.settle()
    ids = {r["id"] for r in requests}
    extra = [f for f in client.frames if f.get("id") in ids]
    assert not extra, f"{client}: second replies {extra[:3]}"
    return out


async def room_events(client, n, timeout=20):
    """Exactly n room events (message:new / message:edited) in arrival order:
    a ping round trip after the n-th finds no more."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    got = []
    for _ in range(n):
        got.append(await client.take(lambda f: f.get("type") in EVENTS,
                                     max(end - loop.time(), 0.1),
                                     f"room event {len(got) + 1} of {n}"))
    await client.settle()
    extra = [f for f in client.frames if f.get("type") in EVENTS]
    assert not extra, f"{client}: {len(extra)} more room events, seqs {seqs(extra)[:10]}"
    return got


def all_acked(requests, answers):
    bad = [(r["id"], a) for r, a in zip(requests, answers) if a.get("type") != "ack"]
    assert not bad, f"{len(bad)} of {len(requests)} not acked, e.g. {bad[:3]}"
    return answers


def check_delivered(who, frames, room, user, sent):
    """frames are the message:new of sent = [(request, ack)], in that order."""
    assert len(frames) == len(sent), f"{who}: {len(frames)} events for {len(sent)} acks"
    for frame, (req, ack) in zip(frames, sent):
        try:
            check_message_new(frame, room, ack, user, req["body"], req["client_msg_id"])
        except AssertionError as e:
            raise AssertionError(f"{who}: seqs {seqs(frames)[:8]}...: {e}") from None


async def rooms_in_postgres(server, tenant, counts):
    """alice and bob (on two workers) in one new room per count, alice's
    count messages sent to each (one burst), delivered to bob and synced to
    PostgreSQL as seqs 1..count: a room with history in both stores."""
    alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
    rooms = [await make_room(alice, bob) for _ in counts]
    pre = [send(f"p{k}-{i}", room, f"p{i}", f"before {i}")
           for k, (room, n) in enumerate(zip(rooms, counts)) for i in range(n)]
    await pipeline(alice, pre)
    all_acked(pre, await replies(alice, pre))
    await room_events(bob, len(pre))

    def synced():
        for room, n in zip(rooms, counts):
            assert [r[0] for r in pg_messages(tenant, room)] == list(range(1, n + 1))
    await eventually_async(synced, timeout=15, what="the first messages in PostgreSQL")
    return alice, bob, rooms


# --------------------------------------------------- 1. one room, one burst

N_BURST = 300


def test_pipelined_burst_acked_in_order_and_delivered_once(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        reqs = [send(f"s{i}", room, f"c{i}", body_for(i)) for i in range(N_BURST)]
        await pipeline(alice, reqs)
        acks = all_acked(reqs, await replies(alice, reqs))
        assert [a["seq"] for a in acks] == list(range(1, N_BURST + 1)), \
            f"ack seqs not 1..{N_BURST} in send order: {[a['seq'] for a in acks][:20]}"
        assert len({a["msg_id"] for a in acks}) == N_BURST, "msg_id reused"
        for who in (bob, alice):
            check_delivered(who, await room_events(who, N_BURST), room, "alice",
                            list(zip(reqs, acks)))
        return room, reqs, acks

    room, reqs, acks = run(main(), timeout=60)

    # The burst reaches PostgreSQL whole: every acked message once, under its
    # seq, with its id, client_msg_id and body (a send-script call puts its
    # events into the sync stream as a few entries of several events each).
    def in_postgres():
        rows = pg_messages(tenant, room)
        assert len(rows) == N_BURST, f"{len(rows)} of {N_BURST} messages in PostgreSQL"
        want = [(a["seq"], a["msg_id"], r["client_msg_id"], r["body"])
                for r, a in zip(reqs, acks)]
        assert [tuple(r) for r in rows] == want, \
            next((got, w) for got, w in zip(rows, want) if tuple(got) != w)
    run(eventually_async(in_postgres, timeout=20, what="the burst in PostgreSQL"), timeout=30)


def test_sync_entry_of_several_events_and_a_malformed_one(server, tenant, redis_db):
    """The sync stream's format (bus.h): an entry holds events joined by a
    newline, "s" the first one's seq. A malformed entry is skipped (and
    acknowledged, so it does not come back) without holding up the next."""
    async def main():
        alice = await connect_on_worker(server, 0, "alice", tenant)
        return await make_room(alice)
    room = run(main(), timeout=30)

    def event(seq):
        return json.dumps({"type": "message:new", "room": room, "seq": seq, "msg": {
            "id": f"m-{room}-{seq}", "seq": seq, "user": "alice", "kind": "text",
            "body": f"line {seq}\nwith a newline, escaped", "ts": 1763900000000 + seq,
            "client_msg_id": f"c{seq}"}}, separators=(",", ":"))
    bad = redis_db.xadd("chatd:sync", {"t": tenant, "r": room, "s": "x1", "e": event(9)})
    good = redis_db.xadd("chatd:sync", {"t": tenant, "r": room, "s": "4",
                                        "e": "\n".join(event(s) for s in (4, 5, 6))})

    def in_postgres():
        rows = pg_messages(tenant, room)
        assert [tuple(r) for r in rows] == [
            (s, f"m-{room}-{s}", f"c{s}", f"line {s}\nwith a newline, escaped")
            for s in (4, 5, 6)], rows
    run(eventually_async(in_postgres, timeout=20, what="the entry's 3 events"), timeout=30)

    def acknowledged():
        pending = {p["message_id"] for p in
                   redis_db.xpending_range("chatd:sync", "chatd", "-", "+", 1000)}
        assert not pending & {bad, good}, f"still pending: {pending & {bad, good}}"
    run(eventually_async(acknowledged, timeout=10, what="both entries acknowledged"), timeout=20)


# ------------------------------------------- 2. one client_msg_id, 3 times

def test_repeated_client_msg_id_in_a_burst_is_one_message(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        cmids = [f"c{i}" for i in range(20)]
        for at in (2, 9, 17):
            cmids.insert(at, "dup")
        reqs = [send(f"d{i}", room, c, f"body of {c}") for i, c in enumerate(cmids)]
        await pipeline(alice, reqs)
        acks = all_acked(reqs, await replies(alice, reqs))
        key = lambda a: (a["msg_id"], a["seq"], a["ts"])  # noqa: E731
        dup = [key(a) for r, a in zip(reqs, acks) if r["client_msg_id"] == "dup"]
        assert len(dup) == 3 and len(set(dup)) == 1, f"the three acks of dup differ: {dup}"
        firsts, seen = [], set()
        for r, a in zip(reqs, acks):
            if r["client_msg_id"] not in seen:
                seen.add(r["client_msg_id"])
                firsts.append((r, a))
        assert [a["seq"] for _, a in firsts] == list(range(1, 22)), \
            [(r["client_msg_id"], a["seq"]) for r, a in zip(reqs, acks)]
        check_delivered("bob", await room_events(bob, 21), room, "alice", firsts)

        # A later burst repeats it: the first ack again, nothing new delivered.
        later = [send("l0", room, "x0", "x0"), send("l1", room, "dup", "body of dup"),
                 send("l2", room, "x1", "x1"), send("l3", room, "dup", "other body")]
        await pipeline(alice, later)
        acks2 = all_acked(later, await replies(alice, later))
        assert key(acks2[1]) == key(acks2[3]) == dup[0], (acks2, dup[0])
        assert (acks2[0]["seq"], acks2[2]["seq"]) == (22, 23), acks2
        check_delivered("bob", await room_events(bob, 2), room, "alice",
                        [(later[0], acks2[0]), (later[2], acks2[2])])
    run(main(), timeout=60)


# ------------------------------------------------ 3. rate limit mid-burst

RATE, TOKENS = 1, 10


def check_limited(who, reqs, answers, elapsed):
    """The first TOKENS requests acked, the others rate_limited (a refill
    during the burst may ack one more); accepted seqs rise in send order.
    Returns [(req, ack)]."""
    kinds = [a["type"] for a in answers]
    assert kinds[:TOKENS] == ["ack"] * TOKENS, f"{who}: {answers[:TOKENS + 1]}"
    acked = [(r, a) for r, a in zip(reqs, answers) if a["type"] == "ack"]
    refill = 1 + int(elapsed * RATE)
    assert len(acked) <= TOKENS + refill, f"{who}: {len(acked)} acked in {elapsed:.2f}s"
    for a in answers:
        if a["type"] == "error":
            assert a["code"] == "rate_limited", f"{who}: {a}"
            wait = a.get("retry_after_ms")
            assert isinstance(wait, int) and 0 < wait <= 1000 // RATE, f"{who}: {a}"
    s = [a["seq"] for _, a in acked]
    assert s == sorted(set(s)), f"{who}: accepted seqs not in send order: {s}"
    return acked


def test_rate_limit_in_the_middle_of_a_burst(make_server, tenant):
    srv = make_server(rate_send=f"{TOKENS}/{TOKENS // RATE}")  # RATE a second

    async def main():
        # Everyone on one worker: bob's and carol's bursts meet in one turn.
        clients = [await connect_on_worker(srv, 0, u, tenant)
                   for u in ("watcher", "alice", "bob", "carol")]
        watcher, alice, bob, carol = clients
        room = await make_room(*clients)
        warm = await watcher.say(room, "warm up")
        for c in clients:
            assert (await room_events(c, 1))[0]["seq"] == warm["seq"] == 1

        n = TOKENS + 5
        reqs = [send(f"a{i}", room, f"a{i}", f"alice {i}") for i in range(n)]
        start = time.monotonic()
        await pipeline(alice, reqs)
        answers = await replies(alice, reqs)
        acked = check_limited("alice", reqs, answers, time.monotonic() - start)
        assert [a["seq"] for _, a in acked] == list(range(2, 2 + len(acked))), acked
        check_delivered("watcher", await room_events(watcher, len(acked)), room, "alice", acked)
        last = acked[-1][1]["seq"]

        # Two users in the same burst: a bucket each.
        burst = {c: [send(f"{c.user}{i}", room, f"{c.user}{i}", f"{c.user} {i}")
                     for i in range(n)] for c in (bob, carol)}
        start = time.monotonic()
        for c, rs in burst.items():
            write_burst(c, rs)
        await asyncio.gather(*(asyncio.wait_for(c.ws.drain(), 5) for c in burst))
        got = await asyncio.gather(*(replies(c, rs) for c, rs in burst.items()))
        elapsed = time.monotonic() - start
        accepted = {c.user: check_limited(c.user, rs, a, elapsed)
                    for (c, rs), a in zip(burst.items(), got)}
        by_seq = {a["seq"]: (c, r, a) for c, acc in accepted.items() for r, a in acc}
        assert sorted(by_seq) == list(range(last + 1, last + 1 + len(by_seq))), sorted(by_seq)
        frames = await room_events(watcher, len(by_seq))
        assert seqs(frames) == sorted(by_seq), seqs(frames)
        for f in frames:
            user, r, a = by_seq[f["seq"]]
            check_message_new(f, room, a, user, r["body"], r["client_msg_id"])
    run(main(), timeout=60)


# ---------------------------------------------- 4. rooms interleaved

ROOMS, PER_ROOM = 3, 50


def test_interleaved_rooms_in_one_burst(server, tenant):
    async def main():
        alice, *subs = await connect_on_distinct_workers(server, 2, tenant, ["alice", "s0"])
        subs += [await connect_on_worker(server, k % 2, f"s{k}", tenant)
                 for k in range(1, ROOMS)]
        rooms = [await make_room(alice, sub) for sub in subs]
        reqs = [send(f"r{k}-{i}", rooms[k], f"c{k}-{i}", f"room {k}: " + body_for(i))
                for i in range(PER_ROOM) for k in range(ROOMS)]
        await pipeline(alice, reqs)
        acks = all_acked(reqs, await replies(alice, reqs))
        own = await room_events(alice, ROOMS * PER_ROOM)
        for k, (room, sub) in enumerate(zip(rooms, subs)):
            sent = [(r, a) for r, a in zip(reqs, acks) if r["room"] == room]
            assert [a["seq"] for _, a in sent] == list(range(1, PER_ROOM + 1)), \
                f"room {k}: ack seqs in send order {[a['seq'] for _, a in sent]}"
            check_delivered(f"sub of room {k}", await room_events(sub, PER_ROOM), room,
                            "alice", sent)
            check_delivered(f"alice, room {k}", [f for f in own if f["room"] == room], room,
                            "alice", sent)
    run(main(), timeout=60)


# Many quiet rooms: one message each, all in one loop turn, go to Redis as
# one script call (bus.c); each room still gets its own counter and events.

MANY_ROOMS = 30


def test_one_message_to_each_of_many_rooms_in_one_burst(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        rooms = [await make_room(alice, bob) for _ in range(MANY_ROOMS)]
        # A second message to the first room at the end: its batch is in the
        # same call as the others.
        reqs = ([send(f"m{k}", room, f"c{k}", f"to room {k}") for k, room in enumerate(rooms)] +
                [send("again", rooms[0], "c-again", "second to room 0")])
        await pipeline(alice, reqs)
        acks = all_acked(reqs, await replies(alice, reqs))
        assert [a["seq"] for a in acks] == [1] * MANY_ROOMS + [2], [a["seq"] for a in acks]
        frames = await room_events(bob, len(reqs))
        for k, room in enumerate(rooms):
            sent = [(r, a) for r, a in zip(reqs, acks) if r["room"] == room]
            check_delivered(f"bob, room {k}", [f for f in frames if f["room"] == room], room,
                            "alice", sent)
    run(main(), timeout=60)


def test_a_room_that_lost_its_counter_beside_one_that_did_not(server, tenant, redis_db):
    """In one call, the room whose counter and stream Redis lost is seeded
    from PostgreSQL; the other continues from Redis; nothing is lost or
    doubled in either."""
    async def main():
        alice, bob, (lost, kept) = await rooms_in_postgres(server, tenant, [4, 2])
        before = {lost: 4, kept: 2}
        gone = await asyncio.to_thread(redis_db.delete, f"chatd:{{{tenant}/{lost}}}:seq",
                                       f"chatd:{{{tenant}/{lost}}}:stream")
        assert gone == 2, "the lost room's counter and stream were not in Redis"

        reqs = [send(f"q{k}-{i}", room, f"q{i}", f"after {i}")
                for i in range(10) for k, room in enumerate((lost, kept))]
        await pipeline(alice, reqs)
        acks = all_acked(reqs, await replies(alice, reqs))
        frames = await room_events(bob, len(reqs))
        for room in (lost, kept):
            sent = [(r, a) for r, a in zip(reqs, acks) if r["room"] == room]
            assert [a["seq"] for _, a in sent] == list(range(before[room] + 1,
                                                             before[room] + 11)), \
                (room == lost, [a["seq"] for _, a in sent])
            check_delivered("bob", [f for f in frames if f["room"] == room], room, "alice",
                            sent)

        def all_in_postgres():
            for room in (lost, kept):
                rows = pg_messages(tenant, room)
                assert [r[0] for r in rows] == list(range(1, before[room] + 11)), rows
        await eventually_async(all_in_postgres, timeout=15, what="every seq once in PostgreSQL")
    run(main(), timeout=60)


# ------------------------------------------------- 5. edits among sends

def test_edits_pipelined_with_sends(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        first = await alice.say(room, "original", "orig")
        await room_events(bob, 1)

        def synced():
            assert [r[1] for r in pg_messages(tenant, room)] == [first["msg_id"]]
        await eventually_async(synced, timeout=10, what="the first message in PostgreSQL")

        def edit(rid, body, msg_id=first["msg_id"]):
            return {"type": "message:edit", "id": rid, "room": room, "msg_id": msg_id,
                    "body": body}
        reqs = ([send(f"s{i}", room, f"c{i}", f"new {i}") for i in range(5)] +
                [edit("e1", "v1"), edit("e0", "x", msg_id="no-such-message")] +
                [send(f"s{i}", room, f"c{i}", f"new {i}") for i in range(5, 10)] +
                [edit("e2", "v2 \"é\"")])
        await pipeline(alice, reqs)
        answers = await replies(alice, reqs)
        # An edit waits for its author check in PostgreSQL first: where its
        # seq falls among the sends' is not pinned, only that every event of
        # the burst gets its own seq and sends and edits each keep their order.
        bad = [a for a in answers if a["id"] == "e0"]
        assert bad[0]["type"] == "error" and bad[0]["code"] == "not_found", bad
        ok = [(r, a) for r, a in zip(reqs, answers) if r["id"] != "e0"]
        all_acked([r for r, _ in ok], [a for _, a in ok])
        assert sorted(a["seq"] for _, a in ok) == list(range(2, 2 + len(ok))), \
            [(r["id"], a["seq"]) for r, a in ok]
        sends = [(r, a) for r, a in ok if r["type"] == "message:send"]
        assert seqs(a for _, a in sends) == sorted(a["seq"] for _, a in sends), "sends reordered"
        edits = {r["id"]: (r, a) for r, a in ok if r["type"] == "message:edit"}
        assert edits["e1"][1]["seq"] < edits["e2"][1]["seq"], "edits reordered"
        assert all(a["msg_id"] == first["msg_id"] for _, a in edits.values()), edits

        frames = await room_events(bob, len(ok))
        by_seq = {a["seq"]: (r, a) for r, a in ok}
        assert seqs(frames) == sorted(by_seq), seqs(frames)
        for f in frames:
            r, a = by_seq[f["seq"]]
            if r["type"] == "message:send":
                check_message_new(f, room, a, "alice", r["body"], r["client_msg_id"])
            else:
                assert f["type"] == "message:edited" and f["room"] == room, f
                assert (f["msg_id"], f["user"], f["body"]) == \
                    (first["msg_id"], "alice", r["body"]), (f, r)
                assert isinstance(f["edited_at"], int), f

        # Both edits may reach PostgreSQL in one sync statement: the row
        # keeps the later one (the highest seq), as every client saw it.
        def last_edit_stored():
            rows = [r for r in pg_messages(tenant, room) if r[1] == first["msg_id"]]
            assert rows and rows[0][3] == "v2 \"é\"", rows
        await eventually_async(last_edit_stored, timeout=15, what="the last edit in PostgreSQL")
    run(main(), timeout=60)


# ------------------------------------- 6. after Redis lost its counters
# Last in the file: FLUSHALL also hits the module's shared server.

def test_burst_after_flushall_continues_from_postgres(make_server, tenant, redis_db):
    srv = make_server()

    async def main():
        alice, bob, rooms = await rooms_in_postgres(srv, tenant, [5, 3])
        before = {rooms[0]: 5, rooms[1]: 3}
        await asyncio.to_thread(redis_db.flushall)

        # 20 to room 0 and 10 to room 1, interleaved, both counters missing.
        after = {rooms[0]: 20, rooms[1]: 10}
        reqs = [send(f"q{k}-{i}", room, f"q{i}", f"after {i}")
                for i in range(20) for k, room in enumerate(rooms) if i < after[room]]
        await pipeline(alice, reqs)
        acks = all_acked(reqs, await replies(alice, reqs))
        frames = await room_events(bob, len(reqs))
        for room in rooms:
            sent = [(r, a) for r, a in zip(reqs, acks) if r["room"] == room]
            want = list(range(before[room] + 1, before[room] + after[room] + 1))
            assert [a["seq"] for _, a in sent] == want, [a["seq"] for _, a in sent]
            check_delivered("bob", [f for f in frames if f["room"] == room], room, "alice",
                            sent)
        return [(r, a) for r, a in zip(reqs, acks)]

    sent = run(main(), timeout=60)

    async def in_postgres():
        def check():
            for room in {r["room"] for r, _ in sent}:
                rows = pg_messages(tenant, room)
                tail = [(a["seq"], a["msg_id"]) for r, a in sent if r["room"] == room]
                assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), rows
                assert [(r[0], r[1]) for r in rows[-len(tail):]] == tail, (rows, tail)
        await eventually_async(check, timeout=15, what="every seq once in PostgreSQL")
    run(in_postgres(), timeout=30)
