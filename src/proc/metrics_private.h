#ifndef CHATD_METRICS_PRIVATE_H
#define CHATD_METRICS_PRIVATE_H

/* Shared between metrics.c (the counters), metrics_json.c (the monitoring
 * document) and metrics_prom.c (the Prometheus text): the shared region. */

#include "proc/metrics.h"

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
	int64_t users;
	struct metrics_worker w[METRICS_MAX_WORKERS];
	struct metrics_room_slot rooms[METRICS_ROOM_SLOTS];
};

extern struct metrics_shm *metrics__shm;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* Field f of a worker's slot. */
int64_t *metrics__field(struct metrics_worker *w, enum metrics_field f);
/* This worker's slot, or NULL outside a worker. */
struct metrics_worker *metrics__self(void);
/* metrics_log.c: an entry into w's event log; the log and the top tables
 * as JSON. */
void metrics__log(struct metrics_worker *w, int kind, int code, const char *ip,
    const char *tenant, const char *user, const char *reason);
struct json_t;
struct json_t *metrics__events_json(void);
struct json_t *metrics__top_json(int ua);

#endif
