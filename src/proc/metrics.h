#ifndef CHATD_METRICS_H
#define CHATD_METRICS_H

#include <stdint.h>
#include <sys/types.h>

#define METRICS_MAX_WORKERS 64

/* Figures of one worker process, in memory shared by the parent and all
 * workers (mapped before fork). Only that worker writes its slot, with
 * relaxed atomics; whoever answers a monitoring request reads all slots. */
struct metrics_worker {
	int64_t pid;
	int64_t started_ms;
	int64_t restarts;
	int64_t conns_active;
	int64_t conns_total;
	int64_t rooms_local;
	int64_t subscriptions;
	int64_t frames_in;
	int64_t msgs_sent;
	int64_t deliveries;
	int64_t errors_sent;
	int64_t redis_connected;
	int64_t redis_ping_us;
	int64_t redis_errors;
	int64_t redis_reconnects;
	int64_t pg_connected;
	int64_t pg_errors;
	int64_t sync_synced;
	int64_t sync_failed;
	int64_t sync_last_ms;
	int64_t sync_batch_us;
	int64_t refused_auth;
	int64_t refused_origin;
	int64_t refused_rate;
	int64_t rate_limited;
	int64_t gaps;
	int64_t slow_closes;
	int64_t token_expired;
	int64_t writes;		/* socket writes to WebSocket clients */
	int64_t write_bytes;
	int64_t conn_heap;	/* bytes the connections hold (conn_heap_bytes) */
	int64_t accept_paused;	/* accepting paused: out of file descriptors */
	int64_t join_checks;	/* joins whose member check PostgreSQL answered */
	int64_t join_batches;	/* the statements that answered them */
};

enum metrics_field {
	M_CONNS_ACTIVE, M_CONNS_TOTAL, M_ROOMS_LOCAL, M_SUBSCRIPTIONS, M_FRAMES_IN,
	M_MSGS_SENT, M_DELIVERIES, M_ERRORS_SENT, M_REDIS_CONNECTED, M_REDIS_PING_US,
	M_REDIS_ERRORS, M_REDIS_RECONNECTS, M_PG_CONNECTED, M_PG_ERRORS,
	M_SYNC_SYNCED, M_SYNC_FAILED, M_SYNC_LAST_MS, M_SYNC_BATCH_US,
	M_REFUSED_AUTH, M_REFUSED_ORIGIN, M_REFUSED_RATE, M_RATE_LIMITED, M_GAPS,
	M_SLOW_CLOSES, M_TOKEN_EXPIRED, M_WRITES, M_WRITE_BYTES, M_CONN_HEAP,
	M_ACCEPT_PAUSED, M_JOIN_CHECKS, M_JOIN_BATCHES,
	M_COUNT		/* the number of fields */
};

/* Parent, before forking: map the shared region. */
int metrics_init(int nworkers, int64_t start_ms);
/* Parent: a worker slot got a new process (pid) / lost its process. */
void metrics_worker_started(int index, pid_t pid);
void metrics_worker_died(int index);

/* Worker: which slot is ours. */
void metrics_set_self(int index);
void metrics_add(enum metrics_field f, int64_t delta);
void metrics_set(enum metrics_field f, int64_t value);
/* This worker's own value of f (0 outside a worker). */
int64_t metrics_get(enum metrics_field f);
/* Server-wide sync lag as measured by worker 0. */
void metrics_set_sync_lag(int64_t entries, int64_t pending, int64_t age_ms);

/* Rooms with at least one local subscriber on some worker. */
void metrics_room_add(const char *key);
void metrics_room_remove(const char *key);

/* The monitoring JSON (jansson-encoded, caller frees). */
char *metrics_json(void);

#endif
