#include "chat/msgextra.h"
#include "store/pg_queue.h"
#include "store/room_log.h"
#include "proc/srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The checks of reply_to and mentions that need the room (msgextra.c
 * reads the fields, with no I/O: the fuzzer drives it). */

/* A thread's root and whether it is deleted; no row: not (yet) in
 * PostgreSQL. */
static const char reply_sql[] =
"SELECT coalesce(reply_to, id), deleted_at IS NOT NULL FROM messages"
" WHERE tenant = $1 AND room_id = $2 AND id = $3";

/* The first mentioned user who may not read the room (a public room: the
 * banned; a private one: the banned and those not members). */
static const char mentions_sql[] =
"SELECT u.u FROM unnest($3::text[]) AS u(u)"
" JOIN rooms r ON r.tenant = $1 AND r.id = $2"
" LEFT JOIN room_members m ON m.tenant = $1 AND m.room_id = $2 AND m.user_id = u.u"
" WHERE coalesce(m.banned, false) OR (r.private AND m.user_id IS NULL) LIMIT 1";

struct check_req {
	struct msgextra *x;
	char root[UTIL_ID_MAX + 1];	/* PostgreSQL's answer: the thread's root */
	char tenant[UTIL_ID_MAX + 1];
	char room[UTIL_ID_MAX + 1];
	msgextra_cb *cb;
	void *arg;
};

static void
msgextra__end(struct check_req *q, const char *code, const char *why)
{
	q->cb(q->arg, code, why);
	free(q);
}

static void
msgextra__mentions_checked(const PGresult *res, void *arg)
{
	struct check_req *q = arg;
	char why[160];

	if (!pgq_ok(res)) {
		msgextra__end(q, "unavailable", "database unavailable; retry");
	} else if (PQntuples(res) > 0) {
		snprintf(why, sizeof(why), "mentions: user \"%s\" cannot read room \"%s\"",
		    PQgetvalue(res, 0, 0), q->room);
		msgextra__end(q, "bad_request", why);
	} else {
		msgextra__end(q, NULL, NULL);
	}
}

static void
msgextra__mentions(struct check_req *q)
{
	char *arr;
	const char *params[3];
	json_t *men;
	size_t i, len = 1, cap;
	json_t *v;

	if (q->x->nmentions == 0) {
		msgextra__end(q, NULL, NULL);
		return;
	}
	/* A text[] literal: ids need no quoting. */
	men = json_loads(q->x->mentions_json, 0, NULL);
	cap = json_array_size(men) * (UTIL_ID_MAX + 1) + 3;
	arr = xmalloc(cap);
	arr[0] = '{';
	json_array_foreach(men, i, v)
		len += (size_t)snprintf(arr + len, cap - len, "%s%s", i ? "," : "", json_string_value(v));
	snprintf(arr + len, cap - len, "}");
	json_decref(men);
	params[0] = q->tenant;
	params[1] = q->room;
	params[2] = arr;
	if (pgq_exec(srv.pg, mentions_sql, 3, params, msgextra__mentions_checked, q) != 0)
		msgextra__end(q, "unavailable", "database unavailable; retry");
	free(arr);
}

static void
msgextra__not_found(struct check_req *q)
{
	char why[200];

	snprintf(why, sizeof(why), "reply_to: no message \"%s\" in room \"%s\"", q->x->reply_to,
	    q->room);
	msgextra__end(q, "not_found", why);
}

static void
msgextra__peeked(void *arg, const struct rlog_result *r)
{
	struct check_req *q = arg;

	if (r->st == RLOG_NOT_FOUND) {
		msgextra__not_found(q);
		return;
	}
	if (r->st != RLOG_OK) {
		msgextra__end(q, "unavailable", "message bus unavailable; retry");
		return;
	}
	if (r->reply_to != NULL && r->reply_to[0] != '\0')
		snprintf(q->x->reply_to, sizeof(q->x->reply_to), "%s", r->reply_to);
	else if (q->root[0] != '\0')
		snprintf(q->x->reply_to, sizeof(q->x->reply_to), "%s", q->root);
	msgextra__mentions(q);
}

static void
msgextra__reply_checked(const PGresult *res, void *arg)
{
	struct check_req *q = arg;

	if (!pgq_ok(res)) {
		msgextra__end(q, "unavailable", "database unavailable; retry");
	} else if (PQntuples(res) == 0) {
		/* Sent moments ago: only in the room stream yet. */
		rlog_peek(q->tenant, q->room, q->x->reply_to, 1, msgextra__peeked, q);
	} else if (PQgetvalue(res, 0, 1)[0] == 't') {
		msgextra__not_found(q);
	} else {
		/* Its delete may not have reached PostgreSQL yet. */
		snprintf(q->root, sizeof(q->root), "%s", PQgetvalue(res, 0, 0));
		rlog_peek(q->tenant, q->room, q->x->reply_to, 0, msgextra__peeked, q);
	}
}

void
msgextra_check(struct msgextra *x, const char *tenant, const char *room,
    msgextra_cb *cb, void *arg)
{
	struct check_req *q = xcalloc(1, sizeof(*q));
	const char *params[3] = { tenant, room, x->reply_to };

	q->x = x;
	snprintf(q->tenant, sizeof(q->tenant), "%s", tenant);
	snprintf(q->room, sizeof(q->room), "%s", room);
	q->cb = cb;
	q->arg = arg;
	if (x->reply_to[0] == '\0')
		msgextra__mentions(q);
	else if (pgq_exec(srv.pg, reply_sql, 3, params, msgextra__reply_checked, q) != 0)
		msgextra__end(q, "unavailable", "database unavailable; retry");
}
