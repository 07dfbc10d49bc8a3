"""Chatting in a room across workers: what two or three users see."""

import asyncio

from chatd_harness import (Client, check_message_new, connect_on_distinct_workers,
                           connect_on_worker, make_room, run, seqs, unique_id)


def test_two_users_on_different_workers_chat(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        assert alice.worker != bob.worker
        assert (alice.hello["user"], alice.hello["tenant"]) == ("alice", tenant)
        room = await make_room(alice, bob)

        async def talk(client, n):
            sent = []
            for i in range(n):
                body, cmid = f"{client.user} says {i}", unique_id("cm")
                ack = await client.say(room, body, cmid)
                assert isinstance(ack["msg_id"], str) and ack["msg_id"]
                assert isinstance(ack["ts"], int)
                sent.append((ack, client.user, body, cmid))
            return sent

        sent = sum(await asyncio.gather(talk(alice, 5), talk(bob, 5)), [])
        by_seq = {s[0]["seq"]: s for s in sent}
        assert sorted(by_seq) == list(range(1, 11))
        for client in (alice, bob):
            frames = await client.collect("message:new", 10)
            assert seqs(frames) == list(range(1, 11)), client
            for frame in frames:
                ack, user, body, cmid = by_seq[frame["seq"]]
                check_message_new(frame, room, ack, user, body, cmid)
            await client.settle()
            assert client.buffered("message:new") == [], f"{client} got a message twice"
    run(main())


def test_ping_gets_pong_with_id(server, tenant):
    async def main():
        client = await Client.connect(server, "alice", tenant)
        pong = await client.request("ping")
        assert pong["type"] == "pong" and pong["id"] == "req-1"
        assert isinstance(pong["ts"], int) and pong["ts"] > 1_600_000_000_000
    run(main())


def test_join_unknown_room_is_not_found(server, tenant):
    async def main():
        client = await Client.connect(server, "alice", tenant)
        await client.error("room:join", "not_found", room=unique_id("nosuchroom"))
    run(main())


def test_rooms_do_not_cross_tenants(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        mallory = await Client.connect(server, "mallory", unique_id("t"))
        room = await make_room(alice)
        await mallory.error("room:join", "not_found", room=room)
    run(main())


def test_send_without_join_is_forbidden(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(alice)
        await bob.error("message:send", "forbidden", room=room, body="hi",
                        client_msg_id=unique_id("cm"))
    run(main())


def test_leave_stops_live_events(server, tenant):
    async def main():
        sender, leaver = await connect_on_distinct_workers(server, 2, tenant, ["sender", "leaver"])
        # The witness shares the leaver's worker: both get a room event in the
        # same fan-out, so once the witness has it the leaver would have too.
        witness = await connect_on_worker(server, leaver.worker, "witness", tenant)
        room = await make_room(sender, leaver, witness)
        ack = await leaver.ok("room:leave", room=room)
        assert ack["room"] == room
        await sender.say(room, "after the leave")
        frame = await witness.next_event("message:new")
        assert frame["msg"]["body"] == "after the leave"
        await leaver.settle()
        assert leaver.buffered("message:new") == []
    run(main())


def test_resent_client_msg_id_is_acked_again_and_delivered_once(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        first = await alice.say(room, "once", "cm-dup")
        again = await alice.say(room, "once", "cm-dup")
        fields = ("msg_id", "seq", "ts")
        assert {k: again[k] for k in fields} == {k: first[k] for k in fields}
        last = await alice.say(room, "next", "cm-next")
        assert last["seq"] == first["seq"] + 1
        frames = await bob.collect("message:new", 2)
        assert [f["msg"]["client_msg_id"] for f in frames] == ["cm-dup", "cm-next"]
        await bob.settle()
        assert bob.buffered("message:new") == []
    run(main())


def test_joins_at_once_share_a_member_check_and_each_gets_its_own_answer(server, tenant, db):
    """Joins that arrive together are checked by one PostgreSQL statement
    (one commit for all), and each still gets the answer of its own room:
    acked where the room is public, forbidden where it is private,
    not_found where there is none. A user joining one room from two
    connections at once is a member once."""
    missing = unique_id("nope")

    async def main():
        owner = await Client.connect(server, "owner", tenant)
        public = await make_room(owner)
        private = await make_room(owner, private=True)
        users = await asyncio.gather(*(Client.connect(server, f"u{i}", tenant) for i in range(30)))
        twin = await Client.connect(server, "u0", tenant)  # u0's second connection
        rooms = [(public, "ack"), (private, "forbidden"), (missing, "not_found")]
        plan = [(c, *rooms[i % 3]) for i, c in enumerate(users)] + [(twin, public, "ack")]
        before = server.monitoring()["postgres"]
        replies = await asyncio.gather(*(c.request("room:join", 10, room=room)
                                         for c, room, _ in plan))
        after = server.monitoring()["postgres"]
        for (c, room, want), reply in zip(plan, replies):
            if want == "ack":
                assert reply["type"] == "ack" and reply["room"] == room, (c, reply)
                assert reply["role"] == "member", (c, reply)
            else:
                assert reply["type"] == "error" and reply["code"] == want, (c, room, reply)
        checks = after["join_checks"] - before["join_checks"]
        batches = after["join_batches"] - before["join_batches"]
        assert checks == len(plan), (before, after)
        assert batches < checks, f"{checks} joins took {batches} statements: none shared one"
        ack = await owner.say(public, "hello, all who joined")
        for c, room, want in plan:
            if want == "ack":
                frame = await c.take(lambda f: f.get("type") == "message:new", 5,
                                     "the message in the joined room")
                assert frame["room"] == public and frame["seq"] == ack["seq"], (c, frame)
        return public

    public = run(main())
    with db.cursor() as cur:
        cur.execute("SELECT user_id, count(*) FROM room_members WHERE tenant = %s AND room_id = %s"
                    " GROUP BY user_id", (tenant, public))
        members = dict(cur.fetchall())
    assert members == {"owner": 1, **{f"u{i}": 1 for i in range(0, 30, 3)}}, members


def test_a_join_that_fails_its_batch_does_not_fail_the_others(server, tenant, db):
    """When the statement checking a batch of joins fails (here a trigger
    refuses one user's membership row), each join of the batch is checked
    again on its own: the others are acked, the refused one gets
    unavailable, and the batch's failure is logged."""
    def fallbacks():
        return [line for line in server.log().splitlines() if "checking each alone" in line]

    with db.cursor() as cur:
        cur.execute("CREATE OR REPLACE FUNCTION chatd_test_refuse_member() RETURNS trigger"
                    " LANGUAGE plpgsql AS $$ BEGIN"
                    " IF NEW.tenant = %s AND NEW.user_id = 'refused' THEN"
                    "  RAISE EXCEPTION 'membership refused by the test'; END IF;"
                    " RETURN NEW; END $$", (tenant,))
        cur.execute("CREATE TRIGGER chatd_test_refuse_member BEFORE INSERT ON room_members"
                    " FOR EACH ROW EXECUTE FUNCTION chatd_test_refuse_member()")
    before = len(fallbacks())

    async def main():
        owner = await Client.connect(server, "owner", tenant)
        refused_client = await Client.connect(server, "refused", tenant)
        # All on one worker, the refused join sent last: it waits while the
        # first of the others is in flight, with the rest, almost always. A
        # new room is tried (at most 3) until it was in a batch with others.
        clients = [await connect_on_worker(server, refused_client.worker, f"u{i}", tenant)
                   for i in range(20)] + [refused_client]
        for attempt in range(3):
            room = await make_room(owner)
            replies = await asyncio.gather(*(c.request("room:join", 10, room=room)
                                             for c in clients))
            *others, refused = replies
            assert refused["type"] == "error" and refused["code"] == "unavailable", refused
            for c, reply in zip(clients, others):
                assert reply["type"] == "ack" and reply["role"] == "member", (c, reply)
            if len(fallbacks()) > before:
                return
        raise AssertionError("the refused join never shared a batch in 3 tries")

    try:
        run(main())
    finally:
        with db.cursor() as cur:
            cur.execute("DROP TRIGGER IF EXISTS chatd_test_refuse_member ON room_members")
            cur.execute("DROP FUNCTION IF EXISTS chatd_test_refuse_member()")
    assert "membership refused by the test" in fallbacks()[-1], fallbacks()[-1]


def test_one_user_joining_from_two_workers_at_once_is_a_member_on_both(server, tenant):
    """Two connections of one user, on two workers (two PostgreSQL
    connections), join the same new public room at the same moment, in 30
    rooms: both are acked as member every time. (The check used to insert
    with DO NOTHING: the statement that lost the race saw neither the
    other's row nor its own, and answered forbidden.)"""
    async def main():
        owner = await Client.connect(server, "owner", tenant)
        a, b = await connect_on_distinct_workers(server, 2, tenant, ["both", "both"])
        for _ in range(30):
            room = unique_id("room")
            await owner.ok("room:create", room=room, name="race")
            ra, rb = await asyncio.gather(a.request("room:join", 10, room=room),
                                          b.request("room:join", 10, room=room))
            for c, reply in ((a, ra), (b, rb)):
                assert reply["type"] == "ack" and reply["role"] == "member", (c, reply)
    run(main())
