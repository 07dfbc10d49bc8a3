#include "chat/receipt.h"
#include "chat/readview.h"
#include "net/conn.h"
#include "proto/reply.h"
#include "proc/srv.h"
#include "store/pg_queue.h"
#include "store/room_log.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* message:seen, receipt.c's read: who has read a message, from the
 * positions in PostgreSQL. */

/* At most this many readers named (then has_more). */
#define RECEIPT_SEEN_MAX "1000"

/*
 * message:seen, in the three columns of readview.h (reader; the message:
 * NULL not in PostgreSQL, false deleted; the answer). $5 the message id;
 * $6, $7 its seq and author when it was found in the room stream instead
 * (not yet synced), else NULL. The readers: members not banned, not the
 * author, read_seq at or past the message's seq, in the order of the index
 * room_members_read (furthest read first, then by user id; a reader has
 * delivered_seq > 0, said so that the partial index serves).
 */
static const char seen_sql[] =
"WITH " READVIEW_STANDING("$1", "$2", "$3", "$4::boolean") ","
" m AS (SELECT x.seq, x.user_id, x.deleted_at IS NOT NULL AS deleted FROM messages x, st"
"  WHERE st.reader AND $6::bigint IS NULL AND x.tenant = $1 AND x.room_id = $2"
"   AND x.id = $5"
"  UNION ALL SELECT $6::bigint, $7::text COLLATE \"C\", false FROM st"
"  WHERE st.reader AND $6::bigint IS NOT NULL),"
" u AS (SELECT x.user_id, row_number() OVER (ORDER BY x.read_seq DESC, x.user_id) AS n"
"  FROM room_members x, m WHERE NOT m.deleted AND x.tenant = $1 AND x.room_id = $2"
"   AND x.delivered_seq > 0 AND x.read_seq >= m.seq AND NOT x.banned"
"   AND x.user_id <> m.user_id"
"  ORDER BY x.read_seq DESC, x.user_id LIMIT " RECEIPT_SEEN_MAX " + 1)"
" SELECT st.reader, (SELECT NOT m.deleted FROM m),"
"  (SELECT jsonb_build_object('room', $2::text, 'msg_id', $5::text, 'seq', m.seq,"
"    'users', coalesce((SELECT jsonb_agg(u.user_id ORDER BY u.n) FROM u"
"     WHERE u.n <= " RECEIPT_SEEN_MAX "), '[]'::jsonb),"
"    'has_more', (SELECT count(*) FROM u) > " RECEIPT_SEEN_MAX ")::text"
"   FROM m WHERE NOT m.deleted)"
" FROM st";

struct seen_req {
	struct reply_req req;
	char room[UTIL_ID_MAX + 1];
	char msg_id[UTIL_ID_MAX + 1];
	char seq[24];			/* found in the room stream; "" until then */
	char author[UTIL_ID_MAX + 1];	/* with seq */
	char *answer;			/* owned: PostgreSQL's, while Redis is asked */
};

static void receipt__seen_run(struct seen_req *sr);

static void
receipt__seen_free(struct seen_req *sr)
{
	reply_req_done(&sr->req);
	free(sr->answer);
	free(sr);
}

/* code NULL: the ack; why NULL: the message is not there. */
static void
receipt__seen_end(struct seen_req *sr, const char *code, const char *why)
{
	if (code == NULL)
		readview_ack(sr->req.c, sr->req.idjson, sr->answer);
	else if (why == NULL)	/* not_found: the message */
		reply_error(sr->req.c, sr->req.idjson, code, "no message \"%s\" in room \"%s\"",
		    sr->msg_id, sr->room);
	else
		reply_error(sr->req.c, sr->req.idjson, code, "%s", why);
	receipt__seen_free(sr);
}

/* The message is not in PostgreSQL yet: its seq and author from the room
 * stream, then the statement again with them. */
static void
receipt__seen_peeked(void *arg, const struct rlog_result *r)
{
	struct seen_req *sr = arg;

	if (r->st == RLOG_NOT_FOUND) {
		receipt__seen_end(sr, "not_found", NULL);
	} else if (r->st != RLOG_OK || r->seq <= 0 || r->user == NULL || r->user[0] == '\0') {
		receipt__seen_end(sr, "unavailable", "message bus unavailable; retry");
	} else {
		snprintf(sr->seq, sizeof(sr->seq), "%lld", r->seq);
		snprintf(sr->author, sizeof(sr->author), "%s", r->user);
		receipt__seen_run(sr);
	}
}

/* A delete reaches Redis before PostgreSQL: a message deleted there is
 * not_found too. Redis down: PostgreSQL's answer stands. */
static void
receipt__seen_checked(void *arg, const struct rlog_result *r)
{
	struct seen_req *sr = arg;

	receipt__seen_end(sr, r->st == RLOG_NOT_FOUND ? "not_found" : NULL, NULL);
}

static void
receipt__seen_done(const PGresult *res, void *arg)
{
	struct seen_req *sr = arg;
	struct conn *c = sr->req.c;
	char why[160];

	if (!pgq_ok(res)) {
		receipt__seen_end(sr, "unavailable", "database unavailable; retry");
	} else if (PQnfields(res) != 3 || PQntuples(res) > 1) {
		receipt__seen_end(sr, "internal", "a read's answer has the wrong shape");
	} else if (PQntuples(res) == 0) {
		snprintf(why, sizeof(why), "no room \"%s\"", sr->room);
		receipt__seen_end(sr, "not_found", why);
	} else if (PQgetvalue(res, 0, 0)[0] != 't') {
		snprintf(why, sizeof(why), "not a reader of room \"%s\"", sr->room);
		receipt__seen_end(sr, "forbidden", why);
	} else if (PQgetisnull(res, 0, 1) && sr->seq[0] == '\0') {
		rlog_peek(c->id.tenant, sr->room, sr->msg_id, 1, receipt__seen_peeked, sr);
	} else if (PQgetisnull(res, 0, 1) || PQgetvalue(res, 0, 1)[0] != 't' ||
	    PQgetisnull(res, 0, 2)) {
		receipt__seen_end(sr, "not_found", NULL);
	} else {
		sr->answer = xstrdup(PQgetvalue(res, 0, 2));
		if (sr->seq[0] != '\0')
			receipt__seen_end(sr, NULL, NULL);
		else
			rlog_peek(c->id.tenant, sr->room, sr->msg_id, 0, receipt__seen_checked, sr);
	}
}

static void
receipt__seen_run(struct seen_req *sr)
{
	struct conn *c = sr->req.c;
	const char *params[7] = { c->id.tenant, sr->room, c->id.user, readview_admin(c),
	    sr->msg_id, sr->seq[0] ? sr->seq : NULL, sr->seq[0] ? sr->author : NULL };

	if (pgq_exec(srv.pg, seen_sql, 7, params, receipt__seen_done, sr) != 0)
		receipt__seen_end(sr, "unavailable", "database unavailable; retry");
}

void
receipt_seen(struct conn *c, const char *idjson, json_t *msg)
{
	struct seen_req *sr = xcalloc(1, sizeof(*sr));

	reply_req_init(&sr->req, c, idjson);
	snprintf(sr->room, sizeof(sr->room), "%s", json_string_value(json_object_get(msg, "room")));
	snprintf(sr->msg_id, sizeof(sr->msg_id), "%s",
	    json_string_value(json_object_get(msg, "msg_id")));
	receipt__seen_run(sr);
}
