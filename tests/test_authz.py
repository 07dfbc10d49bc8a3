"""The authorization matrix of docs/protocol.md section 7: every command that
names a room, sent by a user of every standing in a private group room, and
the exact answer (an ack with its key field, or the error code).

MATRIX (written as TABLE) is the one table of answers; ROWS says how each row's request is
made and what its ack must carry. test_every_room_command_has_a_row fails
when the server's command table (src/proto/commands.h) has a command that
names a `room` field and no row here.

The standings (users in the tenant `tenant` unless said otherwise):

    none       u-none: a user of the tenant, never a member of the room
    member     u-member: a member
    muted      u-muted: a member muted by the owner (member:mute)
    banned     u-banned: a member banned by the owner (member:ban)
    moderator  u-moderator: a member promoted by the owner (member:role)
    admin      u-admin: a member promoted to admin by the owner (member:role);
               the owner stays admin too, so no cell meets "the last admin"
    other      "owner" of another tenant: the same user id as the room's
               admin, which must give it nothing in this tenant

The world of a row: one private group room per row, so that the bans,
removals, deletes and role changes of one row cannot change another's
answers. In it:

- `owner` creates the room (admin) with the members `writer`, the five
  member standings and, for the member:* rows, one target user per standing;
- the member standings and `writer` join the room (a send needs a joined
  connection);
- `writer` writes one message per standing, that standing's target (so the
  moderator's delete cannot make the admin's a `not_found`), mentioning the
  standing when it can be mentioned (a reader: not `none`, not `other`);
- each member standing writes a message of its own, before the owner sets
  its standing: the "own" rows (edit, delete, edits) act on it. A muted or
  banned user's own message is one it wrote before the mute or the ban;
  `none` and `other` never had one, so their "own" cell targets the
  writer's message;
- then the owner sets the standings through the commands themselves
  (member:role moderator and admin, member:mute, member:ban), which the
  matrix thus proves too, and the banned user's connection must get
  room:removed;
- the member:* rows have one target user per standing: a member (remove,
  role, mute, ban), a user who is not a member (add), a muted member
  (unmute), a banned user (unban).

The cells of a row run at the same time; each acts on its own target. Rows
that read PostgreSQL (thread, search, edits, room:list, mention:list, ...)
wait until the world's events are in room_events first.

Decisions taken here where the rules say nothing (as a Slack user expects):
- a banned user's room:list does not list the room, and its mention:list
  has no mention of the room, though it was mentioned before the ban (a
  user who may not read a room sees nothing of it);
- room:members does not list a banned user (a banned user is not a member);
- message:send to a room of another tenant is not_found like every other
  command (check 3 comes before the joined-connection check of 4).
"""

import asyncio
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest

from chatd_harness import REPO, Session, eventually_async, pg_rows, run, unique_id

COMMANDS_H = REPO / "src" / "proto" / "commands.h"

# Commands that name a room and are tested elsewhere: joining, leaving,
# resuming and history (test_chat, test_delivery, test_recovery), and
# presence and typing (issue 18; the read receipts have rows).
NO_ROW = ("room:create", "room:join", "room:leave", "session:resume", "message:history",
          "ping", "auth:refresh", "presence:*", "typing:*")

STANDINGS = ("none", "member", "muted", "banned", "moderator", "admin", "other")
USER = {"none": "u-none", "member": "u-member", "muted": "u-muted", "banned": "u-banned",
        "moderator": "u-moderator", "admin": "u-admin", "other": "owner"}
MEMBERS = ("member", "muted", "banned", "moderator", "admin")  # members before the setup
READERS = ("member", "muted", "moderator", "admin")            # readers after it
ROLE = {"member": "member", "muted": "member", "moderator": "moderator", "admin": "admin"}

A, F, N = "ack", "forbidden", "not_found"
CODES = {"A": A, "F": F, "N": N}

# The matrix, one row per command (after a space: which variant of it, whose
# message), one column per standing: A ack, F forbidden, N not_found.
# "member:remove self": "or the user itself" passes the standing; a user who
# is not a member (never was, or banned) then meets the target check's
# not_found.
TABLE = """
                          none member muted banned moderator admin other
message:send reply_to       F    A      F     F        A       A     N
message:send mentions       F    A      F     F        A       A     N
message:send attachments    F    A      F     F        A       A     N
message:edit writer's       F    F      F     F        F       F     N
message:edit own            F    A      F     F        A       A     N
message:delete writer's     F    F      F     F        A       A     N
message:delete own          F    A      A     F        A       A     N
message:react               F    A      F     F        A       A     N
message:edits writer's      F    F      F     F        A       A     N
message:edits own           F    A      A     F        A       A     N
message:thread              F    A      A     F        A       A     N
message:search room         F    A      A     F        A       A     N
room:info                   F    A      A     F        A       A     N
room:members                F    A      A     F        A       A     N
room:read                   F    A      A     F        A       A     N
receipt:delivered           F    A      A     F        A       A     N
receipt:read                F    A      A     F        A       A     N
message:seen                F    A      A     F        A       A     N
room:update                 F    F      F     F        F       A     N
member:add                  F    F      F     F        A       A     N
member:remove               F    F      F     F        A       A     N
member:remove self          N    A      A     N        A       A     N
member:role                 F    F      F     F        F       A     N
member:mute                 F    F      F     F        A       A     N
member:unmute               F    F      F     F        A       A     N
member:ban                  F    F      F     F        A       A     N
member:unban                F    F      F     F        A       A     N
room:list                   A    A      A     A        A       A     A
mention:list                A    A      A     A        A       A     A
"""


def parse_table(text):
    """TABLE as {row: {standing: expected answer}}."""
    header, *rows = [line.split() for line in text.strip().splitlines()]
    assert tuple(header) == STANDINGS, header
    n = len(header)
    return {" ".join(w[:-n]): {s: CODES[c] for s, c in zip(header, w[-n:])} for w in rows}


MATRIX = parse_table(TABLE)

ATTACHMENT = {"kind": "image", "url": "https://files.example.com/a/cat.png", "name": "cat.png",
              "size": 12345, "mime": "image/png"}


def command_of(row):
    return row.split(" ", 1)[0]


def letters(n=12):
    """A word of letters only, unique per call (full-text search indexes it
    as one token)."""
    return "".join("abcdefghijklmnop"[int(c, 16)] for c in unique_id("x")[2:2 + n])


# ------------------------------------------------------------------ the world

@dataclass
class World:
    room: str
    tenant: str
    conns: dict                     # user name -> Session ("other" under "other")
    word: str                       # in every target message: what the search row finds
    target: dict = field(default_factory=dict)      # standing -> the writer's message id
    target_seq: dict = field(default_factory=dict)  # standing -> its seq
    target_body: dict = field(default_factory=dict)
    own: dict = field(default_factory=dict)         # standing -> its own message id
    last_seq: int = 0

    def conn(self, standing):
        return self.conns[standing]

    def saw(self, ack):
        if isinstance(ack.get("seq"), int):
            self.last_seq = max(self.last_seq, ack["seq"])
        return ack

    def own_or_target(self, s):
        return self.own.get(s, self.target[s])


def target_user(s):
    return f"t-{s}"


def newcomer(s):
    return f"n-{s}"


async def open_world_sessions(server, tenant, other_tenant):
    names = ["owner", "writer", *(USER[s] for s in STANDINGS if s != "other")]
    sessions = await asyncio.gather(*(Session.open(server, n, tenant) for n in names))
    conns = dict(zip(names, sessions))
    conns["other"] = await Session.open(server, USER["other"], other_tenant)
    for s in STANDINGS:
        if s != "other":
            conns[s] = conns[USER[s]]
    return conns


async def ok(conn, type, **fields):
    reply = await conn.request(type, **fields)
    assert reply.get("type") == "ack", f"setup: {conn}: {type} {fields} -> {reply}"
    return reply


async def build_world(server, tenant, other_tenant, row):
    spec = ROWS[row]
    conns = await open_world_sessions(server, tenant, other_tenant)
    w = World(room=unique_id("room"), tenant=tenant, conns=conns, word=letters())
    owner, writer = conns["owner"], conns["writer"]
    members = [USER[s] for s in MEMBERS]
    if spec.targets in ("member", "muted", "banned"):
        members += [target_user(s) for s in STANDINGS]
    await ok(owner, "room:create", room=w.room, name=f"authz {row}", private=True,
             members=["writer", *members])
    await asyncio.gather(*(ok(conns[n], "room:join", room=w.room)
                           for n in ("writer", *members[:len(MEMBERS)])))

    async def write_target(s):
        body = f"the target of {s}: {w.word}"
        mentions = [USER[s]] if s in MEMBERS else []
        ack = w.saw(await ok(writer, "message:send", room=w.room, body=body,
                             client_msg_id=unique_id("t"), mentions=mentions))
        w.target[s], w.target_seq[s], w.target_body[s] = ack["msg_id"], ack["seq"], body

    async def write_own(s):
        ack = w.saw(await ok(conns[s], "message:send", room=w.room, body=f"{s} wrote this",
                             client_msg_id=unique_id("o")))
        w.own[s] = ack["msg_id"]

    await asyncio.gather(*(write_target(s) for s in STANDINGS), *(write_own(s) for s in MEMBERS))
    setup = [("member:role", dict(user=USER["moderator"], role="moderator")),
             ("member:role", dict(user=USER["admin"], role="admin")),
             ("member:mute", dict(user=USER["muted"])),
             ("member:ban", dict(user=USER["banned"], reason="the matrix"))]
    if spec.targets == "muted":
        setup += [("member:mute", dict(user=target_user(s))) for s in STANDINGS]
    elif spec.targets == "banned":
        setup += [("member:ban", dict(user=target_user(s))) for s in STANDINGS]
    for type, fields in setup:
        ack = w.saw(await ok(owner, type, room=w.room, **fields))
        assert ack.get("user") == fields["user"] and isinstance(ack.get("seq"), int), \
            f"setup: {type} {fields} changes the room: its ack needs a seq: {ack}"
    removed = await conns["banned"].wait_event(
        lambda f: f.get("type") == "room:removed" and f.get("room") == w.room, 5,
        "room:removed after member:ban")
    assert removed.get("reason") == "banned", removed
    if spec.synced:
        await synced(w)
    return w


async def synced(w):
    """The world's events are in PostgreSQL (the reads read it)."""
    def check():
        rows = pg_rows("SELECT coalesce(max(seq), 0) FROM room_events "
                       "WHERE tenant = %s AND room_id = %s", (w.tenant, w.room))
        assert rows[0][0] >= w.last_seq, f"room_events at {rows[0][0]} of {w.last_seq}"
    await eventually_async(check, timeout=10, what="the world in PostgreSQL")


# --------------------------------------------------------- rows: the requests

def send(extra):
    """message:send's fields plus extra(world, standing)."""
    def fields(w, s):
        return dict(room=w.room, client_msg_id=unique_id("c"), body=f"{s} sends", **extra(w, s))
    return fields


def check_send(w, s, ack):
    assert isinstance(ack.get("msg_id"), str) and isinstance(ack.get("seq"), int), ack


def check_msg_change(w, s, ack, msg_id):
    assert ack.get("msg_id") == msg_id and isinstance(ack.get("seq"), int), ack


def check_react(w, s, ack):
    assert (ack.get("msg_id"), ack.get("emoji"), ack.get("count"), ack.get("changed")) == \
        (w.target[s], "👍", 1, True), ack


def check_edits(w, s, ack, own):
    msg_id = w.own_or_target(s) if own else w.target[s]
    assert ack.get("msg_id") == msg_id, ack
    versions = ack.get("versions")
    assert isinstance(versions, list) and len(versions) == 1, ack
    body = f"{s} wrote this" if own else w.target_body[s]
    assert versions[0].get("body") == body and isinstance(versions[0].get("seq"), int), ack


def check_thread(w, s, ack):
    assert ack.get("room") == w.room and (ack.get("root") or {}).get("id") == w.target[s], ack
    assert ack.get("replies") == 0 and ack.get("messages") == [], ack


def check_search(w, s, ack):
    """ack {messages:[{room, rank, headline, msg}], has_more, next}."""
    results = ack.get("messages") or []
    found = [(r.get("msg") or {}).get("id") for r in results]
    assert w.target[s] in found, f"the target {w.target[s]} not among {found}: {ack}"
    assert all(r.get("room") == w.room for r in results), ack


def check_info(w, s, ack):
    room = ack.get("room") or {}
    assert (room.get("id"), room.get("kind"), room.get("private")) == (w.room, "group", True), ack
    assert ack.get("role") == ROLE[s], ack


def check_members(w, s, ack):
    assert ack.get("room") == w.room, ack
    members = {m.get("user"): m for m in ack.get("members") or []}
    assert members.get("owner", {}).get("role") == "admin", ack
    assert members.get(USER["moderator"], {}).get("role") == "moderator", ack
    assert USER["banned"] not in members, f"a banned user listed as a member: {ack}"
    users = [m.get("user") for m in ack["members"]]
    assert users == sorted(users), f"members not by user id: {users}"


def check_read(w, s, ack):
    assert (ack.get("room"), ack.get("read_seq")) == (w.room, w.target_seq[s]), ack


def check_receipt(read):
    def check(w, s, ack):
        seq = w.target_seq[s]
        assert (ack.get("room"), ack.get("delivered_seq"), ack.get("read_seq")) == \
            (w.room, seq, seq if read else 0), ack
    return check


def check_seen(w, s, ack):
    """Nobody has read anything in the world: no reader to list."""
    assert (ack.get("room"), ack.get("msg_id"), ack.get("seq")) == \
        (w.room, w.target[s], w.target_seq[s]), ack
    assert (ack.get("users"), ack.get("has_more")) == ([], False), ack


def check_update(w, s, ack):
    assert ack.get("room") == w.room and isinstance(ack.get("seq"), int), ack


def check_member(user_of):
    def check(w, s, ack):
        assert (ack.get("room"), ack.get("user")) == (w.room, user_of(s)), ack
        assert isinstance(ack.get("seq"), int), f"a change that changes something: {ack}"
    return check


def check_room_list(w, s, ack):
    rooms = {r.get("id"): r for r in ack.get("rooms") or []}
    if s in READERS:
        assert w.room in rooms, f"{s} does not see its room: {ack}"
        assert rooms[w.room].get("role") == ROLE[s], ack
    else:
        assert w.room not in rooms, f"{s} sees a room it is not in: {ack}"


def check_mention_list(w, s, ack):
    mentions = [m for m in ack.get("mentions") or [] if m.get("room") == w.room]
    if s in READERS:
        assert [m.get("msg", {}).get("id") for m in mentions] == [w.target[s]], ack
    else:
        # banned: mentioned before the ban, and no longer a reader.
        assert mentions == [], f"{s} lists mentions of a room it may not read: {ack}"


@dataclass
class Row:
    fields: Callable                 # (world, standing) -> the request's fields
    check: Callable                  # (world, standing, ack) -> raises when wrong
    targets: Optional[str] = None    # per-standing target users: member, muted, banned, newcomer
    synced: bool = False             # reads PostgreSQL: wait for the world's events there


ROWS = {
    "message:send reply_to": Row(send(lambda w, s: dict(reply_to=w.target[s])), check_send),
    "message:send mentions": Row(send(lambda w, s: dict(mentions=["writer"])), check_send),
    "message:send attachments": Row(send(lambda w, s: dict(attachments=[ATTACHMENT])),
                                    check_send),
    "message:edit writer's": Row(
        lambda w, s: dict(room=w.room, msg_id=w.target[s], body="edited"),
        lambda w, s, ack: check_msg_change(w, s, ack, w.target[s])),
    "message:edit own": Row(
        lambda w, s: dict(room=w.room, msg_id=w.own_or_target(s), body="edited"),
        lambda w, s, ack: check_msg_change(w, s, ack, w.own_or_target(s))),
    "message:delete writer's": Row(
        lambda w, s: dict(room=w.room, msg_id=w.target[s]),
        lambda w, s, ack: check_msg_change(w, s, ack, w.target[s])),
    "message:delete own": Row(
        lambda w, s: dict(room=w.room, msg_id=w.own_or_target(s)),
        lambda w, s, ack: check_msg_change(w, s, ack, w.own_or_target(s))),
    "message:react": Row(
        lambda w, s: dict(room=w.room, msg_id=w.target[s], emoji="👍", add=True), check_react),
    "message:edits writer's": Row(
        lambda w, s: dict(room=w.room, msg_id=w.target[s]),
        lambda w, s, ack: check_edits(w, s, ack, own=False), synced=True),
    "message:edits own": Row(
        lambda w, s: dict(room=w.room, msg_id=w.own_or_target(s)),
        lambda w, s, ack: check_edits(w, s, ack, own=True), synced=True),
    "message:thread": Row(lambda w, s: dict(room=w.room, msg_id=w.target[s]), check_thread,
                          synced=True),
    "message:search room": Row(lambda w, s: dict(q=w.word, room=w.room, limit=50), check_search,
                               synced=True),
    "room:info": Row(lambda w, s: dict(room=w.room), check_info, synced=True),
    "room:members": Row(lambda w, s: dict(room=w.room, limit=100), check_members, synced=True),
    "room:read": Row(lambda w, s: dict(room=w.room, seq=w.target_seq[s]), check_read),
    "receipt:delivered": Row(lambda w, s: dict(room=w.room, seq=w.target_seq[s]),
                             check_receipt(read=False)),
    "receipt:read": Row(lambda w, s: dict(room=w.room, seq=w.target_seq[s]),
                        check_receipt(read=True)),
    "message:seen": Row(lambda w, s: dict(room=w.room, msg_id=w.target[s]), check_seen),
    "room:update": Row(lambda w, s: dict(room=w.room, name=f"renamed by {s}",
                                         description="updated"), check_update),
    "member:add": Row(lambda w, s: dict(room=w.room, user=newcomer(s)), check_member(newcomer),
                      targets="newcomer"),
    "member:remove": Row(lambda w, s: dict(room=w.room, user=target_user(s)),
                         check_member(target_user), targets="member"),
    "member:remove self": Row(lambda w, s: dict(room=w.room, user=USER[s]),
                              check_member(lambda s: USER[s])),
    "member:role": Row(lambda w, s: dict(room=w.room, user=target_user(s), role="moderator"),
                       check_member(target_user), targets="member"),
    "member:mute": Row(lambda w, s: dict(room=w.room, user=target_user(s)),
                       check_member(target_user), targets="member"),
    "member:unmute": Row(lambda w, s: dict(room=w.room, user=target_user(s)),
                         check_member(target_user), targets="muted"),
    "member:ban": Row(lambda w, s: dict(room=w.room, user=target_user(s), reason="spam"),
                      check_member(target_user), targets="member"),
    "member:unban": Row(lambda w, s: dict(room=w.room, user=target_user(s)),
                        check_member(target_user), targets="banned"),
    "room:list": Row(lambda w, s: {}, check_room_list, synced=True),
    "mention:list": Row(lambda w, s: dict(limit=100), check_mention_list, synced=True),
}


# ---------------------------------------------------------------------- tests

def commands_naming_room():
    """{type: names a `room` field} for every entry of the command table."""
    text = COMMANDS_H.read_text()
    entries = list(re.finditer(r'\{\s*"([a-z_]+(?::[a-z_]+)*)"\s*,\s*PROTO_HANDLER\(', text))
    found = {}
    for m, nxt in zip(entries, entries[1:] + [None]):
        body = text[m.end():nxt.start() if nxt else len(text)]
        found[m.group(1)] = re.search(r'\{\s*"room"\s*,', body) is not None
    # The parser still understands the table: commands it must find, with room.
    assert {"ping", "room:join", "message:send"} <= set(found), \
        f"{COMMANDS_H}: the table's format changed? found {sorted(found)}"
    assert found["room:join"] and found["message:send"] and not found["ping"], found
    return found


def test_every_room_command_has_a_row():
    assert set(ROWS) == set(MATRIX), set(ROWS) ^ set(MATRIX)
    for row, cells in MATRIX.items():
        assert tuple(cells) == STANDINGS, f"{row}: columns {tuple(cells)}"
        assert all(v in (A, F, N, "conflict", "bad_request") for v in cells.values()), row
    covered = {command_of(row) for row in MATRIX}
    missing = [cmd for cmd, has_room in commands_naming_room().items()
               if has_room and cmd not in covered
               and not any(fnmatch.fnmatchcase(cmd, pat) for pat in NO_ROW)]
    assert not missing, f"commands naming a room without a row in MATRIX: {missing}"


@pytest.mark.parametrize("row", list(MATRIX))
def test_matrix(server, tenant, row):
    other_tenant = unique_id("t")

    async def main():
        w = await build_world(server, tenant, other_tenant, row)
        spec, cmd = ROWS[row], command_of(row)
        requests = {s: spec.fields(w, s) for s in STANDINGS}
        replies = await asyncio.gather(*(w.conn(s).request(cmd, **requests[s])
                                         for s in STANDINGS))
        wrong = []
        for s, reply in zip(STANDINGS, replies):
            want = MATRIX[row][s]
            if want == A:
                if reply.get("type") != "ack":
                    wrong.append(f"{s}: expected ack, got {reply}")
                    continue
                try:
                    spec.check(w, s, reply)
                except AssertionError as e:
                    wrong.append(f"{s}: ack, but {e}")
            elif reply.get("type") != "error" or reply.get("code") != want:
                wrong.append(f"{s}: expected {want}, got {reply}")
        assert not wrong, f"{row} ({cmd} {requests['member']}):\n  " + "\n  ".join(wrong)
    run(main(), timeout=30)
