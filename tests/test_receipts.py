"""Read receipts (docs/protocol.md section 8, "Read receipts"):
receipt:delivered and receipt:read (and room:read, the same command), the
receipt:update frames they cause, message:seen, and the positions in the
room:join ack.

The positions live in PostgreSQL (room_members.delivered_seq, read_seq), so
they survive a chatd restart and a Redis FLUSHALL. Every wait is bounded;
what a check depends on (a sync to PostgreSQL, a frame) is waited for with a
poll or a frame, never a sleep."""

import asyncio
import time

from chatd_harness import (Client, Session, eventually_async, make_room, pg_rows, redis_client,
                           run, session_where, stamp_arrival, unique_id)

WINDOW_MS = 1000  # receipt_coalesce_ms's default


# ------------------------------------------------------------------ helpers

def positions(ack):
    return ack["delivered_seq"], ack["read_seq"]


async def mark(client, room, seq, read=True):
    """receipt:read (or receipt:delivered); returns (delivered_seq, read_seq)."""
    ack = await client.ok("receipt:read" if read else "receipt:delivered", room=room, seq=seq)
    assert set(ack) == {"type", "id", "room", "delivered_seq", "read_seq"}, ack
    assert ack["room"] == room, ack
    return positions(ack)


def db_positions(tenant, room, user):
    rows = pg_rows("SELECT delivered_seq, read_seq FROM room_members WHERE tenant = %s "
                   "AND room_id = %s AND user_id = %s", (tenant, room, user))
    return rows[0] if rows else None


async def synced(tenant, room, last_seq):
    """Wait until PostgreSQL holds the room's events up to last_seq."""
    def check():
        rows = pg_rows("SELECT coalesce(max(seq), 0) FROM room_events WHERE tenant = %s "
                       "AND room_id = %s", (tenant, room))
        assert rows[0][0] >= last_seq, f"room_events at {rows[0][0]} of {last_seq}"
    await eventually_async(check, timeout=10, what="the room's events in PostgreSQL")


def updates(frames, room, user=None):
    return [(f["user"], f["delivered_seq"], f["read_seq"]) for f in frames
            if f.get("type") == "receipt:update" and f.get("room") == room
            and (user is None or f.get("user") == user)]


def is_update(room, user, delivered, read):
    return lambda f: (f.get("type"), f.get("room"), f.get("user"), f.get("delivered_seq"),
                      f.get("read_seq")) == ("receipt:update", room, user, delivered, read)


async def wait_update(client, room, user, delivered, read, timeout=5):
    """The receipt:update with these positions on a Client; returns it."""
    frame = await client.take(is_update(room, user, delivered, read), timeout,
                              f"receipt:update {user} {delivered}/{read} in {room}")
    assert set(frame) == {"type", "room", "user", "delivered_seq", "read_seq"}, frame
    return frame


stamp = stamp_arrival


open_where = session_where


async def client_where(server, want, user, tenant, attempts=60):
    seen = []
    for _ in range(attempts):
        c = await Client.connect(server, user, tenant)
        if want(c.worker):
            return c
        seen.append(c.worker)
        await c.close()
    raise AssertionError(f"no suitable worker for {user} in {attempts} tries (saw {set(seen)})")


def by_id(rooms):
    return {r["id"]: r for r in rooms}


# ------------------------------------------------------- positions, checks

def test_positions_only_move_forward_and_read_implies_delivered(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(alice, bob)
        for i in range(5):
            await alice.say(room, f"m{i}")

        assert await mark(bob, room, 2, read=False) == (2, 0)
        assert await mark(bob, room, 1) == (2, 1)
        # Lower than where it is: acked, unchanged.
        assert await mark(bob, room, 1, read=False) == (2, 1)
        assert await mark(bob, room, 0) == (2, 1)
        # Reading moves delivery along.
        assert await mark(bob, room, 4) == (4, 4)
        assert await mark(bob, room, 3, read=False) == (4, 4)
        assert await mark(bob, room, 2) == (4, 4)
        assert await mark(bob, room, 5, read=False) == (5, 4)
        assert db_positions(tenant, room, "bob") == (5, 4)
        # Past the room's last seq (Redis' counter: the sync has not
        # necessarily written them yet).
        for type in ("receipt:read", "receipt:delivered", "room:read"):
            await bob.error(type, "bad_request", room=room, seq=6)
        # room:read is receipt:read: same ack, same positions.
        ack = await bob.ok("room:read", room=room, seq=5)
        assert (ack["room"], positions(ack)) == (room, (5, 5)), ack
        assert db_positions(tenant, room, "bob") == (5, 5)
        await bob.error("receipt:read", "bad_request", room=room)
        await bob.error("receipt:delivered", "bad_request", room=room, seq=-1)
        await bob.error("receipt:read", "bad_request", room=room, seq="3")
        await bob.error("receipt:read", "bad_request", seq=3)
        # Alice's positions are her own.
        assert await mark(alice, room, 3, read=False) == (3, 0)
        assert db_positions(tenant, room, "bob") == (5, 5)
    run(main())


def test_two_workers_racing_keep_the_largest(server, tenant):
    """bob's two connections, on both workers, mark four rooms at once, in
    opposite orders: every ack is at least what it asked, the positions end
    at the largest, and no batch had to be retried alone (rows are locked in
    one order, so the two workers' statements never deadlock)."""
    async def main():
        alice = await Session.open(server, "alice", tenant)
        bobs = [await open_where(server, lambda w, n=n: w == n, "bob", tenant)
                for n in range(2)]
        rooms = []
        for _ in range(4):
            room = unique_id("room")
            await alice.ok("room:create", room=room, name="race", members=["bob"])
            await alice.ok("room:join", room=room)
            for i in range(20):
                await alice.ok("message:send", room=room, body=f"m{i}",
                               client_msg_id=unique_id("c"))
            rooms.append(room)
        asked = []
        for seq in range(1, 21):
            for k, bob in enumerate(bobs):
                order = rooms if k == 0 else rooms[::-1]
                for room in order:
                    read = (seq + k) % 2 == 0
                    waiter = await bob.start("receipt:read" if read else "receipt:delivered",
                                             room=room, seq=seq)
                    asked.append((waiter, room, seq, read))
        replies = await asyncio.wait_for(asyncio.gather(*(a[0] for a in asked)), 20)
        for reply, (_, room, seq, read) in zip(replies, asked):
            assert reply.get("type") == "ack" and reply["room"] == room, reply
            assert reply["delivered_seq"] >= seq and (not read or reply["read_seq"] >= seq), \
                (seq, read, reply)
            assert reply["delivered_seq"] >= reply["read_seq"], reply
        for room in rooms:
            assert db_positions(tenant, room, "bob") == (20, 20), room
        assert "receipts: a batch" not in server.log(), "a batch was retried alone"
    run(main(), timeout=45)


def test_who_may_send_receipts(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        carol = await Client.connect(server, "carol", tenant)
        mallory = await Client.connect(server, "alice", unique_id("t"))
        room = await make_room(alice, bob)
        private = await make_room(alice, private=True, members=["bob"])
        await alice.say(room, "one")
        await alice.say(private, "one")
        for type in ("receipt:read", "receipt:delivered"):
            # A public room's reader who is no member: forbidden, before
            # the seq is looked at.
            await carol.error(type, "forbidden", room=room, seq=1)
            await carol.error(type, "forbidden", room=room, seq=99)
            await carol.error(type, "forbidden", room=private, seq=1)
            await alice.error(type, "not_found", room=unique_id("nope"), seq=1)
            await mallory.error(type, "not_found", room=room, seq=1)
        # A member who never joined marks the room all the same.
        assert await mark(bob, private, 1) == (1, 1)
        await alice.ok("member:mute", room=room, user="bob")
        assert await mark(bob, room, 1, read=False) == (1, 0)  # muted still reads
        await alice.ok("member:ban", room=room, user="bob")
        await bob.error("receipt:read", "forbidden", room=room, seq=1)
        await bob.error("receipt:delivered", "forbidden", room=room, seq=0)
        await bob.error("room:read", "forbidden", room=room, seq=1)
    run(main())


def test_receipts_are_rate_limited(make_server, tenant):
    server = make_server(rate_receipt="3/60")

    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room = await make_room(alice)
        await alice.say(room, "hi")
        await mark(alice, room, 1, read=False)
        await mark(alice, room, 1)
        await alice.ok("room:read", room=room, seq=1)
        for type in ("receipt:read", "receipt:delivered", "room:read"):
            limited = await alice.error(type, "rate_limited", room=room, seq=1)
            assert limited["retry_after_ms"] > 0, limited
        # Fields are checked first: a bad request costs no token and says so.
        await alice.error("receipt:read", "bad_request", room=room)
        # The limit comes before the room's checks.
        await alice.error("receipt:read", "rate_limited", room=unique_id("nope"), seq=1)
        # message:seen is a read: not limited.
        sent = await alice.say(room, "again")
        seen = await alice.ok("message:seen", room=room, msg_id=sent["msg_id"])
        assert seen["users"] == [], seen
    run(main())


# ------------------------------------------------------------ receipt:update

def test_update_reaches_subscribers_on_every_worker_and_instance(make_server, tenant):
    """bob marks on one worker of instance A. alice on A's other worker, alice
    on instance B, bob's other connection (instance B) and bob's own
    connection get receipt:update; a connection not subscribed to the room
    does not."""
    first = make_server(workers=2)
    second = make_server(workers=1)

    async def main():
        bob = await Client.connect(first, "bob", tenant)
        alice = await client_where(first, lambda w: w != bob.worker, "alice", tenant)
        alice_b = await Client.connect(second, "alice", tenant)
        bob_b = await Client.connect(second, "bob", tenant)
        idle = await Client.connect(second, "carol", tenant)
        room = await make_room(alice, bob, alice_b, bob_b)
        for i in range(3):
            await alice.say(room, f"m{i}")

        assert await mark(bob, room, 2) == (2, 2)
        for conn in (alice, alice_b, bob_b, bob):
            await wait_update(conn, room, "bob", 2, 2)
        # After the window, the latest positions.
        assert await mark(bob, room, 3, read=False) == (3, 2)
        for conn in (alice, alice_b, bob_b, bob):
            await wait_update(conn, room, "bob", 3, 2, timeout=WINDOW_MS / 1000 + 5)
        await idle.settle()
        assert idle.buffered("receipt:update") == [], idle.frames
        for conn in (alice, alice_b, bob_b, bob):
            await conn.settle()
            assert updates(conn.frames, room) == [], (conn, conn.frames)
    run(main(), timeout=45)


def test_updates_are_coalesced_per_user_and_room(server, tenant):
    """A burst of 10 receipts: the first position at once, then one
    receipt:update in the window, at its end, with the final positions."""
    async def main():
        bob = await Session.open(server, "bob", tenant)
        alice = await open_where(server, lambda w: w != bob.worker, "alice", tenant,
                                 on_frame=stamp)
        room = unique_id("room")
        await bob.ok("room:create", room=room, name="burst")
        for conn in (alice, bob):
            await conn.ok("room:join", room=room)
        for i in range(10):
            await bob.ok("message:send", room=room, body=f"m{i}", client_msg_id=unique_id("c"))

        # The first is answered before the other nine go (so that they
        # cannot all share its statement), then nine at once.
        start = time.monotonic()
        acks = [await bob.ok("receipt:read", room=room, seq=1)]
        waiters = [await bob.start("receipt:read" if seq % 2 else "receipt:delivered",
                                   room=room, seq=seq) for seq in range(2, 11)]
        acks += await asyncio.wait_for(asyncio.gather(*waiters), 10)
        assert all(a.get("type") == "ack" for a in acks), acks
        assert positions(acks[0]) == (1, 1) and positions(acks[-1]) == (10, 9), acks
        final = await alice.wait_event(is_update(room, "bob", 10, 9), WINDOW_MS / 1000 + 5,
                                       "the burst's final receipt:update")
        await alice.settle()
        got = [f for f in alice.events if f.get("type") == "receipt:update"]
        assert updates(got, room) == [("bob", 1, 1), ("bob", 10, 9)], got
        # The second waited for the window's end, and not much longer.
        gap = got[1]["_at"] - got[0]["_at"]
        assert gap >= 0.8 * WINDOW_MS / 1000, f"the second receipt:update {gap:.3f}s after"
        assert final["_at"] - start < WINDOW_MS / 1000 + 2, "the window's end is late"
        # A receipt that moves nothing says nothing.
        await bob.ok("receipt:read", room=room, seq=3)
        await bob.ok("receipt:delivered", room=room, seq=10)
        await bob.ok("receipt:read", room=room, seq=10)
        await alice.wait_event(is_update(room, "bob", 10, 10), WINDOW_MS / 1000 + 5,
                               "receipt:update of the read")
        await alice.settle()
        got = [f for f in alice.events if f.get("type") == "receipt:update"]
        assert updates(got[-1:], room) == [("bob", 10, 10)] and len(got) <= 3, got
    run(main(), timeout=30)


def test_only_moves_are_told_without_coalescing(make_server, tenant):
    server = make_server(receipt_coalesce_ms=0)

    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(alice, bob)
        for i in range(3):
            await alice.say(room, f"m{i}")
        await mark(bob, room, 2)
        await mark(bob, room, 1)
        await mark(bob, room, 2, read=False)
        await mark(bob, room, 2)
        await mark(bob, room, 3, read=False)
        await mark(bob, room, 3)
        await wait_update(alice, room, "bob", 3, 3)
        await alice.settle()
        assert updates(alice.frames, room) == [("bob", 2, 2), ("bob", 3, 2)], alice.frames
    run(main())


# ------------------------------------------------------------ durability

def test_positions_survive_a_restart_and_a_redis_flush(make_server, tenant):
    server = make_server()

    async def main_before():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(alice, bob)
        for i in range(4):
            await alice.say(room, f"m{i}")
        assert await mark(bob, room, 2) == (2, 2)
        assert await mark(bob, room, 3, read=False) == (3, 2)
        return room

    room = run(main_before())
    assert server.stop() == 0
    server.start()

    async def main_after():
        bob = await Client.connect(server, "bob", tenant)
        assert await mark(bob, room, 1) == (3, 2)
        ack = await bob.ok("room:join", room=room)
        assert {"user": "bob", "delivered_seq": 3, "read_seq": 2} in ack["receipts"], ack
        await synced(tenant, room, 4)
        await asyncio.to_thread(lambda: redis_client().flushall())
        # No counter any more: the last seq is PostgreSQL's.
        assert await mark(bob, room, 2, read=False) == (3, 2)
        assert by_id((await bob.ok("room:list"))["rooms"])[room]["unread"] == 2
        assert await mark(bob, room, 3) == (3, 3)
        assert by_id((await bob.ok("room:list"))["rooms"])[room]["unread"] == 1
        await bob.error("receipt:read", "bad_request", room=room, seq=5)
        assert await mark(bob, room, 4) == (4, 4)
        listed = by_id((await bob.ok("room:list"))["rooms"])[room]
        assert (listed["read_seq"], listed["unread"]) == (4, 0), listed
        assert db_positions(tenant, room, "bob") == (4, 4)
    run(main_after(), timeout=40)


def test_room_list_follows_receipt_read(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(alice, bob)
        await alice.say(room, "one")
        await alice.ok("message:send", room=room, body="two, @bob", mentions=["bob"],
                       client_msg_id=unique_id("c"))
        await alice.say(room, "three")
        await synced(tenant, room, 3)
        listed = by_id((await bob.ok("room:list"))["rooms"])[room]
        assert (listed["read_seq"], listed["unread"], listed["mentions"]) == (0, 3, 1), listed
        # Delivered is not read.
        await mark(bob, room, 3, read=False)
        listed = by_id((await bob.ok("room:list"))["rooms"])[room]
        assert (listed["read_seq"], listed["unread"], listed["mentions"]) == (0, 3, 1), listed
        await mark(bob, room, 2)
        listed = by_id((await bob.ok("room:list"))["rooms"])[room]
        assert (listed["read_seq"], listed["unread"], listed["mentions"]) == (2, 1, 0), listed
        await mark(bob, room, 3)
        listed = by_id((await bob.ok("room:list"))["rooms"])[room]
        assert (listed["read_seq"], listed["unread"], listed["mentions"]) == (3, 0, 0), listed
    run(main())


# -------------------------------------------------------------- message:seen

def test_message_seen_lists_exactly_the_readers(server, tenant):
    async def main():
        users = ["alice", "bob", "carol", "dave", "erin"]
        conns = {u: await Client.connect(server, u, tenant) for u in users}
        outsider = await Client.connect(server, "oscar", tenant)
        mallory = await Client.connect(server, "alice", unique_id("t"))
        alice, bob, carol, dave, erin = (conns[u] for u in users)
        room = await make_room(alice, bob, private=True, members=users[1:])
        other = await make_room(alice)
        m1 = await alice.say(room, "first")
        m2 = await alice.say(room, "second")
        elsewhere = await alice.say(other, "elsewhere")
        await mark(bob, room, 2)
        await mark(carol, room, 1)
        await mark(dave, room, 2, read=False)    # delivered, not read
        await mark(erin, room, 2)
        await mark(alice, room, 2)               # the author is never listed
        await alice.ok("member:ban", room=room, user="erin")  # nor a banned user

        seen = await dave.ok("message:seen", room=room, msg_id=m1["msg_id"])
        assert {k: v for k, v in seen.items() if k not in ("type", "id")} == \
            {"room": room, "msg_id": m1["msg_id"], "seq": m1["seq"], "users": ["bob", "carol"],
             "has_more": False}, seen
        seen = await alice.ok("message:seen", room=room, msg_id=m2["msg_id"])
        assert (seen["seq"], seen["users"], seen["has_more"]) == (m2["seq"], ["bob"], False)
        # A message sent just now (maybe not in PostgreSQL yet: the room
        # stream has it) and read at once.
        m3 = await bob.say(room, "third")
        await mark(carol, room, m3["seq"])
        seen = await carol.ok("message:seen", room=room, msg_id=m3["msg_id"])
        assert (seen["seq"], seen["users"]) == (m3["seq"], ["carol"]), seen
        # The same once it is in PostgreSQL; and from the room stream alone
        # (its messages row taken away, as before the sync wrote it).
        await synced(tenant, room, m3["seq"])
        seen = await bob.ok("message:seen", room=room, msg_id=m3["msg_id"])
        assert (seen["seq"], seen["users"]) == (m3["seq"], ["carol"]), seen
        await asyncio.to_thread(pg_rows, "DELETE FROM messages WHERE tenant = %s AND "
                                "room_id = %s AND id = %s RETURNING 1",
                                (tenant, room, m3["msg_id"]))
        seen = await alice.ok("message:seen", room=room, msg_id=m3["msg_id"])
        assert (seen["seq"], seen["users"]) == (m3["seq"], ["carol"]), seen

        await bob.error("message:seen", "not_found", room=room, msg_id="nosuchmessage")
        await bob.error("message:seen", "not_found", room=room, msg_id=elsewhere["msg_id"])
        await bob.error("message:seen", "not_found", room=unique_id("nope"), msg_id=m1["msg_id"])
        await mallory.error("message:seen", "not_found", room=room, msg_id=m1["msg_id"])
        await outsider.error("message:seen", "forbidden", room=room, msg_id=m1["msg_id"])
        await outsider.error("message:seen", "forbidden", room=room, msg_id="nosuchmessage")
        await erin.error("message:seen", "forbidden", room=room, msg_id=m1["msg_id"])
        await bob.error("message:seen", "bad_request", room=room)
        # Deleted: not_found at once (Redis knows before PostgreSQL does).
        await alice.ok("message:delete", room=room, msg_id=m2["msg_id"])
        await bob.error("message:seen", "not_found", room=room, msg_id=m2["msg_id"])
        # A public room's reader who is no member may ask.
        assert (await outsider.ok("message:seen", room=other,
                                  msg_id=elsewhere["msg_id"]))["users"] == []
    run(main())


def test_message_seen_names_at_most_1000(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room = await make_room(alice)
        sent = await alice.say(room, "popular")
        # 1,001 readers, written straight into PostgreSQL.
        await asyncio.to_thread(pg_rows,
                                "INSERT INTO room_members (tenant, room_id, user_id, role, "
                                "delivered_seq, read_seq) SELECT %s, %s, 'u' || "
                                "lpad(g::text, 4, '0'), 'member', 1, 1 "
                                "FROM generate_series(1, 1001) g RETURNING 1", (tenant, room))
        seen = await alice.ok("message:seen", room=room, msg_id=sent["msg_id"])
        assert len(seen["users"]) == 1000 and seen["has_more"] is True, len(seen["users"])
        assert seen["users"] == [f"u{i:04d}" for i in range(1, 1001)], seen["users"][:3]
    run(main())


# -------------------------------------------------------------- room:join

def test_join_ack_carries_positions(make_server, tenant):
    server = make_server()
    capped = make_server(join_receipts_max=2)

    async def main():
        names = ["alice", "bob", "carol", "dave"]
        conns = {u: await Client.connect(server, u, tenant) for u in names}
        alice, bob, carol, dave = (conns[u] for u in names)
        room = await make_room(alice, bob, carol, dave)
        for i in range(3):
            await alice.say(room, f"m{i}")
        await mark(bob, room, 3)
        await mark(carol, room, 1)
        await mark(carol, room, 3, read=False)
        await mark(dave, room, 2, read=False)

        want = [{"user": "bob", "delivered_seq": 3, "read_seq": 3},
                {"user": "carol", "delivered_seq": 3, "read_seq": 1},
                {"user": "dave", "delivered_seq": 2, "read_seq": 0}]
        erin = await Client.connect(server, "erin", tenant)
        ack = await erin.ok("room:join", room=room)
        assert ack["receipts"] == want, ack["receipts"]   # alice (0, 0) has none
        erin_capped = await Client.connect(capped, "erin", tenant)
        ack = await erin_capped.ok("room:join", room=room)
        assert ack["receipts"] == want[:2], ack["receipts"]
        ack = await erin_capped.ok("session:resume", rooms={room: 3})
        assert ack["rooms"][room]["receipts"] == want[:2], ack
        # A user the join refuses gets no positions.
        await alice.ok("member:ban", room=room, user="dave")
        reply = await dave.request("room:join", room=room)
        assert reply.get("code") == "forbidden" and "receipts" not in reply, reply
        ack = await erin.ok("room:join", room=room)
        assert ack["receipts"] == want[:2], ack["receipts"]   # dave is banned
    run(main(), timeout=40)


def test_joins_of_one_turn_stay_one_statement(make_server, tenant):
    """session:resume checks its rooms in one turn: one member statement
    answers them all, positions included."""
    server = make_server(workers=1)

    async def main():
        alice = await Client.connect(server, "alice", tenant)
        rooms = [await make_room(alice) for _ in range(5)]
        for room in rooms:
            await alice.say(room, "hi")
            await mark(alice, room, 1)
        before = server.monitoring()["postgres"]
        ack = await alice.ok("session:resume", rooms={room: 0 for room in rooms})
        after = server.monitoring()["postgres"]
        for room in rooms:
            assert ack["rooms"][room]["receipts"] == \
                [{"user": "alice", "delivered_seq": 1, "read_seq": 1}], ack["rooms"][room]
        assert after["join_checks"] - before["join_checks"] == 5, (before, after)
        assert after["join_batches"] - before["join_batches"] == 1, (before, after)
    run(main())
