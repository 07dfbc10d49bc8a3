#include "proc/metrics.h"
#include "proc/metrics_private.h"
#include "lib/util.h"
#include "proc/log.h"

#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdio.h>
#include <unistd.h>

struct metrics_shm *metrics__shm;
#define shm metrics__shm
static int self = -1;

const int64_t metrics_hist_bounds_us[METRICS_HIST_BUCKETS - 1] = {
	250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000, 10000000,
};

/* Close reasons by WebSocket close code; the last one takes the others. */
static const int metrics_close_codes[METRICS_CLOSE_REASONS] = {
	1000, 1001, 1002, 1007, 1008, 1009, 1013, 4001, 4008, 0, -1,
};
const char *const metrics_close_names[METRICS_CLOSE_REASONS] = {
	"normal", "going_away", "protocol_error", "bad_utf8", "policy",
	"too_big", "slow_consumer", "token_expired", "heartbeat_timeout",
	"no_close_frame", "other",
};

/* The error codes of protocol.md; "other" takes anything else. */
const char *const metrics_error_names[METRICS_ERROR_CODES] = {
	"bad_request", "unauthorized", "forbidden", "not_found", "conflict",
	"too_large", "rate_limited", "unavailable", "internal", "other",
};


int
metrics_init(int nworkers, int64_t start_ms)
{
	void *p = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	shm = p;
	shm->start_ms = start_ms;
	shm->nworkers = nworkers;
	return 0;
}

void
metrics_worker_started(int index, pid_t pid)
{
	struct metrics_worker *w = &shm->w[index];

	if (LOAD(&w->started_ms) != 0) {
		int64_t k = __atomic_add_fetch(&w->restarts, 1, __ATOMIC_RELAXED);

		STORE(&w->restart_ms[k % METRICS_RESTARTS_KEPT], util_now_ms());
	}
	w->cpu_prev_ms = 0;
	STORE(&w->pid, (int64_t)pid);
	STORE(&w->started_ms, util_now_ms());
}

void
metrics_worker_died(int index)
{
	struct metrics_worker *w = &shm->w[index];
	uint64_t bit = 1ULL << index;

	/* Its connections and subscriptions died with it; totals stay. */
	STORE(&w->pid, 0);
	STORE(&w->conns_active, 0);
	STORE(&w->rooms_local, 0);
	STORE(&w->subscriptions, 0);
	STORE(&w->redis_connected, 0);
	STORE(&w->pg_connected, 0);
	STORE(&w->cpu_pct_x100, 0);
	STORE(&w->rss_kb, 0);
	for (size_t i = 0; i < METRICS_ROOM_SLOTS; i++)
		__atomic_and_fetch(&shm->rooms[i].workers, ~bit, __ATOMIC_RELAXED);
}

void
metrics_set_self(int index)
{
	self = index;
}

/* Field f of a worker's slot. */
int64_t *
metrics__field(struct metrics_worker *w, enum metrics_field f)
{
	switch (f) {
	case M_CONNS_ACTIVE: return &w->conns_active;
	case M_CONNS_TOTAL: return &w->conns_total;
	case M_ROOMS_LOCAL: return &w->rooms_local;
	case M_SUBSCRIPTIONS: return &w->subscriptions;
	case M_FRAMES_IN: return &w->frames_in;
	case M_MSGS_SENT: return &w->msgs_sent;
	case M_DELIVERIES: return &w->deliveries;
	case M_ERRORS_SENT: return &w->errors_sent;
	case M_REDIS_CONNECTED: return &w->redis_connected;
	case M_REDIS_PING_US: return &w->redis_ping_us;
	case M_REDIS_ERRORS: return &w->redis_errors;
	case M_REDIS_RECONNECTS: return &w->redis_reconnects;
	case M_PG_CONNECTED: return &w->pg_connected;
	case M_PG_ERRORS: return &w->pg_errors;
	case M_SYNC_SYNCED: return &w->sync_synced;
	case M_SYNC_FAILED: return &w->sync_failed;
	case M_SYNC_LAST_MS: return &w->sync_last_ms;
	case M_SYNC_BATCH_US: return &w->sync_batch_us;
	case M_REFUSED_AUTH: return &w->refused_auth;
	case M_REFUSED_ORIGIN: return &w->refused_origin;
	case M_REFUSED_RATE: return &w->refused_rate;
	case M_RATE_LIMITED: return &w->rate_limited;
	case M_GAPS: return &w->gaps;
	case M_SLOW_CLOSES: return &w->slow_closes;
	case M_TOKEN_EXPIRED: return &w->token_expired;
	case M_ACCEPT_PAUSED: return &w->accept_paused;
	case M_JOIN_CHECKS: return &w->join_checks;
	case M_JOIN_BATCHES: return &w->join_batches;
	case M_WRITES: return &w->writes;
	case M_WRITE_BYTES: return &w->write_bytes;
	case M_CONN_HEAP: return &w->conn_heap;
	case M_CONNS_CLOSED: return &w->conns_closed;
	case M_REFUSED_BAD: return &w->refused_bad;
	case M_REFUSED_UPGRADE: return &w->refused_upgrade;
	case M_REFUSED_BUSY: return &w->refused_busy;
	case M_CPU_PCT_X100: return &w->cpu_pct_x100;
	case M_RSS_KB: return &w->rss_kb;
	case M_REDIS_USED_MEMORY: return &w->redis_used_memory;
	case M_COUNT: break;
	}
	log_fatal("metrics: unknown field %d", (int)f);
}

void
metrics_add(enum metrics_field f, int64_t delta)
{
	if (shm != NULL && self >= 0)
		__atomic_add_fetch(metrics__field(&shm->w[self], f), delta, __ATOMIC_RELAXED);
}

void
metrics_set(enum metrics_field f, int64_t value)
{
	if (shm != NULL && self >= 0)
		STORE(metrics__field(&shm->w[self], f), value);
}

int64_t
metrics_get(enum metrics_field f)
{
	return shm != NULL && self >= 0 ? LOAD(metrics__field(&shm->w[self], f)) : 0;
}

struct metrics_worker *
metrics__self(void)
{
	return shm != NULL && self >= 0 ? &shm->w[self] : NULL;
}

#define INC(p, d) __atomic_add_fetch((p), (d), __ATOMIC_RELAXED)

void
metrics_conn_closed(int code, const char *ip, const char *tenant, const char *user)
{
	struct metrics_worker *w = metrics__self();
	int i = 0;

	if (w == NULL)
		return;
	while (i < METRICS_CLOSE_REASONS - 1 && metrics_close_codes[i] != code)
		i++;
	INC(&w->closes[i], 1);
	INC(&w->conns_closed, 1);
	metrics__log(w, ME_DISCONNECT, code, ip, tenant, user, metrics_close_names[i]);
}

void
metrics_error(const char *code)
{
	struct metrics_worker *w = metrics__self();
	int i = 0;

	if (w == NULL)
		return;
	while (i < METRICS_ERROR_CODES - 1 && strcmp(metrics_error_names[i], code) != 0)
		i++;
	INC(&w->errors[i], 1);
}

void
metrics_latency(enum metrics_hist_kind h, int64_t us)
{
	struct metrics_worker *w = metrics__self();
	int i = 0;

	if (w == NULL)
		return;
	if (us < 0)
		us = 0;
	while (i < METRICS_HIST_BUCKETS - 1 && us > metrics_hist_bounds_us[i])
		i++;
	INC(&w->hist[h].n[i], 1);
	INC(&w->hist[h].sum_us, us);
	INC(&w->hist[h].count, 1);
	if (us > LOAD(&w->max_us[h]))
		STORE(&w->max_us[h], us);
}

/* utime + stime (clock ticks) and RSS (pages) of this process: fields 14,
 * 15 and 24 of /proc/self/stat, counted after the command's ')'. */
static int
metrics__proc_stat(int64_t *ticks, int64_t *rss_pages)
{
	char buf[1024], *p, *end;
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n;
	int field = 2;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	*ticks = *rss_pages = 0;
	for (p++; *p != '\0' && field < 24; ) {
		long long v;

		while (*p == ' ')
			p++;
		field++;
		v = strtoll(p, &end, 10);
		if (field == 14 || field == 15)
			*ticks += v;
		else if (field == 24)
			*rss_pages = v;
		p = strchr(p, ' ');
		if (p == NULL)
			break;
	}
	return field == 24 ? 0 : -1;
}

static void
metrics__tick_cpu(struct metrics_worker *w, int64_t now)
{
	int64_t ticks, pages;
	long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);

	if (metrics__proc_stat(&ticks, &pages) != 0)
		return;
	if (w->cpu_prev_ms != 0 && now > w->cpu_prev_ms && hz > 0)
		STORE(&w->cpu_pct_x100, (ticks - w->cpu_prev_ticks) * 1000 * 10000 /
		    (hz * (now - w->cpu_prev_ms)));
	w->cpu_prev_ticks = ticks;
	w->cpu_prev_ms = now;
	STORE(&w->rss_kb, pages * (page / 1024));
}

/* The figures "per second" are the last second's: each counter's delta
 * since the previous tick, and each histogram's. Only this worker writes
 * its slot, so the copies need no lock; a reader may see a tick half done
 * (one figure of the next second), which a once-a-second view tolerates. */
void
metrics_tick(void)
{
	struct metrics_worker *w = metrics__self();
	int64_t now = util_now_ms(), cur[METRICS_RATES];

	if (w == NULL)
		return;
	cur[0] = LOAD(&w->conns_total);
	cur[1] = LOAD(&w->conns_closed);
	cur[2] = LOAD(&w->msgs_sent);
	cur[3] = LOAD(&w->deliveries);
	cur[4] = LOAD(&w->accept_paused);
	cur[5] = LOAD(&w->slow_closes);
	for (int i = 0; i < METRICS_RATES; i++) {
		STORE(&w->rate_last[i], cur[i] - w->rate_prev[i]);
		w->rate_prev[i] = cur[i];
	}
	for (int h = 0; h < METRICS_HISTS; h++) {
		struct metrics_hist *c = &w->hist[h], *p = &w->prev[h], *l = &w->last[h];

		for (int b = 0; b < METRICS_HIST_BUCKETS; b++) {
			int64_t v = LOAD(&c->n[b]);

			STORE(&l->n[b], v - p->n[b]);
			p->n[b] = v;
		}
		STORE(&l->sum_us, LOAD(&c->sum_us) - p->sum_us);
		p->sum_us = LOAD(&c->sum_us);
		STORE(&l->count, LOAD(&c->count) - p->count);
		p->count = LOAD(&c->count);
		/* last[].n[] has no room for the max: keep it in max_us of the
		 * finished interval, moved to last_max_us. */
		STORE(&w->last_max_us[h], LOAD(&w->max_us[h]));
		STORE(&w->max_us[h], 0);
	}
	metrics__tick_cpu(w, now);
}

void
metrics_set_sync_lag(int64_t entries, int64_t pending, int64_t age_ms)
{
	STORE(&shm->sync_lag_entries, entries);
	STORE(&shm->sync_pending, pending);
	STORE(&shm->sync_age_ms, age_ms);
}

/* Open addressing over a fixed table; a slot, once claimed by a room's
 * hash, keeps it, so lookups never race with deletions. */
static struct metrics_room_slot *
metrics__room_slot(const char *key, int claim)
{
	uint64_t h = util_hash(key, strlen(key)) | 1;

	for (size_t n = 0; n < METRICS_ROOM_SLOTS; n++) {
		struct metrics_room_slot *s = &shm->rooms[(h + n) & (METRICS_ROOM_SLOTS - 1)];
		uint64_t cur = LOAD(&s->hash);

		if (cur == h)
			return s;
		if (cur == 0) {
			uint64_t zero = 0;

			if (!claim)
				return NULL;
			if (__atomic_compare_exchange_n(&s->hash, &zero, h, 0,
			    __ATOMIC_RELAXED, __ATOMIC_RELAXED) || zero == h)
				return s;
		}
	}
	return NULL;
}

void
metrics_set_users(int64_t n)
{
	if (shm != NULL)
		STORE(&shm->users, n);
}

void
metrics_room_add(const char *key)
{
	struct metrics_room_slot *s = metrics__room_slot(key, 1);

	if (s == NULL) {
		__atomic_add_fetch(&shm->rooms_overflow, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_or_fetch(&s->workers, 1ULL << self, __ATOMIC_RELAXED);
}

void
metrics_room_remove(const char *key)
{
	struct metrics_room_slot *s = metrics__room_slot(key, 0);

	if (s != NULL)
		__atomic_and_fetch(&s->workers, ~(1ULL << self), __ATOMIC_RELAXED);
}

