"""What a person does to messages: replies, mentions, attachments, edits,
deletes and reactions (docs/protocol.md section 7), as the other members of
the room see them, live and in history."""

import asyncio

from chatd_harness import (Client, connect_on_distinct_workers, eventually_async, make_room,
                           pg_rows, run, unique_id)

IMG = {"kind": "image", "url": "https://cdn.example/cat.png", "name": "cat.png",
       "size": 12345, "mime": "image/png"}


async def event(client, type, **match):
    return await client.take(
        lambda f: f.get("type") == type and all(f.get(k) == v for k, v in match.items()),
        5, f"{type} {match}")


def synced(tenant, room, seq, timeout=10):
    """Waits until PostgreSQL has the room's events up to seq."""
    def check():
        rows = pg_rows("SELECT coalesce(max(seq), 0) FROM room_events"
                       " WHERE tenant = %s AND room_id = %s", (tenant, room))
        assert rows[0][0] >= seq, rows
    return eventually_async(check, timeout=timeout, what=f"seq {seq} in PostgreSQL")


def test_message_new_carries_reply_mentions_attachments(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        plain = await alice.say(room, "root")
        frame = await event(bob, "message:new", seq=plain["seq"])
        msg = frame["msg"]
        assert (msg["reply_to"], msg["mentions"], msg["attachments"]) == (None, [], []), msg
        reply = await bob.ok("message:send", room=room, client_msg_id=unique_id("m"),
                             body="a reply", reply_to=plain["msg_id"],
                             mentions=["alice", "alice", "bob"], attachments=[IMG])
        frame = await event(alice, "message:new", seq=reply["seq"])
        msg = frame["msg"]
        assert msg["reply_to"] == plain["msg_id"], msg
        assert msg["mentions"] == ["alice", "bob"], msg
        assert msg["attachments"] == [IMG], msg
        # A reply to the reply joins the root's thread.
        second = await alice.ok("message:send", room=room, client_msg_id=unique_id("m"),
                                body="deeper", reply_to=reply["msg_id"])
        frame = await event(bob, "message:new", seq=second["seq"])
        assert frame["msg"]["reply_to"] == plain["msg_id"], frame
        await synced(tenant, room, second["seq"])
        rows = pg_rows("SELECT id, reply_to, mentions, attachments FROM messages"
                       " WHERE tenant = %s AND room_id = %s ORDER BY seq", (tenant, room))
        assert rows[1] == (reply["msg_id"], plain["msg_id"], ["alice", "bob"], [IMG]), rows
        assert rows[2][1] == plain["msg_id"], rows
    run(main())


def test_reply_to_must_be_a_message_of_the_room(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room, other = await make_room(alice), await make_room(alice)
        elsewhere = await alice.say(other, "in the other room")
        err = await alice.error("message:send", "not_found", room=room, body="x",
                                client_msg_id=unique_id("m"), reply_to=elsewhere["msg_id"])
        assert "reply_to" in err["message"], err
        await alice.error("message:send", "not_found", room=room, body="x",
                          client_msg_id=unique_id("m"), reply_to="no-such-message")
        # A deleted message takes no replies.
        gone = await alice.say(room, "soon gone")
        await alice.ok("message:delete", room=room, msg_id=gone["msg_id"])
        await alice.error("message:send", "not_found", room=room, body="x",
                          client_msg_id=unique_id("m"), reply_to=gone["msg_id"])
    run(main())


def test_attachments_are_checked_field_by_field(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room = await make_room(alice)
        bad = [
            ({**IMG, "kind": "video"}, "bad_request", "attachments[0].kind"),
            ({**IMG, "url": "javascript:alert(1)"}, "bad_request", "attachments[0].url"),
            ({**IMG, "url": "ftp://x/y"}, "bad_request", "attachments[0].url"),
            ({**IMG, "url": "https://x/" + "a" * 2100}, "too_large", "attachments[0].url"),
            ({**IMG, "name": ""}, "bad_request", "attachments[0].name"),
            ({**IMG, "name": "n" * 256}, "too_large", "attachments[0].name"),
            ({**IMG, "size": -1}, "bad_request", "attachments[0].size"),
            ({**IMG, "size": 2 ** 41}, "bad_request", "attachments[0].size"),
            ({**IMG, "size": "12"}, "bad_request", "attachments[0].size"),
            ({**IMG, "mime": "png"}, "bad_request", "attachments[0].mime"),
            ({**IMG, "extra": 1}, "bad_request", "attachments[0]"),
            ("a string", "bad_request", "attachments[0]"),
        ]
        for att, code, field in bad:
            err = await alice.error("message:send", code, room=room, body="x",
                                    client_msg_id=unique_id("m"), attachments=[att])
            assert field in err["message"], (att, err)
        err = await alice.error("message:send", "too_large", room=room, body="x",
                                client_msg_id=unique_id("m"), attachments=[IMG] * 11)
        assert "attachments" in err["message"], err
        err = await alice.error("message:send", "too_large", room=room, body="x",
                                client_msg_id=unique_id("m"),
                                mentions=[f"u{i}" for i in range(51)])
        assert "mentions" in err["message"], err
        # Nothing of it reached the log.
        page = await alice.ok("message:history", room=room)
        assert page["events"] == [], page
        ok = await alice.ok("message:send", room=room, body="x", client_msg_id=unique_id("m"),
                            attachments=[IMG, {**IMG, "kind": "file", "url": "http://h/f.pdf",
                                               "mime": "application/pdf", "size": 0}])
        assert ok["seq"] == 1
    run(main())


def test_mentions_reach_every_connection_of_the_user(server, tenant):
    async def main():
        alice, carol1 = await connect_on_distinct_workers(server, 2, tenant, ["alice", "carol"])
        carol2 = await Client.connect(server, "carol", tenant)
        room = await make_room(alice, carol1, private=True, members=["carol", "dave"])
        # carol2 has not joined the room: the mention reaches it anyway.
        ack = await alice.ok("message:send", room=room, client_msg_id=unique_id("m"),
                             body="hey @carol", mentions=["carol"])
        for conn in (carol1, carol2):
            frame = await event(conn, "mention:new", room=room, seq=ack["seq"])
            assert frame["msg"]["id"] == ack["msg_id"] and frame["msg"]["user"] == "alice", frame
        # The sender mentioning itself gets no mention:new.
        await alice.ok("message:send", room=room, client_msg_id=unique_id("m"), body="me",
                       mentions=["alice"])
        # Mentions of users who cannot read the private room are refused.
        err = await alice.error("message:send", "bad_request", room=room,
                                client_msg_id=unique_id("m"), body="x",
                                mentions=["carol", "eve"])
        assert "eve" in err["message"] and "mentions" in err["message"], err
        await alice.settle()
        assert alice.buffered("mention:new") == [], alice.buffered("mention:new")
        await synced(tenant, room, ack["seq"] + 1)
        rows = pg_rows("SELECT user_id, seq FROM mentions WHERE tenant = %s AND room_id = %s",
                       (tenant, room))
        assert rows == [("carol", ack["seq"])], rows
    run(main())


def test_edit_right_after_the_ack_on_another_worker(server, tenant):
    async def main():
        a1, a2 = await connect_on_distinct_workers(server, 2, tenant, ["alice", "alice"])
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(a1, a2, bob)
        for i in range(5):
            ack = await a1.say(room, f"v0 {i}")
            edit = await a2.ok("message:edit", room=room, msg_id=ack["msg_id"], body=f"v1 {i}")
            assert edit["edits"] == 1 and edit["seq"] == ack["seq"] + 1, edit
            edit = await a1.ok("message:edit", room=room, msg_id=ack["msg_id"], body=f"v2 {i}")
            assert edit["edits"] == 2, edit
            frame = await event(bob, "message:edited", seq=edit["seq"])
            assert (frame["msg_id"], frame["body"], frame["edits"], frame["user"]) == \
                (ack["msg_id"], f"v2 {i}", 2, "alice"), frame
        await bob.error("message:edit", "forbidden", room=room, msg_id=ack["msg_id"], body="x")
        await synced(tenant, room, edit["seq"])
        rows = pg_rows("SELECT body, edits FROM messages WHERE tenant = %s AND id = %s",
                       (tenant, ack["msg_id"]))
        assert rows == [("v2 4", 2)], rows
    run(main())


def test_delete_leaves_a_tombstone_everywhere(server, tenant, redis_db):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        mod = await Client.connect(server, "mod", tenant)
        room = await make_room(alice, bob)
        await mod.ok("room:join", room=room)
        first = await alice.say(room, "secret one")
        second = await bob.say(room, "secret two")
        # Another member may not delete; the author may.
        await bob.error("message:delete", "forbidden", room=room, msg_id=first["msg_id"])
        d = await alice.ok("message:delete", room=room, msg_id=first["msg_id"])
        frame = await event(bob, "message:deleted", seq=d["seq"])
        assert (frame["msg_id"], frame["by"]) == (first["msg_id"], "alice"), frame
        await alice.error("message:delete", "not_found", room=room, msg_id=first["msg_id"])
        await alice.error("message:edit", "not_found", room=room, msg_id=first["msg_id"], body="x")
        await alice.error("message:react", "not_found", room=room, msg_id=first["msg_id"],
                          emoji="+1", add=True)

        def tombstoned(events):
            news = {e["msg"]["id"]: e["msg"] for e in events if e["type"] == "message:new"}
            gone = news[first["msg_id"]]
            assert gone["deleted"] is True and gone["body"] == "", gone
            assert gone["attachments"] == [] and gone["mentions"] == [], gone
            assert gone["user"] == "alice" and gone["seq"] == first["seq"], gone
            assert news[second["msg_id"]]["body"] == "secret two"
            assert "secret one" not in str(events)

        # From Redis (the hot window): history and resume.
        tombstoned((await bob.ok("message:history", room=room))["events"])
        tombstoned((await bob.ok("room:join", room=room, since=0))["events"])
        # From PostgreSQL, once Redis lost the room.
        await synced(tenant, room, d["seq"])
        rows = pg_rows("SELECT body, deleted_by FROM messages WHERE tenant = %s AND id = %s",
                       (tenant, first["msg_id"]))
        assert rows == [("secret one", "alice")], rows   # kept for audit
        for key in redis_db.scan_iter(f"chatd:{{{tenant}/{room}}}:*"):
            redis_db.delete(key)
        tombstoned((await bob.ok("message:history", room=room))["events"])
        # ...and again from the stream the read warmed.
        tombstoned((await bob.ok("room:join", room=room, since=0))["events"])
    run(main())


def test_reactions_count_per_user_and_emoji(server, tenant):
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        ack = await alice.say(room, "react to me")
        r = await alice.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="👍", add=True)
        assert (r["count"], r["changed"]) == (1, True), r
        again = await alice.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="👍",
                               add=True)
        assert (again["count"], again["changed"], again["seq"]) == (1, False, None), again
        r = await bob.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="👍", add=True)
        assert r["count"] == 2, r
        frame = await event(alice, "message:reaction", seq=r["seq"])
        assert (frame["msg_id"], frame["emoji"], frame["user"], frame["add"], frame["count"]) == \
            (ack["msg_id"], "👍", "bob", True, 2), frame
        r = await alice.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="👍", add=False)
        assert r["count"] == 1, r
        none = await alice.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="👍",
                              add=False)
        assert (none["count"], none["changed"]) == (1, False), none
        for bad in ("", "a b", "x" * 33, 'q"'):
            await alice.error("message:react", "too_large" if len(bad) > 32 else "bad_request",
                              room=room, msg_id=ack["msg_id"], emoji=bad, add=True)
        for i in range(19):
            await alice.ok("message:react", room=room, msg_id=ack["msg_id"], emoji=f"e{i}",
                           add=True)
        err = await alice.error("message:react", "too_large", room=room, msg_id=ack["msg_id"],
                                emoji="one-too-many", add=True)
        assert "emoji" in err["message"], err
        last = await bob.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="e0",
                            add=True)
        assert last["count"] == 2, last
        await synced(tenant, room, last["seq"])
        rows = pg_rows("SELECT emoji, count(*) FROM message_reactions WHERE tenant = %s"
                       " AND msg_id = %s AND present GROUP BY emoji ORDER BY emoji",
                       (tenant, ack["msg_id"]))
        counts = dict(rows)
        assert counts["👍"] == 1 and counts["e0"] == 2 and len(counts) == 20, counts
    run(main())


def test_reaction_state_comes_back_from_postgresql(server, tenant, redis_db):
    """Redis loses a message's state: the next reaction counts on from what
    PostgreSQL has."""
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        ack = await alice.say(room, "m")
        await alice.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="x", add=True)
        e = await alice.ok("message:edit", room=room, msg_id=ack["msg_id"], body="m2")
        await synced(tenant, room, e["seq"])
        redis_db.delete(f"chatd:{{{tenant}/{room}}}:msg:{ack['msg_id']}")
        r = await bob.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="x", add=True)
        assert r["count"] == 2, r
        again = await alice.ok("message:react", room=room, msg_id=ack["msg_id"], emoji="x",
                               add=True)
        assert again["changed"] is False, again
        e = await alice.ok("message:edit", room=room, msg_id=ack["msg_id"], body="m3")
        assert e["edits"] == 2, e
    run(main())


def test_concurrent_reactions_count_exactly(server, tenant):
    async def main():
        users = [f"u{i}" for i in range(8)]
        clients = await asyncio.gather(*(Client.connect(server, u, tenant) for u in users))
        room = await make_room(*clients)
        ack = await clients[0].say(room, "pile on")
        acks = await asyncio.gather(*(c.ok("message:react", room=room, msg_id=ack["msg_id"],
                                           emoji="🎉", add=True) for c in clients))
        assert sorted(a["count"] for a in acks) == list(range(1, 9)), acks
        # In seq order the counts climb one by one.
        by_seq = sorted(acks, key=lambda a: a["seq"])
        assert [a["count"] for a in by_seq] == list(range(1, 9)), by_seq
    run(main())


def test_history_returns_the_current_state(server, tenant):
    """A page of history carries, beside its events, every message of the
    page as it is now: reactions counted, edits, replies, tombstones."""
    async def main():
        alice, bob = await connect_on_distinct_workers(server, 2, tenant, ["alice", "bob"])
        room = await make_room(alice, bob)
        root = await alice.say(room, "root")
        gone = await alice.say(room, "gone")
        for c in (alice, bob):
            await c.ok("message:react", room=room, msg_id=root["msg_id"], emoji="👍", add=True)
        await bob.ok("message:react", room=room, msg_id=root["msg_id"], emoji="🎉", add=True)
        await alice.ok("message:edit", room=room, msg_id=root["msg_id"], body="root v2")
        reply = await bob.ok("message:send", room=room, client_msg_id=unique_id("m"),
                             body="re", reply_to=root["msg_id"])
        last = await alice.ok("message:delete", room=room, msg_id=gone["msg_id"])
        assert last["seq"] > reply["seq"]
        await synced(tenant, room, last["seq"])
        page = await bob.ok("message:history", room=room, limit=2, before=root["seq"] + 2)
        cur = page["current"]
        assert set(cur) == {root["msg_id"], gone["msg_id"]}, cur
        r = cur[root["msg_id"]]
        assert (r["body"], r["edits"], r["reactions"], r["replies"]) == \
            ("root v2", 1, {"👍": 2, "🎉": 1}, 1), r
        g = cur[gone["msg_id"]]
        assert (g["deleted"], g["body"], g["reactions"]) == (True, "", {}), g
        # The events themselves are the log: the first body, the tombstone.
        news = {e["msg"]["id"]: e["msg"] for e in page["events"]}
        assert news[root["msg_id"]]["body"] == "root" and news[gone["msg_id"]]["deleted"]
    run(main())
