#ifndef CHATD_METRICS_H
#define CHATD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define METRICS_MAX_WORKERS 64
#define METRICS_CLOSE_REASONS 11	/* metrics_close_names */
#define METRICS_ERROR_CODES 10		/* metrics_error_names */
#define METRICS_HIST_BUCKETS 16		/* 15 bounds and +Inf */
#define METRICS_RATES 6	/* opened, closed, messages, deliveries, accept pauses, 1013 closes */
#define METRICS_RESTARTS_KEPT 4

#define METRICS_EVENTS 128		/* per worker; the document shows 200 */
#define METRICS_TOP_SLOTS 64		/* per worker and table */
#define METRICS_TOP_N 10

enum metrics_hist_kind { MH_ACK, MH_DELIVERY, MH_PG_QUERY, METRICS_HISTS };
enum metrics_event_kind { ME_CONNECT = 1, ME_DISCONNECT, ME_REFUSED };

/* One entry of a worker's connection event log, a ring only that worker
 * writes. seq is odd while the entry is being written (a seqlock): a
 * reader copies the entry and keeps it only if seq was even and unchanged. */
struct metrics_event {
	uint64_t seq;
	int64_t ms;		/* Unix ms; 0: never written */
	int32_t kind;		/* enum metrics_event_kind */
	int32_t code;		/* close code, or the refusal's HTTP status */
	char ip[46];
	char tenant[65];
	char user[65];
	char reason[48];
};

/* A counted text (a peer address, a User-Agent) of a worker's bounded
 * table; when the table is full the least counted entry gives its place
 * (space-saving: the newcomer starts at that count plus one). */
struct metrics_top {
	uint64_t seq;		/* as in metrics_event */
	uint64_t hash;		/* 0: free */
	int64_t count;
	char text[96];
};

/* A latency histogram: counts per bucket (metrics_hist_bounds_us, the
 * last one +Inf), the sum of observations in microseconds. */
struct metrics_hist {
	int64_t n[METRICS_HIST_BUCKETS];
	int64_t sum_us;
	int64_t count;
};

extern const int64_t metrics_hist_bounds_us[METRICS_HIST_BUCKETS - 1];
extern const char *const metrics_close_names[METRICS_CLOSE_REASONS];
extern const char *const metrics_error_names[METRICS_ERROR_CODES];

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
	int64_t conns_closed;	/* WebSocket connections ended */
	int64_t refused_bad;	/* handshakes refused 400 (malformed) */
	int64_t refused_upgrade;	/* 426: not a WebSocket upgrade / version */
	int64_t refused_busy;	/* 503: draining */
	int64_t cpu_pct_x100;	/* CPU % over the last second, times 100 */
	int64_t rss_kb;		/* resident set size, from /proc/self/stat */
	int64_t redis_used_memory;	/* bytes, INFO memory every few seconds */
	/* Counted by reason / code; indexes in metrics.c's tables. */
	int64_t closes[METRICS_CLOSE_REASONS];
	int64_t errors[METRICS_ERROR_CODES];
	/* Latency histograms (cumulative since start) and the last second's. */
	struct metrics_hist hist[METRICS_HISTS];
	struct metrics_hist last[METRICS_HISTS];
	struct metrics_hist prev[METRICS_HISTS];	/* snapshot at last tick */
	int64_t max_us[METRICS_HISTS];	/* this interval's maximum */
	int64_t last_max_us[METRICS_HISTS];	/* the last interval's */
	/* Rates: the counters at the previous tick and the last second's delta. */
	int64_t rate_prev[METRICS_RATES];
	int64_t rate_last[METRICS_RATES];
	int64_t restart_ms[METRICS_RESTARTS_KEPT];	/* parent: the last restarts, a ring */
	struct metrics_event events[METRICS_EVENTS];
	uint64_t events_next;			/* total written; the ring's head */
	struct metrics_top top_ip[METRICS_TOP_SLOTS];
	struct metrics_top top_ua[METRICS_TOP_SLOTS];
	int64_t cpu_prev_ticks;		/* utime + stime at the previous tick */
	int64_t cpu_prev_ms;
};

enum metrics_field {
	M_CONNS_ACTIVE, M_CONNS_TOTAL, M_ROOMS_LOCAL, M_SUBSCRIPTIONS, M_FRAMES_IN,
	M_MSGS_SENT, M_DELIVERIES, M_ERRORS_SENT, M_REDIS_CONNECTED, M_REDIS_PING_US,
	M_REDIS_ERRORS, M_REDIS_RECONNECTS, M_PG_CONNECTED, M_PG_ERRORS,
	M_SYNC_SYNCED, M_SYNC_FAILED, M_SYNC_LAST_MS, M_SYNC_BATCH_US,
	M_REFUSED_AUTH, M_REFUSED_ORIGIN, M_REFUSED_RATE, M_RATE_LIMITED, M_GAPS,
	M_SLOW_CLOSES, M_TOKEN_EXPIRED, M_WRITES, M_WRITE_BYTES, M_CONN_HEAP,
	M_ACCEPT_PAUSED, M_JOIN_CHECKS, M_JOIN_BATCHES, M_CONNS_CLOSED,
	M_REFUSED_BAD, M_REFUSED_UPGRADE, M_REFUSED_BUSY, M_CPU_PCT_X100, M_RSS_KB,
	M_REDIS_USED_MEMORY,
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

/* Worker: a WebSocket connection ended with close code (0: no close
 * frame, the peer went away); an error reply of code was sent; a latency
 * of us microseconds was observed. */
void metrics_conn_closed(int code, const char *ip, const char *tenant, const char *user);
/* Worker: a WebSocket connection opened (ua: its User-Agent, may be NULL),
 * a handshake was refused with an HTTP status. Into the event log and the
 * address / User-Agent counts. */
void metrics_conn_opened(const char *ip, const char *tenant, const char *user,
    const char *ua, size_t ualen);
void metrics_refused(const char *ip, int status, const char *why);
void metrics_error(const char *code);
void metrics_latency(enum metrics_hist_kind h, int64_t us);
/* Worker, once a second: the last second's rates, latency, CPU and RSS. */
void metrics_tick(void);

/* Distinct users with an open connection on this instance (admit.c). */
void metrics_set_users(int64_t n);

/* Rooms with at least one local subscriber on some worker. */
void metrics_room_add(const char *key);
void metrics_room_remove(const char *key);

/* The monitoring JSON (jansson-encoded, caller frees). */
char *metrics_json(void);
/* The same figures as Prometheus text format 0.0.4 (caller frees). */
char *metrics_prometheus(size_t *len);

#endif
