#include "chat/member.h"
#include "proc/turn.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "store/pg_queue.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

/*
 * One statement for a batch ($1, $2, $3, $4: tenants, rooms, users, tenant
 * admin flags, as arrays in the same order): the room, the membership, and
 * a new membership when the room is public and there is none. One
 * statement is one transaction, so a batch costs one commit (one WAL
 * flush) however many checks it holds; a check's answer is the row whose
 * first column is its place in the arrays (none: no such room); $5 below.
 *
 * A tenant admin (token role admin; $4) joins a support room it is not a
 * member of as a moderator: the only private room a join makes a member
 * of (room:create makes every support room private).
 *
 * Column 5 is the room:join ack's receipts ($5: join_receipts_max): the
 * positions of the room's members (not banned) who have one (delivered_seq
 * > 0: a member with none is at 0, 0), furthest read first, as JSON text,
 * for a check that lets the user in (NULL otherwise). A column of the same
 * statement, so a batch of joins stays one statement; it reads the index
 * room_members_read (sql/006) in its order and stops at the limit.
 *
 * Column 6 is the room's members (not banned), comma-separated, when they
 * are at most presence_room_max ($6), for the ack's presence (NULL for a
 * bigger room: reading stops at one more than the bound).
 *
 * The insert is "DO UPDATE", not "DO NOTHING": when another transaction
 * (another worker joining the same user to the room at the same moment)
 * inserted the row after this statement's snapshot, m does not see it, and
 * only DO UPDATE returns it (role, ban and mute as they are). The same user
 * and room twice in one batch are inserted once (DISTINCT ON: DO UPDATE may
 * not touch a row twice; a tenant admin's first) and both get the row.
 */
static const char member_sql[] =
"WITH q AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[])"
"  WITH ORDINALITY AS q(tenant, room_id, user_id, admin, i)),"
" r AS (SELECT q.i, rooms.kind, rooms.private FROM q"
"  JOIN rooms ON rooms.tenant = q.tenant AND rooms.id = q.room_id),"
" m AS (SELECT q.i, rm.role, rm.banned, rm.muted_until FROM q"
"  JOIN room_members rm ON rm.tenant = q.tenant AND rm.room_id = q.room_id"
"  AND rm.user_id = q.user_id),"
" ins AS ("
"  INSERT INTO room_members (tenant, room_id, user_id, role)"
"  SELECT DISTINCT ON (q.tenant, q.room_id, q.user_id) q.tenant, q.room_id, q.user_id,"
"  CASE WHEN r.private THEN 'moderator' ELSE 'member' END"
"  FROM q JOIN r ON r.i = q.i"
"  WHERE (NOT r.private OR (r.kind = 'support' AND q.admin))"
"  AND NOT EXISTS (SELECT 1 FROM m WHERE m.i = q.i)"
"  ORDER BY q.tenant, q.room_id, q.user_id, q.admin DESC"
"  ON CONFLICT (tenant, room_id, user_id) DO UPDATE SET role = room_members.role"
"  RETURNING tenant, room_id, user_id, role, banned, muted_until)"
"SELECT q.i, r.kind, coalesce(m.role, ins.role), coalesce(m.banned, ins.banned, false),"
" CASE WHEN coalesce(m.muted_until, ins.muted_until) IS NULL THEN 0"
"  WHEN coalesce(m.muted_until, ins.muted_until) = 'infinity' THEN 9223372036854775807"
"  ELSE (extract(epoch FROM coalesce(m.muted_until, ins.muted_until)) * 1000)::bigint END,"
" CASE WHEN $5::int > 0 AND coalesce(m.role, ins.role) IS NOT NULL"
"  AND NOT coalesce(m.banned, ins.banned, false) THEN"
"  (SELECT coalesce(jsonb_agg(jsonb_build_object('user', p.user_id,"
"    'delivered_seq', p.delivered_seq, 'read_seq', p.read_seq)"
"    ORDER BY p.read_seq DESC, p.user_id), '[]'::jsonb)::text"
"   FROM (SELECT x.user_id, x.delivered_seq, x.read_seq FROM room_members x"
"    WHERE x.tenant = q.tenant AND x.room_id = q.room_id AND NOT x.banned"
"     AND x.delivered_seq > 0"
"    ORDER BY x.read_seq DESC, x.user_id LIMIT $5::int) AS p) END,"
" CASE WHEN $6::int > 0 AND coalesce(m.role, ins.role) IS NOT NULL"
"  AND NOT coalesce(m.banned, ins.banned, false) THEN"
"  (SELECT CASE WHEN count(*) <= $6::int THEN string_agg(p.user_id, ',') END"
"   FROM (SELECT x.user_id FROM room_members x"
"    WHERE x.tenant = q.tenant AND x.room_id = q.room_id AND NOT x.banned"
"    LIMIT $6::int + 1) AS p) END"
" FROM q JOIN r ON r.i = q.i LEFT JOIN m ON m.i = q.i"
" LEFT JOIN ins ON ins.tenant = q.tenant AND ins.room_id = q.room_id"
"  AND ins.user_id = q.user_id";

/* Checks per statement. */
#define MEMBER_BATCH_MAX 64
/* Checks waiting for a statement; more are answered at once, unavailable. */
#define MEMBER_WAIT_MAX 10000

struct member_req {
	char id[3][UTIL_ID_MAX + 1];	/* tenant, room, user */
	int admin;			/* a tenant admin's token */
	member_cb *cb;
	void *arg;
	int alone;			/* its batch failed: checked in a batch of its own */
};

/* One statement in flight; owns its requests. */
struct member_batch {
	int n;
	struct member_req *reqs[MEMBER_BATCH_MAX];
};

/* Waiting for a statement. At most one batch is in flight: what arrives
 * meanwhile waits and goes together in the next, so batches grow with the
 * load by themselves. */
static struct member_req **waiting;	/* owned, with each request */
static int nwaiting, waitcap;
static int batch_busy;
static int registered;	/* member_flush is a turn step */

static void member__send(void);

static void
member__wait(struct member_req *r)
{
	if (nwaiting == waitcap) {
		waitcap = waitcap ? waitcap * 2 : 64;
		waiting = xrealloc(waiting, (size_t)waitcap * sizeof(*waiting));
	}
	waiting[nwaiting++] = r;
}

static void
member__unavailable(struct member_req *r, const char *why)
{
	r->cb(r->arg, MEMBER_UNAVAILABLE, NULL, why);
	free(r);
}

static void
member__answer(struct member_req *r, const PGresult *res, int row)
{
	struct member_info info;

	if (row < 0) {
		r->cb(r->arg, MEMBER_NO_ROOM, NULL, NULL);
	} else {
		info.kind = PQgetvalue(res, row, 1);
		info.role = PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2);
		info.banned = PQgetvalue(res, row, 3)[0] == 't';
		info.muted_until_ms = strtoll(PQgetvalue(res, row, 4), NULL, 10);
		info.receipts = PQgetisnull(res, row, 5) ? NULL : PQgetvalue(res, row, 5);
		info.members = PQgetisnull(res, row, 6) ? NULL : PQgetvalue(res, row, 6);
		r->cb(r->arg, MEMBER_OK, &info, NULL);
	}
	free(r);
}

static void
member__done(const PGresult *res, void *arg)
{
	struct member_batch *b = arg;
	int rows[MEMBER_BATCH_MAX];

	batch_busy = 0;
	if (!pgq_ok(res) && res != NULL && b->n > 1 && pgq_up(srv.pg)) {
		/* The statement failed, not the connection: so that one bad
		 * check cannot fail the others, each goes again on its own. */
		const char *why = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		log_warn("room:join: a member check of %d joins failed (%s); checking each alone",
		    b->n, why ? why : "no message");
		for (int k = 0; k < b->n; k++) {
			b->reqs[k]->alone = 1;
			member__wait(b->reqs[k]);
		}
	} else if (!pgq_ok(res)) {
		for (int k = 0; k < b->n; k++)
			member__unavailable(b->reqs[k], "database unavailable; retry");
	} else {
		metrics_add(M_JOIN_BATCHES, 1);
		metrics_add(M_JOIN_CHECKS, b->n);
		for (int k = 0; k < b->n; k++)
			rows[k] = -1;
		for (int row = 0; row < PQntuples(res); row++) {
			long i = strtol(PQgetvalue(res, row, 0), NULL, 10);

			if (i >= 1 && i <= b->n)
				rows[i - 1] = row;
		}
		for (int k = 0; k < b->n; k++)
			member__answer(b->reqs[k], res, rows[k]);
	}
	free(b);
	member__send();
}

/* A text[] literal of field f of n requests (util_valid_id: no quotes or
 * backslashes to escape). */
static char *
member__array(struct member_req *const *reqs, int n, int f)
{
	char *out = xmalloc((size_t)n * (UTIL_ID_MAX + 3) + 3), *p = out;

	*p++ = '{';
	for (int k = 0; k < n; k++) {
		size_t len = strlen(reqs[k]->id[f]);

		if (k > 0)
			*p++ = ',';
		*p++ = '"';
		memcpy(p, reqs[k]->id[f], len);
		p += len;
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

/* The admin flags of n requests as a boolean[] literal. */
static char *
member__flags(struct member_req *const *reqs, int n)
{
	char *out = xmalloc((size_t)n * 2 + 2), *p = out;

	*p++ = '{';
	for (int k = 0; k < n; k++) {
		if (k > 0)
			*p++ = ',';
		*p++ = reqs[k]->admin ? 't' : 'f';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

/* The next batch, unless one is in flight. A request whose batch failed
 * goes alone. */
static void
member__send(void)
{
	while (!batch_busy && nwaiting > 0) {
		struct member_batch *b = xcalloc(1, sizeof(*b));
		char limit[16], pmax[16];
		char *params[6];
		int n = 0, rc;

		while (n < nwaiting && n < MEMBER_BATCH_MAX && !(n > 0 && waiting[n]->alone)) {
			b->reqs[n] = waiting[n];
			if (waiting[n++]->alone)
				break;
		}
		b->n = n;
		snprintf(limit, sizeof(limit), "%d", srv.cfg->join_receipts_max);
		nwaiting -= n;
		memmove(waiting, waiting + n, (size_t)nwaiting * sizeof(*waiting));
		for (int f = 0; f < 3; f++)
			params[f] = member__array(b->reqs, n, f);
		params[3] = member__flags(b->reqs, n);
		params[4] = limit;
		snprintf(pmax, sizeof(pmax), "%d", srv.cfg->presence_room_max);
		params[5] = pmax;
		rc = pgq_exec(srv.pg, member_sql, 6, (const char *const *)params, member__done, b);
		for (int f = 0; f < 4; f++)
			free(params[f]);
		if (rc == 0) {
			batch_busy = 1;
			return;
		}
		for (int k = 0; k < n; k++)
			member__unavailable(b->reqs[k], "database unavailable; retry");
		free(b);
	}
}

void
member_check(const char *tenant, const char *room, const char *user, int admin,
    member_cb *cb, void *arg)
{
	struct member_req *r;

	if (nwaiting >= MEMBER_WAIT_MAX || !pgq_up(srv.pg)) {
		cb(arg, MEMBER_UNAVAILABLE, NULL, "database unavailable; retry");
		return;
	}
	r = xcalloc(1, sizeof(*r));
	snprintf(r->id[0], sizeof(r->id[0]), "%s", tenant);
	snprintf(r->id[1], sizeof(r->id[1]), "%s", room);
	snprintf(r->id[2], sizeof(r->id[2]), "%s", user);
	r->admin = admin;
	r->cb = cb;
	r->arg = arg;
	member__wait(r);
	if (!registered) {
		turn_register(TURN_MEMBERS, member_flush);
		registered = 1;
	}
	turn_kick();
}

int
member_flush(void)
{
	member__send();
	return 0;
}

void
member_shutdown(void)
{
	/* The requests connection is closed: nothing waits for a batch. */
	while (nwaiting > 0)
		member__unavailable(waiting[--nwaiting], "server shutting down");
	free(waiting);
	waiting = NULL;
	waitcap = 0;
}
