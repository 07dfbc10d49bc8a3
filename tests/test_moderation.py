"""Mentions, bans and edits across workers and instances (docs/protocol.md
section 7): what reaches whom, how fast, and what stops reaching them.

"Another instance" is a second chatd (its own parent and workers) on the
same Redis and PostgreSQL, as a second host would be."""

import asyncio
import time

import pytest

from chatd_harness import Session, ack_of, run, session_where, stamp_arrival, unique_id

BAN_TO_REMOVED_S = 1.0


stamp = stamp_arrival


open_where = session_where


ok = ack_of


async def say(conn, room, body, **extra):
    return await ok(conn, "message:send", room=room, body=body,
                    client_msg_id=unique_id("c"), **extra)


def of_type(frames, type, room, seq=None):
    return [f for f in frames if f.get("type") == type and f.get("room") == room
            and (seq is None or f.get("seq") == seq)]


async def wait_frame(conn, type, room, seq=None, timeout=5):
    return await conn.wait_event(
        lambda f: f.get("type") == type and f.get("room") == room
        and (seq is None or f.get("seq") == seq), timeout, f"{type} of {room} seq {seq}")


# ------------------------------------------------------------------ mentions

def test_mention_reaches_every_connection_of_the_user(make_server, tenant):
    """mia has five connections: on the sender's worker, on the other worker
    and on another instance, subscribed to the room or not. Each gets the
    mention once (a subscribed one gets the message:new as well); the
    sender, who mentions itself too, and a bystander get none."""
    first = make_server(workers=2)
    second = make_server(workers=1)

    async def main():
        sam = await Session.open(first, "sam", tenant)
        ned = await open_where(first, lambda w: w != sam.worker, "ned", tenant)
        mia = {
            "same worker, subscribed": await open_where(first, lambda w: w == sam.worker, "mia",
                                                        tenant),
            "other worker": await open_where(first, lambda w: w != sam.worker, "mia", tenant),
            "other worker, subscribed": await open_where(first, lambda w: w != sam.worker, "mia",
                                                         tenant),
            "other instance": await Session.open(second, "mia", tenant),
            "other instance, subscribed": await Session.open(second, "mia", tenant),
        }
        room = unique_id("room")
        await ok(sam, "room:create", room=room, name="mentions", private=True,
                 members=["mia", "ned"])
        for conn in [sam, ned] + [c for where, c in mia.items() if where.endswith("subscribed")]:
            await ok(conn, "room:join", room=room)

        acks = [await say(sam, room, "hey @mia, look", mentions=["mia", "sam"]),
                await say(sam, room, "@mia again", mentions=["mia"])]
        for where, conn in mia.items():
            for ack in acks:
                frame = await wait_frame(conn, "mention:new", room, ack["seq"])
                msg = frame.get("msg") or {}
                assert (msg.get("id"), msg.get("seq"), msg.get("user")) == \
                    (ack["msg_id"], ack["seq"], "sam"), (where, frame)
                assert "mia" in (msg.get("mentions") or []), (where, frame)
        # The second mention has reached every connection of mia: the first
        # came once; a subscribed connection has the message:new too, an
        # unsubscribed one has nothing else of the room.
        for where, conn in mia.items():
            await conn.settle()
            for ack in acks:
                n = len(of_type(conn.events, "mention:new", room, ack["seq"]))
                assert n == 1, f"mia ({where}): {n} mention:new of seq {ack['seq']}"
            news = of_type(conn.events, "message:new", room)
            want = [a["seq"] for a in acks] if where.endswith("subscribed") else []
            assert [f["seq"] for f in news] == want, (where, news)
        # mia's connection on sam's worker had both mentions, and ned both
        # messages: any mention:new for them would have come first.
        await wait_frame(ned, "message:new", room, acks[-1]["seq"])
        for who, conn in (("sam, who mentioned himself", sam), ("ned", ned)):
            await conn.settle()
            assert of_type(conn.events, "mention:new", room) == [], \
                f"{who} got {of_type(conn.events, 'mention:new', room)}"

    run(main(), timeout=45)


def test_offline_mention_is_counted_and_listed(server, tenant):
    """otto is offline when mentioned: when he comes, room:list counts the
    unread messages and the mention, mention:list has it, and room:read
    clears both."""
    async def main():
        sam = await Session.open(server, "sam", tenant)
        room = unique_id("room")
        await ok(sam, "room:create", room=room, name="offline", private=True,
                 members=["otto"])
        await ok(sam, "room:join", room=room)
        plain = await say(sam, room, "good morning")
        mention = await say(sam, room, "@otto, your review please", mentions=["otto"])

        otto = await Session.open(server, "otto", tenant)

        async def listed():
            reply = await otto.request("room:list")
            assert reply.get("type") == "ack", reply
            rooms = {r.get("id"): r for r in reply.get("rooms") or []}
            assert room in rooms, reply
            return rooms[room]

        async def counts(unread, mentions):
            deadline = time.monotonic() + 5
            while True:
                entry = await listed()
                got = (entry.get("unread"), entry.get("mentions"))
                if got == (unread, mentions) or time.monotonic() > deadline:
                    assert got == (unread, mentions), \
                        f"room:list: want unread {unread}, mentions {mentions}: {entry}"
                    return entry
                await asyncio.sleep(0.05)  # room:list reads PostgreSQL: the sync's lag

        entry = await counts(2, 1)
        assert (entry.get("role"), entry.get("last_seq"), entry.get("read_seq"),
                entry.get("kind"), entry.get("private")) == \
            ("member", mention["seq"], 0, "group", True), entry

        listing = await ok(otto, "mention:list", limit=10)
        mine = [m for m in listing.get("mentions") or [] if m.get("room") == room]
        assert len(mine) == 1 and listing.get("has_more") is False, listing
        assert mine[0].get("seq") == mention["seq"] and \
            mine[0].get("msg", {}).get("id") == mention["msg_id"], mine
        assert mine[0]["msg"].get("body") == "@otto, your review please", mine
        assert mine[0].get("id") is not None, mine

        ack = await ok(otto, "room:read", room=room, seq=plain["seq"])
        assert ack.get("read_seq") == plain["seq"], ack
        await counts(1, 1)
        ack = await ok(otto, "room:read", room=room, seq=mention["seq"])
        assert ack.get("read_seq") == mention["seq"], ack
        await counts(0, 0)
        ack = await ok(otto, "room:read", room=room, seq=plain["seq"])  # only forward
        assert ack.get("read_seq") == mention["seq"], ack
        reply = await otto.request("room:read", room=room, seq=mention["seq"] + 1)
        assert reply.get("code") == "bad_request", f"room:read past the last seq: {reply}"

    run(main())


# ------------------------------------------------------------- bans, removes

@pytest.mark.parametrize("how, reason", [("member:ban", "banned"), ("member:remove", "removed")])
def test_removal_reaches_every_connection_within_a_second(make_server, tenant, how, reason):
    """An admin on instance A bans (or removes) bo, who has connections on
    both workers of A (one not subscribed) and on instance B: each gets
    room:removed within a second of the ack, and nothing of the room after
    it, while a control client beside each sees the room go on."""
    first = make_server(workers=2)
    second = make_server(workers=1)

    async def main():
        admin = await Session.open(first, "admin", tenant, on_frame=stamp)
        bo = {
            "instance B": await Session.open(second, "bo", tenant, on_frame=stamp),
            "instance A, worker 0": await open_where(first, lambda w: w == 0, "bo", tenant,
                                                     on_frame=stamp),
            "instance A, worker 1, not subscribed": await open_where(
                first, lambda w: w == 1, "bo", tenant, on_frame=stamp),
        }
        control = [await Session.open(second, "cy", tenant),
                   await open_where(first, lambda w: w == 0, "cy", tenant),
                   await open_where(first, lambda w: w == 1, "cy", tenant)]
        room = unique_id("room")
        await ok(admin, "room:create", room=room, name="removal", private=True,
                 members=["bo", "cy"])
        for conn in [admin, *control, bo["instance B"], bo["instance A, worker 0"]]:
            await ok(conn, "room:join", room=room)
        before = await say(admin, room, "before")
        await wait_frame(bo["instance B"], "message:new", room, before["seq"])

        ack = await ok(admin, how, room=room, user="bo",
                       **({"reason": "spam"} if how == "member:ban" else {}))
        assert ack.get("user") == "bo" and isinstance(ack.get("seq"), int), ack
        for where, conn in bo.items():
            frame = await wait_frame(conn, "room:removed", room, timeout=5)
            assert frame.get("reason") == reason, (where, frame)
            delay = frame["_at"] - ack["_at"]
            assert delay < BAN_TO_REMOVED_S, \
                f"bo ({where}): room:removed {delay:.3f}s after the {how} ack"

        # The room goes on: every control client sees it, bo nothing.
        for i in range(3):
            last = await say(admin, room, f"after {i}")
        edit = await ok(admin, "message:edit", room=room, msg_id=last["msg_id"], body="edited")
        for conn in control:
            await wait_frame(conn, "message:edited", room, edit["seq"])
        for where, conn in bo.items():
            await conn.settle()
            frames = [f for f in conn.events if f.get("room") == room]
            at = [i for i, f in enumerate(frames) if f.get("type") == "room:removed"]
            assert len(at) == 1, f"bo ({where}): room:removed {len(at)} times"
            assert frames[at[0] + 1:] == [], \
                f"bo ({where}) got frames of the room after room:removed: {frames[at[0] + 1:]}"
        conn = bo["instance B"]
        reply = await conn.request("message:send", room=room, body="still here?",
                                   client_msg_id=unique_id("c"))
        assert reply.get("code") == "forbidden", f"bo sends after the {how}: {reply}"
        reply = await conn.request("room:join", room=room)
        assert reply.get("code") == "forbidden", f"bo joins after the {how}: {reply}"

    run(main(), timeout=45)


# --------------------------------------------------------------------- edits

def test_edit_right_after_the_ack_on_the_other_worker(server, tenant):
    """eve sends from one worker and edits from her connection on the other
    the moment the send is acked, 20 times: every edit is acked (the message
    is found though not yet synced to PostgreSQL) and every subscriber sees
    message:edited with edits 1."""
    async def main():
        eve1 = await Session.open(server, "eve", tenant)
        eve2 = await open_where(server, lambda w: w != eve1.worker, "eve", tenant)
        watcher = await Session.open(server, "wes", tenant)
        room = unique_id("room")
        await ok(eve1, "room:create", room=room, name="edits", private=True, members=["wes"])
        for conn in (eve1, eve2, watcher):
            await ok(conn, "room:join", room=room)
        for i in range(20):
            sent = await say(eve1, room, f"draft {i}")
            reply = await eve2.request("message:edit", room=room, msg_id=sent["msg_id"],
                                       body=f"final {i}")
            assert reply.get("type") == "ack" and reply.get("msg_id") == sent["msg_id"], \
                f"edit {i} right after the send's ack, on the other worker: {reply}"
            assert isinstance(reply.get("seq"), int) and reply["seq"] > sent["seq"], reply
            frame = await wait_frame(watcher, "message:edited", room, reply["seq"])
            assert (frame.get("msg_id"), frame.get("user"), frame.get("body"),
                    frame.get("edits")) == (sent["msg_id"], "eve", f"final {i}", 1), frame
            assert isinstance(frame.get("edited_at"), int), frame

    run(main(), timeout=45)
