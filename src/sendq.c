#include "sendq.h"
#include "bus.h"
#include "flush.h"
#include "hmap.h"
#include "log.h"
#include "pgq.h"
#include "rlink.h"
#include "room.h"
#include "srv.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Items of one script call: bounds the call's run time in Redis (it
 * blocks Redis) and its size; more items in one turn make more calls. */
#define SENDQ_MAX 128
#define SENDQ_KEY 400		/* "chatd:{T/R}:idem:U/C" and the bucket key */

static const char max_seq_sql[] =
"SELECT coalesce(max(seq), 0) FROM room_events WHERE tenant = $1 AND room_id = $2";

struct sendq_batch {
	char key[2 * UTIL_ID_MAX + 2];	/* tenant/room */
	int n;
	int seeded;
	char floor[24];			/* PostgreSQL's max seq once seeded */
	struct sendq_item *items[SENDQ_MAX];
};

static struct hmap *open_by_room;	/* batches still taking items this turn */
static struct sendq_batch **open_list;
static int nopen, capopen;

static void
sendq__finish(struct sendq_batch *b, enum sendq_status st)
{
	for (int i = 0; i < b->n; i++)
		b->items[i]->done(b->items[i], st, NULL);
	free(b);
}

void
sendq_add(struct sendq_item *it)
{
	struct sendq_batch *b;
	char key[sizeof(b->key)];

	snprintf(key, sizeof(key), "%s/%s", it->tenant, it->room);
	if (open_by_room == NULL)
		open_by_room = hmap_new();
	b = hmap_get(open_by_room, key);
	if (b == NULL || b->n == SENDQ_MAX) {
		b = xcalloc(1, sizeof(*b));
		memcpy(b->key, key, sizeof(key));
		hmap_put(open_by_room, key, b);
		if (nopen == capopen) {
			capopen = capopen ? capopen * 2 : 64;
			open_list = xrealloc(open_list, (size_t)capopen * sizeof(*open_list));
		}
		open_list[nopen++] = b;
		flush_kick();
	}
	b->items[b->n++] = it;
}

static int sendq__eval(struct sendq_batch *b);

static void
sendq__seeded(const PGresult *res, void *arg)
{
	struct sendq_batch *b = arg;

	if (!pgq_ok(res) || PQntuples(res) != 1) {
		sendq__finish(b, SENDQ_NO_DB);
		return;
	}
	snprintf(b->floor, sizeof(b->floor), "%s", PQgetvalue(res, 0, 0));
	if (sendq__eval(b) != 0)
		sendq__finish(b, SENDQ_NO_BUS);
}

static int
sendq__item_ok(const redisReply *st, const redisReply *val)
{
	return st->type == REDIS_REPLY_INTEGER && val->type == REDIS_REPLY_STRING &&
	    (st->integer == SENDQ_NEW || st->integer == SENDQ_REPEAT ||
	    st->integer == SENDQ_LIMITED);
}

static void
sendq__done(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct sendq_batch *b = priv;
	const char *params[2];

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == -1) {
		/* Redis lost the room's counter: continue after PostgreSQL's max. */
		if (b->seeded) {
			sendq__finish(b, SENDQ_NO_SEED);
			return;
		}
		b->seeded = 1;
		params[0] = b->items[0]->tenant;
		params[1] = b->items[0]->room;
		if (pgq_exec(srv.pg, max_seq_sql, 2, params, sendq__seeded, b) != 0)
			sendq__finish(b, SENDQ_NO_DB);
		return;
	}
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements != 2 * (size_t)b->n) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR) {
			log_warn("send script failed: %s", r->str);
			if (strncmp(r->str, "NOSCRIPT", 8) == 0)
				bus_scripts_missing();
		}
		sendq__finish(b, SENDQ_NO_BUS);
		return;
	}
	for (int i = 0; i < b->n; i++) {
		redisReply *st = r->element[2 * i], *val = r->element[2 * i + 1];
		struct sendq_item *it = b->items[i];

		if (sendq__item_ok(st, val))
			it->done(it, (enum sendq_status)st->integer, val->str);
		else
			it->done(it, SENDQ_NO_BUS, NULL);
	}
	free(b);
}

/* One call of the send script for the batch (bus.c says what it takes). */
static int
sendq__eval(struct sendq_batch *b)
{
	const struct cfg *cfg = srv.cfg;
	const struct sendq_item *first = b->items[0];
	char kseq[200], kstream[200], channel[200], maxlen[16], ttl[16], rate[16], burst[16];
	char nkeys[16], nitems[16];
	char (*keys)[SENDQ_KEY], (*nums)[24];
	const char **argv;
	int argc = 0, rc;

	if (!bus_ready())
		return -1;
	keys = xmalloc((size_t)b->n * 2 * sizeof(*keys));	/* dedupe, bucket */
	nums = xmalloc((size_t)b->n * 2 * sizeof(*nums));	/* ts, dedupe ttl */
	argv = xmalloc((size_t)(15 + 8 * b->n) * sizeof(*argv));
	bus_key(kseq, sizeof(kseq), first->tenant, first->room, "seq");
	bus_key(kstream, sizeof(kstream), first->tenant, first->room, "stream");
	room_channel(channel, sizeof(channel), first->tenant, first->room);
	snprintf(maxlen, sizeof(maxlen), "%d", cfg->stream_maxlen);
	snprintf(ttl, sizeof(ttl), "%d", cfg->stream_ttl_s);
	snprintf(rate, sizeof(rate), "%d", cfg->rate_send_per_s);
	snprintf(burst, sizeof(burst), "%d", cfg->rate_send_burst);
	snprintf(nkeys, sizeof(nkeys), "%d", 3 + 2 * b->n);
	snprintf(nitems, sizeof(nitems), "%d", b->n);
	argv[argc++] = "EVALSHA";
	argv[argc++] = bus_send_sha();
	argv[argc++] = nkeys;
	argv[argc++] = kseq;
	argv[argc++] = kstream;
	argv[argc++] = BUS_SYNC_STREAM;
	for (int i = 0; i < b->n; i++) {
		const struct sendq_item *it = b->items[i];

		snprintf(keys[2 * i], SENDQ_KEY, "chatd:{%s/%s}:idem:%s/%s", it->tenant, it->room,
		    it->user, it->cmid);
		bus_rate_key(keys[2 * i + 1], SENDQ_KEY, it->tenant, it->user, "send");
		argv[argc++] = keys[2 * i];
		argv[argc++] = keys[2 * i + 1];
	}
	argv[argc++] = channel;
	argv[argc++] = maxlen;
	argv[argc++] = ttl;
	argv[argc++] = b->seeded ? b->floor : "";
	argv[argc++] = first->tenant;
	argv[argc++] = first->room;
	argv[argc++] = rate;
	argv[argc++] = burst;
	argv[argc++] = nitems;
	for (int i = 0; i < b->n; i++) {
		const struct sendq_item *it = b->items[i];

		snprintf(nums[2 * i], sizeof(nums[0]), "%lld", it->ts);
		snprintf(nums[2 * i + 1], sizeof(nums[0]), "%d", it->idem_ttl_s);
		argv[argc++] = it->head;
		argv[argc++] = it->mid;
		argv[argc++] = it->tail;
		argv[argc++] = it->msg_id;
		argv[argc++] = nums[2 * i];
		argv[argc++] = nums[2 * i + 1];
	}
	rc = rlink_cmdargv(srv.rcmd, sendq__done, b, argc, argv, NULL);
	free(argv);
	free(nums);
	free(keys);
	return rc;
}

void
sendq_flush(void)
{
	struct sendq_batch **list = open_list;
	int n = nopen;

	if (n == 0)
		return;
	/* A done callback may queue again: it starts a new list. */
	open_list = NULL;
	nopen = capopen = 0;
	for (int i = 0; i < n; i++)
		hmap_del(open_by_room, list[i]->key);
	for (int i = 0; i < n; i++)
		if (sendq__eval(list[i]) != 0)
			sendq__finish(list[i], SENDQ_NO_BUS);
	free(list);
}

void
sendq_shutdown(void)
{
	/* flush_shutdown's last flush has sent every batch (sendq_add starts
	 * its check handle). */
	hmap_free(open_by_room);
	open_by_room = NULL;
}
