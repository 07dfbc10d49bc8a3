#include "store/send_batch.h"
#include "store/redis.h"
#include "proc/turn.h"
#include "lib/hmap.h"
#include "proc/log.h"
#include "store/pg_queue.h"
#include "store/redis_link.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Items of one room's batch; a burst of more makes more batches. */
#define SENDBATCH_MAX 128
/* One script call takes batches (in the order they were opened) up to
 * SENDBATCH_CALL_ITEMS items: it bounds the call's run time in Redis (it blocks
 * Redis) and its size. */
#define SENDBATCH_CALL_ITEMS 256
#define SENDBATCH_KEY 400		/* "chatd:{T/R}:idem:U/C" and the bucket key */
#define SENDBATCH_RKEY 200		/* a room's counter, stream and channel */

static const char max_seq_sql[] =
"SELECT coalesce(max(seq), 0) FROM room_events WHERE tenant = $1 AND room_id = $2";

struct sendbatch_batch {
	char key[2 * UTIL_ID_MAX + 2];	/* tenant/room */
	int n;
	int seeded;
	char floor[24];			/* PostgreSQL's max seq once seeded */
	struct sendbatch_item *items[SENDBATCH_MAX];
};

/* The batches of one script call; it owns them until their items are done
 * or a batch goes to be seeded. */
struct sendbatch_call {
	int nb;
	struct sendbatch_batch *b[];
};

static struct hmap *open_by_room;	/* batches still taking items this turn */
static struct sendbatch_batch **open_list;
static int nopen, capopen;
static int registered;	/* sendbatch_flush is a turn step */

static void
sendbatch__finish(struct sendbatch_batch *b, enum sendbatch_status st)
{
	for (int i = 0; i < b->n; i++)
		b->items[i]->done(b->items[i], st, NULL);
	free(b);
}

static void
sendbatch__finish_call(struct sendbatch_call *call, enum sendbatch_status st)
{
	for (int i = 0; i < call->nb; i++)
		sendbatch__finish(call->b[i], st);
	free(call);
}

void
sendbatch_add(struct sendbatch_item *it)
{
	struct sendbatch_batch *b;
	char key[sizeof(b->key)];

	snprintf(key, sizeof(key), "%s/%s", it->tenant, it->room);
	if (open_by_room == NULL)
		open_by_room = hmap_new();
	b = hmap_get(open_by_room, key);
	if (b == NULL || b->n == SENDBATCH_MAX) {
		b = xcalloc(1, sizeof(*b));
		memcpy(b->key, key, sizeof(key));
		hmap_put(open_by_room, key, b);
		if (nopen == capopen) {
			capopen = capopen ? capopen * 2 : 64;
			open_list = xrealloc(open_list, (size_t)capopen * sizeof(*open_list));
		}
		open_list[nopen++] = b;
		if (!registered) {
			turn_register(TURN_SEND, sendbatch_flush);
			registered = 1;
		}
		turn_kick();
	}
	b->items[b->n++] = it;
}

static struct sendbatch_call *
sendbatch__call_new(int nb)
{
	struct sendbatch_call *call = xmalloc(sizeof(*call) + (size_t)nb * sizeof(call->b[0]));

	call->nb = 0;
	return call;
}

static int sendbatch__eval(struct sendbatch_call *call);

static void
sendbatch__seeded(const PGresult *res, void *arg)
{
	struct sendbatch_batch *b = arg;
	struct sendbatch_call *call;

	if (!pgq_ok(res) || PQntuples(res) != 1) {
		sendbatch__finish(b, SENDBATCH_NO_DB);
		return;
	}
	snprintf(b->floor, sizeof(b->floor), "%s", PQgetvalue(res, 0, 0));
	call = sendbatch__call_new(1);
	call->b[call->nb++] = b;
	if (sendbatch__eval(call) != 0)
		sendbatch__finish_call(call, SENDBATCH_NO_BUS);
}

/* Redis lost the room's counter: continue after PostgreSQL's max. */
static void
sendbatch__seed(struct sendbatch_batch *b)
{
	const char *params[2];

	if (b->seeded) {
		sendbatch__finish(b, SENDBATCH_NO_SEED);
		return;
	}
	b->seeded = 1;
	params[0] = b->items[0]->tenant;
	params[1] = b->items[0]->room;
	if (pgq_exec(srv.pg, max_seq_sql, 2, params, sendbatch__seeded, b) != 0)
		sendbatch__finish(b, SENDBATCH_NO_DB);
}

static int
sendbatch__item_ok(const redisReply *st, const redisReply *val)
{
	return st->type == REDIS_REPLY_INTEGER && val->type == REDIS_REPLY_STRING &&
	    (st->integer == SENDBATCH_NEW || st->integer == SENDBATCH_REPEAT ||
	    st->integer == SENDBATCH_LIMITED);
}

/* One room's part of the answer. */
static void
sendbatch__answer(struct sendbatch_batch *b, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == -1) {
		sendbatch__seed(b);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 * (size_t)b->n) {
		sendbatch__finish(b, SENDBATCH_NO_BUS);
		return;
	}
	for (int i = 0; i < b->n; i++) {
		redisReply *st = r->element[2 * i], *val = r->element[2 * i + 1];
		struct sendbatch_item *it = b->items[i];

		if (sendbatch__item_ok(st, val))
			it->done(it, (enum sendbatch_status)st->integer, val->str);
		else
			it->done(it, SENDBATCH_NO_BUS, NULL);
	}
	free(b);
}

static void
sendbatch__done(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct sendbatch_call *call = priv;

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)call->nb) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR) {
			log_warn("send script failed: %s", r->str);
			if (strncmp(r->str, "NOSCRIPT", 8) == 0)
				redis_scripts_missing();
		}
		sendbatch__finish_call(call, SENDBATCH_NO_BUS);
		return;
	}
	for (int i = 0; i < call->nb; i++)
		sendbatch__answer(call->b[i], r->element[i]);
	free(call);
}

/* One call of the send script for the call's batches (bus.c says what it
 * takes). */
static int
sendbatch__eval(struct sendbatch_call *call)
{
	const struct cfg *cfg = srv.cfg;
	char maxlen[16], ttl[16], rate_n[16], rate_win[16], nkeys[16], nrooms[16];
	char (*rkeys)[SENDBATCH_RKEY], (*keys)[SENDBATCH_KEY], (*nums)[24];
	const char **argv;
	int argc = 0, nitems = 0, rc, ki = 0, ni = 0;

	if (!redis_ready())
		return -1;
	for (int r = 0; r < call->nb; r++)
		nitems += call->b[r]->n;
	rkeys = xmalloc((size_t)call->nb * 3 * sizeof(*rkeys));	/* counter, stream, channel */
	keys = xmalloc((size_t)nitems * 2 * sizeof(*keys));	/* dedupe, bucket */
	/* per room: items; per item: ts, dedupe ttl */
	nums = xmalloc((size_t)(call->nb + 2 * nitems) * sizeof(*nums));
	argv = xmalloc((size_t)(9 + 7 * call->nb + 8 * nitems) * sizeof(*argv));
	snprintf(maxlen, sizeof(maxlen), "%d", cfg->stream_maxlen);
	snprintf(ttl, sizeof(ttl), "%d", cfg->stream_ttl_s);
	snprintf(rate_n, sizeof(rate_n), "%d", cfg->rate[RATE_SEND].n);
	snprintf(rate_win, sizeof(rate_win), "%lld", cfg->rate[RATE_SEND].window_s * 1000LL);
	snprintf(nkeys, sizeof(nkeys), "%d", 1 + 2 * call->nb + 2 * nitems);
	snprintf(nrooms, sizeof(nrooms), "%d", call->nb);
	argv[argc++] = "EVALSHA";
	argv[argc++] = redis_send_sha();
	argv[argc++] = nkeys;
	argv[argc++] = REDIS_SYNC_STREAM;
	for (int r = 0; r < call->nb; r++) {
		const struct sendbatch_batch *b = call->b[r];
		const struct sendbatch_item *first = b->items[0];

		redis_key(rkeys[3 * r], SENDBATCH_RKEY, first->tenant, first->room, "seq");
		redis_key(rkeys[3 * r + 1], SENDBATCH_RKEY, first->tenant, first->room, "stream");
		redis_channel(rkeys[3 * r + 2], SENDBATCH_RKEY, first->tenant, first->room);
		argv[argc++] = rkeys[3 * r];
		argv[argc++] = rkeys[3 * r + 1];
		for (int i = 0; i < b->n; i++, ki += 2) {
			const struct sendbatch_item *it = b->items[i];

			redis_idem_key(keys[ki], SENDBATCH_KEY, it->tenant, it->room, it->user,
			    it->cmid);
			redis_rate_key(keys[ki + 1], SENDBATCH_KEY, it->tenant, it->user, "send");
			argv[argc++] = keys[ki];
			argv[argc++] = keys[ki + 1];
		}
	}
	argv[argc++] = maxlen;
	argv[argc++] = ttl;
	argv[argc++] = rate_n;
	argv[argc++] = rate_win;
	argv[argc++] = nrooms;
	for (int r = 0; r < call->nb; r++) {
		const struct sendbatch_batch *b = call->b[r];
		const struct sendbatch_item *first = b->items[0];

		snprintf(nums[ni], sizeof(nums[0]), "%d", b->n);
		argv[argc++] = rkeys[3 * r + 2];
		argv[argc++] = b->seeded ? b->floor : "";
		argv[argc++] = first->tenant;
		argv[argc++] = first->room;
		argv[argc++] = nums[ni++];
		for (int i = 0; i < b->n; i++) {
			const struct sendbatch_item *it = b->items[i];

			snprintf(nums[ni], sizeof(nums[0]), "%lld", it->ts);
			snprintf(nums[ni + 1], sizeof(nums[0]), "%d", it->idem_ttl_s);
			argv[argc++] = it->head;
			argv[argc++] = it->mid;
			argv[argc++] = it->tail;
			argv[argc++] = it->msg_id;
			argv[argc++] = nums[ni];
			argv[argc++] = nums[ni + 1];
			ni += 2;
		}
	}
	rc = rlink_cmdargv(srv.rcmd, sendbatch__done, call, argc, argv, NULL);
	free(argv);
	free(nums);
	free(keys);
	free(rkeys);
	return rc;
}

int
sendbatch_flush(void)
{
	struct sendbatch_batch **list = open_list;
	int n = nopen;

	if (n == 0)
		return 0;
	/* A done callback may queue again: it starts a new list. */
	open_list = NULL;
	nopen = capopen = 0;
	for (int i = 0; i < n; i++)
		hmap_del(open_by_room, list[i]->key);
	for (int i = 0; i < n;) {
		struct sendbatch_call *call = sendbatch__call_new(n - i);
		int items = 0;

		/* Whole batches, in order: a room's second batch (a burst of
		 * more than SENDBATCH_MAX) goes in this call or a later one. */
		do {
			items += list[i]->n;
			call->b[call->nb++] = list[i++];
		} while (i < n && items + list[i]->n <= SENDBATCH_CALL_ITEMS);
		if (sendbatch__eval(call) != 0)
			sendbatch__finish_call(call, SENDBATCH_NO_BUS);
	}
	free(list);
	return 0;
}

void
sendbatch_shutdown(void)
{
	/* turn_shutdown's last steps have sent every batch. */
	hmap_free(open_by_room);
	open_by_room = NULL;
}
