"""The one cursor recovers the whole chat (docs/protocol.md section 7): a
client that was away and comes back with room:join {since: its last seq}
folds the events it missed into the same room as a client that stayed.

The story, in every variant: alice and bob are subscribed; alice records
the room (the fold of what she has seen) and goes away. Then the room's
admin edits a message twice, deletes someone's message, writes, edits and
deletes a message of its own, deletes a message written while alice was
away, reacts (an add, an add then a remove, and a repeated add that changes
nothing), mutes dave, makes bob a moderator, renames the room, bans carol
(connected: she gets room:removed and nothing more) and replies in a thread
(to a reply: the reply joins the root's thread). Alice comes back with
room:join {since}; her fold must equal bob's, field by field. Variants:
alice closes her connection; alice's worker is killed with SIGKILL; Redis
is flushed once the events are in PostgreSQL, so that the resume is read
from PostgreSQL.

Decision taken here (the rules do not say it): once a message is deleted,
no event of history or resume carries its text, not even the message:edited
events written before the delete (they carry "body": "").
"""

import asyncio
import copy
import json
import os
import signal
import time

import pytest

from chatd_harness import (Session, ack_of, eventually_async, pg_rows, redis_client, run,
                           session_where, unique_id)

ATTACHMENT = {"kind": "file", "url": "https://files.example.com/report.pdf", "name": "report.pdf",
              "size": 2048, "mime": "application/pdf"}
TOMBSTONE_KEEPS = ("id", "seq", "user", "kind", "ts", "reply_to", "client_msg_id")
NOT_LOG = ("mention:new",)  # frames with a room and a seq that are not room events


# ------------------------------------------------------------------- the fold

def new_state():
    return {"last_seq": 0, "messages": {}, "members": {}, "room": {}, "other": []}


def fold(events, state):
    """Fold room events (oldest first) into state: what a client shows.

    messages by id: body, kind, user, reply_to, attachments, mentions,
    edits and edited_at, deleted (the tombstone) and by, reactions
    {emoji: count}; members by user: role, muted_until, banned; the room's
    name and description; any other event type as (seq, type). A seq
    already folded is skipped (a resume may overlap); a gap is an error."""
    for e in events:
        seq = e["seq"]
        if seq <= state["last_seq"]:
            continue
        assert seq == state["last_seq"] + 1, \
            f"gap in the room log: seq {seq} after {state['last_seq']} ({e})"
        state["last_seq"] = seq
        FOLDS.get(e["type"], fold_other)(state, e)
    return state


def fold_new(state, e):
    msg = e["msg"]
    state["messages"][msg["id"]] = {
        "seq": msg["seq"], "user": msg["user"], "kind": msg["kind"], "body": msg["body"],
        "reply_to": msg.get("reply_to"), "attachments": msg.get("attachments") or [],
        "mentions": msg.get("mentions") or [], "edits": 0, "edited_at": None,
        "deleted": bool(msg.get("deleted")), "deleted_by": None, "reactions": {}}


def fold_edited(state, e):
    m = state["messages"][e["msg_id"]]
    m["body"] = "" if m["deleted"] else e["body"]
    m["edits"] = e.get("edits", m["edits"] + 1)
    m["edited_at"] = e["edited_at"]


def fold_deleted(state, e):
    m = state["messages"][e["msg_id"]]
    m.update(deleted=True, deleted_by=e["by"], body="", attachments=[], mentions=[])


def fold_reaction(state, e):
    reactions = state["messages"][e["msg_id"]]["reactions"]
    reactions[e["emoji"]] = e["count"]
    if e["count"] == 0:
        del reactions[e["emoji"]]


def fold_joined(state, e):
    state["members"][e["user"]] = {"role": e["role"], "muted_until": None, "banned": False}


def fold_left(state, e):
    if e.get("reason") == "banned":
        state["members"][e["user"]] = {"role": None, "muted_until": None, "banned": True}
    else:
        state["members"].pop(e["user"], None)


def fold_updated(state, e):
    member = state["members"].setdefault(e["user"], {"role": None, "muted_until": None,
                                                     "banned": False})
    for key in ("role", "muted_until", "banned"):
        if key in e:
            member[key] = e[key]


def fold_room(state, e):
    state["room"].update({k: e[k] for k in ("name", "description") if k in e})


def fold_other(state, e):
    state["other"].append((e["seq"], e["type"]))


FOLDS = {"message:new": fold_new, "message:edited": fold_edited, "message:deleted": fold_deleted,
         "message:reaction": fold_reaction, "member:joined": fold_joined,
         "member:left": fold_left, "member:updated": fold_updated, "room:updated": fold_room}


def view(state):
    """The state with each message's reply count (replies not deleted)."""
    out = copy.deepcopy(state)
    for m in out["messages"].values():
        m["replies"] = 0
    for m in out["messages"].values():
        if m["reply_to"] in out["messages"] and not m["deleted"]:
            out["messages"][m["reply_to"]]["replies"] += 1
    return out


def differences(got, want):
    """Field by field: ['messages.<id>.body: got .. want ..', ...]."""
    out = []

    def walk(path, a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(f"{path}.{k}" if path else str(k), a.get(k, "<absent>"), b.get(k, "<absent>"))
        elif a != b:
            out.append(f"{path}: got {a!r}, want {b!r}")
    walk("", got, want)
    return out


def room_events(frames, room):
    return [f for f in frames if f.get("room") == room and isinstance(f.get("seq"), int)
            and f.get("type") not in NOT_LOG and "id" not in f]


# ------------------------------------------------------------------ the story

open_where = session_where


ok = ack_of


async def say(conn, room, body, **extra):
    return await ok(conn, "message:send", room=room, body=body,
                    client_msg_id=unique_id("c"), **extra)


async def react(conn, room, msg_id, emoji, add, count, changed=True):
    ack = await ok(conn, "message:react", room=room, msg_id=msg_id, emoji=emoji, add=add)
    assert (ack.get("msg_id"), ack.get("emoji"), ack.get("count"), ack.get("changed")) == \
        (msg_id, emoji, count, changed), ack
    return ack


async def before_away(admin, bob, carol, alice, room):
    """The room as alice sees it before she goes; returns the message ids."""
    ids = {}
    ids["draft"] = (await say(admin, room, "first draft"))["msg_id"]
    ids["gone"] = (await say(bob, room, "this will be deleted"))["msg_id"]
    ids["liked"] = (await say(carol, room, "the report", attachments=[ATTACHMENT]))["msg_id"]
    ids["root"] = (await say(alice, room, "a thread, bob?", mentions=["bob"]))["msg_id"]
    await react(bob, room, ids["liked"], "👍", True, 1)
    ack = await say(bob, room, "first reply", reply_to=ids["root"])
    ids["r1"] = ack["msg_id"]
    return ids, ack["seq"]


async def while_away(admin, bob, room, ids):
    """Everything alice misses; returns the seq of the last event."""
    for n, body in enumerate(("second draft", "final draft"), 1):
        ack = await ok(admin, "message:edit", room=room, msg_id=ids["draft"], body=body)
        assert ack["msg_id"] == ids["draft"] and isinstance(ack["seq"], int), ack
    ack = await ok(admin, "message:delete", room=room, msg_id=ids["gone"])
    assert ack["msg_id"] == ids["gone"], ack
    # Written, edited at once (right after the send's ack) and deleted.
    ids["secret"] = (await say(admin, room, "secret text"))["msg_id"]
    await ok(admin, "message:edit", room=room, msg_id=ids["secret"], body="secret edited")
    await ok(admin, "message:delete", room=room, msg_id=ids["secret"])
    ids["oops"] = (await say(bob, room, "oops, wrong room"))["msg_id"]
    await ok(admin, "message:delete", room=room, msg_id=ids["oops"])
    await react(admin, room, ids["liked"], "👍", True, 2)
    await react(admin, room, ids["liked"], "👍", True, 2, changed=False)  # writes nothing
    await react(admin, room, ids["root"], "🎉", True, 1)
    await react(admin, room, ids["root"], "🎉", False, 0)
    ids["mute_until"] = int(time.time() * 1000) + 3_600_000
    ack = await ok(admin, "member:mute", room=room, user="dave", until=ids["mute_until"])
    assert ack["user"] == "dave" and isinstance(ack["seq"], int), ack
    ack = await ok(admin, "member:role", room=room, user="bob", role="moderator")
    assert ack["user"] == "bob" and isinstance(ack["seq"], int), ack
    ack = await ok(admin, "room:update", room=room, name="recovered", description="all of it")
    assert isinstance(ack["seq"], int), ack
    ack = await ok(admin, "member:ban", room=room, user="carol", reason="spam")
    assert ack["user"] == "carol" and isinstance(ack["seq"], int), ack
    ack = await say(admin, room, "a reply to the reply", reply_to=ids["r1"])
    ids["r2"] = ack["msg_id"]
    return ack["seq"]


def check_outcome(state, ids):
    """What the story must leave, whoever folds it."""
    msgs = state["messages"]
    assert (msgs[ids["draft"]]["body"], msgs[ids["draft"]]["edits"]) == ("final draft", 2), \
        msgs[ids["draft"]]
    for key in ("gone", "secret", "oops"):
        m = msgs[ids[key]]
        assert (m["deleted"], m["body"], m["deleted_by"]) == (True, "", "admin"), (key, m)
    assert msgs[ids["liked"]]["reactions"] == {"👍": 2}, msgs[ids["liked"]]
    assert msgs[ids["liked"]]["attachments"] == [ATTACHMENT], msgs[ids["liked"]]
    assert msgs[ids["root"]]["reactions"] == {}, msgs[ids["root"]]
    assert msgs[ids["root"]]["mentions"] == ["bob"], msgs[ids["root"]]
    assert msgs[ids["r2"]]["reply_to"] == ids["root"], \
        f"a reply to a reply must join the root's thread: {msgs[ids['r2']]}"
    assert msgs[ids["root"]]["replies"] == 2, msgs[ids["root"]]
    assert state["members"].get("carol", {}).get("banned") is True, state["members"]
    assert state["members"].get("bob", {}).get("role") == "moderator", state["members"]
    assert state["room"] == {"name": "recovered", "description": "all of it"}, state["room"]
    assert state["members"].get("dave", {}).get("muted_until") == ids["mute_until"], \
        state["members"]


def check_tombstones(events, live, ids, where):
    """Deleted messages in history or resume: message:new with the
    tombstone, the rest of msg as sent."""
    by_id = {e["msg"]["id"]: e for e in events if e["type"] == "message:new"}
    sent = {e["msg"]["id"]: e["msg"] for e in live if e["type"] == "message:new"}
    for key in ("gone", "secret", "oops"):
        if ids[key] not in by_id:
            continue
        msg = by_id[ids[key]]["msg"]
        assert (msg.get("deleted"), msg.get("body"), msg.get("attachments"),
                msg.get("mentions")) == (True, "", [], []), f"{where}: {key} not a tombstone: {msg}"
        assert {k: msg.get(k) for k in TOMBSTONE_KEEPS} == \
            {k: sent[ids[key]].get(k) for k in TOMBSTONE_KEEPS}, (where, msg, sent[ids[key]])


DELETED_TEXTS = ("secret text", "secret edited", "oops, wrong room", "this will be deleted")


def deleted_text_left(events, where):
    """The decision of this file's docstring: no event of a deleted message
    carries its text (message:edited events included)."""
    return [f"{where}: seq {e['seq']} {e['type']} carries {text!r}" for e in events
            for text in DELETED_TEXTS if text in json.dumps(e, ensure_ascii=False)]


async def history(conn, room):
    events, after = [], 0
    for _ in range(10):
        page = await ok(conn, "message:history", room=room, after=after, limit=100)
        events += page["events"]
        if not page["has_more"] or not page["events"]:
            return events
        after = page["events"][-1]["seq"]
    raise AssertionError("history: more than 10 pages")


def worker_pid(srv, index):
    pid = srv.worker_pids()[index]
    assert isinstance(pid, int) and pid > 1, pid  # never kill(0) or kill(-1)
    return pid


@pytest.mark.parametrize("variant", ["plain", "kill", "flush"])
def test_resume_folds_to_the_same_room(make_server, tenant, variant):
    srv = make_server(workers=2)

    async def main():
        alice = await Session.open(srv, "alice", tenant)
        # Everyone else away from alice's worker, where the kill happens;
        # carol shares bob's worker: bob is the witness that an event
        # reached her worker.
        admin = await open_where(srv, lambda w: w != alice.worker, "admin", tenant)
        bob = await open_where(srv, lambda w: w != alice.worker, "bob", tenant)
        carol = await open_where(srv, lambda w: w == bob.worker, "carol", tenant)
        room = unique_id("room")
        await ok(admin, "room:create", room=room, name="recovery", private=True,
                 members=["alice", "bob", "carol", "dave"])
        joins = {c: await ok(c, "room:join", room=room) for c in (admin, alice, bob, carol)}

        ids, last_seen = await before_away(admin, bob, carol, alice, room)
        await alice.wait_event(lambda f: f.get("seq") == last_seen and f.get("room") == room,
                               5, f"event {last_seen}")
        mine = fold(room_events(joins[alice]["events"] + alice.events, room), new_state())
        assert mine["last_seq"] == last_seen, mine["last_seq"]

        if variant == "kill":
            old = worker_pid(srv, alice.worker)
            os.kill(old, signal.SIGKILL)
            await asyncio.wait_for(alice.closed.wait(), 10)

            def replaced():
                assert srv.check_workers_ready()[alice.worker] != old
            await eventually_async(replaced, timeout=15, what="the killed worker replaced")
        else:
            await alice.close()

        final = await while_away(admin, bob, room, ids)
        await bob.wait_event(lambda f: f.get("seq") == final and f.get("room") == room,
                             5, f"event {final}")
        # carol: room:removed once, then nothing of the room (bob, on her
        # worker, has the last event: so would she).
        await carol.settle()
        frames = [f for f in carol.events if f.get("room") == room]
        removed = [i for i, f in enumerate(frames) if f.get("type") == "room:removed"]
        assert len(removed) == 1, f"carol: room:removed {len(removed)} times: {frames[-5:]}"
        assert frames[removed[0]].get("reason") == "banned", frames[removed[0]]
        after = frames[removed[0] + 1:]
        assert after == [], f"carol got {len(after)} frames of the room after room:removed: " \
                            f"{after[:3]}"
        reply = await carol.request("room:join", room=room)
        assert reply.get("code") == "forbidden", f"banned carol joins again: {reply}"

        live = room_events(joins[bob]["events"] + bob.events, room)
        bobs = view(fold(live, new_state()))
        assert bobs["last_seq"] == final, bobs["last_seq"]
        check_outcome(bobs, ids)

        if variant == "flush":
            def in_postgres():
                rows = pg_rows("SELECT coalesce(max(seq), 0) FROM room_events "
                               "WHERE tenant = %s AND room_id = %s", (tenant, room))
                assert rows[0][0] == final, f"room_events at {rows[0][0]} of {final}"
            await eventually_async(in_postgres, timeout=15, what="the room in PostgreSQL")
            await asyncio.to_thread(lambda: redis_client().flushall())

        back = await Session.open(srv, "alice", tenant)
        ack = await ok(back, "room:join", room=room, since=last_seen)
        assert ack.get("recovered", True) is True and ack["last_seq"] == final, \
            {k: v for k, v in ack.items() if k != "events"}
        missed = ack["events"]
        assert [e["seq"] for e in missed] == list(range(last_seen + 1, final + 1)), \
            [e["seq"] for e in missed]
        check_tombstones(missed, live, ids, "resume")
        alices = view(fold(missed, mine))
        diff = differences(alices, bobs)
        assert not diff, "alice's fold after the resume differs from bob's:\n  " + \
            "\n  ".join(diff[:20])

        past = await history(back, room)
        check_tombstones(past, live, ids, "history")
        await back.settle()
        late = room_events(back.events, room)
        assert late == [], f"events after the resume's ack, though nothing happened: {late[:3]}"
        leaks = deleted_text_left(missed, "resume") + deleted_text_left(past, "history")
        assert not leaks, "deleted messages' text in events:\n  " + "\n  ".join(leaks)

    run(main(), timeout=60)
