/*
 * The recent connection events (connects, disconnects with their reason,
 * refused handshakes) and the address / User-Agent counts. Each worker
 * writes its own ring and tables in its slot; whoever answers merges them:
 * the events newest first, the counts summed by text. Entries are guarded
 * by a sequence number (a seqlock), so a reader never shows a half-written
 * one and a writer never waits.
 */
#include "proc/metrics.h"
#include "proc/metrics_private.h"
#include "lib/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_EVENTS_SHOWN 200

static const char *const event_kinds[] = { "", "connect", "disconnect", "refused" };

static void
metrics__begin(uint64_t *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
metrics__end(uint64_t *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);
}

/* Copy *src (size bytes, starting with its seq) into dst: 0 when the copy
 * is whole, -1 when the writer was at it. */
static int
metrics__read(const void *src, void *dst, size_t size)
{
	const uint64_t *seq = src;
	uint64_t before = __atomic_load_n(seq, __ATOMIC_ACQUIRE), after;

	if (before & 1)
		return -1;
	memcpy(dst, src, size);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	after = __atomic_load_n(seq, __ATOMIC_RELAXED);
	return before == after ? 0 : -1;
}

/* Printable ASCII only: the texts come from clients (a User-Agent), and
 * the document is JSON. */
static void
metrics__copy(char *dst, size_t size, const char *src, size_t len)
{
	if (src == NULL)
		len = 0;
	if (len >= size)
		len = size - 1;
	for (size_t i = 0; i < len; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[len] = '\0';
}

void
metrics__log(struct metrics_worker *w, int kind, int code, const char *ip,
    const char *tenant, const char *user, const char *reason)
{
	struct metrics_event *e = &w->events[w->events_next % METRICS_EVENTS];

	metrics__begin(&e->seq);
	e->ms = util_now_ms();
	e->kind = kind;
	e->code = code;
	metrics__copy(e->ip, sizeof(e->ip), ip, ip ? strlen(ip) : 0);
	metrics__copy(e->tenant, sizeof(e->tenant), tenant, tenant ? strlen(tenant) : 0);
	metrics__copy(e->user, sizeof(e->user), user, user ? strlen(user) : 0);
	metrics__copy(e->reason, sizeof(e->reason), reason, reason ? strlen(reason) : 0);
	metrics__end(&e->seq);
	__atomic_store_n(&w->events_next, w->events_next + 1, __ATOMIC_RELAXED);
}

/* Count text in one of w's tables (space-saving when it is full). */
static void
metrics__count(struct metrics_top *t, const char *text, size_t len)
{
	uint64_t h = util_hash(text, len) | 1;
	struct metrics_top *min = &t[0];

	for (int i = 0; i < METRICS_TOP_SLOTS; i++) {
		if (t[i].hash == h) {
			__atomic_add_fetch(&t[i].count, 1, __ATOMIC_RELAXED);
			return;
		}
		if (t[i].hash == 0 || t[i].count < min->count) {
			min = &t[i];
			if (t[i].hash == 0)
				break;
		}
	}
	metrics__begin(&min->seq);
	min->hash = h;
	min->count = min->count + 1;
	metrics__copy(min->text, sizeof(min->text), text, len);
	metrics__end(&min->seq);
}

void
metrics_conn_opened(const char *ip, const char *tenant, const char *user,
    const char *ua, size_t ualen)
{
	struct metrics_worker *w = metrics__self();

	if (w == NULL)
		return;
	metrics__log(w, ME_CONNECT, 0, ip, tenant, user, "");
	metrics__count(w->top_ip, ip, strlen(ip));
	if (ua == NULL || ualen == 0)
		ua = "(none)", ualen = 6;
	metrics__count(w->top_ua, ua, ualen);
}

void
metrics_refused(const char *ip, int status, const char *why)
{
	struct metrics_worker *w = metrics__self();

	if (w != NULL)
		metrics__log(w, ME_REFUSED, status, ip, NULL, NULL, why);
}

/* ------------------------------------------------------------- reading */

struct metrics_event_copy {
	struct metrics_event e;
	int worker;
};

static int
metrics__newer(const void *a, const void *b)
{
	const struct metrics_event_copy *x = a, *y = b;

	return x->e.ms < y->e.ms ? 1 : x->e.ms > y->e.ms ? -1 : 0;
}

json_t *
metrics__events_json(void)
{
	int n = (int)metrics__shm->nworkers, k = 0;
	struct metrics_event_copy *all = xmalloc((size_t)n * METRICS_EVENTS * sizeof(*all));
	json_t *out = json_array();

	for (int i = 0; i < n; i++)
		for (int j = 0; j < METRICS_EVENTS; j++) {
			struct metrics_event_copy *c = &all[k];

			if (metrics__read(&metrics__shm->w[i].events[j], &c->e, sizeof(c->e)) != 0 ||
			    c->e.ms == 0 || c->e.kind < ME_CONNECT || c->e.kind > ME_REFUSED)
				continue;
			c->worker = i;
			k++;
		}
	qsort(all, (size_t)k, sizeof(*all), metrics__newer);
	for (int i = 0; i < k && i < METRICS_EVENTS_SHOWN; i++) {
		const struct metrics_event *e = &all[i].e;

		json_array_append_new(out, json_pack("{s:I, s:i, s:s, s:s, s:s, s:s, s:i, s:s}",
		    "ts_ms", (json_int_t)e->ms, "worker", all[i].worker,
		    "kind", event_kinds[e->kind], "ip", e->ip, "tenant", e->tenant,
		    "user", e->user, "code", (int)e->code, "reason", e->reason));
	}
	free(all);
	return out;
}

static int
metrics__by_hash(const void *a, const void *b)
{
	const struct metrics_top *x = a, *y = b;

	return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int
metrics__more(const void *a, const void *b)
{
	const struct metrics_top *x = a, *y = b;

	return x->count < y->count ? 1 : x->count > y->count ? -1 : strcmp(x->text, y->text);
}

/* The METRICS_TOP_N most counted texts over every worker. */
json_t *
metrics__top_json(int ua)
{
	int n = (int)metrics__shm->nworkers, k = 0;
	struct metrics_top *all = xmalloc((size_t)n * METRICS_TOP_SLOTS * sizeof(*all));
	json_t *out = json_array();

	for (int i = 0; i < n; i++) {
		struct metrics_top *t = ua ? metrics__shm->w[i].top_ua : metrics__shm->w[i].top_ip;

		for (int j = 0; j < METRICS_TOP_SLOTS; j++) {
			struct metrics_top *c = &all[k];

			if (metrics__read(&t[j], c, sizeof(*c)) != 0 || c->hash == 0)
				continue;
			c->count = __atomic_load_n(&t[j].count, __ATOMIC_RELAXED);
			k++;
		}
	}
	/* The same text on several workers: one entry, counts summed. */
	qsort(all, (size_t)k, sizeof(*all), metrics__by_hash);
	for (int i = 1, m = 0; i <= k; i++) {
		if (i < k && all[i].hash == all[m].hash) {
			all[m].count += all[i].count;
			continue;
		}
		if (i == k) {
			k = m + (k > 0);
			break;
		}
		all[++m] = all[i];
	}
	qsort(all, (size_t)k, sizeof(*all), metrics__more);
	for (int i = 0; i < k && i < METRICS_TOP_N; i++)
		json_array_append_new(out, json_pack("{s:s, s:I}", ua ? "user_agent" : "ip",
		    all[i].text, "count", (json_int_t)all[i].count));
	free(all);
	return out;
}
