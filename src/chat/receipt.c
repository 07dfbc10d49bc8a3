#include "chat/receipt.h"
#include "chat/limit.h"
#include "chat/readview.h"
#include "chat/roomread.h"
#include "net/conn.h"
#include "proto/proto.h"
#include "proto/reply.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "proc/turn.h"
#include "store/pg_queue.h"
#include "store/redis.h"
#include "lib/hmap.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Positions per statement. */
#define RECEIPT_BATCH_MAX 128
/* Positions waiting for a statement; more are answered at once, unavailable. */
#define RECEIPT_WAIT_MAX 10000
/* Users and rooms inside a coalescing window; past it a receipt:update
 * goes at once, uncoalesced, rather than the table growing. */
#define RECEIPT_WINDOWS_MAX 100000

/*
 * The positions of a batch, one statement ($1..$6: tenants, rooms, users,
 * seqs, read flags, Redis' counters, as arrays in the same order). Per
 * request (c): the room exists (else no row: not_found), the user is a
 * member not banned (forbidden), the seq is at most the room's last, the
 * larger of Redis' counter and PostgreSQL's (bad_request). The requests
 * that pass move their user's positions, once per user and room however
 * many it sent (w: the largest seq; read implies delivered), and only
 * forward: greatest(), and a row is written only when a position moves.
 *
 * The rows are locked first, in key order (lk), so that two workers'
 * batches touching the same members wait for each other instead of
 * deadlocking. A concurrent statement that moved a row first is seen by
 * the lock (READ COMMITTED re-reads the row): only what is still behind
 * is written. A request's answer is the positions after (at least what
 * it asked for); the last column says that this statement moved the row
 * (on the first request of its user and room only: one receipt:update).
 */
static const char pos_sql[] =
"WITH q AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],"
"  $5::boolean[], $6::bigint[]) WITH ORDINALITY AS q(tenant, room_id, user_id, seq, rd,"
"  counter, i)),"
" c AS (SELECT q.*, coalesce(mb.user_id IS NOT NULL AND NOT mb.banned, false) AS member,"
"  q.seq <= greatest(q.counter, " READVIEW_PG_LAST("q.tenant", "q.room_id") ") AS fits,"
"  coalesce(mb.delivered_seq, 0) AS d0, coalesce(mb.read_seq, 0) AS r0,"
"  row_number() OVER (PARTITION BY q.tenant, q.room_id, q.user_id ORDER BY q.i) AS nth"
"  FROM q JOIN rooms r ON r.tenant = q.tenant AND r.id = q.room_id"
"  LEFT JOIN room_members mb ON mb.tenant = q.tenant AND mb.room_id = q.room_id"
"   AND mb.user_id = q.user_id),"
" w AS (SELECT c.tenant, c.room_id, c.user_id, max(c.seq) AS d,"
"  coalesce(max(c.seq) FILTER (WHERE c.rd), 0) AS r"
"  FROM c WHERE c.member AND c.fits GROUP BY c.tenant, c.room_id, c.user_id),"
" lk AS MATERIALIZED (SELECT x.tenant, x.room_id, x.user_id FROM room_members x"
"  JOIN w ON x.tenant = w.tenant AND x.room_id = w.room_id AND x.user_id = w.user_id"
"  WHERE NOT x.banned AND (x.delivered_seq < w.d OR x.read_seq < w.r)"
"  ORDER BY x.tenant, x.room_id, x.user_id FOR UPDATE OF x),"
" up AS (UPDATE room_members x SET delivered_seq = greatest(x.delivered_seq, w.d),"
"  read_seq = greatest(x.read_seq, w.r)"
"  FROM lk JOIN w ON w.tenant = lk.tenant AND w.room_id = lk.room_id AND w.user_id = lk.user_id"
"  WHERE x.tenant = lk.tenant AND x.room_id = lk.room_id AND x.user_id = lk.user_id"
"   AND (x.delivered_seq < w.d OR x.read_seq < w.r)"
"  RETURNING x.tenant, x.room_id, x.user_id, x.delivered_seq, x.read_seq)"
"SELECT c.i, c.member, c.fits, greatest(c.d0, w.d, up.delivered_seq),"
" greatest(c.r0, w.r, up.read_seq), up.user_id IS NOT NULL AND c.nth = 1"
" FROM c LEFT JOIN w ON w.tenant = c.tenant AND w.room_id = c.room_id"
"  AND w.user_id = c.user_id"
" LEFT JOIN up ON up.tenant = c.tenant AND up.room_id = c.room_id AND up.user_id = c.user_id";

/* ------------------------------------------------------ receipt:update */

/*
 * A user's positions in a room went forward: the room's subscribers are
 * told at once, then at most once per receipt_coalesce_ms. A window opens
 * with each receipt:update sent; what moves inside it waits (the latest
 * positions only) and goes when it closes, which opens the next window.
 * Every window has the same length, so they close in the order they
 * opened: one list, one timer for its head.
 */
struct window {
	char tenant[UTIL_ID_MAX + 1];
	char room[UTIL_ID_MAX + 1];
	char user[UTIL_ID_MAX + 1];
	char key[3 * (UTIL_ID_MAX + 1)];	/* tenant/room/user */
	uint64_t end_ms;		/* uv_now() when it closes */
	long long delivered, read;	/* the latest positions */
	int due;			/* moved since the last receipt:update */
	struct window *next;		/* the next to close */
};

static struct hmap *windows;		/* key -> struct window; owned */
static struct window *wfirst, *wlast;	/* by end_ms */
static uv_timer_t wtimer;
static int wtimer_ready;

static void receipt__windows_due(uv_timer_t *t);

static void
receipt__publish(const char *tenant, const char *room, const char *user, long long delivered,
    long long read)
{
	char text[128 + 3 * UTIL_ID_MAX];

	/* Ids need no JSON escaping (util_valid_id). */
	snprintf(text, sizeof(text), "{\"type\":\"receipt:update\",\"room\":\"%s\",\"user\":\"%s\","
	    "\"delivered_seq\":%lld,\"read_seq\":%lld}", room, user, delivered, read);
	redis_publish_room(tenant, room, text);
}

static void
receipt__window_open(struct window *w, uint64_t now)
{
	w->end_ms = now + (uint64_t)srv.cfg->receipt_coalesce_ms;
	w->due = 0;
	w->next = NULL;
	if (wlast != NULL) {
		wlast->next = w;
	} else {
		wfirst = w;
		uv_timer_start(&wtimer, receipt__windows_due, w->end_ms - now, 0);
	}
	wlast = w;
}

static void
receipt__windows_due(uv_timer_t *t)
{
	uint64_t now = uv_now(srv.loop);

	(void)t;
	while (wfirst != NULL && wfirst->end_ms <= now) {
		struct window *w = wfirst;

		wfirst = w->next;
		if (wfirst == NULL)
			wlast = NULL;
		if (w->due) {
			receipt__publish(w->tenant, w->room, w->user, w->delivered, w->read);
			receipt__window_open(w, now);
		} else {
			hmap_del(windows, w->key);
			free(w);
		}
	}
	if (wfirst != NULL)
		uv_timer_start(&wtimer, receipt__windows_due, wfirst->end_ms - now, 0);
}

static void
receipt__moved(const char *tenant, const char *room, const char *user, long long delivered,
    long long read)
{
	char key[3 * (UTIL_ID_MAX + 1)];
	struct window *w;

	if (srv.cfg->receipt_coalesce_ms == 0) {
		receipt__publish(tenant, room, user, delivered, read);
		return;
	}
	if (windows == NULL) {
		windows = hmap_new();
		uv_timer_init(srv.loop, &wtimer);
		wtimer_ready = 1;
	}
	snprintf(key, sizeof(key), "%s/%s/%s", tenant, room, user);
	w = hmap_get(windows, key);
	if (w != NULL) {
		/* Positions only grow: the larger of each is the latest. */
		if (delivered > w->delivered)
			w->delivered = delivered;
		if (read > w->read)
			w->read = read;
		w->due = 1;
		return;
	}
	receipt__publish(tenant, room, user, delivered, read);
	if (hmap_count(windows) >= RECEIPT_WINDOWS_MAX)
		return;
	w = xcalloc(1, sizeof(*w));
	snprintf(w->tenant, sizeof(w->tenant), "%s", tenant);
	snprintf(w->room, sizeof(w->room), "%s", room);
	snprintf(w->user, sizeof(w->user), "%s", user);
	snprintf(w->key, sizeof(w->key), "%s", key);
	w->delivered = delivered;
	w->read = read;
	hmap_put(windows, w->key, w);
	receipt__window_open(w, uv_now(srv.loop));
}

/* ------------------------------------------ receipt:delivered, receipt:read */

struct pos_req {
	struct reply_req req;
	char room[UTIL_ID_MAX + 1];
	long long seq;
	long long counter;	/* Redis' last seq of the room; 0: none known */
	long long retry_ms;	/* the rate limit's answer */
	int read;		/* receipt:read; else receipt:delivered */
	int pending;		/* answers awaited: the rate limit, the counter */
	int alone;		/* its batch failed: checked in a batch of its own */
};

/* One statement in flight; owns its requests. */
struct pos_batch {
	int n;
	struct pos_req *reqs[RECEIPT_BATCH_MAX];
};

/* Waiting for a statement. At most one batch is in flight: what arrives
 * meanwhile waits and goes together in the next (as chat/member.c). */
static struct pos_req **waiting;	/* owned, with each request */
static int nwaiting, waitcap;
static int batch_busy;
static int registered;	/* receipt_flush is a turn step */

static void receipt__send(void);

static void
receipt__pos_free(struct pos_req *pr)
{
	reply_req_done(&pr->req);
	free(pr);
}

static void
receipt__pos_fail(struct pos_req *pr, const char *code, const char *why)
{
	reply_error(pr->req.c, pr->req.idjson, code, "%s", why);
	receipt__pos_free(pr);
}

static void
receipt__wait(struct pos_req *pr)
{
	if (nwaiting == waitcap) {
		waitcap = waitcap ? waitcap * 2 : 64;
		waiting = xrealloc(waiting, (size_t)waitcap * sizeof(*waiting));
	}
	waiting[nwaiting++] = pr;
}

static void
receipt__answer(struct pos_req *pr, const PGresult *res, int row)
{
	struct conn *c = pr->req.c;
	long long delivered, read;
	char inner[200];

	if (row < 0) {
		reply_error(c, pr->req.idjson, "not_found", "no room \"%s\"", pr->room);
	} else if (PQgetvalue(res, row, 1)[0] != 't') {
		reply_error(c, pr->req.idjson, "forbidden", "not a member of room \"%s\"",
		    pr->room);
	} else if (PQgetvalue(res, row, 2)[0] != 't') {
		reply_error(c, pr->req.idjson, "bad_request",
		    "seq %lld is past the last of room \"%s\"", pr->seq, pr->room);
	} else {
		delivered = strtoll(PQgetvalue(res, row, 3), NULL, 10);
		read = strtoll(PQgetvalue(res, row, 4), NULL, 10);
		if (PQgetvalue(res, row, 5)[0] == 't')
			receipt__moved(c->id.tenant, pr->room, c->id.user, delivered, read);
		snprintf(inner, sizeof(inner), "\"room\":\"%s\",\"delivered_seq\":%lld,"
		    "\"read_seq\":%lld", pr->room, delivered, read);
		reply_ack_raw(c, pr->req.idjson, inner);
	}
	receipt__pos_free(pr);
}

static void
receipt__done(const PGresult *res, void *arg)
{
	struct pos_batch *b = arg;
	int rows[RECEIPT_BATCH_MAX];

	batch_busy = 0;
	if (!pgq_ok(res) && res != NULL && b->n > 1 && pgq_up(srv.pg)) {
		/* The statement failed, not the connection (a deadlock with
		 * another statement, say): each request goes again on its own,
		 * so one cannot fail the others. */
		const char *why = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		log_warn("receipts: a batch of %d positions failed (%s); writing each alone",
		    b->n, why ? why : "no message");
		for (int k = 0; k < b->n; k++) {
			b->reqs[k]->alone = 1;
			receipt__wait(b->reqs[k]);
		}
	} else if (!pgq_ok(res) || PQnfields(res) != 6) {
		for (int k = 0; k < b->n; k++)
			receipt__pos_fail(b->reqs[k], "unavailable", "database unavailable; retry");
	} else {
		for (int k = 0; k < b->n; k++)
			rows[k] = -1;
		for (int row = 0; row < PQntuples(res); row++) {
			long i = strtol(PQgetvalue(res, row, 0), NULL, 10);

			if (i >= 1 && i <= b->n)
				rows[i - 1] = row;
		}
		for (int k = 0; k < b->n; k++)
			receipt__answer(b->reqs[k], res, rows[k]);
	}
	free(b);
	receipt__send();
}

/* The six array literals of n requests: tenants, rooms, users, seqs,
 * read flags, counters (ids need no quoting or escaping: util_valid_id). */
static void
receipt__params(struct pos_req *const *reqs, int n, char *params[6])
{
	size_t cap = (size_t)n * (UTIL_ID_MAX + 4) + 3, len[6];

	for (int f = 0; f < 6; f++) {
		params[f] = xmalloc(cap);
		params[f][0] = '{';
		len[f] = 1;
	}
	for (int k = 0; k < n; k++) {
		const struct pos_req *pr = reqs[k];
		char seq[24], counter[24];
		const char *v[6] = { pr->req.c->id.tenant, pr->room, pr->req.c->id.user, seq,
		    pr->read ? "t" : "f", counter };

		snprintf(seq, sizeof(seq), "%lld", pr->seq);
		snprintf(counter, sizeof(counter), "%lld", pr->counter);
		for (int f = 0; f < 6; f++)
			len[f] += (size_t)snprintf(params[f] + len[f], cap - len[f],
			    f < 3 ? "%s\"%s\"" : "%s%s", k > 0 ? "," : "", v[f]);
	}
	for (int f = 0; f < 6; f++)
		snprintf(params[f] + len[f], cap - len[f], "}");
}

/* The next batch, unless one is in flight. A request whose batch failed
 * goes alone. */
static void
receipt__send(void)
{
	while (!batch_busy && nwaiting > 0) {
		struct pos_batch *b = xcalloc(1, sizeof(*b));
		char *params[6];
		int n = 0, rc;

		while (n < nwaiting && n < RECEIPT_BATCH_MAX && !(n > 0 && waiting[n]->alone)) {
			b->reqs[n] = waiting[n];
			if (waiting[n++]->alone)
				break;
		}
		b->n = n;
		nwaiting -= n;
		memmove(waiting, waiting + n, (size_t)nwaiting * sizeof(*waiting));
		receipt__params(b->reqs, n, params);
		rc = pgq_exec(srv.pg, pos_sql, 6, (const char *const *)params, receipt__done, b);
		for (int f = 0; f < 6; f++)
			free(params[f]);
		if (rc == 0) {
			batch_busy = 1;
			return;
		}
		for (int k = 0; k < n; k++)
			receipt__pos_fail(b->reqs[k], "unavailable", "database unavailable; retry");
		free(b);
	}
}

/* The rate limit and the counter both answered: the request waits for
 * the end of the turn. */
static void
receipt__ready(struct pos_req *pr)
{
	if (--pr->pending > 0)
		return;
	if (pr->retry_ms < 0) {
		receipt__pos_fail(pr, "unavailable", "message bus unavailable; retry");
	} else if (pr->retry_ms > 0) {
		reply_error_retry(pr->req.c, pr->req.idjson, pr->retry_ms,
		    "too many receipts; retry later");
		receipt__pos_free(pr);
	} else if (nwaiting >= RECEIPT_WAIT_MAX || !pgq_up(srv.pg)) {
		receipt__pos_fail(pr, "unavailable", "database unavailable; retry");
	} else {
		receipt__wait(pr);
		if (!registered) {
			turn_register(TURN_RECEIPTS, receipt_flush);
			registered = 1;
		}
		turn_kick();
	}
}

static void
receipt__limited(void *arg, long long retry_ms)
{
	struct pos_req *pr = arg;

	pr->retry_ms = retry_ms;
	receipt__ready(pr);
}

static void
receipt__counted(void *arg, long long counter)
{
	struct pos_req *pr = arg;

	pr->counter = counter;
	receipt__ready(pr);
}

/* The rate limit and the room's counter are asked at once (one round trip
 * to Redis, not two); the checks then run in section 7's order. */
static void
receipt__position(struct conn *c, const char *idjson, json_t *msg, int read)
{
	struct pos_req *pr = xcalloc(1, sizeof(*pr));

	reply_req_init(&pr->req, c, idjson);
	snprintf(pr->room, sizeof(pr->room), "%s", json_string_value(json_object_get(msg, "room")));
	pr->seq = proto_seq(json_object_get(msg, "seq"));
	pr->read = read;
	pr->pending = 2;
	limit_take(c->id.tenant, c->id.user, LIMIT_RECEIPT, receipt__limited, pr);
	roomread_counter(c->id.tenant, pr->room, receipt__counted, pr);
}

void
receipt_delivered(struct conn *c, const char *idjson, json_t *msg)
{
	receipt__position(c, idjson, msg, 0);
}

void
receipt_read(struct conn *c, const char *idjson, json_t *msg)
{
	receipt__position(c, idjson, msg, 1);
}

int
receipt_flush(void)
{
	receipt__send();
	return 0;
}

/* ------------------------------------------------------------------ shutdown */

static void
receipt__window_free(const char *key, void *value, void *arg)
{
	(void)key;
	(void)arg;
	free(value);
}

void
receipt_shutdown(void)
{
	/* The requests connection is closed: nothing waits for a batch. */
	while (nwaiting > 0)
		receipt__pos_fail(waiting[--nwaiting], "unavailable", "server shutting down");
	free(waiting);
	waiting = NULL;
	waitcap = 0;
	if (windows != NULL) {
		hmap_each(windows, receipt__window_free, NULL);
		hmap_free(windows);
		windows = NULL;
	}
	wfirst = wlast = NULL;
	if (wtimer_ready) {
		uv_close((uv_handle_t *)&wtimer, NULL);
		wtimer_ready = 0;
	}
}
