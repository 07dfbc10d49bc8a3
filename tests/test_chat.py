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
