"""Acked messages reach PostgreSQL, and survive the loss of Redis."""

from chatd_harness import Client, eventually, make_room, run, seqs

SENT = 60
HISTORY = 50  # history_on_join


def test_acked_messages_survive_redis_loss(make_server, tenant, db, redis_db):
    first = make_server()

    async def chat():
        alice = await Client.connect(first, "alice", tenant)
        room = await make_room(alice)
        acks = {}
        for i in range(1, SENT + 1):
            ack = await alice.say(room, f"message {i}", f"cm-{i}")
            acks[ack["seq"]] = ack
        return room, acks

    room, acks = run(chat())
    assert sorted(acks) == list(range(1, SENT + 1))

    def rows(sql):
        with db.cursor() as cur:
            cur.execute(sql, (tenant, room))
            return cur.fetchall()

    def all_in_postgres():
        messages = rows("SELECT seq, id, user_id, body, client_msg_id FROM messages "
                        "WHERE tenant = %s AND room_id = %s ORDER BY seq")
        expected = [(s, acks[s]["msg_id"], "alice", f"message {s}", f"cm-{s}")
                    for s in sorted(acks)]
        assert messages == expected, f"{len(messages)} of {SENT} in messages"
        events = rows("SELECT seq, type FROM room_events "
                      "WHERE tenant = %s AND room_id = %s ORDER BY seq")
        assert events == [(s, "message:new") for s in sorted(acks)], f"{len(events)} in room_events"

    # Within 2 s of the last ack (earlier acks had a little longer).
    eventually(all_in_postgres, timeout=2.0, what="acked messages in PostgreSQL")

    assert first.stop() == 0
    redis_db.flushall()
    second = make_server()

    async def rejoin():
        bob = await Client.connect(second, "bob", tenant)
        joined = await bob.ok("room:join", room=room)
        assert joined["last_seq"] == SENT
        events = joined["events"]
        assert seqs(events) == list(range(SENT - HISTORY + 1, SENT + 1))
        for event in events:
            assert event["type"] == "message:new" and event["room"] == room, event
            assert event["msg"]["id"] == acks[event["seq"]]["msg_id"], event
            assert event["msg"]["body"] == f"message {event['seq']}", event
        ack = await bob.say(room, "after the restart")
        assert ack["seq"] == SENT + 1
        assert (await bob.next_event("message:new"))["seq"] == SENT + 1
    run(rejoin())
