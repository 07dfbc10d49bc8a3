"""Typing indicators (docs/protocol.md section 8, "Typing"): who gets
typing:update and when, across workers and instances on one Redis; the
expiry, the ends (typing:stop, a message, leave, removal, close), the
typists of a worker that died, the join ack's `typing`, and the refusals.

To show that something did not arrive, a test waits for a later event that
travels the same way (another user's typing:update on the same room
channel, which Redis delivers in order) rather than sleeping."""

import asyncio
import os
import signal
import time

import pytest

from chatd_harness import (Client, connect_on_distinct_workers, connect_on_worker, make_room,
                           run, unique_id)

SHORT_TIMEOUT_MS = 1500
# chat/typing.c: other workers end a silent typist this long after
# typing_timeout_ms; its expiry check runs every TICK_S.
MARGIN_S = 1.5
TICK_S = 0.25
# What a loaded ASan run may add to a deadline.
SLACK_S = 1.0


def typing_match(room, user=None, typing=None):
    def match(frame):
        return (frame.get("type") == "typing:update" and frame.get("room") == room
                and (user is None or frame.get("user") == user)
                and (typing is None or frame.get("typing") is typing))
    return match


async def typing_update(client, room, user, typing, timeout=5):
    """The next typing:update of user in room, which must say `typing`."""
    frame = await client.take(typing_match(room, user), timeout,
                              f"typing:update of {user} in {room}")
    assert frame == {"type": "typing:update", "room": room, "user": user, "typing": typing}, \
        f"{client}: {frame}"
    return frame


def buffered_typing(client, room, user):
    return [f for f in client.frames if typing_match(room, user)(f)]


async def start(client, room):
    ack = await client.ok("typing:start", room=room)
    assert ack["room"] == room, ack
    return ack


# ------------------------------------------------------------------ fan-out

def test_typing_reaches_everyone_but_the_typist(make_server, tenant):
    """alice has a connection on each worker of instance A, bob too, carol
    is on instance B. alice's typing reaches bob (both connections) and
    carol once, a repeat within the second goes nowhere, and no user ever
    gets its own typing:update."""
    first = make_server(workers=2)
    second = make_server(workers=1)

    async def main():
        a0 = await connect_on_worker(first, 0, "alice", tenant)
        a1 = await connect_on_worker(first, 1, "alice", tenant)
        b0 = await connect_on_worker(first, 0, "bob", tenant)
        b1 = await connect_on_worker(first, 1, "bob", tenant)
        c2 = await Client.connect(second, "carol", tenant)
        everyone = [a0, a1, b0, b1, c2]
        room = await make_room(*everyone)

        began = time.monotonic()
        await start(a0, room)
        for c in (b0, b1, c2):
            await typing_update(c, room, "alice", True)
        # Again on the same connection within the second: acked, not sent.
        await start(a0, room)
        assert time.monotonic() - began < 1.0, "too slow to repeat within the second"

        # carol's typing comes after alice's on the room's channel: whoever
        # has carol's has seen every typing:update of alice there was.
        await start(c2, room)
        for c in (a0, a1, b0, b1):
            await typing_update(c, room, "carol", True)
        await start(b0, room)
        await typing_update(c2, room, "bob", True)
        for c in (b0, b1, c2):
            assert buffered_typing(c, room, "alice") == [], f"{c}: a second typing:true"

        await a0.ok("typing:stop", room=room)
        for c in (b0, b1, c2):
            await typing_update(c, room, "alice", False)
        await c2.ok("typing:stop", room=room)
        for c in (a0, a1, b0, b1):
            await typing_update(c, room, "carol", False)
        await b0.ok("typing:stop", room=room)
        await typing_update(c2, room, "bob", False)
        for c in (a0, a1):
            await typing_update(c, room, "bob", True)
            await typing_update(c, room, "bob", False)
        for c in everyone:
            assert buffered_typing(c, room, c.user) == [], f"{c} got its own typing"
            assert [f for f in c.frames if f.get("type") == "typing:update"] == [], c.frames

    run(main(), timeout=60)


def test_typing_true_again_after_a_second(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        await start(alice, room)
        await typing_update(bob, room, "alice", True)
        await asyncio.sleep(1.1)  # the rule is about time
        await start(alice, room)
        await typing_update(bob, room, "alice", True)
        await alice.ok("typing:stop", room=room)
        await typing_update(bob, room, "alice", False)
    run(main())


# ------------------------------------------------------------------- expiry

def test_typing_expires_after_the_last_start(make_server, tenant):
    """typing_timeout_ms = 1500: typing:false comes 1.5 s after the last
    typing:start, a repeat within the second having moved it on."""
    srv = make_server(workers=2, typing_timeout_ms=SHORT_TIMEOUT_MS)

    async def main():
        alice, bob = await connect_on_distinct_workers(srv, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        await start(alice, room)
        await typing_update(bob, room, "alice", True)
        await asyncio.sleep(0.6)  # within the second: extends, sends nothing
        last = time.monotonic()
        await start(alice, room)
        await typing_update(bob, room, "alice", False, timeout=10)
        took = time.monotonic() - last
        timeout = SHORT_TIMEOUT_MS / 1000
        assert timeout - 0.05 <= took <= timeout + TICK_S + SLACK_S, took
        carol = await Client.connect(srv, "carol", tenant)
        ack = await carol.ok("room:join", room=room)
        assert ack["typing"] == [], ack
    run(main(), timeout=40)


# --------------------------------------------------------------- the ends

ENDS = ["typing:stop", "message:send", "room:leave", "member:remove", "close"]


@pytest.mark.parametrize("how", ENDS)
def test_typing_ends_at_once(server, tenant, how):
    """Each of these ends alice's typing at once (typing_timeout_ms is 10 s
    here), for bob on the other worker and in the room's hash."""
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(bob, alice)  # bob is the room's admin
        await start(alice, room)
        await typing_update(bob, room, "alice", True)
        began = time.monotonic()
        if how == "typing:stop":
            await alice.ok("typing:stop", room=room)
        elif how == "message:send":
            await alice.say(room, "there")
        elif how == "room:leave":
            await alice.ok("room:leave", room=room)
        elif how == "member:remove":
            await bob.ok("member:remove", room=room, user="alice")
        else:
            await alice.close()
        await typing_update(bob, room, "alice", False, timeout=3)
        assert time.monotonic() - began < 3
        carol = await Client.connect(server, "carol", tenant)
        ack = await carol.ok("room:join", room=room)
        assert ack["typing"] == [], ack
    run(main())


def test_stop_without_start_sends_nothing(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        carol = await Client.connect(server, "carol", tenant)
        room = await make_room(alice, bob, carol)
        await alice.ok("typing:stop", room=room)
        await start(carol, room)
        await typing_update(bob, room, "carol", True)
        assert buffered_typing(bob, room, "alice") == []
        await carol.ok("typing:stop", room=room)
    run(main())


# ------------------------------------------------------------------ the ack

def test_join_ack_lists_the_typists(server, tenant):
    """Those typing now, but the joining user itself; then the live
    updates."""
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        witness = await Client.connect(server, "witness", tenant)
        room = await make_room(witness, alice)
        ack = await bob.ok("room:join", room=room)
        assert ack["typing"] == [], ack
        await bob.ok("room:leave", room=room)

        await start(alice, room)
        # Once the witness has it, the room's hash has it (written first).
        await typing_update(witness, room, "alice", True)
        ack = await bob.ok("room:join", room=room)
        assert ack["typing"] == ["alice"], ack
        alice2 = await connect_on_worker(server, bob.worker, "alice", tenant)
        ack = await alice2.ok("room:join", room=room)
        assert ack["typing"] == [], f"alice is told she types: {ack}"

        await start(bob, room)
        await typing_update(witness, room, "bob", True)
        carol = await Client.connect(server, "carol", tenant)
        ack = await carol.ok("room:join", room=room)
        assert sorted(ack["typing"]) == ["alice", "bob"], ack

        await alice.ok("typing:stop", room=room)
        for c in (bob, carol):
            await typing_update(c, room, "alice", False)
        await bob.ok("typing:stop", room=room)
        await typing_update(carol, room, "bob", False)
        dave = await Client.connect(server, "dave", tenant)
        ack = await dave.ok("room:join", room=room)
        assert ack["typing"] == [], ack
    run(main())


# ----------------------------------------------------------------- a ghost

def test_typist_of_a_dead_worker_is_ended_by_the_others(make_server, tenant):
    """alice types on worker 0 of instance A, which is then killed (-9): no
    typing:false comes from it. bob on worker 1 and carol on instance B
    (whose worker learnt of alice from carol's join ack alone) get one
    typing_timeout_ms (plus the margin) after the last typing:true."""
    first = make_server(workers=2, typing_timeout_ms=SHORT_TIMEOUT_MS)
    second = make_server(workers=1, typing_timeout_ms=SHORT_TIMEOUT_MS)

    async def main():
        alice = await connect_on_worker(first, 0, "alice", tenant)
        bob = await connect_on_worker(first, 1, "bob", tenant)
        room = await make_room(bob, alice)
        await start(alice, room)
        await typing_update(bob, room, "alice", True)
        seen = time.monotonic()
        carol = await Client.connect(second, "carol", tenant)
        ack = await carol.ok("room:join", room=room)
        assert ack["typing"] == ["alice"], ack

        os.kill(first.worker_pids()[alice.worker], signal.SIGKILL)
        deadline = SHORT_TIMEOUT_MS / 1000 + MARGIN_S + TICK_S + SLACK_S
        for c in (bob, carol):
            await typing_update(c, room, "alice", False, timeout=deadline + 1)
            took = time.monotonic() - seen
            assert SHORT_TIMEOUT_MS / 1000 <= took <= deadline, (c, took)
        dave = await Client.connect(second, "dave", tenant)
        ack = await dave.ok("room:join", room=room)
        assert ack["typing"] == [], f"a dead typist in the ack: {ack}"
    run(main(), timeout=60)


# ---------------------------------------------------------------- refusals

def test_typing_refusals(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        carol = await Client.connect(server, "carol", tenant)
        room = await make_room(alice, carol)  # alice is the admin; bob has not joined
        for type in ("typing:start", "typing:stop"):
            await bob.error(type, "forbidden", room=room)
            await bob.error(type, "not_found", room=unique_id("nosuchroom"))
            await bob.error(type, "bad_request")
            await bob.error(type, "bad_request", room="not an id")
        stranger = await Client.connect(server, "stranger", unique_id("t"))
        await stranger.error("typing:start", "not_found", room=room)

        await bob.ok("room:join", room=room)
        await alice.ok("member:mute", room=room, user="bob")
        await bob.take(lambda f: f.get("type") == "member:updated" and f.get("user") == "bob",
                       5, "bob's member:updated")
        await bob.error("typing:start", "forbidden", room=room)
        await bob.error("typing:stop", "forbidden", room=room)
        # Nothing of bob went out: carol's typing comes after it would have.
        await start(carol, room)
        await typing_update(alice, room, "carol", True)
        assert buffered_typing(alice, room, "bob") == []
        await carol.ok("typing:stop", room=room)
    run(main())


def test_typing_rate_limit(make_server, tenant):
    """rate_typing = "2/60": two typing:start, then rate_limited with the
    time a token takes (30 s); typing:stop costs no token."""
    srv = make_server(workers=2, rate_typing="2/60")

    async def main():
        alice, bob = await connect_on_distinct_workers(srv, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        began = time.monotonic()
        await start(alice, room)
        await start(alice, room)
        limited = await alice.error("typing:start", "rate_limited", room=room)
        elapsed_ms = (time.monotonic() - began) * 1000
        assert 30000 - elapsed_ms - 50 <= limited["retry_after_ms"] <= 30000, limited
        await alice.ok("typing:stop", room=room)
        await typing_update(bob, room, "alice", True)
        await typing_update(bob, room, "alice", False)
        # bob's bucket is his own.
        await start(bob, room)
        await typing_update(alice, room, "bob", True)
    run(main())
