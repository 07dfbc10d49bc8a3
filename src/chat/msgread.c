#include "chat/msgread.h"
#include "chat/readview.h"
#include "net/conn.h"
#include "proto/proto.h"
#include "lib/util.h"

#include <stdio.h>

#define MSGREAD_THREAD_PAGE 50
#define MSGREAD_MENTIONS_PAGE 50

/*
 * message:thread: $5 a message id (the root, or one of its replies: then
 * its root), $6 before (a seq; NULL: the newest), $7 limit. The page is
 * the newest replies before `before`, oldest first; deleted ones are
 * tombstones, like the root.
 */
static const char thread_sql[] =
"WITH " READVIEW_STANDING("$1", "$2", "$3", "$4::boolean") ","
" t AS (SELECT coalesce(m.reply_to, m.id) AS root_id FROM messages m, st"
"  WHERE st.reader AND m.tenant = $1 AND m.room_id = $2 AND m.id = $5),"
" root AS (SELECT m.* FROM messages m, t"
"  WHERE m.tenant = $1 AND m.room_id = $2 AND m.id = t.root_id),"
" p AS (SELECT m.* FROM messages m, t"
"  WHERE m.tenant = $1 AND m.room_id = $2 AND m.reply_to = t.root_id"
"   AND ($6::bigint IS NULL OR m.seq < $6::bigint)"
"  ORDER BY m.seq DESC LIMIT $7::int + 1),"
" n AS (SELECT p.*, row_number() OVER (ORDER BY p.seq DESC) AS rn FROM p)"
" SELECT st.reader, (SELECT true FROM root),"
"  (SELECT jsonb_build_object('room', $2::text, 'root', " READVIEW_MSG("root") ","
"   'replies', (SELECT count(*) FROM messages x WHERE x.tenant = $1 AND x.room_id = $2"
"    AND x.reply_to = root.id),"
"   'messages', (SELECT coalesce(jsonb_agg(" READVIEW_MSG("n") " ORDER BY n.seq)"
"    FILTER (WHERE n.rn <= $7::int), '[]'::jsonb) FROM n),"
"   'has_more', (SELECT count(*) > $7::int FROM n))::text FROM root)"
" FROM st";

/*
 * message:edits: the author, a moderator or admin of the room, or a tenant
 * admin in a support room (an agent, a moderator there). The versions are
 * the message:new event's body, then each message:edited event's, in seq
 * order, from the room log (index room_events_msg). A deleted message's
 * versions stay readable to them (the audit).
 */
static const char edits_sql[] =
"WITH " READVIEW_STANDING("$1", "$2", "$3", "$4::boolean") ","
" msg AS (SELECT m.seq, (m.user_id = $3 OR st.role IN ('admin', 'moderator')"
"   OR (st.kind = 'support' AND $4::boolean)) AS allowed"
"  FROM messages m, st WHERE st.reader AND m.tenant = $1 AND m.room_id = $2 AND m.id = $5)"
" SELECT st.reader, msg.allowed, CASE WHEN msg.allowed THEN"
"  (SELECT jsonb_build_object('msg_id', $5::text, 'versions',"
"    coalesce(jsonb_agg(v.o ORDER BY v.seq), '[]'::jsonb)) FROM ("
"   SELECT e.seq, jsonb_build_object('seq', e.seq, 'body', e.payload->'msg'->'body',"
"     'ts', e.payload->'msg'->'ts') AS o"
"    FROM room_events e WHERE e.tenant = $1 AND e.room_id = $2 AND e.seq = msg.seq"
"   UNION ALL"
"   SELECT e.seq, jsonb_build_object('seq', e.seq, 'body', e.payload->'body',"
"     'ts', e.payload->'edited_at')"
"    FROM room_events e WHERE e.tenant = $1 AND e.room_id = $2"
"     AND e.type = 'message:edited' AND e.payload->>'msg_id' = $5::text) AS v)::text END"
" FROM st LEFT JOIN msg ON true";

/*
 * mention:list: $3 admin, $4 before (a mention id; NULL: the newest), $5
 * limit. Newest message first, then newest id (rooms synced by different
 * workers get their mention ids in any order); only mentions in rooms the
 * user still reads, and not of deleted messages.
 */
static const char mentions_sql[] =
"WITH p AS (SELECT x.id AS mention_id, m.* FROM mentions x"
"  JOIN messages m ON m.tenant = x.tenant AND m.room_id = x.room_id AND m.id = x.msg_id"
"  JOIN rooms r ON r.tenant = x.tenant AND r.id = x.room_id"
"  LEFT JOIN room_members mb ON mb.tenant = x.tenant AND mb.room_id = x.room_id"
"   AND mb.user_id = x.user_id"
"  WHERE x.tenant = $1 AND x.user_id = $2"
"   AND ($4::bigint IS NULL OR (m.ts, x.id) < (SELECT m2.ts, x2.id FROM mentions x2"
"    JOIN messages m2 ON m2.tenant = x2.tenant AND m2.room_id = x2.room_id AND m2.id = x2.msg_id"
"    WHERE x2.id = $4::bigint AND x2.tenant = $1 AND x2.user_id = $2))"
"   AND m.deleted_at IS NULL AND " READVIEW_READER("$3::boolean")
"  ORDER BY m.ts DESC, x.id DESC LIMIT $5::int + 1),"
" n AS (SELECT p.*, row_number() OVER (ORDER BY p.ts DESC, p.mention_id DESC) AS rn FROM p)"
" SELECT true, true, jsonb_build_object('mentions', coalesce(jsonb_agg(jsonb_build_object("
"   'id', n.mention_id, 'room', n.room_id, 'seq', n.seq, 'msg', " READVIEW_MSG("n") ")"
"   ORDER BY n.ts DESC, n.mention_id DESC) FILTER (WHERE n.rn <= $5::int), '[]'::jsonb),"
"  'has_more', count(*) > $5::int)::text"
" FROM n";

void
msgread_thread(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room = json_string_value(json_object_get(msg, "room"));
	const char *msg_id = json_string_value(json_object_get(msg, "msg_id"));
	long long before = proto_seq(json_object_get(msg, "before"));
	char p_before[24], limit[16], target[96];
	const char *params[7] = { c->id.tenant, room, c->id.user, readview_admin(c), msg_id,
	    before >= 0 ? p_before : NULL, limit };
	struct readview_query q = { .sql = thread_sql, .nparams = 7, .params = params,
	    .room = room, .target = target };

	snprintf(p_before, sizeof(p_before), "%lld", before);
	snprintf(limit, sizeof(limit), "%d", readview_limit(msg, "limit", MSGREAD_THREAD_PAGE));
	snprintf(target, sizeof(target), "message \"%s\"", msg_id);
	readview_run(c, idjson, &q);
}

void
msgread_edits(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room = json_string_value(json_object_get(msg, "room"));
	const char *msg_id = json_string_value(json_object_get(msg, "msg_id"));
	char target[96];
	const char *params[5] = { c->id.tenant, room, c->id.user, readview_admin(c), msg_id };
	struct readview_query q = { .sql = edits_sql, .nparams = 5, .params = params,
	    .room = room, .target = target,
	    .denied_why = "only the author, a moderator or an admin reads a message's edits" };

	snprintf(target, sizeof(target), "message \"%s\"", msg_id);
	readview_run(c, idjson, &q);
}

void
msgread_mentions(struct conn *c, const char *idjson, json_t *msg)
{
	long long before = proto_seq(json_object_get(msg, "before"));
	char p_before[24], limit[16];
	const char *params[5] = { c->id.tenant, c->id.user, readview_admin(c),
	    before >= 0 ? p_before : NULL, limit };
	struct readview_query q = { .sql = mentions_sql, .nparams = 5, .params = params };

	snprintf(p_before, sizeof(p_before), "%lld", before);
	snprintf(limit, sizeof(limit), "%d", readview_limit(msg, "limit", MSGREAD_MENTIONS_PAGE));
	readview_run(c, idjson, &q);
}
