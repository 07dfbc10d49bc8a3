"""Membership and moderation (docs/protocol.md section 7): member:add,
member:remove, member:role, member:mute, member:unmute, member:ban,
member:unban and room:update: who may, the order of the checks, the events
other members receive, the acks (seq null when nothing changed) and the
rows left in PostgreSQL."""

import asyncio
import time

from chatd_harness import (Client, connect_on_distinct_workers, connect_on_worker, eventually,
                           make_room, pg_rows, run, unique_id)

FOREVER_MS = 253402300799999  # member:mute without until (src/chat/moderate.h)


def row(tenant, room, user):
    """(role, banned, muted_until in ms or None) of a room_members row, or None."""
    rows = pg_rows("SELECT role, banned, (extract(epoch FROM muted_until) * 1000)::bigint"
                   " FROM room_members WHERE tenant = %s AND room_id = %s AND user_id = %s",
                   (tenant, room, user))
    return rows[0] if rows else None


def admins(tenant, room):
    return sorted(u for (u,) in pg_rows(
        "SELECT user_id FROM room_members WHERE tenant = %s AND room_id = %s"
        " AND role = 'admin' AND NOT banned", (tenant, room)))


async def quiet(client, type):
    """Nothing of type reached client (a ping round trip after the fact)."""
    await client.settle()
    assert client.buffered(type) == [], f"{client} got {client.buffered(type)}"


async def event(client, type, room, seq):
    """The event of type with seq in room, as the client received it."""
    frame = await client.take(lambda f: f.get("type") == type and f.get("room") == room,
                              5, f"{type} of {room}")
    assert frame["seq"] == seq, (frame, seq)
    return frame


async def staff_room(server, tenant, **fields):
    """A room made by `owner` (admin), with `mod` (moderator) and `bob`
    (member); owner, mod and bob joined, on both workers. Returns
    (room, owner, mod, bob)."""
    owner, bob = await connect_on_distinct_workers(server, 2, tenant, ["owner", "bob"])
    mod = await Client.connect(server, "mod", tenant)
    room = unique_id("room")
    await owner.ok("room:create", room=room, name="staff", members=["mod", "bob"], **fields)
    for c in (owner, mod, bob):
        await c.ok("room:join", room=room)
    ack = await owner.ok("member:role", room=room, user="mod", role="moderator")
    for c in (owner, mod, bob):
        await event(c, "member:updated", room, ack["seq"])
    return room, owner, mod, bob


# ------------------------------------------------------------------ member:add

def test_add_makes_a_member_and_every_member_sees_it(server, tenant):
    async def main():
        owner, witness = await connect_on_distinct_workers(server, 2, tenant, ["owner", "wit"])
        room = await make_room(owner, private=True, members=["wit"])
        await witness.ok("room:join", room=room)
        carol = await Client.connect(server, "carol", tenant)
        await carol.error("room:join", "forbidden", room=room)
        ack = await owner.ok("member:add", room=room, user="carol")
        assert set(ack) == {"type", "id", "room", "user", "seq"}, ack
        assert (ack["room"], ack["user"]) == (room, "carol") and isinstance(ack["seq"], int)
        want = {"type": "member:joined", "room": room, "seq": ack["seq"], "user": "carol",
                "role": "member", "by": "owner"}
        for c in (owner, witness):
            assert await event(c, "member:joined", room, ack["seq"]) == want
        assert row(tenant, room, "carol") == ("member", False, None)
        joined = await carol.ok("room:join", room=room)
        assert joined["role"] == "member"
        # The event is in the room's log: a join replays it.
        assert want in joined["events"], joined["events"]
        # Adding a member again changes nothing: seq null, no event.
        again = await owner.ok("member:add", room=room, user="carol")
        assert again["seq"] is None and again["user"] == "carol", again
        await quiet(witness, "member:joined")
        # The sync consumer brings the event to PostgreSQL's log.
        eventually(lambda: pg_rows("SELECT type, user_id FROM room_events WHERE tenant = %s"
                                   " AND room_id = %s AND seq = %s", (tenant, room, ack["seq"]))
                   == [("member:joined", "carol")], what="member:joined in room_events")
    run(main())


def test_add_refusals_in_order(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant, private=True)
        # fields first
        await owner.error("member:add", "bad_request", room=room)
        await owner.error("member:add", "bad_request", room=room, user="no spaces")
        # then the room: another tenant's is not there
        stranger = await Client.connect(server, "owner", unique_id("t"))
        await stranger.error("member:add", "not_found", room=room, user="carol")
        await owner.error("member:add", "not_found", room=unique_id("nope"), user="carol")
        # then the actor: a member does not add; nor does a non-member
        await bob.error("member:add", "forbidden", room=room, user="carol")
        eve = await Client.connect(server, "eve", tenant)
        await eve.error("member:add", "forbidden", room=room, user="carol")
        # a moderator does
        ack = await mod.ok("member:add", room=room, user="carol")
        assert isinstance(ack["seq"], int)
        # a banned user is not added back: unban first
        await owner.ok("member:ban", room=room, user="dave")
        await mod.error("member:add", "conflict", room=room, user="dave")
        assert row(tenant, room, "dave") == ("member", True, None)
        # a direct room's members never change
        direct = (await owner.ok("room:create", name="dm", kind="direct",
                                 members=["bob"]))["room"]["id"]
        await owner.error("member:add", "forbidden", room=direct, user="carol")
    run(main())


# --------------------------------------------------------------- member:remove

def test_remove_by_moderator_and_self_removal(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        carol = await Client.connect(server, "carol", tenant)
        await carol.ok("room:join", room=room)
        ack = await mod.ok("member:remove", room=room, user="bob")
        assert (ack["room"], ack["user"]) == (room, "bob") and isinstance(ack["seq"], int)
        want = {"type": "member:left", "room": room, "seq": ack["seq"], "user": "bob",
                "by": "mod", "reason": "removed"}
        for c in (owner, carol):
            assert await event(c, "member:left", room, ack["seq"]) == want
        assert row(tenant, room, "bob") is None
        # not a member any more: not_found (removing is not idempotent)
        await mod.error("member:remove", "not_found", room=room, user="bob")
        # a member removes itself: reason left
        ack = await carol.ok("member:remove", room=room, user="carol")
        want = {"type": "member:left", "room": room, "seq": ack["seq"], "user": "carol",
                "by": "carol", "reason": "left"}
        assert await event(owner, "member:left", room, ack["seq"]) == want
        assert row(tenant, room, "carol") is None
    run(main())


def test_remove_refusals(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        await owner.error("member:remove", "not_found", room=unique_id("nope"), user="bob")
        # a member removes nobody else
        await bob.error("member:remove", "forbidden", room=room, user="mod")
        # a moderator only acts on a lower rank
        await owner.ok("member:add", room=room, user="mod2")
        await owner.ok("member:role", room=room, user="mod2", role="moderator")
        await mod.error("member:remove", "forbidden", room=room, user="mod2")
        await mod.error("member:remove", "forbidden", room=room, user="owner")
        # the target is looked at after the actor
        await bob.error("member:remove", "forbidden", room=room, user="nobody")
        await mod.error("member:remove", "not_found", room=room, user="nobody")
        # an admin does not remove another admin (demote first)
        await owner.ok("member:add", room=room, user="adm2")
        await owner.ok("member:role", room=room, user="adm2", role="admin")
        adm2 = await Client.connect(server, "adm2", tenant)
        await adm2.error("member:remove", "forbidden", room=room, user="owner")
        # the last admin cannot leave; one of two can
        await owner.ok("member:role", room=room, user="adm2", role="member")
        await owner.error("member:remove", "conflict", room=room, user="owner")
        assert admins(tenant, room) == ["owner"]
        await owner.ok("member:role", room=room, user="adm2", role="admin")
        await owner.ok("member:remove", room=room, user="owner")
        assert admins(tenant, room) == ["adm2"]
    run(main())


# ----------------------------------------------------------------- member:role

def test_role_changes_and_last_admin(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        ack = await owner.ok("member:role", room=room, user="bob", role="moderator")
        want = {"type": "member:updated", "room": room, "seq": ack["seq"], "user": "bob",
                "by": "owner", "role": "moderator"}
        for c in (mod, bob):
            assert await event(c, "member:updated", room, ack["seq"]) == want
        assert row(tenant, room, "bob") == ("moderator", False, None)
        again = await owner.ok("member:role", room=room, user="bob", role="moderator")
        assert again["seq"] is None, again
        await quiet(bob, "member:updated")
        # only an admin: a moderator does not, even on a member
        await mod.error("member:role", "forbidden", room=room, user="bob", role="member")
        await owner.error("member:role", "not_found", room=room, user="nobody", role="member")
        await owner.error("member:role", "bad_request", room=room, user="bob", role="owner")
        await owner.error("member:role", "bad_request", room=room, user="bob")
        # the last admin is not demoted, by itself or anyone
        await owner.error("member:role", "conflict", room=room, user="owner", role="moderator")
        # an admin demotes another admin (equal rank: the one exception)
        await owner.ok("member:role", room=room, user="bob", role="admin")
        ack = await bob.ok("member:role", room=room, user="owner", role="member")
        assert isinstance(ack["seq"], int)
        assert admins(tenant, room) == ["bob"]
        await bob.error("member:role", "conflict", room=room, user="bob", role="member")
    run(main())


def test_two_admins_demoting_each_other_at_once_leave_one_admin(server, tenant):
    async def main():
        a, b = await connect_on_distinct_workers(server, 2, tenant, ["adm-a", "adm-b"])
        for _ in range(6):
            room = await make_room(a, members=["adm-b"])
            await a.ok("member:role", room=room, user="adm-b", role="admin")
            assert admins(tenant, room) == ["adm-a", "adm-b"]
            ra, rb = await asyncio.gather(
                a.request("member:role", room=room, user="adm-b", role="member"),
                b.request("member:role", room=room, user="adm-a", role="member"))
            # The loser was demoted first (forbidden: no admin any more), or
            # is refused as the last admin (conflict); never both acked.
            outcomes = sorted((r["type"], r.get("code")) for r in (ra, rb))
            assert outcomes in ([("ack", None), ("error", "forbidden")],
                                [("ack", None), ("error", "conflict")]), (ra, rb)
            assert len(admins(tenant, room)) == 1, admins(tenant, room)
    run(main())


def test_two_admins_leaving_at_once_leave_one_admin(server, tenant):
    async def main():
        a, b = await connect_on_distinct_workers(server, 2, tenant, ["adm-a", "adm-b"])
        for _ in range(6):
            room = await make_room(a, members=["adm-b"])
            await a.ok("member:role", room=room, user="adm-b", role="admin")
            ra, rb = await asyncio.gather(
                a.request("member:remove", room=room, user="adm-a"),
                b.request("member:remove", room=room, user="adm-b"))
            outcomes = sorted((r["type"], r.get("code")) for r in (ra, rb))
            assert outcomes == [("ack", None), ("error", "conflict")], (ra, rb)
            assert len(admins(tenant, room)) == 1, admins(tenant, room)
    run(main())


# ---------------------------------------------------------- member:mute/unmute

def test_mute_and_unmute(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        until = int(time.time() * 1000) + 3_600_000
        ack = await mod.ok("member:mute", room=room, user="bob", until=until)
        want = {"type": "member:updated", "room": room, "seq": ack["seq"], "user": "bob",
                "by": "mod", "muted_until": until}
        for c in (owner, bob):
            assert await event(c, "member:updated", room, ack["seq"]) == want
        assert row(tenant, room, "bob") == ("member", False, until)
        again = await mod.ok("member:mute", room=room, user="bob", until=until)
        assert again["seq"] is None, again
        # without until: until unmuted
        ack = await mod.ok("member:mute", room=room, user="bob")
        for c in (owner, bob):
            assert (await event(c, "member:updated", room, ack["seq"]))["muted_until"] \
                == FOREVER_MS
        assert row(tenant, room, "bob") == ("member", False, FOREVER_MS)
        ack = await mod.ok("member:unmute", room=room, user="bob")
        want = {"type": "member:updated", "room": room, "seq": ack["seq"], "user": "bob",
                "by": "mod", "muted_until": None}
        for c in (owner, bob):
            assert await event(c, "member:updated", room, ack["seq"]) == want
        assert row(tenant, room, "bob") == ("member", False, None)
        again = await mod.ok("member:unmute", room=room, user="bob")
        assert again["seq"] is None, again
        await quiet(owner, "member:updated")
    run(main())


def test_mute_refusals(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        now = int(time.time() * 1000)
        await mod.error("member:mute", "bad_request", room=room, user="bob", until=now - 1000)
        await mod.error("member:mute", "bad_request", room=room, user="bob", until=-5)
        await mod.error("member:mute", "bad_request", room=room, user="bob", until="soon")
        await mod.error("member:mute", "bad_request", room=room, user="bob",
                        until=FOREVER_MS + 1)
        await mod.error("member:mute", "not_found", room=unique_id("nope"), user="bob")
        await bob.error("member:mute", "forbidden", room=room, user="mod")
        await bob.error("member:unmute", "forbidden", room=room, user="bob")
        await mod.error("member:mute", "forbidden", room=room, user="owner")
        await mod.error("member:mute", "forbidden", room=room, user="mod")
        await mod.error("member:mute", "not_found", room=room, user="nobody")
        await mod.error("member:unmute", "not_found", room=room, user="nobody")
        await owner.ok("member:mute", room=room, user="mod", until=now + 60_000)
    run(main())


# ------------------------------------------------------------ member:ban/unban

def test_ban_and_unban(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        ack = await mod.ok("member:ban", room=room, user="bob", reason="spam \"links\" ✓")
        assert (ack["room"], ack["user"]) == (room, "bob") and isinstance(ack["seq"], int)
        want = {"type": "member:left", "room": room, "seq": ack["seq"], "user": "bob",
                "by": "mod", "reason": "banned", "ban_reason": "spam \"links\" ✓"}
        assert await event(owner, "member:left", room, ack["seq"]) == want
        assert row(tenant, room, "bob") == ("member", True, None)
        again = await mod.ok("member:ban", room=room, user="bob")
        assert again["seq"] is None, again
        # a banned user does not join, read or get added back
        bob2 = await Client.connect(server, "bob", tenant)
        await bob2.error("room:join", "forbidden", room=room)
        await bob2.error("message:history", "forbidden", room=room)
        await mod.error("member:add", "conflict", room=room, user="bob")
        # a banned user is no member: not muted, removed or promoted
        await mod.error("member:mute", "not_found", room=room, user="bob")
        await mod.error("member:remove", "not_found", room=room, user="bob")
        await owner.error("member:role", "not_found", room=room, user="bob", role="admin")
        ack = await mod.ok("member:unban", room=room, user="bob")
        want = {"type": "member:updated", "room": room, "seq": ack["seq"], "user": "bob",
                "by": "mod", "banned": False}
        assert await event(owner, "member:updated", room, ack["seq"]) == want
        assert row(tenant, room, "bob") is None
        await mod.error("member:unban", "not_found", room=room, user="bob")
        # public room: once unbanned, bob joins again as a member
        assert (await bob2.ok("room:join", room=room))["role"] == "member"
    run(main())


def test_ban_of_a_non_member_keeps_the_user_out(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        ack = await mod.ok("member:ban", room=room, user="troll")
        want = {"type": "member:left", "room": room, "seq": ack["seq"], "user": "troll",
                "by": "mod", "reason": "banned"}
        assert await event(owner, "member:left", room, ack["seq"]) == want
        assert row(tenant, room, "troll") == ("member", True, None)
        troll = await Client.connect(server, "troll", tenant)
        await troll.error("room:join", "forbidden", room=room)
    run(main())


def test_ban_refusals(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        await mod.error("member:ban", "too_large", room=room, user="bob", reason="x" * 501)
        await mod.error("member:ban", "bad_request", room=room, user="bob", reason=5)
        await mod.error("member:ban", "not_found", room=unique_id("nope"), user="bob")
        await bob.error("member:ban", "forbidden", room=room, user="eve")
        await mod.error("member:ban", "forbidden", room=room, user="owner")
        await mod.error("member:ban", "forbidden", room=room, user="mod")
        await bob.error("member:unban", "forbidden", room=room, user="eve")
        await mod.error("member:unban", "not_found", room=room, user="eve")
        await mod.error("member:unban", "not_found", room=room, user="bob")
        ack = await mod.ok("member:ban", room=room, user="bob", reason="x" * 500)
        assert isinstance(ack["seq"], int)
        assert row(tenant, room, "owner") == ("admin", False, None)
    run(main())


# ----------------------------------------------------------------- room:update

def test_room_update(server, tenant, db):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant, description="old")
        ack = await owner.ok("room:update", room=room, name='the "new" name ✓')
        assert set(ack) == {"type", "id", "room", "seq"} and isinstance(ack["seq"], int), ack
        want = {"type": "room:updated", "room": room, "seq": ack["seq"],
                "name": 'the "new" name ✓', "description": "old", "by": "owner"}
        for c in (mod, bob):
            assert await event(c, "room:updated", room, ack["seq"]) == want
        ack = await owner.ok("room:update", room=room, description="new\nlines")
        want = {**want, "seq": ack["seq"], "description": "new\nlines"}
        assert await event(bob, "room:updated", room, ack["seq"]) == want
        again = await owner.ok("room:update", room=room, name='the "new" name ✓',
                               description="new\nlines")
        assert again["seq"] is None, again
        await quiet(bob, "room:updated")
        await owner.error("room:update", "bad_request", room=room)
        await owner.error("room:update", "too_large", room=room, name="n" * 201)
        await owner.error("room:update", "too_large", room=room, description="d" * 2001)
        await owner.error("room:update", "not_found", room=unique_id("nope"), name="x")
        await mod.error("room:update", "forbidden", room=room, name="x")
        await bob.error("room:update", "forbidden", room=room, name="x")
        ack = await owner.ok("room:update", room=room, name="n" * 200, description="d" * 2000)
        assert isinstance(ack["seq"], int)
    run(main())
    rows = pg_rows("SELECT name, description FROM rooms WHERE tenant = %s", (tenant,))
    assert ("n" * 200, "d" * 2000) in rows, rows


# ---------------------------------------------------------------- rate limit

def test_member_commands_are_rate_limited(make_server, tenant):
    server = make_server(rate_member="2/60")

    async def main():
        owner = await Client.connect(server, "owner", tenant)
        room = await make_room(owner)
        replies = [await owner.request("member:add", room=room, user=f"u{i}") for i in range(4)]
        assert [r["type"] for r in replies[:2]] == ["ack", "ack"], replies
        limited = replies[-1]
        assert limited["code"] == "rate_limited" and limited["retry_after_ms"] > 0, limited
    run(main())


# ---------------------------------------------------------------- support rooms

def test_support_rooms_are_private_and_open_to_tenant_admins(server, tenant):
    async def main():
        customer = await Client.connect(server, "customer", tenant)
        ack = await customer.ok("room:create", name="help", kind="support", private=False)
        room = ack["room"]["id"]
        assert ack["room"]["private"] is True and ack["room"]["kind"] == "support", ack
        await customer.ok("room:join", room=room)
        sent = await customer.say(room, "my order is late")
        other = await Client.connect(server, "other", tenant)
        await other.error("room:join", "forbidden", room=room)
        await other.error("message:history", "forbidden", room=room)
        agent = await Client.connect(server, "agent", tenant, role="admin")
        page = await agent.ok("message:history", room=room)
        assert [e["seq"] for e in page["events"]] == [sent["seq"]], page
        joined = await agent.ok("room:join", room=room)
        assert joined["role"] == "moderator", joined
        assert row(tenant, room, "agent") == ("moderator", False, None)
        # another tenant's admin does not see it
        foreign = await Client.connect(server, "agent", unique_id("t"), role="admin")
        await foreign.error("room:join", "not_found", room=room)
        # a tenant admin moderates a support room it has not joined
        boss = await Client.connect(server, "boss", tenant, role="admin")
        await boss.ok("member:add", room=room, user="colleague")
        # but a group room's privacy holds for tenant admins
        group = await make_room(customer, private=True)
        await agent.error("room:join", "forbidden", room=group)
        await agent.error("member:add", "forbidden", room=group, user="x")
    run(main())


# ------------------------------------------------------------ live effects

def test_banned_user_gets_room_removed_and_nothing_more(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        # bob's second connection, not joined to the room, hears it too; the
        # witness shares the joined connection's worker.
        bob_idle = await Client.connect(server, "bob", tenant)
        witness = await connect_on_worker(server, bob.worker, "wit", tenant)
        await witness.ok("room:join", room=room)
        ack = await mod.ok("member:ban", room=room, user="bob", reason="enough")
        want = {"type": "room:removed", "room": room, "reason": "banned"}
        for c in (bob, bob_idle):
            got = await c.take(lambda f: f.get("type") == "room:removed", 5, "room:removed")
            assert got == want, got
        # The member:left event itself reaches the others.
        assert (await event(witness, "member:left", room, ack["seq"]))["user"] == "bob"
        sent = await owner.say(room, "after the ban")
        frame = await witness.next_event("message:new")
        assert frame["seq"] == sent["seq"]
        await quiet(bob, "message:new")
        await bob.error("message:send", "forbidden", room=room, body="hi",
                        client_msg_id=unique_id("cm"))
    run(main())


def test_removed_and_leaving_users_get_room_removed(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        await mod.ok("member:remove", room=room, user="bob")
        got = await bob.take(lambda f: f.get("type") == "room:removed", 5, "room:removed")
        assert got == {"type": "room:removed", "room": room, "reason": "removed"}, got
        carol = await Client.connect(server, "carol", tenant)
        await carol.ok("room:join", room=room)
        await carol.ok("member:remove", room=room, user="carol")
        got = await carol.take(lambda f: f.get("type") == "room:removed", 5, "room:removed")
        assert got == {"type": "room:removed", "room": room, "reason": "left"}, got
        await owner.say(room, "after they left")
        await quiet(bob, "message:new")
        await quiet(carol, "message:new")
    run(main())


def test_mute_takes_effect_at_once_on_a_live_subscription(server, tenant):
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        await bob.say(room, "before")
        ack = await mod.ok("member:mute", room=room, user="bob")
        await event(bob, "member:updated", room, ack["seq"])
        await bob.error("message:send", "forbidden", room=room, body="muted",
                        client_msg_id=unique_id("cm"))
        ack = await mod.ok("member:unmute", room=room, user="bob")
        await event(bob, "member:updated", room, ack["seq"])
        await bob.say(room, "after")
    run(main())


def test_promotion_takes_effect_at_once(server, tenant):
    async def main():
        owner, bob = await connect_on_distinct_workers(server, 2, tenant, ["owner", "bob"])
        room = await make_room(owner, bob, kind="broadcast")
        await bob.error("message:send", "forbidden", room=room, body="x",
                        client_msg_id=unique_id("cm"))
        await bob.error("member:ban", "forbidden", room=room, user="troll")
        ack = await owner.ok("member:role", room=room, user="bob", role="moderator")
        # PostgreSQL has the role at the ack: bob bans at once
        await bob.ok("member:ban", room=room, user="troll")
        # and, once the event reached bob's worker, posts to the broadcast room
        await event(bob, "member:updated", room, ack["seq"])
        await bob.say(room, "now I may")
    run(main())


def test_a_change_whose_event_fails_stands_and_its_retry_changes_nothing(server, tenant,
                                                                         redis_db):
    """docs/protocol.md section 7: PostgreSQL changes first; when the event
    cannot be written (here the room's stream key is made the wrong type,
    so the script fails for this room only) the answer is unavailable, the
    change stands, and a retry is acked with seq null."""
    async def main():
        room, owner, mod, bob = await staff_room(server, tenant)
        stream = f"chatd:{{{tenant}/{room}}}:stream"
        saved = redis_db.dump(stream)
        redis_db.delete(stream)
        redis_db.set(stream, "not a stream")
        try:
            await mod.error("member:ban", "unavailable", room=room, user="bob")
            assert row(tenant, room, "bob") == ("member", True, None)
            again = await mod.ok("member:ban", room=room, user="bob")
            assert again["seq"] is None, again
        finally:
            redis_db.delete(stream)
            if saved is not None:
                redis_db.restore(stream, 0, saved)
        ack = await owner.ok("room:update", room=room, name="back to normal")
        assert isinstance(ack["seq"], int)
        assert (await event(mod, "room:updated", room, ack["seq"]))["name"] == "back to normal"
    run(main())
