#include "chat/roomread.h"
#include "chat/presence.h"
#include "chat/readview.h"
#include "net/conn.h"
#include "proto/proto.h"
#include "proto/reply.h"
#include "proc/srv.h"
#include "store/pg_queue.h"
#include "store/redis.h"
#include "store/redis_link.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* unread counts at most this many messages: a room read long ago costs a
 * bounded scan, and a client shows "999+" anyway. */
#define ROOMREAD_UNREAD_MAX "1000"
#define ROOMREAD_MEMBERS_PAGE 50
/* A mute until unmuted, as member:mute stores and sends it (moderate.h);
 * an 'infinity' left by hand reads the same. */
#define ROOMREAD_FOREVER "'9999-12-31 23:59:59.999+00'::timestamptz"

/*
 * room:list: every room the user is a member of and not banned from, by
 * id. last_seq here is PostgreSQL's; Redis' counter (ahead by what the
 * sync consumer has not written yet) replaces it when larger.
 */
static const char list_sql[] =
"SELECT r.id, r.name, r.kind, r.private, mb.role, mb.read_seq,"
" " READVIEW_PG_LAST("r.tenant", "r.id") ","
" (SELECT count(*) FROM (SELECT 1 FROM messages m WHERE m.tenant = r.tenant"
"   AND m.room_id = r.id AND m.seq > mb.read_seq AND m.user_id <> mb.user_id"
"   AND m.deleted_at IS NULL LIMIT " ROOMREAD_UNREAD_MAX ") AS u),"
" (SELECT count(*) FROM mentions x JOIN messages m ON m.tenant = x.tenant"
"   AND m.room_id = x.room_id AND m.id = x.msg_id"
"  WHERE x.tenant = r.tenant AND x.user_id = mb.user_id AND x.room_id = r.id"
"   AND x.seq > mb.read_seq AND m.deleted_at IS NULL)"
" FROM room_members mb JOIN rooms r ON r.tenant = mb.tenant AND r.id = mb.room_id"
" WHERE mb.tenant = $1 AND mb.user_id = $2 AND NOT mb.banned"
" ORDER BY r.id";

/* The members counted for room:info's online (chat/presence.c). */
#define ROOMREAD_ONLINE_MAX "10000"

/* $1 tenant, $2 room, $3 user, $4 admin, $5 Redis' counter (0: unknown).
 * member_ids goes to presence_info_ack, which counts them as online. */
static const char info_sql[] =
"WITH " READVIEW_STANDING("$1", "$2", "$3", "$4::boolean")
" SELECT st.reader, true, CASE WHEN st.reader THEN jsonb_build_object("
"  'room', jsonb_build_object('id', st.id, 'name', st.name, 'kind', st.kind,"
"   'private', st.private, 'description', st.description, 'created_by', st.created_by,"
"   'created_at', " READVIEW_MS("st.created_at") ","
"   'members', (SELECT count(*) FROM room_members x WHERE x.tenant = $1 AND x.room_id = $2"
"    AND NOT x.banned),"
"   'last_seq', greatest($5::bigint, " READVIEW_PG_LAST("$1", "$2") ")),"
"  'role', st.role,"
"  'member_ids', (SELECT string_agg(y.user_id, ',') FROM (SELECT x.user_id FROM room_members x"
"   WHERE x.tenant = $1 AND x.room_id = $2 AND NOT x.banned LIMIT " ROOMREAD_ONLINE_MAX ") y)"
"  )::text END"
" FROM st";

/* $5 after (NULL: from the first), $6 limit. */
static const char members_sql[] =
"WITH " READVIEW_STANDING("$1", "$2", "$3", "$4::boolean") ","
" p AS (SELECT x.user_id, x.role, x.muted_until, x.joined_at FROM room_members x, st"
"  WHERE st.reader AND x.tenant = $1 AND x.room_id = $2 AND NOT x.banned"
"   AND ($5::text IS NULL OR x.user_id > $5::text)"
"  ORDER BY x.user_id LIMIT $6::int + 1),"
" n AS (SELECT p.*, row_number() OVER (ORDER BY p.user_id) AS rn FROM p)"
" SELECT st.reader, true, CASE WHEN st.reader THEN (SELECT jsonb_build_object('room', $2::text,"
"  'members', coalesce(jsonb_agg(jsonb_build_object('user', n.user_id, 'role', n.role,"
"    'muted_until', CASE WHEN n.muted_until > now() THEN"
"     " READVIEW_MS("least(n.muted_until, " ROOMREAD_FOREVER ")") " END,"
"    'joined_at', " READVIEW_MS("n.joined_at") ") ORDER BY n.user_id)"
"   FILTER (WHERE n.rn <= $6::int), '[]'::jsonb),"
"  'has_more', count(*) > $6::int) FROM n)::text END"
" FROM st";

/* ---------------------------------------------------------------- room:list */

struct list_req {
	struct reply_req req;
	json_t *rooms;		/* owned: the answer, last_seq from PostgreSQL */
};

static void
roomread__list_free(struct list_req *lr)
{
	reply_req_done(&lr->req);
	json_decref(lr->rooms);
	free(lr);
}

static void
roomread__list_answer(struct list_req *lr)
{
	reply_ack(lr->req.c, lr->req.idjson, json_pack("{s:O}", "rooms", lr->rooms));
	roomread__list_free(lr);
}

/* MGET of the rooms' counters: a counter ahead of PostgreSQL wins. Redis
 * down or a counter gone (flushed): PostgreSQL's value stands. */
static void
roomread__list_counters(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct list_req *lr = priv;
	size_t i;
	json_t *room;

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY &&
	    r->elements == json_array_size(lr->rooms)) {
		json_array_foreach(lr->rooms, i, room) {
			long long seq;

			if (r->element[i]->type != REDIS_REPLY_STRING ||
			    util_parse_ll(r->element[i]->str, 0, INT64_MAX, &seq) != 0)
				continue;
			if (seq > json_integer_value(json_object_get(room, "last_seq")))
				json_object_set_new(room, "last_seq", json_integer(seq));
		}
	}
	roomread__list_answer(lr);
}

static void
roomread__list_mget(struct list_req *lr)
{
	size_t n = json_array_size(lr->rooms), i;
	const char **argv;
	char (*keys)[200];
	json_t *room;
	int rc = -1;

	if (n == 0 || !rlink_up(srv.rcmd)) {
		roomread__list_answer(lr);
		return;
	}
	argv = xcalloc(n + 1, sizeof(*argv));
	keys = xcalloc(n, sizeof(*keys));
	argv[0] = "MGET";
	json_array_foreach(lr->rooms, i, room) {
		redis_key(keys[i], sizeof(keys[i]), lr->req.c->id.tenant,
		    json_string_value(json_object_get(room, "id")), "seq");
		argv[i + 1] = keys[i];
	}
	rc = rlink_cmdargv(srv.rcmd, roomread__list_counters, lr, (int)n + 1, argv, NULL);
	free(argv);
	free(keys);
	if (rc != 0)
		roomread__list_answer(lr);
}

static json_int_t
roomread__int(const PGresult *res, int row, int col)
{
	return (json_int_t)strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static void
roomread__listed(const PGresult *res, void *arg)
{
	struct list_req *lr = arg;

	if (!pgq_ok(res)) {
		reply_error(lr->req.c, lr->req.idjson, "unavailable", "database unavailable; retry");
		roomread__list_free(lr);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(lr->rooms, json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:I, s:I, s:I}",
		    "id", PQgetvalue(res, i, 0), "name", PQgetvalue(res, i, 1),
		    "kind", PQgetvalue(res, i, 2), "private", PQgetvalue(res, i, 3)[0] == 't',
		    "role", PQgetvalue(res, i, 4), "read_seq", roomread__int(res, i, 5),
		    "last_seq", roomread__int(res, i, 6), "unread", roomread__int(res, i, 7),
		    "mentions", roomread__int(res, i, 8)));
	roomread__list_mget(lr);
}

void
roomread_list(struct conn *c, const char *idjson, json_t *msg)
{
	struct list_req *lr = xcalloc(1, sizeof(*lr));
	const char *params[2] = { c->id.tenant, c->id.user };

	(void)msg;
	reply_req_init(&lr->req, c, idjson);
	lr->rooms = json_array();
	if (pgq_exec(srv.pg, list_sql, 2, params, roomread__listed, lr) != 0) {
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
		roomread__list_free(lr);
	}
}

/* ---------------------------------------------------- the counter, room:info */

struct counter_req {
	roomread_counter_cb *cb;
	void *arg;
};

static void
roomread__counter(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct counter_req *q = priv;
	long long seq = 0;

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_STRING &&
	    util_parse_ll(r->str, 0, INT64_MAX, &seq) != 0)
		seq = 0;
	q->cb(q->arg, seq);
	free(q);
}

void
roomread_counter(const char *tenant, const char *room, roomread_counter_cb *cb, void *arg)
{
	struct counter_req *q = xcalloc(1, sizeof(*q));
	char key[200];

	q->cb = cb;
	q->arg = arg;
	redis_key(key, sizeof(key), tenant, room, "seq");
	if (!rlink_up(srv.rcmd) || rlink_cmd(srv.rcmd, roomread__counter, q, "GET %s", key) != 0) {
		free(q);
		cb(arg, 0);
	}
}

/* room:info needs the room's newest seq: Redis' counter first (one GET),
 * then the statement, which takes the larger of it and PostgreSQL's. */
struct info_req {
	struct reply_req req;
	char room[UTIL_ID_MAX + 1];
};

static void
roomread__info_counted(void *arg, long long counter)
{
	struct info_req *ir = arg;
	struct conn *c = ir->req.c;
	char last[24];
	const char *params[5] = { c->id.tenant, ir->room, c->id.user, readview_admin(c), last };
	struct readview_query q = { .sql = info_sql, .nparams = 5, .params = params,
	    .room = ir->room, .answer = presence_info_ack };

	snprintf(last, sizeof(last), "%lld", counter);
	readview_run(c, ir->req.idjson, &q);
	reply_req_done(&ir->req);
	free(ir);
}

void
roomread_info(struct conn *c, const char *idjson, json_t *msg)
{
	struct info_req *ir = xcalloc(1, sizeof(*ir));

	reply_req_init(&ir->req, c, idjson);
	snprintf(ir->room, sizeof(ir->room), "%s", json_string_value(json_object_get(msg, "room")));
	roomread_counter(c->id.tenant, ir->room, roomread__info_counted, ir);
}

/* ------------------------------------------------------------- room:members */

void
roomread_members(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room = json_string_value(json_object_get(msg, "room"));
	char limit[16];
	const char *params[6] = { c->id.tenant, room, c->id.user, readview_admin(c),
	    json_string_value(json_object_get(msg, "after")), limit };
	struct readview_query q = { .sql = members_sql, .nparams = 6, .params = params,
	    .room = room,
	    .answer = presence_members_ack };

	snprintf(limit, sizeof(limit), "%d", readview_limit(msg, "limit", ROOMREAD_MEMBERS_PAGE));
	readview_run(c, idjson, &q);
}
