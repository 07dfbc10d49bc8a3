#include "store/sync.h"
#include "store/redis.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "store/pg_queue.h"
#include "store/redis_link.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

/* sql/005_sync.sql: the events, and what they change in the projections. */
static const char sync_sql[] = "SELECT chatd_sync($1::jsonb)";

struct sync_batch {
	int n;
	int events;		/* in its entries */
	char **ids;		/* owned stream ids */
	uint64_t started_us;
};

static char consumer[160];
static int reading;		/* an XREADGROUP is outstanding */
static int reading_pending;	/* ...and it reads our own pending entries */
static int writing;		/* a batch is in PostgreSQL */
static int pending_mode;	/* re-read our own unacked entries first */
static int stopped;
static int need_group;		/* (re)create the consumer group first */
static uv_timer_t retry_timer;
static uv_timer_t lag_timer;
static uv_timer_t claim_timer;

static void sync__read(void);
static void sync__link_up(void);

static void
sync__retry_cb(uv_timer_t *t)
{
	(void)t;
	sync__read();
}

static void
sync__retry_later(unsigned ms)
{
	if (!stopped)
		uv_timer_start(&retry_timer, sync__retry_cb, ms, 0);
}

static void
sync__batch_free(struct sync_batch *b)
{
	for (int i = 0; i < b->n; i++)
		free(b->ids[i]);
	free(b->ids);
	free(b);
}

static void
sync__acked(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)ac;
	(void)priv;
	if (rlink_failed(reply))
		pending_mode = 1;	/* read again; the insert is idempotent */
}

static void
sync__written(const PGresult *res, void *arg)
{
	struct sync_batch *b = arg;
	const char **argv;

	writing = 0;
	if (!pgq_ok(res)) {
		metrics_add(M_SYNC_FAILED, 1);
		pending_mode = 1;
		sync__batch_free(b);
		sync__retry_later(500);
		return;
	}
	argv = xcalloc((size_t)b->n + 3, sizeof(*argv));
	argv[0] = "XACK";
	argv[1] = REDIS_SYNC_STREAM;
	argv[2] = REDIS_SYNC_GROUP;
	for (int i = 0; i < b->n; i++)
		argv[3 + i] = b->ids[i];
	if (rlink_cmdargv(srv.rsync, sync__acked, NULL, b->n + 3, argv, NULL) != 0)
		pending_mode = 1;
	free(argv);
	metrics_add(M_SYNC_SYNCED, b->events);
	metrics_set(M_SYNC_LAST_MS, util_now_ms());
	metrics_set(M_SYNC_BATCH_US, (int64_t)(uv_hrtime() / 1000 - b->started_us));
	sync__batch_free(b);
	sync__read();
}

static const char *
sync__field(const redisReply *fields, const char *name, size_t *len)
{
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		if (fields->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(fields->element[i]->str, name) == 0) {
			*len = fields->element[i + 1]->len;
			return fields->element[i + 1]->str;
		}
	}
	return NULL;
}

/* Appends the events of one entry as {"t":..,"r":..,"s":..,"e":<event>},
 * each with its seq: the entry's "s" for the first, one more for each next
 * (bus.c). ids were validated before they ever reached the stream, the
 * events are JSON without a raw newline. Returns the events appended, or
 * -1 for a malformed entry (nothing appended). */
static int
sync__append(char **buf, size_t *len, size_t *cap, const redisReply *fields)
{
	size_t tl, rl, sl, el;
	const char *t = sync__field(fields, "t", &tl);
	const char *r = sync__field(fields, "r", &rl);
	const char *s = sync__field(fields, "s", &sl);
	const char *e = sync__field(fields, "e", &el);
	const char *end, *nl;
	long long seq;
	char *num_end;
	int n = 0;

	if (!t || !r || !s || !e || !util_valid_id(t) || !util_valid_id(r) || sl == 0 || sl > 18)
		return -1;
	seq = strtoll(s, &num_end, 10);
	if (num_end != s + sl || seq < 1)
		return -1;
	for (end = e + el; e < end; e = nl + 1, n++) {
		size_t need, evl;

		nl = memchr(e, '\n', (size_t)(end - e));
		if (nl == NULL)
			nl = end;
		evl = (size_t)(nl - e);
		need = *len + tl + rl + evl + 64;
		if (need > *cap) {
			*cap = need * 2;
			*buf = xrealloc(*buf, *cap);
		}
		*len += (size_t)snprintf(*buf + *len, *cap - *len,
		    "%s{\"t\":\"%s\",\"r\":\"%s\",\"s\":%lld,\"e\":%.*s}",
		    *len > 1 ? "," : "", t, r, seq + n, (int)evl, e);
	}
	return n;
}

/* Entries to ask for: as many as held sync_batch_size events in the last
 * read (an entry holds 1 to REDIS_SYNC_ENTRY_MAX), so one statement carries
 * about sync_batch_size events however the sends were batched. */
static int read_count;

static void
sync__adapt(size_t entries, int events)
{
	int size = srv.cfg->sync_batch_size;

	if (entries == 0 || events <= 0)
		return;
	read_count = (int)((long long)size * (long long)entries / events);
	if (read_count < 1)
		read_count = 1;
	if (read_count > size)
		read_count = size;
}

static void
sync__got(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply, *entries;
	struct sync_batch *b;
	char *json;
	size_t len = 1, cap = 4096;
	int n;

	(void)ac;
	(void)priv;
	reading = 0;
	if (stopped)
		return;
	if (r == NULL)
		return;		/* link lost: sync__link_up() starts again */
	if (r->type == REDIS_REPLY_ERROR) {
		if (strncmp(r->str, "NOGROUP", 7) != 0 && strncmp(r->str, "UNBLOCKED", 9) != 0 &&
		    strncmp(r->str, "LOADING", 7) != 0)
			log_warn("sync: XREADGROUP failed: %s", r->str);
		need_group = 1;
		sync__retry_later(200);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
	    r->element[0]->elements < 2 || r->element[0]->element[1]->elements == 0) {
		/* Nothing (left) of our own; a claim or failure that came while
		 * a ">" read was out keeps pending_mode set for the next read. */
		if (reading_pending)
			pending_mode = 0;
		sync__read();
		return;
	}
	entries = r->element[0]->element[1];
	b = xcalloc(1, sizeof(*b));
	b->ids = xcalloc(entries->elements, sizeof(*b->ids));
	b->started_us = uv_hrtime() / 1000;
	json = xmalloc(cap);
	json[0] = '[';
	for (size_t i = 0; i < entries->elements; i++) {
		redisReply *en = entries->element[i];

		if (en->elements < 1 || en->element[0]->type != REDIS_REPLY_STRING)
			continue;
		/* An entry deleted while pending comes back without fields:
		 * acknowledge it with the batch so it does not come back. */
		b->ids[b->n++] = xstrdup(en->element[0]->str);
		if (en->elements < 2 || en->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		n = sync__append(&json, &len, &cap, en->element[1]);
		if (n < 0)
			log_err("sync: malformed sync entry %s skipped", en->element[0]->str);
		else
			b->events += n;
	}
	sync__adapt(entries->elements, b->events);
	json[len++] = ']';
	json[len] = '\0';
	/* Set before the call: a failing send calls sync__written at once. */
	writing = 1;
	if (sync_write(srv.pgsync, json, sync__written, b) != 0) {
		writing = 0;
		sync__batch_free(b);
		pending_mode = 1;
		sync__retry_later(200);
	}
	free(json);
}

char *
sync_batch_json(const char *tenant, const char *room_id, long long seq, const char *event)
{
	char *out;

	if (asprintf(&out, "[{\"t\":\"%s\",\"r\":\"%s\",\"s\":%lld,\"e\":%s}]", tenant,
	    room_id, seq, event) < 0)
		log_fatal("sync: out of memory");
	return out;
}

int
sync_write(struct pgq *q, const char *batch_json, pgq_cb *cb, void *arg)
{
	const char *params[1] = { batch_json };

	return pgq_exec(q, sync_sql, 1, params, cb, arg);
}

/* Entries another consumer read but never acknowledged (its worker died
 * and did not come back under the same name) become ours after
 * sync_claim_idle_ms; the next pending read writes them. */
static void
sync__claimed(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	(void)priv;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
	    r->element[1]->type == REDIS_REPLY_ARRAY && r->element[1]->elements > 0) {
		log_info("sync: claimed %zu entries of a consumer that went away",
		    r->element[1]->elements);
		pending_mode = 1;
	}
}

static void
sync__claim_cb(uv_timer_t *t)
{
	char idle[16], count[16];

	(void)t;
	snprintf(idle, sizeof(idle), "%d", srv.cfg->sync_claim_idle_ms);
	snprintf(count, sizeof(count), "%d", srv.cfg->sync_batch_size);
	rlink_cmd(srv.rcmd, sync__claimed, NULL, "XAUTOCLAIM %s %s %s %s 0-0 COUNT %s JUSTID",
	    REDIS_SYNC_STREAM, REDIS_SYNC_GROUP, consumer, idle, count);
}

static void
sync__read(void)
{
	char count[16], block[16];

	if (stopped || reading || writing)
		return;
	if (!rlink_up(srv.rsync) || !pgq_up(srv.pgsync)) {
		sync__retry_later(200);
		return;
	}
	if (need_group) {
		sync__link_up();
		return;
	}
	snprintf(count, sizeof(count), "%d", read_count > 0 ? read_count : srv.cfg->sync_batch_size);
	snprintf(block, sizeof(block), "%d", srv.cfg->sync_batch_wait_ms);
	if (rlink_cmd(srv.rsync, sync__got, NULL,
	    "XREADGROUP GROUP %s %s COUNT %s BLOCK %s STREAMS %s %s", REDIS_SYNC_GROUP,
	    consumer, count, pending_mode ? "0" : block, REDIS_SYNC_STREAM,
	    pending_mode ? "0" : ">") == 0) {
		reading = 1;
		reading_pending = pending_mode;
	} else {
		sync__retry_later(200);
	}
}

static void
sync__group_made(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	(void)priv;
	reading = 0;
	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
		if (strncmp(r->str, "LOADING", 7) != 0)
			log_warn("sync: XGROUP CREATE failed: %s", r->str);
		sync__retry_later(200);
		return;
	}
	need_group = 0;
	pending_mode = 1;
	sync__read();
}

/* The sync link connected (redis_on_link), or the group must be made
 * again: XGROUP CREATE (MKSTREAM), then read this consumer's pending
 * entries first. */
static void
sync__link_up(void)
{
	if (stopped || reading)
		return;
	need_group = 1;
	if (rlink_cmd(srv.rsync, sync__group_made, NULL, "XGROUP CREATE %s %s 0 MKSTREAM",
	    REDIS_SYNC_STREAM, REDIS_SYNC_GROUP) == 0)
		reading = 1;
	else
		sync__retry_later(200);
}

/* Worker 0 measures the whole group's lag and trims what the group has
 * acknowledged: everything before the oldest pending entry, or before the
 * last delivered one when nothing is pending. */
struct sync_lag {
	int64_t lag;
	char last_id[64];
};

static void
sync__pending_info(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct sync_lag *sl = priv;
	int64_t pending = 0, age = 0;
	const char *minid = sl->last_id;

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
		goto done;
	if (r->element[0]->type == REDIS_REPLY_INTEGER)
		pending = r->element[0]->integer;
	if (pending > 0 && r->element[1]->type == REDIS_REPLY_STRING) {
		long long ms = strtoll(r->element[1]->str, NULL, 10);

		age = util_now_ms() - ms;
		minid = r->element[1]->str;
	}
	if (minid[0] != '\0')
		rlink_cmd(srv.rcmd, NULL, NULL, "XTRIM %s MINID %s", REDIS_SYNC_STREAM, minid);
	metrics_set_sync_lag(sl->lag + pending, pending, age < 0 ? 0 : age);
done:
	free(sl);
}

static void
sync__group_info(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct sync_lag *sl;

	(void)ac;
	(void)priv;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY)
		return;
	sl = xcalloc(1, sizeof(*sl));
	for (size_t g = 0; g < r->elements; g++) {
		redisReply *f = r->element[g];
		size_t len;
		const char *name, *last;

		if (f->type != REDIS_REPLY_ARRAY)
			continue;
		name = sync__field(f, "name", &len);
		if (name == NULL || strcmp(name, REDIS_SYNC_GROUP) != 0)
			continue;
		for (size_t i = 0; i + 1 < f->elements; i += 2) {
			if (f->element[i]->type == REDIS_REPLY_STRING &&
			    strcmp(f->element[i]->str, "lag") == 0 &&
			    f->element[i + 1]->type == REDIS_REPLY_INTEGER)
				sl->lag = f->element[i + 1]->integer;
		}
		last = sync__field(f, "last-delivered-id", &len);
		if (last != NULL && len < sizeof(sl->last_id))
			memcpy(sl->last_id, last, len + 1);
	}
	if (rlink_cmd(srv.rcmd, sync__pending_info, sl, "XPENDING %s %s",
	    REDIS_SYNC_STREAM, REDIS_SYNC_GROUP) != 0)
		free(sl);
}

static void
sync__lag_cb(uv_timer_t *t)
{
	(void)t;
	rlink_cmd(srv.rcmd, sync__group_info, NULL, "XINFO GROUPS %s", REDIS_SYNC_STREAM);
}

void
sync_start(void)
{
	snprintf(consumer, sizeof(consumer), "%s-w%d", srv.cfg->instance, srv.index);
	redis_on_link(REDIS_LINK_SYNC, sync__link_up, NULL);
	uv_timer_init(srv.loop, &retry_timer);
	uv_timer_init(srv.loop, &lag_timer);
	uv_timer_init(srv.loop, &claim_timer);
	uv_timer_start(&claim_timer, sync__claim_cb, 5000, 5000);
	if (srv.index == 0)
		uv_timer_start(&lag_timer, sync__lag_cb, 1000, 1000);
}

void
sync_stop(void)
{
	if (stopped)
		return;
	stopped = 1;
	uv_timer_stop(&retry_timer);
	uv_timer_stop(&lag_timer);
	uv_timer_stop(&claim_timer);
	uv_close((uv_handle_t *)&claim_timer, NULL);
	uv_close((uv_handle_t *)&retry_timer, NULL);
	uv_close((uv_handle_t *)&lag_timer, NULL);
}

int
sync_busy(void)
{
	return writing;
}
