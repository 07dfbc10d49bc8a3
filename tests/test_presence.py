"""Who is online (docs/protocol.md section 8): across workers and instances,
once per change, with a grace for reconnects, and no ghosts when a worker or
a whole instance dies."""

import asyncio
import os
import signal
import time

from chatd_harness import Client, connect_on_worker, make_room, run, unique_id

GRACE_MS = 600
TIMEOUT_S = 3


def presence_server(make_server, **conf):
    return make_server(workers=2, presence_grace_ms=GRACE_MS, presence_timeout_s=TIMEOUT_S,
                       **conf)


async def update(client, user, status, timeout=5):
    return await client.take(lambda f: f.get("type") == "presence:update"
                             and f.get("user") == user and f.get("status") == status,
                             timeout, f"presence:update {user} {status}")


async def quiet(client, user, control):
    """No presence:update of user is buffered by the time control's
    presence:update (sent after) arrives."""
    await update(client, control, "online")
    got = [f for f in client.frames if f.get("type") == "presence:update"
           and f.get("user") == user]
    assert got == [], got


async def shared_room(tenant, *clients):
    room = await make_room(clients[0], private=True,
                           members=[c.user for c in clients[1:]])
    return room


def test_online_offline_across_workers_once_per_change(make_server, tenant):
    srv = presence_server(make_server)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="r", name="r", private=True,
                       members=["bob", "carol", "dave"])
        # bob's two connections, on both workers: one online.
        bob1 = await connect_on_worker(srv, 1, "bob", tenant)
        upd = await update(alice, "bob", "online")
        assert upd["last_seen"] is None, upd
        bob2 = await connect_on_worker(srv, 0, "bob", tenant)
        await bob1.close()
        # A later change of someone else arrives; bob's did not change.
        await Client.connect(srv, "carol", tenant)
        await quiet(alice, "bob", "carol")
        t0 = time.monotonic()
        await bob2.close()
        off = await update(alice, "bob", "offline", timeout=5)
        waited = time.monotonic() - t0
        assert waited >= GRACE_MS / 1000 * 0.8, waited
        assert isinstance(off["last_seen"], int) and off["last_seen"] > 1_600_000_000_000, off
        got = await alice.request("presence:get", users=["bob", "carol", "nobody"])
        assert [(p["user"], p["status"]) for p in got["presence"]] == \
            [("bob", "offline"), ("carol", "online"), ("nobody", "offline")], got
        assert got["presence"][0]["last_seen"] == off["last_seen"], got
    run(main(), timeout=30)


def test_reconnect_within_the_grace_does_not_flap(make_server, tenant):
    srv = presence_server(make_server)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="r", name="r", private=True, members=["bob", "carol"])
        bob = await connect_on_worker(srv, 1, "bob", tenant)
        await update(alice, "bob", "online")
        await bob.close()
        bob = await connect_on_worker(srv, 0, "bob", tenant)
        # Well past the grace, a control change: bob never went offline.
        await asyncio.sleep(GRACE_MS / 1000 * 2)
        await Client.connect(srv, "carol", tenant)
        await quiet(alice, "bob", "carol")
        got = await alice.request("presence:get", users=["bob"])
        assert got["presence"][0]["status"] == "online", got
    run(main(), timeout=30)


def test_status_changes_and_invisible(make_server, tenant):
    srv = presence_server(make_server)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="r", name="r", private=True, members=["bob"])
        bob = await connect_on_worker(srv, 1, "bob", tenant)
        await update(alice, "bob", "online")
        ack = await bob.ok("presence:set", status="away")
        assert ack["status"] == "away"
        await update(alice, "bob", "away")
        await bob.ok("presence:set", status="away")         # no change: no event
        await bob.ok("presence:set", status="invisible")
        await update(alice, "bob", "offline")
        got = await alice.request("presence:get", users=["bob"])
        assert got["presence"][0]["status"] == "offline", got
        await bob.ok("presence:set", status="busy")
        await update(alice, "bob", "busy")
        # A user outside bob's rooms hears nothing; bad input is refused.
        eve = await Client.connect(srv, "eve", tenant)
        await bob.ok("presence:set", status="online")
        await update(alice, "bob", "online")
        assert [f for f in eve.frames if f.get("type") == "presence:update"] == []
        await bob.error("presence:set", "bad_request", status="sleeping")
        await bob.error("presence:get", "too_large", users=[f"u{i}" for i in range(101)])
        await bob.error("presence:get", "bad_request", users=["not ok"])
    run(main(), timeout=30)


def test_big_rooms_carry_no_per_user_presence(make_server, tenant):
    srv = presence_server(make_server, presence_room_max=3)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="big", name="big", private=True,
                       members=["bob", "c1", "c2"])
        await alice.ok("room:create", room="small", name="small", private=True,
                       members=["carol"])
        await Client.connect(srv, "bob", tenant)
        await Client.connect(srv, "carol", tenant)
        # carol (a small room) is announced, bob (only the big room) is not.
        await quiet(alice, "bob", "carol")
        got = await alice.request("presence:get", users=["bob"])
        assert got["presence"][0]["status"] == "online", got
    run(main(), timeout=30)


def test_a_killed_worker_leaves_no_ghost(make_server, tenant):
    srv = presence_server(make_server)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="r", name="r", private=True, members=["bob"])
        await connect_on_worker(srv, 1, "bob", tenant)
        await update(alice, "bob", "online")
        pid = srv.worker_pids()[1]
        assert isinstance(pid, int) and pid > 1
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await update(alice, "bob", "offline", timeout=TIMEOUT_S + 3)
        took = time.monotonic() - t0
        assert took <= TIMEOUT_S + 1.5, took
    run(main(), timeout=30)


def test_a_killed_instance_leaves_no_ghost(make_server, tenant):
    first = presence_server(make_server)
    second = presence_server(make_server)

    async def main():
        alice = await Client.connect(first, "alice", tenant)
        await alice.ok("room:create", room="r", name="r", private=True, members=["bob"])
        await Client.connect(second, "bob", tenant)
        await update(alice, "bob", "online")
        t0 = time.monotonic()
        second.kill_group()
        await update(alice, "bob", "offline", timeout=TIMEOUT_S + 3)
        took = time.monotonic() - t0
        assert took <= TIMEOUT_S + 1.5, took
        # bob back on the first instance: online again.
        await Client.connect(first, "bob", tenant)
        await update(alice, "bob", "online")
    run(main(), timeout=30)


def test_presence_survives_a_redis_flush(make_server, tenant, redis_db):
    srv = presence_server(make_server)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="r", name="r", private=True, members=["bob"])
        await connect_on_worker(srv, 1, "bob", tenant)
        await update(alice, "bob", "online")
        redis_db.flushall()
        # Each worker counts its connections again within its next beat.
        deadline = time.monotonic() + 5
        while True:
            got = await alice.request("presence:get", users=["bob", "alice"])
            if [p["status"] for p in got["presence"]] == ["online", "online"]:
                break
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.2)
    run(main(), timeout=30)


def test_room_members_show_presence(make_server, tenant):
    srv = presence_server(make_server)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="r", name="r", private=True, members=["bob", "carol"])
        bob = await connect_on_worker(srv, 1, "bob", tenant)
        await update(alice, "bob", "online")
        await bob.ok("presence:set", status="busy")
        await update(alice, "bob", "busy")
        page = await alice.ok("room:members", room="r")
        got = {m["user"]: (m["status"], m["last_seen"]) for m in page["members"]}
        assert got == {"alice": ("online", None), "bob": ("busy", None),
                       "carol": ("offline", None)}, got
    run(main(), timeout=30)


def test_join_ack_lists_who_is_online(make_server, tenant):
    srv = presence_server(make_server, presence_room_max=3)

    async def main():
        alice = await connect_on_worker(srv, 0, "alice", tenant)
        await alice.ok("room:create", room="small", name="s", private=True,
                       members=["bob", "carol"])
        await alice.ok("room:create", room="big", name="b", private=True,
                       members=["bob", "c1", "c2"])
        bob = await connect_on_worker(srv, 1, "bob", tenant)
        await update(alice, "bob", "online")
        await bob.ok("presence:set", status="away")
        await update(alice, "bob", "away")
        ack = await alice.ok("room:join", room="small")
        got = {p["user"]: p["status"] for p in ack["presence"]}
        assert got == {"alice": "online", "bob": "away"}, ack["presence"]
        ack = await alice.ok("room:join", room="big")
        assert ack["presence"] == [], ack["presence"]
        # A big room carries a count: who of its members is not offline.
        info = await alice.ok("room:info", room="big")
        assert (info["room"]["members"], info["room"]["online"]) == (4, 2), info
        assert "member_ids" not in info, info
        await bob.ok("presence:set", status="invisible")
        await update(alice, "bob", "offline")
        info = await alice.ok("room:info", room="big")
        assert info["room"]["online"] == 1, info
    run(main(), timeout=30)
