"""chatd_sync (sql/005, 007) gives the same projection whatever order the
workers' batches commit in: the function itself, called on the test
PostgreSQL with batches as the sync consumers write them."""

import json

from chatd_harness import pg_connect, unique_id


def sync(conn, events):
    with conn.cursor() as cur:
        cur.execute("SELECT chatd_sync(%s::jsonb)", (json.dumps(events),))
    conn.commit()


def batch(tenant, room, seq, event):
    return [{"t": tenant, "r": room, "s": seq, "e": event}]


def new(room, seq, mid, body):
    return {"type": "message:new", "room": room, "seq": seq,
            "msg": {"id": mid, "seq": seq, "user": "alice", "kind": "text", "body": body,
                    "ts": 1796000000000 + seq, "client_msg_id": f"c{seq}", "reply_to": None,
                    "mentions": [], "attachments": []}}


def test_edit_and_delete_before_their_message(env):
    tenant, room = unique_id("t"), unique_id("r")
    conn = pg_connect()
    try:
        edit = {"type": "message:edited", "room": room, "seq": 2, "msg_id": "m1",
                "user": "alice", "body": "second", "edited_at": 1796000000005, "edits": 1}
        delete = {"type": "message:deleted", "room": room, "seq": 4, "msg_id": "m2",
                  "by": "alice", "ts": 1796000000009}
        # The edit and the delete commit first (another worker's batches)...
        sync(conn, batch(tenant, room, 2, edit))
        sync(conn, batch(tenant, room, 4, delete))
        with conn.cursor() as cur:
            cur.execute("SELECT msg_id FROM message_orphans WHERE tenant = %s ORDER BY 1",
                        (tenant,))
            assert [r[0] for r in cur.fetchall()] == ["m1", "m2"]
        # ...then the messages themselves.
        sync(conn, batch(tenant, room, 1, new(room, 1, "m1", "first")) +
             batch(tenant, room, 3, new(room, 3, "m2", "gone")))
        with conn.cursor() as cur:
            cur.execute("SELECT id, body, edits, edit_seq, deleted_by, delete_seq FROM messages"
                        " WHERE tenant = %s ORDER BY seq", (tenant,))
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM message_orphans WHERE tenant = %s", (tenant,))
            left = cur.fetchone()[0]
        assert rows == [("m1", "second", 1, 2, None, None), ("m2", "gone", 0, None, "alice", 4)]
        assert left == 0
        # The same batches again change nothing (idempotent).
        sync(conn, batch(tenant, room, 2, edit))
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM message_orphans WHERE tenant = %s", (tenant,))
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
