#include "chat/history.h"
#include "store/redis.h"
#include "proc/log.h"
#include "net/outbuf.h"
#include "store/pg_queue.h"
#include "store/redis_link.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Events from..to, at most $5, oldest first (the first ones when the range
 * is larger), and the room's highest synced seq even when there is none.
 * A deleted message's message:new is its tombstone (HISTORY_TOMBSTONE), and
 * its edits have an empty body. */
#define HISTORY_SQL(order) \
"SELECT m.mx, e.seq, CASE WHEN e.type = 'message:new' AND EXISTS (SELECT 1 FROM messages d" \
"  WHERE d.tenant = $1 AND d.room_id = $2 AND d.seq = e.seq AND d.deleted_at IS NOT NULL)" \
"  THEN jsonb_set(e.payload, '{msg}', (e.payload->'msg') || '" HISTORY_TOMBSTONE "')::text" \
"  WHEN e.type = 'message:edited' AND EXISTS (SELECT 1 FROM messages d" \
"  WHERE d.tenant = $1 AND d.room_id = $2 AND d.id = e.payload->>'msg_id'" \
"  AND d.deleted_at IS NOT NULL) THEN jsonb_set(e.payload, '{body}', '\"\"')::text" \
"  ELSE e.payload::text END FROM" \
" (SELECT coalesce(max(seq), 0) AS mx FROM room_events WHERE tenant = $1 AND room_id = $2) AS m" \
" LEFT JOIN LATERAL (SELECT seq, type, payload FROM room_events" \
"  WHERE tenant = $1 AND room_id = $2 AND seq >= $3 AND seq <= $4" \
"  ORDER BY seq " order " LIMIT $5) AS e ON true" \
" ORDER BY e.seq"

/* What a deleted message's msg object shows instead of its content. */
#define HISTORY_TOMBSTONE "{\"deleted\":true,\"body\":\"\",\"attachments\":[],\"mentions\":[]}"

static const char history_sql_first[] = HISTORY_SQL("ASC");
static const char history_sql_newest[] = HISTORY_SQL("DESC");

struct history_op {
	char tenant[UTIL_ID_MAX + 1];
	char room[UTIL_ID_MAX + 1];
	struct history_query q;
	struct history_result res;
	int cap;
	int cold;			/* Redis had no counter for the room */
	char **hot;			/* from Redis, oldest first; owned */
	int nhot;
	void (*cb)(const struct history_result *h, void *arg);
	void *arg;
};

static int64_t
history__seq(const char *ev)
{
	return outbuf_scan_seq(ev, strlen(ev));
}

static void
history__clear(struct history_op *op)
{
	for (int i = 0; i < op->res.n; i++)
		free(op->res.events[i]);
	op->res.n = 0;
}

static void
history__free(struct history_op *op)
{
	history__clear(op);
	free(op->res.events);
	for (int i = 0; i < op->nhot; i++)
		free(op->hot[i]);
	free(op->hot);
	free(op);
}

static void
history__push(struct history_op *op, char *text)
{
	if (op->res.n == op->cap) {
		op->cap = op->cap ? op->cap * 2 : 64;
		op->res.events = xrealloc(op->res.events, (size_t)op->cap * sizeof(char *));
	}
	op->res.events[op->res.n++] = text;
}

static void
history__finish(struct history_op *op, int ok)
{
	op->cb(ok ? &op->res : NULL, op->arg);
	history__free(op);
}

/* Resolves from/to against the room's last seq; 0 when there is nothing
 * to read (or the gap is too large). */
static long long
history__resolve(struct history_op *op, long long last)
{
	const struct history_query *q = &op->q;
	long long from, to;

	op->res.last_seq = last;
	to = q->to < 0 || q->to > last ? last : q->to;
	if (q->from < 0) {
		from = to - q->count + 1;
	} else {
		from = q->from;
		if (q->to < 0 && q->max_gap > 0 && last - from + 1 > q->max_gap) {
			op->res.recovered = 0;
			return 0;
		}
		/* Not "to > from + count - 1": from may be near INT64_MAX. */
		if (to - from >= q->count)
			to = from + q->count - 1;
	}
	if (from < 1)
		from = 1;
	op->res.from = from;
	op->res.to = to;
	return to >= from ? to - from + 1 : 0;
}

/* Puts the newest events back into an expired or flushed stream, so the
 * next reads are served by Redis again. A send that raced ahead makes
 * these XADDs fail, which is harmless. */
static void
history__warm(struct history_op *op)
{
	char kstream[200], id[32], maxlen[16], ttl[16];

	if (!rlink_up(srv.rcmd) || op->res.n == 0 ||
	    history__seq(op->res.events[op->res.n - 1]) != op->res.last_seq)
		return;
	redis_key(kstream, sizeof(kstream), op->tenant, op->room, "stream");
	snprintf(maxlen, sizeof(maxlen), "%d", srv.cfg->stream_maxlen);
	snprintf(ttl, sizeof(ttl), "%d", srv.cfg->stream_ttl_s);
	for (int i = 0; i < op->res.n; i++) {
		snprintf(id, sizeof(id), "%lld-0", (long long)history__seq(op->res.events[i]));
		rlink_cmd(srv.rcmd, NULL, NULL, "XADD %s MAXLEN %s %s e %s", kstream, maxlen, id,
		    op->res.events[i]);
	}
	rlink_cmd(srv.rcmd, NULL, NULL, "EXPIRE %s %s", kstream, ttl);
}

/* PostgreSQL rows first (the older part), then what Redis had that is newer. */
static void
history__from_pg(const PGresult *res, void *arg)
{
	struct history_op *op = arg;
	int64_t last_pg = 0, hot_first;
	int rows;

	if (!pgq_ok(res)) {
		history__finish(op, 0);
		return;
	}
	rows = PQntuples(res);
	if (rows > 0)
		last_pg = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (op->cold && history__resolve(op, last_pg) == 0) {
		history__finish(op, 1);
		return;
	}
	hot_first = op->nhot ? history__seq(op->hot[0]) : INT64_MAX;
	for (int i = 0; i < rows; i++) {
		long long seq;

		if (PQgetisnull(res, i, 1))
			continue;
		seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		if (seq >= op->res.from && seq <= op->res.to && seq < hot_first)
			history__push(op, xstrdup(PQgetvalue(res, i, 2)));
	}
	for (int i = 0; i < op->nhot; i++) {
		if (history__seq(op->hot[i]) >= op->res.from && history__seq(op->hot[i]) <= op->res.to) {
			history__push(op, op->hot[i]);
			op->hot[i] = NULL;
		}
	}
	/* Redis lost the room, or its stream expired after stream_ttl_s. */
	if (op->cold || op->nhot == 0)
		history__warm(op);
	history__finish(op, 1);
}

static int
history__query_pg(struct history_op *op, const char *sql, long long from, long long to,
    long long limit)
{
	char p_from[24], p_to[24], p_limit[24];
	const char *params[5] = { op->tenant, op->room, p_from, p_to, p_limit };

	snprintf(p_from, sizeof(p_from), "%lld", from);
	snprintf(p_to, sizeof(p_to), "%lld", to);
	snprintf(p_limit, sizeof(p_limit), "%lld", limit);
	return pgq_exec(srv.pg, sql, 5, params, history__from_pg, op);
}

/* Redis had no counter for the room (flushed, or a new Redis): PostgreSQL
 * is the whole truth; resolve the range once its max is known. */
static void
history__cold(struct history_op *op)
{
	const struct history_query *q = &op->q;
	long long to = q->to < 0 ? INT64_MAX : q->to;
	int rc;

	op->cold = 1;
	if (q->from < 0)
		rc = history__query_pg(op, history_sql_newest, 1, to, q->count > 0 ? q->count : 1);
	else
		rc = history__query_pg(op, history_sql_first, q->from, to, q->count > 0 ? q->count : 1);
	if (rc != 0)
		history__finish(op, 0);
}

/* ev (owned) without the content of its deleted message: a message:new
 * becomes the tombstone, a message:edited loses its body. */
static char *
history__tombstone(char *ev)
{
	json_t *root = json_loads(ev, 0, NULL), *msg, *t;
	char *out;

	msg = root ? json_object_get(root, "msg") : NULL;
	if (json_is_object(msg)) {
		t = json_loads(HISTORY_TOMBSTONE, 0, NULL);
		if (t != NULL)
			json_object_update(msg, t);
		json_decref(t);
	} else if (json_is_object(root) && json_object_get(root, "body") != NULL) {
		json_object_set_new(root, "body", json_string(""));
	}
	out = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (out == NULL)
		return ev;
	free(ev);
	return out;
}

/* The script's last element: the seqs of the events of deleted messages. */
static void
history__mark_deleted(struct history_op *op, const redisReply *del)
{
	for (int i = 0; i < op->nhot; i++) {
		int64_t seq = history__seq(op->hot[i]);

		for (size_t k = 0; k < del->elements; k++)
			if (del->element[k]->type == REDIS_REPLY_INTEGER &&
			    del->element[k]->integer == seq) {
				op->hot[i] = history__tombstone(op->hot[i]);
				break;
			}
	}
}

static void
history__from_redis(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct history_op *op = priv;
	long long want;

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR) {
			log_warn("history script failed: %s", r->str);
			if (strncmp(r->str, "NOSCRIPT", 8) == 0)
				redis_scripts_missing();
		}
		history__finish(op, 0);
		return;
	}
	if (r->element[0]->integer < 0) {
		history__cold(op);
		return;
	}
	want = history__resolve(op, r->element[0]->integer);
	if (want == 0) {
		history__finish(op, 1);
		return;
	}
	op->hot = xcalloc(r->elements, sizeof(char *));
	for (size_t i = 1; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			op->hot[op->nhot++] = xstrdup(r->element[i]->str);
	if (r->element[r->elements - 1]->type == REDIS_REPLY_ARRAY)
		history__mark_deleted(op, r->element[r->elements - 1]);
	if (op->nhot > 0 && history__seq(op->hot[0]) <= op->res.from) {
		for (int i = 0; i < op->nhot; i++) {
			int64_t seq = history__seq(op->hot[i]);

			if (seq >= op->res.from && seq <= op->res.to) {
				history__push(op, op->hot[i]);
				op->hot[i] = NULL;
			}
		}
		if (op->res.n == want) {
			history__finish(op, 1);
			return;
		}
		history__clear(op);
	}
	/* The stream no longer holds the start of the range. */
	if (history__query_pg(op, history_sql_first, op->res.from, op->res.to, want) != 0)
		history__finish(op, 0);
}

json_t *
history_events_json(const struct history_result *h)
{
	json_t *events = json_array();

	for (int i = 0; i < h->n; i++) {
		json_t *ev = json_loads(h->events[i], 0, NULL);

		if (ev != NULL)
			json_array_append_new(events, ev);
	}
	return events;
}

int
history_read(const char *tenant, const char *room_id, const struct history_query *q,
    void (*cb)(const struct history_result *h, void *arg), void *arg)
{
	char kseq[200], kstream[200], kdel[200], from[24], to[24], count[24];
	struct history_op *op;

	if (!redis_ready())
		return -1;
	op = xcalloc(1, sizeof(*op));
	snprintf(op->tenant, sizeof(op->tenant), "%s", tenant);
	snprintf(op->room, sizeof(op->room), "%s", room_id);
	op->q = *q;
	if (op->q.count < 0)
		op->q.count = 0;
	op->res.recovered = 1;
	op->cb = cb;
	op->arg = arg;
	redis_key(kseq, sizeof(kseq), tenant, room_id, "seq");
	redis_key(kstream, sizeof(kstream), tenant, room_id, "stream");
	redis_key(kdel, sizeof(kdel), tenant, room_id, "deleted");
	snprintf(from, sizeof(from), "%lld", q->from);
	snprintf(to, sizeof(to), "%lld", q->to);
	/* Redis' COUNT 0 means no limit: ask for one and use none. */
	snprintf(count, sizeof(count), "%d", op->q.count > 0 ? op->q.count : 1);
	if (rlink_cmd(srv.rcmd, history__from_redis, op, "EVALSHA %s 3 %s %s %s %s %s %s",
	    redis_hist_sha(), kseq, kstream, kdel, from, to, count) != 0) {
		free(op);
		return -1;
	}
	return 0;
}
