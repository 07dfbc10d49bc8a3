#include "history.h"
#include "bus.h"
#include "log.h"
#include "obuf.h"
#include "pgq.h"
#include "rlink.h"
#include "srv.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The newest `limit` events with from <= seq <= to, oldest first, and the
 * room's highest synced seq (also when there is no event). */
static const char history_sql[] =
"SELECT m.mx, e.seq, e.payload::text FROM"
" (SELECT coalesce(max(seq), 0) AS mx FROM room_events WHERE tenant = $1 AND room_id = $2) AS m"
" LEFT JOIN LATERAL (SELECT seq, payload FROM room_events"
"  WHERE tenant = $1 AND room_id = $2 AND seq >= $3 AND seq <= $4"
"  ORDER BY seq DESC LIMIT $5) AS e ON true"
" ORDER BY e.seq";

#define HISTORY_MAX_GAP 1000

struct history_op {
	char tenant[UTIL_ID_MAX + 1];
	char room[UTIL_ID_MAX + 1];
	long long since;
	int64_t from, to;		/* the range wanted */
	int cold;			/* Redis knew nothing of the room */
	struct history_result res;
	int cap;
	char **hot;			/* from Redis, oldest first; owned */
	int nhot;
	void (*cb)(const struct history_result *h, void *arg);
	void *arg;
};

static void
history__free(struct history_op *op)
{
	for (int i = 0; i < op->res.n; i++)
		free(op->res.events[i]);
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
	hot_first = op->nhot ? obuf_scan_seq(op->hot[0], strlen(op->hot[0])) : INT64_MAX;
	for (int i = 0; i < rows; i++) {
		long long seq;

		last_pg = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		if (PQgetisnull(res, i, 1))
			continue;
		seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		if (seq < hot_first)
			history__push(op, xstrdup(PQgetvalue(res, i, 2)));
	}
	for (int i = 0; i < op->nhot; i++) {
		history__push(op, op->hot[i]);
		op->hot[i] = NULL;
	}
	op->nhot = 0;
	if (last_pg > op->res.last_seq)
		op->res.last_seq = last_pg;
	if (op->cold && op->since >= 0 && op->res.last_seq - op->since > HISTORY_MAX_GAP) {
		for (int i = 0; i < op->res.n; i++)
			free(op->res.events[i]);
		op->res.n = 0;
		op->res.recovered = 0;
	}
	history__finish(op, 1);
}

static int
history__query_pg(struct history_op *op, long long from, long long to, long long limit)
{
	char p_from[24], p_to[24], p_limit[24];
	const char *params[5] = { op->tenant, op->room, p_from, p_to, p_limit };

	snprintf(p_from, sizeof(p_from), "%lld", from);
	snprintf(p_to, sizeof(p_to), "%lld", to);
	snprintf(p_limit, sizeof(p_limit), "%lld", limit);
	return pgq_exec(srv.pg, history_sql, 5, params, history__from_pg, op);
}

/* Redis had no counter for the room (flushed, or a new Redis): PostgreSQL
 * is the whole truth. */
static void
history__cold(struct history_op *op)
{
	long long from = op->since >= 0 ? op->since + 1 : 1;
	long long limit = op->since >= 0 ? HISTORY_MAX_GAP : srv.cfg->history_on_join;

	op->cold = 1;

	if (history__query_pg(op, from, INT64_MAX, limit) != 0)
		history__finish(op, 0);
}

static void
history__from_redis(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct history_op *op = priv;
	long long last, want;

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		history__finish(op, 0);
		return;
	}
	last = r->element[0]->integer;
	if (last < 0) {
		history__cold(op);
		return;
	}
	op->res.last_seq = last;
	op->hot = xcalloc(r->elements, sizeof(char *));
	for (size_t i = 1; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			op->hot[op->nhot++] = xstrdup(r->element[i]->str);
	op->to = last;
	op->from = op->since >= 0 ? op->since + 1 : last - srv.cfg->history_on_join + 1;
	if (op->from < 1)
		op->from = 1;
	want = op->to - op->from + 1;
	if (want <= 0) {
		history__finish(op, 1);
		return;
	}
	if (op->since >= 0 && want > HISTORY_MAX_GAP) {
		/* Too far behind: the client pages with message:history. */
		op->res.recovered = 0;
		history__finish(op, 1);
		return;
	}
	if (op->nhot > 0 && op->nhot >= want &&
	    obuf_scan_seq(op->hot[0], strlen(op->hot[0])) <= op->from) {
		for (int i = 0; i < op->nhot; i++) {
			history__push(op, op->hot[i]);
			op->hot[i] = NULL;
		}
		op->nhot = 0;
		history__finish(op, 1);
		return;
	}
	/* The stream no longer holds the start of the range. */
	if (history__query_pg(op, op->from, op->to, want) != 0)
		history__finish(op, 0);
}

int
history_read(const char *tenant, const char *room_id, long long since,
    void (*cb)(const struct history_result *h, void *arg), void *arg)
{
	char kseq[200], kstream[200], after[24], count[24];
	struct history_op *op;

	if (!bus_ready())
		return -1;
	op = xcalloc(1, sizeof(*op));
	snprintf(op->tenant, sizeof(op->tenant), "%s", tenant);
	snprintf(op->room, sizeof(op->room), "%s", room_id);
	op->since = since;
	op->res.recovered = 1;
	op->cb = cb;
	op->arg = arg;
	bus_key(kseq, sizeof(kseq), tenant, room_id, "seq");
	bus_key(kstream, sizeof(kstream), tenant, room_id, "stream");
	snprintf(after, sizeof(after), "%lld", since);
	snprintf(count, sizeof(count), "%d", since >= 0 ? srv.cfg->stream_maxlen : srv.cfg->history_on_join);
	if (rlink_cmd(srv.rcmd, history__from_redis, op, "EVALSHA %s 2 %s %s %s %s",
	    bus_hist_sha(), kseq, kstream, after, count) != 0) {
		free(op);
		return -1;
	}
	return 0;
}
