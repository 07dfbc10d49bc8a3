"""The chat's read commands, answered from PostgreSQL (docs/protocol.md
section 7): room:list, room:read, room:info, room:members, message:thread,
message:edits, mention:list and message:search. Each test has a tenant of
its own; what a read depends on is first waited for in PostgreSQL (the sync
consumer's writes), with a bounded poll, never a sleep."""

import time

from chatd_harness import (Client, eventually_async, make_room, pg_rows, redis_client, run,
                           unique_id)


# ------------------------------------------------------------------ helpers

async def synced(tenant, room, *msg_ids):
    """Wait until the sync consumer has written these messages to PostgreSQL."""
    def check():
        rows = pg_rows("SELECT id FROM messages WHERE tenant = %s AND room_id = %s "
                       "AND id = ANY(%s)", (tenant, room, list(msg_ids)))
        assert len(rows) == len(msg_ids), f"{len(rows)} of {len(msg_ids)} messages synced"
    await eventually_async(check, timeout=5, what="messages in PostgreSQL")


async def say_all(client, room, bodies):
    """message:send each body; returns the acks."""
    return [await client.say(room, body) for body in bodies]


async def ban(by, room, user):
    """member:ban (written to PostgreSQL before its ack)."""
    await by.ok("member:ban", room=room, user=user)


async def delete(client, tenant, room, msg_id):
    """message:delete, and wait until the sync has marked the row deleted."""
    await client.ok("message:delete", room=room, msg_id=msg_id)
    await eventually_async(lambda: _assert(pg_rows(
        "SELECT deleted_at IS NOT NULL FROM messages WHERE tenant = %s AND room_id = %s "
        "AND id = %s", (tenant, room, msg_id)) == [(True,)]), what="delete in PostgreSQL")


async def say_to(client, room, body, **fields):
    """message:send with reply_to / mentions / attachments; returns the ack."""
    return await client.ok("message:send", room=room, body=body,
                           client_msg_id=unique_id("m"), **fields)


def _assert(cond):
    assert cond


def by_id(rooms):
    return {r["id"]: r for r in rooms}


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- room:list

def test_room_list_counts_unread_and_mentions(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        mallory = await Client.connect(server, "mallory", unique_id("t"))
        public = await make_room(alice, bob)
        private = await make_room(alice, bob, private=True, members=["bob"])
        gone = await make_room(bob, alice)
        await ban(bob, gone, "alice")
        acks = [await bob.say(public, "one"),
                await say_to(bob, public, "two, @alice", mentions=["alice"]),
                await bob.say(public, "three"),
                await say_to(alice, public, "mine, @bob and me", mentions=["alice", "bob"])]
        await synced(tenant, public, *(a["msg_id"] for a in acks))

        listed = await alice.ok("room:list")
        rooms = by_id(listed["rooms"])
        assert set(rooms) == {public, private}, listed  # not the room alice is banned from
        assert rooms[public] == {"id": public, "name": f"name of {public}", "kind": "group",
                                 "private": False, "role": "admin", "last_seq": 4,
                                 "read_seq": 0, "unread": 3, "mentions": 1}
        assert rooms[private] == {"id": private, "name": f"name of {private}", "kind": "group",
                                  "private": True, "role": "admin", "last_seq": 0,
                                  "read_seq": 0, "unread": 0, "mentions": 0}
        assert [r["id"] for r in listed["rooms"]] == sorted(rooms)

        # The sender's own mention of itself is no mention.
        bob_rooms = by_id((await bob.ok("room:list"))["rooms"])
        assert (bob_rooms[public]["role"], bob_rooms[public]["unread"],
                bob_rooms[public]["mentions"]) == ("member", 1, 1)

        # Read up to the mention: one of bob's messages is left, no mention.
        assert (await alice.ok("room:read", room=public, seq=2))["read_seq"] == 2
        rooms = by_id((await alice.ok("room:list"))["rooms"])
        assert (rooms[public]["read_seq"], rooms[public]["unread"],
                rooms[public]["mentions"]) == (2, 1, 0)
        # A deleted message is not unread; a deleted mention does not count.
        await delete(bob, tenant, public, acks[2]["msg_id"])
        await delete(alice, tenant, public, acks[3]["msg_id"])
        assert by_id((await bob.ok("room:list"))["rooms"])[public]["mentions"] == 0
        rooms = by_id((await alice.ok("room:list"))["rooms"])
        assert rooms[public]["unread"] == 0

        assert (await mallory.ok("room:list"))["rooms"] == []
    run(main())


def test_room_list_and_info_take_the_redis_counter_when_ahead(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        room = await make_room(alice)
        acks = await say_all(alice, room, ["a", "b"])
        await synced(tenant, room, *(a["msg_id"] for a in acks))
        await eventually_async(lambda: _assert(pg_rows(
            "SELECT max(seq) FROM room_events WHERE tenant = %s AND room_id = %s",
            (tenant, room)) == [(2,)]), what="events in PostgreSQL")
        key = f"chatd:{{{tenant}/{room}}}:seq"
        r = redis_client()
        try:
            # The counter is ahead of PostgreSQL by what the sync has not written.
            r.set(key, 7)
            assert by_id((await alice.ok("room:list"))["rooms"])[room]["last_seq"] == 7
            assert (await alice.ok("room:info", room=room))["room"]["last_seq"] == 7
            # No counter (Redis flushed): PostgreSQL's last seq.
            r.delete(key)
            assert by_id((await alice.ok("room:list"))["rooms"])[room]["last_seq"] == 2
            assert (await alice.ok("room:info", room=room))["room"]["last_seq"] == 2
            await alice.error("room:read", "bad_request", room=room, seq=3)
        finally:
            r.close()
    run(main())


# ---------------------------------------------------------------- room:read

def test_room_read_moves_forward_only(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        carol = await Client.connect(server, "carol", tenant)
        mallory = await Client.connect(server, "mallory", unique_id("t"))
        room = await make_room(alice, bob)
        acks = await say_all(alice, room, ["1", "2", "3"])
        # At once, before the sync wrote them: the last seq is Redis' counter.
        ack = await bob.ok("room:read", room=room, seq=acks[-1]["seq"])
        assert (ack["room"], ack["read_seq"]) == (room, 3)
        assert (await bob.ok("room:read", room=room, seq=1))["read_seq"] == 3
        assert (await bob.ok("room:read", room=room, seq=0))["read_seq"] == 3
        await bob.error("room:read", "bad_request", room=room, seq=4)
        assert pg_rows("SELECT read_seq FROM room_members WHERE tenant = %s AND room_id = %s "
                       "AND user_id = 'bob'", (tenant, room)) == [(3,)]

        await carol.error("room:read", "forbidden", room=room, seq=1)  # public, not a member
        await alice.error("room:read", "not_found", room=unique_id("nope"), seq=1)
        await mallory.error("room:read", "not_found", room=room, seq=1)
        await bob.error("room:read", "bad_request", room=room)
        await bob.error("room:read", "bad_request", room=room, seq=-1)
        await ban(alice, room, "bob")
        await bob.error("room:read", "forbidden", room=room, seq=3)
    run(main())


# ---------------------------------------------------------------- room:info

def test_room_info_for_readers(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        carol = await Client.connect(server, "carol", tenant)
        mallory = await Client.connect(server, "mallory", unique_id("t"))
        before = now_ms()
        room = await make_room(alice, bob, description="about things")
        private = await make_room(alice, bob, private=True, members=["bob"])
        await alice.say(room, "hello")

        info = await alice.ok("room:info", room=room)
        assert info["role"] == "admin"
        created = info["room"].pop("created_at")
        assert before - 1000 <= created <= now_ms() + 1000
        assert info["room"] == {"id": room, "name": f"name of {room}", "kind": "group",
                                "private": False, "description": "about things",
                                "created_by": "alice", "members": 2, "online": 2,
                                "last_seq": 1}
        # Public: any user of the tenant reads it; not a member, no role.
        info = await carol.ok("room:info", room=room)
        assert info["role"] is None and info["room"]["id"] == room

        assert (await bob.ok("room:info", room=private))["role"] == "member"
        await carol.error("room:info", "forbidden", room=private)
        await alice.error("room:info", "not_found", room=unique_id("nope"))
        await mallory.error("room:info", "not_found", room=room)
        await mallory.error("room:info", "not_found", room=private)
        await ban(alice, room, "bob")
        await bob.error("room:info", "forbidden", room=room)
        assert (await alice.ok("room:info", room=room))["room"]["members"] == 1
    run(main())


def test_support_rooms_are_read_by_tenant_admins(server, tenant):
    async def main():
        customer = await Client.connect(server, "customer", tenant)
        agent = await Client.connect(server, "agent", tenant, role="admin")
        carol = await Client.connect(server, "carol", tenant)
        foreign_admin = await Client.connect(server, "agent", unique_id("t"), role="admin")
        room = unique_id("support")
        await customer.ok("room:create", room=room, name="help", kind="support")
        await customer.ok("room:join", room=room)
        sent = await customer.say(room, "help me")
        await synced(tenant, room, sent["msg_id"])
        edit = await customer.ok("message:edit", room=room, msg_id=sent["msg_id"], body="help!")
        await eventually_async(lambda: _assert(pg_rows(
            "SELECT edits FROM messages WHERE tenant = %s AND room_id = %s", (tenant, room))
            == [(1,)]), what="the edit in PostgreSQL")
        # An agent is a moderator there: it reads the edits.
        got = await agent.ok("message:edits", room=room, msg_id=sent["msg_id"])
        assert [(v["seq"], v["body"]) for v in got["versions"]] == \
            [(sent["seq"], "help me"), (edit["seq"], "help!")]
        await carol.error("message:edits", "forbidden", room=room, msg_id=sent["msg_id"])
        info = await agent.ok("room:info", room=room)
        assert info["role"] is None and info["room"]["kind"] == "support"
        assert (await agent.ok("room:members", room=room))["members"][0]["user"] == "customer"
        await carol.error("room:info", "forbidden", room=room)
        await carol.error("room:members", "forbidden", room=room)
        await foreign_admin.error("room:info", "not_found", room=room)
    run(main())


# ------------------------------------------------------------- room:members

def test_room_members_pages_by_user_id(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        outsider = await Client.connect(server, "outsider", tenant)
        room = await make_room(alice, private=True, members=["u1", "u2", "u3", "u4", "u5"])
        await ban(alice, room, "u3")
        until = now_ms() + 3_600_000
        await alice.ok("member:mute", room=room, user="u2", until=until)
        await alice.ok("member:mute", room=room, user="u4")  # until unmuted

        page = await alice.ok("room:members", room=room, limit=2)
        assert page["room"] == room and page["has_more"] is True
        assert [(m["user"], m["role"]) for m in page["members"]] == [("alice", "admin"),
                                                                     ("u1", "member")]
        page = await alice.ok("room:members", room=room, after="u1", limit=2)
        assert [m["user"] for m in page["members"]] == ["u2", "u4"]  # u3 is banned
        assert page["has_more"] is True
        assert [m["muted_until"] for m in page["members"]] == [until, 253402300799999]
        assert all(isinstance(m["joined_at"], int) for m in page["members"])
        page = await alice.ok("room:members", room=room, after="u4", limit=2)
        assert [m["user"] for m in page["members"]] == ["u5"] and page["has_more"] is False
        assert page["members"][0]["muted_until"] is None

        page = await alice.ok("room:members", room=room)
        assert [m["user"] for m in page["members"]] == ["alice", "u1", "u2", "u4", "u5"]
        assert page["has_more"] is False
        assert (await alice.ok("room:members", room=room, limit=200))["has_more"] is False
        await alice.error("room:members", "bad_request", room=room, limit=0)
        await alice.error("room:members", "bad_request", room=room, limit=201)
        await alice.error("room:members", "bad_request", room=room, after="a b")
        await outsider.error("room:members", "forbidden", room=room)
        await alice.error("room:members", "not_found", room=unique_id("nope"))
    run(main())


# ----------------------------------------------------------- message:thread

IMG = {"kind": "image", "url": "https://cdn.example/cat.png", "name": "cat.png",
       "size": 12345, "mime": "image/png"}
MSG_KEYS = {"id", "seq", "user", "kind", "body", "ts", "client_msg_id", "reply_to", "mentions",
            "attachments", "edits", "reactions", "replies"}


def test_thread_pages_replies_oldest_first(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        outsider = await Client.connect(server, "outsider", tenant)
        mallory = await Client.connect(server, "mallory", unique_id("t"))
        room = await make_room(alice, bob)
        other = await make_room(alice, bob)
        root = await alice.say(room, "root message")
        replies = [await say_to(bob, room, "reply 1", reply_to=root["msg_id"],
                                mentions=["alice"], attachments=[IMG])]
        # A reply to a reply joins the root's thread.
        replies += [await say_to(bob, room, f"reply {i}", reply_to=replies[-1]["msg_id"])
                    for i in range(2, 6)]
        elsewhere = await alice.say(other, "elsewhere")
        for who, emoji, add in ((alice, "+1", True), (bob, "+1", True), (bob, "tada", True),
                                (bob, "tada", False), (bob, "eyes", True)):
            await who.ok("message:react", room=room, msg_id=root["msg_id"], emoji=emoji, add=add)
        await synced(tenant, room, root["msg_id"], *(r["msg_id"] for r in replies))
        await synced(tenant, other, elsewhere["msg_id"])
        await eventually_async(lambda: _assert(pg_rows(
            "SELECT emoji, user_id, present FROM message_reactions WHERE tenant = %s "
            "AND room_id = %s ORDER BY 1, 2", (tenant, room)) == [
                ("+1", "alice", True), ("+1", "bob", True), ("eyes", "bob", True),
                ("tada", "bob", False)]), what="reactions in PostgreSQL")

        page = await alice.ok("message:thread", room=room, msg_id=root["msg_id"], limit=2)
        assert (page["room"], page["replies"], page["has_more"]) == (room, 5, True)
        r = page["root"]
        assert set(r) == MSG_KEYS and r["reply_to"] is None, r
        assert (r["id"], r["seq"], r["user"], r["kind"], r["body"], r["ts"]) == \
            (root["msg_id"], root["seq"], "alice", "text", "root message", root["ts"])
        assert (r["edits"], r["replies"], r["mentions"], r["attachments"]) == (0, 5, [], [])
        assert r["reactions"] == {"+1": 2, "eyes": 1}
        assert [m["body"] for m in page["messages"]] == ["reply 4", "reply 5"]
        m = page["messages"][0]
        assert set(m) == MSG_KEYS, m
        assert (m["id"], m["seq"], m["reply_to"], m["user"], m["ts"]) == \
            (replies[3]["msg_id"], replies[3]["seq"], root["msg_id"], "bob", replies[3]["ts"])

        page = await alice.ok("message:thread", room=room, msg_id=root["msg_id"], limit=2,
                              before=replies[3]["seq"])
        assert [m["body"] for m in page["messages"]] == ["reply 2", "reply 3"]
        assert page["has_more"] is True
        page = await alice.ok("message:thread", room=room, msg_id=root["msg_id"], limit=2,
                              before=replies[1]["seq"])
        assert [m["body"] for m in page["messages"]] == ["reply 1"]
        assert page["has_more"] is False
        m = page["messages"][0]
        assert (m["mentions"], m["attachments"]) == (["alice"], [IMG]), m

        # A reply's id finds its root's thread; a deleted reply is a tombstone.
        await delete(bob, tenant, room, replies[4]["msg_id"])
        page = await bob.ok("message:thread", room=room, msg_id=replies[2]["msg_id"])
        assert page["root"]["id"] == root["msg_id"] and page["replies"] == 5
        assert [m["seq"] for m in page["messages"]] == [r["seq"] for r in replies]
        tomb = page["messages"][-1]
        assert (tomb["deleted"], tomb["body"], tomb["attachments"], tomb["mentions"],
                tomb["reactions"], tomb["id"], tomb["user"], tomb["reply_to"]) == \
            (True, "", [], [], {}, replies[4]["msg_id"], "bob", root["msg_id"])
        assert "deleted" not in page["messages"][0]

        await alice.error("message:thread", "not_found", room=room, msg_id="nosuchmessage")
        await alice.error("message:thread", "not_found", room=room, msg_id=elsewhere["msg_id"])
        await mallory.error("message:thread", "not_found", room=room, msg_id=root["msg_id"])
        await alice.error("message:thread", "bad_request", room=room, msg_id=root["msg_id"],
                          limit=101)
        private = await make_room(alice, private=True)
        secret = await alice.say(private, "secret")
        await outsider.error("message:thread", "forbidden", room=private, msg_id=secret["msg_id"])
    run(main())


# ------------------------------------------------------------ message:edits

def test_edits_lists_every_version_for_author_and_moderators(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        mod = await Client.connect(server, "mod", tenant)
        outsider = await Client.connect(server, "outsider", tenant)
        mallory = await Client.connect(server, "mallory", unique_id("t"))
        room = await make_room(alice, bob, mod, private=True, members=["bob", "mod"])
        await alice.ok("member:role", room=room, user="mod", role="moderator")
        sent = await alice.say(room, "first")
        await synced(tenant, room, sent["msg_id"])
        edits = [await alice.ok("message:edit", room=room, msg_id=sent["msg_id"], body=body)
                 for body in ("second", "third")]
        await eventually_async(lambda: _assert(pg_rows(
            "SELECT count(*) FROM room_events WHERE tenant = %s AND room_id = %s "
            "AND type = 'message:edited'", (tenant, room)) == [(2,)]), what="edits synced")

        want = [{"seq": sent["seq"], "body": "first", "ts": sent["ts"]}] + \
            [{"seq": e["seq"], "body": b, "ts": e["ts"]}
             for e, b in zip(edits, ("second", "third"))]
        for reader in (alice, mod):
            got = await reader.ok("message:edits", room=room, msg_id=sent["msg_id"])
            assert (got["msg_id"], got["versions"]) == (sent["msg_id"], want), reader
        await bob.error("message:edits", "forbidden", room=room, msg_id=sent["msg_id"])
        await outsider.error("message:edits", "forbidden", room=room, msg_id=sent["msg_id"])
        await alice.error("message:edits", "not_found", room=room, msg_id="nosuchmessage")
        await mallory.error("message:edits", "not_found", room=room, msg_id=sent["msg_id"])

        # The current state carries the latest body and when it was edited.
        root = (await bob.ok("message:thread", room=room, msg_id=sent["msg_id"]))["root"]
        assert (root["body"], root["edits"], root["edited_at"]) == ("third", 2, edits[-1]["ts"])
        # A deleted message's versions stay (the audit); the message is a tombstone.
        await delete(alice, tenant, room, sent["msg_id"])
        got = await mod.ok("message:edits", room=room, msg_id=sent["msg_id"])
        assert got["versions"] == want
        root = (await bob.ok("message:thread", room=room, msg_id=sent["msg_id"]))["root"]
        assert (root["deleted"], root["body"], root["edits"]) == (True, "", 0)
        assert "edited_at" not in root
    run(main())


# ------------------------------------------------------------- mention:list

def test_mention_list_pages_newest_first(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        room = await make_room(bob, alice)
        closed = await make_room(bob, alice, private=True, members=["alice"])
        acks = [await say_to(bob, room, f"hey alice {i}", mentions=["alice"]) for i in range(5)]
        hidden = await say_to(bob, closed, "hey alice, in private", mentions=["alice"])
        await synced(tenant, room, *(a["msg_id"] for a in acks))
        await synced(tenant, closed, hidden["msg_id"])

        page = await alice.ok("mention:list", limit=3)
        assert [m["msg"]["body"] for m in page["mentions"]] == \
            ["hey alice, in private", "hey alice 4", "hey alice 3"]
        assert page["has_more"] is True
        first = page["mentions"][1]
        assert (first["room"], first["seq"], first["msg"]["id"], first["msg"]["user"]) == \
            (room, acks[4]["seq"], acks[4]["msg_id"], "bob")
        assert set(first["msg"]) == MSG_KEYS and first["msg"]["mentions"] == ["alice"]
        # Newest message first (ids follow the sync, not the sends); the
        # last one's id is the cursor of the next page.
        ids = [m["id"] for m in page["mentions"]]
        page = await alice.ok("mention:list", limit=3, before=ids[-1])
        assert [m["msg"]["body"] for m in page["mentions"]] == \
            ["hey alice 2", "hey alice 1", "hey alice 0"]
        assert page["has_more"] is False

        # Not of a deleted message, not in a room alice no longer reads.
        await delete(bob, tenant, room, acks[2]["msg_id"])
        await ban(bob, closed, "alice")
        page = await alice.ok("mention:list")
        assert [m["msg"]["body"] for m in page["mentions"]] == \
            ["hey alice 4", "hey alice 3", "hey alice 1", "hey alice 0"]
        assert (await bob.ok("mention:list"))["mentions"] == []
        await alice.error("mention:list", "bad_request", limit=101)
        await alice.error("mention:list", "bad_request", before="x")
    run(main())


# ----------------------------------------------------------- message:search

def test_search_finds_ranks_and_highlights(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        bob = await Client.connect(server, "bob", tenant)
        mallory = await Client.connect(server, "mallory", unique_id("t"))
        room = await make_room(alice, bob)
        closed = await make_room(bob, private=True)
        theirs = await make_room(mallory)
        bodies = {
            "sending": "I am sending the report today",
            "fox": "the quick brown fox jumps",
            "xof": "fox quick brown",
            "best": "report report report: the quarterly report",
            "gone": "a deleted report",
            "html": "<script>alert(1)</script> report & more",
        }
        acks = {k: await alice.say(room, v) for k, v in bodies.items()}
        secret = await bob.say(closed, "secret report")
        foreign = await mallory.say(theirs, "report report report report")
        await synced(tenant, room, *(a["msg_id"] for a in acks.values()))
        await synced(tenant, closed, secret["msg_id"])
        await delete(alice, tenant, room, acks["gone"]["msg_id"])
        name = {a["msg_id"]: k for k, a in acks.items()}

        found = await alice.ok("message:search", q="report")
        hits = [name.get(h["msg"]["id"], h["msg"]["id"]) for h in found["messages"]]
        assert hits[0] == "best", hits  # the better match first
        assert sorted(hits) == ["best", "html", "sending"], hits  # not deleted, private, foreign
        assert found["has_more"] is False and found["next"] is None
        best = found["messages"][0]
        assert best["room"] == room and best["msg"]["body"] == bodies["best"]
        assert set(best["msg"]) == MSG_KEYS
        assert "<b>report</b>" in best["headline"]
        assert best["rank"] > found["messages"][1]["rank"]
        html = next(h for h in found["messages"] if h["msg"]["id"] == acks["html"]["msg_id"])
        assert "&lt;script&gt;" in html["headline"] and "<script>" not in html["headline"]
        assert "&amp;" in html["headline"]

        # Stemmed words, phrases, exclusion.
        found = await alice.ok("message:search", q="sends")
        assert [h["msg"]["id"] for h in found["messages"]] == [acks["sending"]["msg_id"]]
        assert "<b>sending</b>" in found["messages"][0]["headline"]
        found = await alice.ok("message:search", q='"brown fox"')
        assert [h["msg"]["id"] for h in found["messages"]] == [acks["fox"]["msg_id"]]
        found = await alice.ok("message:search", q="fox -jumps")
        assert [h["msg"]["id"] for h in found["messages"]] == [acks["xof"]["msg_id"]]

        # Stop words only: no message, not an error.
        found = await alice.ok("message:search", q="the and of")
        assert (found["messages"], found["has_more"]) == ([], False)

        # bob reads his private room; a room filter keeps to it.
        found = await bob.ok("message:search", q="secret report", room=closed)
        assert [h["msg"]["id"] for h in found["messages"]] == [secret["msg_id"]]
        found = await bob.ok("message:search", q="report")
        assert secret["msg_id"] in [h["msg"]["id"] for h in found["messages"]]
        found = await bob.ok("message:search", q="report", room=room)
        assert secret["msg_id"] not in [h["msg"]["id"] for h in found["messages"]]
        found = await mallory.ok("message:search", q="report")
        assert [h["msg"]["id"] for h in found["messages"]] == [foreign["msg_id"]]

        await alice.error("message:search", "forbidden", q="report", room=closed)
        await alice.error("message:search", "not_found", q="report", room=unique_id("nope"))
        await mallory.error("message:search", "not_found", q="report", room=room)
        await ban(alice, room, "bob")
        await bob.error("message:search", "forbidden", q="report", room=room)
        found = await bob.ok("message:search", q="report")
        assert [h["msg"]["id"] for h in found["messages"]] == [secret["msg_id"]]
    run(main())


def test_search_pages_follow_the_ranking(server, tenant):
    async def main():
        alice = await Client.connect(server, "alice", tenant)
        rooms = [await make_room(alice) for _ in range(2)]
        acks = []
        for i in range(7):
            acks.append(await alice.say(rooms[i % 2], "needle " * (1 + i % 3) + f"hay {i}"))
        for room in rooms:
            await synced(tenant, room, *(a["msg_id"] for a in acks[rooms.index(room)::2]))
        whole = await alice.ok("message:search", q="needle")
        assert len(whole["messages"]) == 7 and whole["has_more"] is False
        order = [h["msg"]["id"] for h in whole["messages"]]
        ranks = [h["rank"] for h in whole["messages"]]
        assert ranks == sorted(ranks, reverse=True)

        paged, before = [], None
        for _ in range(4):
            page = await alice.ok("message:search", q="needle", limit=3,
                                  **({"before": before} if before else {}))
            paged += [h["msg"]["id"] for h in page["messages"]]
            if not page["has_more"]:
                assert page["next"] is None
                break
            before = page["next"]
            assert isinstance(before, str)
        assert paged == order

        await alice.error("message:search", "bad_request", q="needle", before="nonsense")
        await alice.error("message:search", "bad_request", q="needle", before="1:2:3:a b")
        await alice.error("message:search", "bad_request", q="needle", before="nan:1:1:r")
        await alice.error("message:search", "bad_request", q="needle", before="0x1p3:1:1:r")
        await alice.error("message:search", "bad_request", q="needle", before="1:2:3")
        await alice.error("message:search", "bad_request", q="")
        await alice.error("message:search", "too_large", q="x" * 257)
        await alice.error("message:search", "too_large", q="needle", before="1" * 161)
        await alice.error("message:search", "bad_request", q="needle", limit=51)
        await alice.error("message:search", "bad_request", q="needle", limit=0)
        await alice.error("message:search", "bad_request")
        assert (await alice.ok("message:search", q="x" * 256))["messages"] == []
    run(main())


def test_search_of_support_rooms_is_for_tenant_admins(server, tenant):
    async def main():
        customer = await Client.connect(server, "customer", tenant)
        agent = await Client.connect(server, "agent", tenant, role="admin")
        carol = await Client.connect(server, "carol", tenant)
        room = unique_id("support")
        await customer.ok("room:create", room=room, name="help", kind="support")
        await customer.ok("room:join", room=room)
        ack = await customer.say(room, "my invoice is wrong")
        await synced(tenant, room, ack["msg_id"])
        found = await agent.ok("message:search", q="invoice")
        assert [h["msg"]["id"] for h in found["messages"]] == [ack["msg_id"]]
        assert (await carol.ok("message:search", q="invoice"))["messages"] == []
        await carol.error("message:search", "forbidden", q="invoice", room=room)
    run(main())


def test_search_is_rate_limited(make_server, tenant):
    server = make_server(rate_search="2/60")

    async def main():
        alice = await Client.connect(server, "alice", tenant)
        await alice.ok("message:search", q="anything")
        await alice.ok("message:search", q="anything")
        limited = await alice.error("message:search", "rate_limited", q="anything")
        assert limited["retry_after_ms"] > 0
        # Fields are checked before the limit: a bad request costs no token.
        await alice.error("message:search", "bad_request", q="")
    run(main())
