#include "chat/standing.h"
#include "net/conn.h"
#include "proto/reply.h"
#include "store/pg_queue.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No row: no such room. A muted_until of 'infinity' (muted until unmuted)
 * reads as the largest ms. */
static const char standing_sql[] =
"SELECT r.kind, r.private, m.role, coalesce(m.banned, false),"
" CASE WHEN m.muted_until IS NULL THEN 0"
"  WHEN m.muted_until = 'infinity' THEN 9223372036854775807"
"  ELSE (extract(epoch FROM m.muted_until) * 1000)::bigint END"
" FROM rooms r LEFT JOIN room_members m"
"  ON m.tenant = r.tenant AND m.room_id = r.id AND m.user_id = $3"
" WHERE r.tenant = $1 AND r.id = $2";

struct standing_req {
	standing_cb *cb;
	void *arg;
};

int
standing_member(const struct standing *s)
{
	return s->exists && s->rank != RANK_NONE && !s->banned;
}

int
standing_reader(const struct standing *s, int tenant_admin)
{
	if (!s->exists || s->banned)
		return 0;
	return s->rank != RANK_NONE || !s->private_room ||
	    (tenant_admin && strcmp(s->kind, "support") == 0);
}

int
standing_muted(const struct standing *s)
{
	return s->muted_until_ms > util_now_ms();
}

static void
standing__done(const PGresult *res, void *arg)
{
	struct standing_req *q = arg;
	struct standing st;
	const char *role;

	memset(&st, 0, sizeof(st));
	if (!pgq_ok(res)) {
		q->cb(q->arg, NULL);
		free(q);
		return;
	}
	if (PQntuples(res) == 1) {
		st.exists = 1;
		snprintf(st.kind, sizeof(st.kind), "%s", PQgetvalue(res, 0, 0));
		st.private_room = PQgetvalue(res, 0, 1)[0] == 't';
		role = PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2);
		st.rank = strcmp(role, "admin") == 0 ? RANK_ADMIN :
		    strcmp(role, "moderator") == 0 ? RANK_MODERATOR :
		    strcmp(role, "member") == 0 ? RANK_MEMBER : RANK_NONE;
		st.banned = PQgetvalue(res, 0, 3)[0] == 't';
		st.muted_until_ms = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	}
	q->cb(q->arg, &st);
	free(q);
}

void
standing_get(const char *tenant, const char *room, const char *user,
    standing_cb *cb, void *arg)
{
	struct standing_req *q = xcalloc(1, sizeof(*q));
	const char *params[3] = { tenant, room, user };

	q->cb = cb;
	q->arg = arg;
	if (pgq_exec(srv.pg, standing_sql, 3, params, standing__done, q) != 0) {
		free(q);
		cb(arg, NULL);
	}
}

struct unjoined_req {
	struct reply_req req;
	char room[UTIL_ID_MAX + 1];
	const char *doing;
};

static void
standing__unjoined_answer(void *arg, const struct standing *st)
{
	struct unjoined_req *q = arg;

	if (st == NULL)
		reply_error(q->req.c, q->req.idjson, "unavailable", "database unavailable; retry");
	else if (!st->exists)
		reply_error(q->req.c, q->req.idjson, "not_found", "no room \"%s\"", q->room);
	else
		reply_error(q->req.c, q->req.idjson, "forbidden", "join room \"%s\" before %s",
		    q->room, q->doing);
	reply_req_done(&q->req);
	free(q);
}

void
standing_not_joined(struct conn *c, const char *idjson, const char *room, const char *doing)
{
	struct unjoined_req *q = xcalloc(1, sizeof(*q));

	snprintf(q->room, sizeof(q->room), "%s", room);
	q->doing = doing;
	reply_req_init(&q->req, c, idjson);
	standing_get(c->id.tenant, room, c->id.user, standing__unjoined_answer, q);
}
