#include "proc/metrics.h"
#include "lib/util.h"
#include "proc/log.h"

#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define METRICS_ROOM_SLOTS 65536	/* power of two */

struct metrics_room_slot {
	uint64_t hash;		/* 0 = free */
	uint64_t workers;	/* bit i: worker i has local subscribers */
};

struct metrics_shm {
	int64_t start_ms;
	int64_t nworkers;
	int64_t sync_lag_entries;
	int64_t sync_pending;
	int64_t sync_age_ms;
	int64_t rooms_overflow;
	struct metrics_worker w[METRICS_MAX_WORKERS];
	struct metrics_room_slot rooms[METRICS_ROOM_SLOTS];
};

static struct metrics_shm *shm;
static int self = -1;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

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

	if (LOAD(&w->started_ms) != 0)
		__atomic_add_fetch(&w->restarts, 1, __ATOMIC_RELAXED);
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
	for (size_t i = 0; i < METRICS_ROOM_SLOTS; i++)
		__atomic_and_fetch(&shm->rooms[i].workers, ~bit, __ATOMIC_RELAXED);
}

void
metrics_set_self(int index)
{
	self = index;
}

/* Field f of a worker's slot. */
static int64_t *
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

static json_t *
metrics__worker_json(int i, int64_t now)
{
	struct metrics_worker *w = &shm->w[i];

	return json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
	    "index", i,
	    "pid", (json_int_t)LOAD(&w->pid),
	    "uptime_s", (json_int_t)(LOAD(&w->started_ms) ? (now - LOAD(&w->started_ms)) / 1000 : 0),
	    "restarts", (json_int_t)LOAD(&w->restarts),
	    "connections", (json_int_t)LOAD(&w->conns_active),
	    "connections_total", (json_int_t)LOAD(&w->conns_total),
	    "rooms", (json_int_t)LOAD(&w->rooms_local),
	    "messages_sent", (json_int_t)LOAD(&w->msgs_sent),
	    "deliveries", (json_int_t)LOAD(&w->deliveries),
	    "redis_connected", LOAD(&w->redis_connected) != 0,
	    "postgres_connected", LOAD(&w->pg_connected) != 0);
}

char *
metrics_json(void)
{
	int64_t now = util_now_ms();
	int n = (int)shm->nworkers;
	int64_t sum[M_COUNT] = { 0 };
	int64_t ping_us = 0, sync_last = 0, batch_us = 0;
	int64_t rooms = 0;
	int redis_up = 1, pg_up = 1, live = 0;
	json_t *workers = json_array();
	json_t *root;
	struct rusage ru;
	struct mallinfo2 mi;
	char *out;

	for (int i = 0; i < n; i++) {
		struct metrics_worker *w = &shm->w[i];

		json_array_append_new(workers, metrics__worker_json(i, now));
		/* Every field summed; the gauges that are not totals
		 * (connected, ping, last sync) are read per worker below. */
		for (int f = 0; f < M_COUNT; f++)
			sum[f] += LOAD(metrics__field(w, (enum metrics_field)f));
		if (LOAD(&w->pid) == 0)
			continue;
		live++;
		if (!LOAD(&w->redis_connected))
			redis_up = 0;
		if (!LOAD(&w->pg_connected))
			pg_up = 0;
		if (LOAD(&w->redis_ping_us) > ping_us)
			ping_us = LOAD(&w->redis_ping_us);
		if (LOAD(&w->sync_last_ms) > sync_last) {
			sync_last = LOAD(&w->sync_last_ms);
			batch_us = LOAD(&w->sync_batch_us);
		}
	}
	for (size_t i = 0; i < METRICS_ROOM_SLOTS; i++)
		if (LOAD(&shm->rooms[i].workers) != 0)
			rooms++;
	getrusage(RUSAGE_SELF, &ru);

	root = json_pack("{s:I, s:I, s:i, s:{s:I, s:I}, s:o, s:{s:I, s:I}, s:{s:I, s:I}, s:I, s:I}",
	    "now_ms", (json_int_t)now,
	    "uptime_s", (json_int_t)((now - shm->start_ms) / 1000),
	    "workers_live", live,
	    "connections", "active", (json_int_t)sum[M_CONNS_ACTIVE], "total", (json_int_t)sum[M_CONNS_TOTAL],
	    "workers", workers,
	    "rooms", "with_subscribers", (json_int_t)rooms, "subscriptions", (json_int_t)sum[M_SUBSCRIPTIONS],
	    "messages", "sent", (json_int_t)sum[M_MSGS_SENT], "frames_in", (json_int_t)sum[M_FRAMES_IN],
	    "deliveries", (json_int_t)sum[M_DELIVERIES],
	    "errors_sent", (json_int_t)sum[M_ERRORS_SENT]);
	json_object_set_new(json_object_get(root, "connections"), "accept_paused",
	    json_integer(sum[M_ACCEPT_PAUSED]));
	json_object_set_new(json_object_get(root, "rooms"), "not_counted",
	    json_integer(LOAD(&shm->rooms_overflow)));
	json_object_set_new(root, "redis", json_pack("{s:b, s:f, s:I, s:I}",
	    "connected", redis_up && live > 0,
	    "last_ping_ms", (double)ping_us / 1000.0,
	    "errors", (json_int_t)sum[M_REDIS_ERRORS],
	    "reconnects", (json_int_t)sum[M_REDIS_RECONNECTS]));
	json_object_set_new(root, "postgres", json_pack("{s:b, s:I, s:I, s:I}",
	    "connected", pg_up && live > 0, "errors", (json_int_t)sum[M_PG_ERRORS],
	    "join_checks", (json_int_t)sum[M_JOIN_CHECKS],
	    "join_batches", (json_int_t)sum[M_JOIN_BATCHES]));
	json_object_set_new(root, "sync", json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:f}",
	    "synced", (json_int_t)sum[M_SYNC_SYNCED],
	    "failed", (json_int_t)sum[M_SYNC_FAILED],
	    "last_sync_ms", (json_int_t)sync_last,
	    "batch_ms", (double)batch_us / 1000.0,
	    "lag", (json_int_t)LOAD(&shm->sync_lag_entries),
	    "pending", (json_int_t)LOAD(&shm->sync_pending),
	    "lag_s", (double)LOAD(&shm->sync_age_ms) / 1000.0));
	json_object_set_new(root, "security", json_pack("{s:I, s:I, s:I, s:I, s:I}",
	    "handshakes_refused_auth", (json_int_t)sum[M_REFUSED_AUTH],
	    "handshakes_refused_origin", (json_int_t)sum[M_REFUSED_ORIGIN],
	    "handshakes_refused_rate", (json_int_t)sum[M_REFUSED_RATE],
	    "rate_limited", (json_int_t)sum[M_RATE_LIMITED],
	    "tokens_expired", (json_int_t)sum[M_TOKEN_EXPIRED]));
	json_object_set_new(root, "slow_consumers", json_pack("{s:I, s:I}",
	    "gaps", (json_int_t)sum[M_GAPS], "closed", (json_int_t)sum[M_SLOW_CLOSES]));
	json_object_set_new(root, "output", json_pack("{s:I, s:I}",
	    "socket_writes", (json_int_t)sum[M_WRITES], "bytes", (json_int_t)sum[M_WRITE_BYTES]));
	/* glibc's view of the answering worker's heap: what is allocated, and
	 * what is free but still mapped (RSS counts both once touched). */
	mi = mallinfo2();
	json_object_set_new(root, "process", json_pack("{s:I, s:I, s:I, s:I}",
	    "answering_worker_maxrss_kb", (json_int_t)ru.ru_maxrss,
	    "answering_worker_heap_used_kb", (json_int_t)((mi.uordblks + mi.hblkhd) / 1024),
	    "answering_worker_heap_free_kb", (json_int_t)(mi.fordblks / 1024),
	    "conn_heap_kb", (json_int_t)(sum[M_CONN_HEAP] / 1024)));
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (out == NULL)
		log_fatal("metrics: json_dumps failed");
	return out;
}
