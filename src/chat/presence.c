#include "chat/presence.h"
#include "chat/presence_private.h"
#include "chat/personal.h"
#include "lib/hmap.h"
#include "net/conn.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "proc/turn.h"
#include "store/pg_queue.h"
#include "store/redis.h"
#include "store/redis_link.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * presence.lua, by its first ARGV (the second is now, in ms):
 *   beat    KEYS hb, workers, pw; ARGV 3 wid, 4 hb ttl ms -> whether pw
 *           exists (0 with users here: Redis lost them, count them again)
 *   conn    KEYS pw, then a user's pu per pair of ARGV 4..: "T/U", delta;
 *           ARGV 3 wid -> per user {1, shown} came online, {-1} no
 *           connection left, {0}
 *   sync    as conn, but the counts are this worker's whole truth (after
 *           Redis lost them): pw is rebuilt
 *   settle  KEYS pu... -> per user {1 when it was shown, "offline", seen}
 *   set     KEYS pu; ARGV 3 status -> {changed, shown, seen}
 *   get     KEYS pu... -> per user {shown, seen}
 *   count   KEYS pu... -> how many are shown not offline
 *   reap    KEYS workers; ARGV 3 REDIS_PREFIX -> {"T/U"...} gone offline
 */

#define PRESENCE_SETTLE_MS 250

static char wid[200];			/* instance/worker/pid */
static char khb[PRESENCE_KEY], kpw[PRESENCE_KEY];
static uv_timer_t beat_timer, settle_timer;
static int started;
static int beaten;	/* a heartbeat went in: this worker is in the workers set */

/* This turn's connections opened (+1) and closed (-1), by "T/U". */
static struct hmap *deltas;
static int registered;

/* Users whose last connection closed: offline once due, unless one opens. */
struct settle {
	char tu[PRESENCE_TU];
	uint64_t due_ms;
};
static struct settle *settles;
static int nsettles, capsettles;

/* For each announced user (tenants $1, users $2, as arrays), the users
 * that share a room of at most presence_room_max ($3) members with it. */
static const char comembers_sql[] =
"WITH q AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(tenant, user_id, i)),"
/* The small rooms of each user first (materialized: the planner must not
 * join a big room's members to themselves before it filters), each
 * counted only up to one more than the bound. */
" small AS MATERIALIZED (SELECT q.i, q.user_id, m1.tenant, m1.room_id FROM q"
"  JOIN room_members m1 ON m1.tenant = q.tenant AND m1.user_id = q.user_id AND NOT m1.banned"
"  WHERE (SELECT count(*) FROM (SELECT 1 FROM room_members c"
"   WHERE c.tenant = m1.tenant AND c.room_id = m1.room_id LIMIT $3::int + 1) AS n) <= $3::int)"
" SELECT s.i, string_agg(DISTINCT m2.user_id, ',') FROM small s"
" JOIN room_members m2 ON m2.tenant = s.tenant AND m2.room_id = s.room_id"
"  AND NOT m2.banned AND m2.user_id <> s.user_id"
" GROUP BY s.i";

/* Announcements wait for the end of the turn and go to PostgreSQL
 * together, one statement in flight: a thousand users coming online at
 * once cost a few statements, not a thousand. */
#define PRESENCE_BATCH_MAX 500

struct announce {
	char tenant[UTIL_ID_MAX + 1];
	char user[UTIL_ID_MAX + 1];
	char *frame;		/* owned */
};
static struct announce *pending;	/* owned, with their frames */
static int npending, cappending;
static int announcing;			/* a statement is in flight */

struct announce_batch {
	int n;
	struct announce *a;	/* owned */
};

static void presence__send_announcements(void);

static void
presence__announced(const PGresult *res, void *arg)
{
	struct announce_batch *b = arg;

	announcing = 0;
	if (pgq_ok(res)) {
		for (int row = 0; row < PQntuples(res); row++) {
			long i = strtol(PQgetvalue(res, row, 0), NULL, 10);

			if (i >= 1 && i <= b->n && !PQgetisnull(res, row, 1))
				personal_publish(b->a[i - 1].tenant, PQgetvalue(res, row, 1),
				    b->a[i - 1].frame);
		}
	}
	for (int i = 0; i < b->n; i++)
		free(b->a[i].frame);
	free(b->a);
	free(b);
	presence__send_announcements();
}

/* A text[] literal of the announcements' tenants (f 0) or users (f 1). */
static char *
presence__array(const struct announce *a, int n, int f)
{
	char *out = xmalloc((size_t)n * (UTIL_ID_MAX + 3) + 3), *p = out;

	*p++ = '{';
	for (int i = 0; i < n; i++) {
		const char *v = f == 0 ? a[i].tenant : a[i].user;
		size_t len = strlen(v);

		if (i > 0)
			*p++ = ',';
		*p++ = '"';
		memcpy(p, v, len);
		p += len;
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

static void
presence__send_announcements(void)
{
	struct announce_batch *b;
	char *params[3], max[16];
	int n = npending < PRESENCE_BATCH_MAX ? npending : PRESENCE_BATCH_MAX;

	if (announcing || n == 0)
		return;
	b = xcalloc(1, sizeof(*b));
	b->n = n;
	b->a = xmalloc((size_t)n * sizeof(*b->a));
	memcpy(b->a, pending, (size_t)n * sizeof(*b->a));
	npending -= n;
	memmove(pending, pending + n, (size_t)npending * sizeof(*pending));
	snprintf(max, sizeof(max), "%d", srv.cfg->presence_room_max);
	params[0] = presence__array(b->a, n, 0);
	params[1] = presence__array(b->a, n, 1);
	params[2] = max;
	if (pgq_exec(srv.pg, comembers_sql, 3, (const char *const *)params, presence__announced,
	    b) == 0) {
		announcing = 1;
	} else {
		for (int i = 0; i < n; i++)
			free(b->a[i].frame);
		free(b->a);
		free(b);
	}
	free(params[0]);
	free(params[1]);
}

static int presence__flush(void);
void
presence__announce(const char *tu, const char *status, const char *seen)
{
	const char *slash = strchr(tu, '/');
	struct announce *a;

	if (slash == NULL || (size_t)(slash - tu) > UTIL_ID_MAX || strlen(slash + 1) > UTIL_ID_MAX)
		return;
	if (npending == cappending) {
		cappending = cappending ? cappending * 2 : 64;
		pending = xrealloc(pending, (size_t)cappending * sizeof(*pending));
	}
	a = &pending[npending++];
	snprintf(a->tenant, sizeof(a->tenant), "%.*s", (int)(slash - tu), tu);
	snprintf(a->user, sizeof(a->user), "%s", slash + 1);
	if (asprintf(&a->frame, "{\"type\":\"presence:update\",\"user\":\"%s\",\"status\":\"%s\","
	    "\"last_seen\":%s}", a->user, status, seen && seen[0] ? seen : "null") < 0)
		log_fatal("presence: out of memory");
	if (!registered) {
		turn_register(TURN_PRESENCE, presence__flush);
		registered = 1;
	}
	turn_kick();
}

const char *
presence__str(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING ? r->str : "";
}

/* ---------------------------------------------------------- settling */

static void
presence__settle_add(const char *tu)
{
	for (int i = 0; i < nsettles; i++)
		if (strcmp(settles[i].tu, tu) == 0)
			return;
	if (nsettles == capsettles) {
		capsettles = capsettles ? capsettles * 2 : 16;
		settles = xrealloc(settles, (size_t)capsettles * sizeof(*settles));
	}
	snprintf(settles[nsettles].tu, PRESENCE_TU, "%s", tu);
	settles[nsettles].due_ms = uv_now(srv.loop) + (uint64_t)srv.cfg->presence_grace_ms;
	nsettles++;
}

static void
presence__settled(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct keyed_call *k = priv;

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)k->n) {
		for (int i = 0; i < k->n; i++) {
			redisReply *e = r->element[i];

			if (e->type == REDIS_REPLY_ARRAY && e->elements == 3 &&
			    e->element[0]->type == REDIS_REPLY_INTEGER && e->element[0]->integer == 1)
				presence__announce(k->tu[i], "offline", presence__str(e->element[2]));
		}
	}
	free(k->tu);
	free(k);
}

int
presence__call_users(const char *op, struct keyed_call *k, redisCallbackFn *fn, void *priv)
{
	char (*keys)[PRESENCE_KEY] = xmalloc((size_t)k->n * sizeof(*keys));
	const char **argv = xcalloc((size_t)k->n + 6, sizeof(char *));
	char nkeys[16], now[24];
	int argc = 0, rc;

	snprintf(nkeys, sizeof(nkeys), "%d", k->n);
	snprintf(now, sizeof(now), "%lld", (long long)util_now_ms());
	argv[argc++] = "EVALSHA";
	argv[argc++] = redis_presence_sha();
	argv[argc++] = nkeys;
	for (int i = 0; i < k->n; i++) {
		snprintf(keys[i], PRESENCE_KEY, REDIS_PREFIX "pu:{%s}", k->tu[i]);
		argv[argc++] = keys[i];
	}
	argv[argc++] = op;
	argv[argc++] = now;
	rc = redis_ready() ? rlink_cmdargv(srv.rcmd, fn, priv, argc, argv, NULL) : -1;
	free(argv);
	free(keys);
	return rc;
}

static void
presence__settle_tick(uv_timer_t *t)
{
	uint64_t now = uv_now(srv.loop);
	struct keyed_call *k;

	(void)t;
	if (nsettles == 0 || !redis_ready())
		return;
	k = xcalloc(1, sizeof(*k));
	k->tu = xmalloc((size_t)nsettles * sizeof(*k->tu));
	for (int i = 0; i < nsettles;) {
		if (settles[i].due_ms > now) {
			i++;
			continue;
		}
		memcpy(k->tu[k->n++], settles[i].tu, PRESENCE_TU);
		settles[i] = settles[--nsettles];
	}
	if (k->n == 0 || presence__call_users("settle", k, presence__settled, k) != 0) {
		free(k->tu);
		free(k);
	}
}

/* ------------------------------------------------- connections counted */

struct conn_call {
	int n;
	char (*tu)[PRESENCE_TU];
};

static void
presence__counted(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct conn_call *k = priv;

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)k->n) {
		for (int i = 0; i < k->n; i++) {
			redisReply *e = r->element[i];
			long long code;

			if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
			    e->element[0]->type != REDIS_REPLY_INTEGER)
				continue;
			code = e->element[0]->integer;
			if (code == 1 && strcmp(presence__str(e->element[1]), "offline") != 0)
				presence__announce(k->tu[i], presence__str(e->element[1]), NULL);
			else if (code == -1)
				presence__settle_add(k->tu[i]);
		}
	} else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
		log_warn("presence script failed: %s", r->str);
	}
	free(k->tu);
	free(k);
}

struct collect {
	struct conn_call *k;
	const char **argv;
	char (*keys)[PRESENCE_KEY];
	char (*nums)[16];
	int argc;
};

static void
presence__collect(const char *key, void *value, void *arg)
{
	struct collect *col = arg;
	int d = (int)(intptr_t)value, i = col->k->n++;

	memcpy(col->k->tu[i], key, strlen(key) + 1);
	snprintf(col->keys[i], PRESENCE_KEY, REDIS_PREFIX "pu:{%s}", key);
	snprintf(col->nums[i], sizeof(col->nums[i]), "%d", d);
}

/* One script call for the users of map (T/U -> count, as an intptr_t):
 * op "conn" (deltas) or "sync" (this worker's absolute counts). */
static int
presence__send_counts(const char *op, struct hmap *map)
{
	size_t n = hmap_count(map);
	struct collect col;
	char nkeys[16], now[24];
	int rc;

	col.k = xcalloc(1, sizeof(*col.k));
	col.k->tu = xmalloc((n ? n : 1) * sizeof(*col.k->tu));
	col.keys = xmalloc((n ? n : 1) * sizeof(*col.keys));
	col.nums = xmalloc((n ? n : 1) * sizeof(*col.nums));
	hmap_each(map, presence__collect, &col);
	/* EVALSHA, sha, nkeys, kpw, n keys, op, now, wid, 2n args. */
	col.argv = xcalloc(3 * n + 7, sizeof(char *));
	col.argc = 0;
	snprintf(nkeys, sizeof(nkeys), "%zu", n + 1);
	snprintf(now, sizeof(now), "%lld", (long long)util_now_ms());
	col.argv[col.argc++] = "EVALSHA";
	col.argv[col.argc++] = redis_presence_sha();
	col.argv[col.argc++] = nkeys;
	col.argv[col.argc++] = kpw;
	for (int i = 0; i < col.k->n; i++)
		col.argv[col.argc++] = col.keys[i];
	col.argv[col.argc++] = op;
	col.argv[col.argc++] = now;
	col.argv[col.argc++] = wid;
	for (int i = 0; i < col.k->n; i++) {
		col.argv[col.argc++] = col.k->tu[i];
		col.argv[col.argc++] = col.nums[i];
	}
	rc = rlink_cmdargv(srv.rcmd, presence__counted, col.k, col.argc, col.argv, NULL);
	if (rc != 0) {
		free(col.k->tu);
		free(col.k);
	}
	free(col.argv);
	free(col.keys);
	free(col.nums);
	return rc;
}

/* The end-of-turn step: this turn's opens and closes, one call. Kept for
 * the next turn while Redis is not ready. */
static int
presence__flush(void)
{
	presence__send_announcements();
	if (deltas == NULL || hmap_count(deltas) == 0 || !redis_ready() || !beaten)
		return 0;
	if (presence__send_counts("conn", deltas) == 0) {
		hmap_free(deltas);
		deltas = hmap_new();
	}
	return 0;
}

static void
presence__delta(struct conn *c, int d)
{
	char tu[PRESENCE_TU];
	intptr_t v;

	/* A user's WebSocket or room event stream (an identity). */
	if (c->idnames == NULL || c->kind == CONN_HTTP || !started)
		return;
	snprintf(tu, sizeof(tu), "%s/%s", c->id.tenant, c->id.user);
	if (deltas == NULL)
		deltas = hmap_new();
	v = (intptr_t)hmap_get(deltas, tu) + d;
	if (v == 0)
		hmap_del(deltas, tu);
	else
		hmap_put(deltas, tu, (void *)v);
	if (!registered) {
		turn_register(TURN_PRESENCE, presence__flush);
		registered = 1;
	}
	turn_kick();
}

static void
presence__opened(struct conn *c)
{
	presence__delta(c, +1);
}

static void
presence__closed(struct conn *c)
{
	presence__delta(c, -1);
}

/* ------------------------------------------------- heartbeat and reaping */

static void
presence__reaped(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	(void)priv;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			presence__announce(r->element[i]->str, "offline", NULL);
}

/* Redis lost this worker's users (flushed, restarted empty): count its
 * connections again, minus what still waits to be sent this turn. */
static void
presence__resync(void)
{
	struct hmap *abs = hmap_new();

	for (struct conn *c = conn_first(); c != NULL; c = c->next) {
		char tu[PRESENCE_TU];

		if (c->idnames == NULL || c->kind == CONN_HTTP || c->killing)
			continue;
		snprintf(tu, sizeof(tu), "%s/%s", c->id.tenant, c->id.user);
		hmap_put(abs, tu, (void *)((intptr_t)hmap_get(abs, tu) + 1));
	}
	if (deltas != NULL && hmap_count(deltas) > 0) {
		/* Those go after this call, as deltas: not counted twice. */
		hmap_free(abs);
		return;
	}
	if (hmap_count(abs) > 0 && presence__send_counts("sync", abs) != 0)
		log_debug("presence: resync not sent");
	hmap_free(abs);
}

static void
presence__beaten(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	(void)priv;
	if (rlink_failed(r) || r->type != REDIS_REPLY_INTEGER)
		return;
	if (!beaten) {
		beaten = 1;
		turn_kick();	/* what waited for it */
		return;
	}
	/* 0: this worker's user list is gone from Redis. */
	if (r->integer == 0 && conn_count() > 0)
		presence__resync();
}

static void
presence__beat(uv_timer_t *t)
{
	char now[24], ttl[24];

	(void)t;
	if (!redis_ready())
		return;
	snprintf(now, sizeof(now), "%lld", (long long)util_now_ms());
	snprintf(ttl, sizeof(ttl), "%d", srv.cfg->presence_timeout_s * 1000);
	if (rlink_cmd(srv.rcmd, presence__beaten, NULL, "EVALSHA %s 3 %s %s %s beat %s %s %s",
	    redis_presence_sha(), khb, REDIS_WORKERS, kpw, now, wid, ttl) != 0)
		return;
	rlink_cmd(srv.rcmd, presence__reaped, NULL, "EVALSHA %s 1 %s reap %s %s",
	    redis_presence_sha(), REDIS_WORKERS, now, REDIS_PREFIX);
}

void
presence_start(void)
{
	snprintf(wid, sizeof(wid), "%s/%d/%ld", srv.cfg->instance, srv.index, (long)getpid());
	redis_worker_key(khb, sizeof(khb), "hb", wid);
	redis_worker_key(kpw, sizeof(kpw), "pw", wid);
	conn_on_open(presence__opened);
	conn_on_close(presence__closed);
	uv_timer_init(srv.loop, &beat_timer);
	uv_timer_start(&beat_timer, presence__beat, 200, 1000);
	uv_timer_init(srv.loop, &settle_timer);
	uv_timer_start(&settle_timer, presence__settle_tick, PRESENCE_SETTLE_MS,
	    PRESENCE_SETTLE_MS);
	started = 1;
}

void
presence_stop(void)
{
	if (!started)
		return;
	started = 0;
	uv_timer_stop(&beat_timer);
	uv_close((uv_handle_t *)&beat_timer, NULL);
	uv_timer_stop(&settle_timer);
	uv_close((uv_handle_t *)&settle_timer, NULL);
	/* Its users are reaped by the others within a second. */
	if (rlink_up(srv.rcmd))
		rlink_cmd(srv.rcmd, NULL, NULL, "DEL %s", khb);
	hmap_free(deltas);
	deltas = NULL;
	for (int i = 0; i < npending; i++)
		free(pending[i].frame);
	free(pending);
	pending = NULL;
	npending = cappending = 0;
	free(settles);
	settles = NULL;
	nsettles = capsettles = 0;
}
