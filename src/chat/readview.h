#ifndef CHATD_READVIEW_H
#define CHATD_READVIEW_H

#include <jansson.h>

/*
 * What the read commands (roomread.c, msgread.c, search.c) share, all
 * answered from PostgreSQL: the SQL of who reads a room and of a message's
 * current state, and one way to run a read and answer it. PostgreSQL
 * builds each answer as JSON (jsonb_build_object); C checks the standing
 * columns and forwards the text.
 */

struct conn;

/* A timestamptz as milliseconds since the epoch (what events carry). */
#define READVIEW_MS(x) "(extract(epoch FROM " x ") * 1000)::bigint"

/* The room's newest seq known to PostgreSQL (the sync consumer's): the
 * floor under Redis' counter (roomread_counter, roomread.h), which is
 * ahead by what the sync has not written yet and gone after a flush. */
#define READVIEW_PG_LAST(tenant, room) \
"(SELECT coalesce(max(e.seq), 0) FROM room_events e WHERE e.tenant = " tenant \
" AND e.room_id = " room ")"

/*
 * A reader (docs/protocol.md section 7): a member who is not banned, or,
 * in a public room, any user of the tenant who is not banned; a tenant
 * admin reads every support room. The SQL form of standing_reader()
 * (standing.h), for reads that check and answer in one statement; support
 * rooms count as private whatever their flag (the protocol says they
 * always are). Aliases: r the room (rooms), mb the user's membership
 * (room_members, LEFT JOINed); admin is the SQL of the token's admin flag.
 */
#define READVIEW_READER(admin) \
"(NOT coalesce(mb.banned, false) AND (mb.user_id IS NOT NULL" \
" OR (NOT r.private AND r.kind <> 'support') OR (r.kind = 'support' AND " admin ")))"

/* The CTE st: one row (the room's columns, the user's role and read_seq,
 * reader) when the room exists in the tenant, none when it does not. */
#define READVIEW_STANDING(tenant, room, user, admin) \
"st AS (SELECT r.*, mb.role, mb.read_seq, " READVIEW_READER(admin) " AS reader" \
" FROM rooms r LEFT JOIN room_members mb ON mb.tenant = r.tenant AND mb.room_id = r.id" \
"  AND mb.user_id = " user \
" WHERE r.tenant = " tenant " AND r.id = " room ")"

/*
 * A message in its current state, as a jsonb, from a row a of messages
 * (or of a derived table with its columns): the fields of message:new's
 * msg (id, seq, user, kind, body, ts, client_msg_id, reply_to (null when
 * none), mentions, attachments) plus edits, edited_at (when edited), reactions
 * ({emoji: count}) and replies (how many messages reply to it, deleted
 * ones included: a thread lists them as tombstones). A deleted message is
 * a tombstone: deleted:true, body "", no attachments, mentions or
 * reactions, edits 0, no edited_at.
 */
#define READVIEW_MSG(a) \
"(jsonb_build_object('id', " a ".id, 'seq', " a ".seq, 'user', " a ".user_id, 'kind', " a ".kind," \
"  'ts', " READVIEW_MS(a ".ts") ", 'client_msg_id', " a ".client_msg_id," \
"  'reply_to', " a ".reply_to," \
"  'replies', (SELECT count(*) FROM messages rp WHERE rp.tenant = " a ".tenant" \
"   AND rp.room_id = " a ".room_id AND rp.reply_to = " a ".id))" \
" || CASE WHEN " a ".deleted_at IS NOT NULL THEN jsonb_build_object('deleted', true, 'body', ''," \
"   'attachments', '[]'::jsonb, 'mentions', '[]'::jsonb, 'edits', 0, 'reactions', '{}'::jsonb)" \
"  ELSE jsonb_build_object('body', " a ".body, 'attachments', " a ".attachments," \
"   'mentions', to_jsonb(" a ".mentions), 'edits', " a ".edits," \
"   'reactions', (SELECT coalesce(jsonb_object_agg(rc.emoji, rc.n), '{}'::jsonb) FROM" \
"    (SELECT mr.emoji, count(*) AS n FROM message_reactions mr WHERE mr.tenant = " a ".tenant" \
"     AND mr.room_id = " a ".room_id AND mr.msg_id = " a ".id AND mr.present" \
"     GROUP BY mr.emoji) AS rc))" \
"   || CASE WHEN " a ".edited_at IS NULL THEN '{}'::jsonb" \
"    ELSE jsonb_build_object('edited_at', " READVIEW_MS(a ".edited_at") ") END END)"

/*
 * One read: a statement whose answer is exactly one row of three columns,
 * checked in the order of docs/protocol.md section 7:
 *   no row                 not_found: no such room in the tenant
 *   column 0 false         forbidden: not a reader (or not a member)
 *   column 1 NULL          not_found: the target (q->target) is not there
 *   column 1 false         q->denied_code, q->denied_why
 *   column 2               the ack's fields, as a JSON object
 * A read without a room or target returns true, true, the object.
 */
struct readview_query {
	const char *sql;
	int nparams;
	const char *const *params;
	const char *room;		/* for the messages; NULL: the read has none */
	const char *forbidden_why;	/* column 0 false; NULL: "not a reader of room" */
	const char *target;		/* e.g. `message "m1"`; NULL: none */
	const char *denied_code;	/* NULL: "forbidden" */
	const char *denied_why;		/* NULL: none can be denied */
	/* Sends the ack's object (NULL: readview_ack); it may add to it first. */
	void (*answer)(struct conn *c, const char *idjson, const char *obj);
};

/* Runs q (the strings are copied) and answers c's request once. */
void readview_run(struct conn *c, const char *idjson, const struct readview_query *q);

/* The ack of an object text {..}: its fields after type and id. */
void readview_ack(struct conn *c, const char *idjson, const char *obj);

/* A PK_LIMIT field, or dflt when absent. */
int readview_limit(json_t *msg, const char *field, int dflt);

/* The token's admin flag as a SQL boolean parameter. */
const char *readview_admin(const struct conn *c);

#endif
