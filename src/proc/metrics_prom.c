/*
 * The figures of the shared slots in the Prometheus text exposition format
 * 0.0.4 (GET /metrics). Counters are cumulative since chatd started (a
 * worker's survive its restarts), per worker (label worker="i"); latency
 * histograms are cumulative too, in seconds. Names: docs/monitoring.md.
 */
#include "proc/metrics.h"
#include "proc/metrics_private.h"
#include "lib/util.h"
#include "proc/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text as it grows. */
struct prom_buf {
	char *p;	/* owned; handed to the caller */
	size_t len, cap;
};

static void __attribute__((format(printf, 2, 3)))
prom__put(struct prom_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			log_fatal("metrics: vsnprintf failed");
		if ((size_t)n < b->cap - b->len)
			break;
		b->cap = b->cap * 2 + (size_t)n;
		b->p = xrealloc(b->p, b->cap);
	}
	b->len += (size_t)n;
}

static void
prom__head(struct prom_buf *b, const char *name, const char *type, const char *help)
{
	prom__put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per worker of field f. */
static void
prom__per_worker(struct prom_buf *b, const char *name, const char *type, const char *help,
    enum metrics_field f)
{
	prom__head(b, name, type, help);
	for (int i = 0; i < (int)metrics__shm->nworkers; i++)
		prom__put(b, "%s{worker=\"%d\"} %lld\n", name, i,
		    (long long)LOAD(metrics__field(&metrics__shm->w[i], f)));
}

static void
prom__counters(struct prom_buf *b)
{
	static const struct {
		const char *name, *help;
		enum metrics_field f;
	} c[] = {
		{ "chatd_connections_opened_total", "WebSocket connections opened.", M_CONNS_TOTAL },
		{ "chatd_messages_total", "New messages accepted (message:send).", M_MSGS_SENT },
		{ "chatd_frames_in_total", "Client frames decoded.", M_FRAMES_IN },
		{ "chatd_deliveries_total", "Events queued to WebSocket connections.", M_DELIVERIES },
		{ "chatd_rate_limited_total", "Sends and joins refused by the rate limits.", M_RATE_LIMITED },
		{ "chatd_gaps_total", "Events subscribers lost (gap frames sent).", M_GAPS },
		{ "chatd_slow_consumer_closes_total", "Connections closed 1013 for not reading.", M_SLOW_CLOSES },
		{ "chatd_tokens_expired_total", "Connections closed 4001: token expired.", M_TOKEN_EXPIRED },
		{ "chatd_socket_writes_total", "Socket writes to WebSocket clients.", M_WRITES },
		{ "chatd_socket_write_bytes_total", "Bytes written to WebSocket clients.", M_WRITE_BYTES },
		{ "chatd_accept_paused_total", "Times accepting paused: out of file descriptors.", M_ACCEPT_PAUSED },
		{ "chatd_redis_errors_total", "Redis errors.", M_REDIS_ERRORS },
		{ "chatd_redis_reconnects_total", "Redis reconnections.", M_REDIS_RECONNECTS },
		{ "chatd_postgres_errors_total", "PostgreSQL errors.", M_PG_ERRORS },
		{ "chatd_sync_synced_total", "Events copied from Redis to PostgreSQL.", M_SYNC_SYNCED },
		{ "chatd_sync_failed_total", "Sync batches that failed.", M_SYNC_FAILED },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		prom__per_worker(b, c[i].name, "counter", c[i].help, c[i].f);
}

static void
prom__gauges(struct prom_buf *b)
{
	struct metrics_shm *s = metrics__shm;

	prom__per_worker(b, "chatd_connections", "gauge", "Open WebSocket connections.",
	    M_CONNS_ACTIVE);
	prom__per_worker(b, "chatd_subscriptions", "gauge", "Room subscriptions.",
	    M_SUBSCRIPTIONS);
	prom__per_worker(b, "chatd_rooms", "gauge", "Rooms with a local subscriber.",
	    M_ROOMS_LOCAL);
	prom__per_worker(b, "chatd_redis_up", "gauge", "1 when the worker's Redis links are up.",
	    M_REDIS_CONNECTED);
	prom__per_worker(b, "chatd_postgres_up", "gauge",
	    "1 when the worker's PostgreSQL connections are up.", M_PG_CONNECTED);
	prom__head(b, "chatd_users", "gauge", "Distinct users with an open connection.");
	prom__put(b, "chatd_users %lld\n", (long long)LOAD(&s->users));
	prom__head(b, "chatd_redis_used_memory_bytes", "gauge", "Redis INFO used_memory.");
	for (int i = 0; i < (int)s->nworkers; i++)
		if (LOAD(&s->w[i].redis_used_memory) > 0) {
			prom__put(b, "chatd_redis_used_memory_bytes %lld\n",
			    (long long)LOAD(&s->w[i].redis_used_memory));
			break;
		}
	prom__head(b, "chatd_sync_lag_seconds", "gauge",
	    "Age of the oldest event not yet in PostgreSQL.");
	prom__put(b, "chatd_sync_lag_seconds %.3f\n", (double)LOAD(&s->sync_age_ms) / 1000.0);
	prom__head(b, "chatd_sync_lag_events", "gauge", "Events not yet in PostgreSQL.");
	prom__put(b, "chatd_sync_lag_events %lld\n", (long long)LOAD(&s->sync_lag_entries));
}

static void
prom__workers(struct prom_buf *b)
{
	struct metrics_shm *s = metrics__shm;
	int n = (int)s->nworkers;

	prom__head(b, "chatd_worker_up", "gauge", "1 when the worker has a process.");
	for (int i = 0; i < n; i++)
		prom__put(b, "chatd_worker_up{worker=\"%d\"} %d\n", i, LOAD(&s->w[i].pid) != 0);
	prom__head(b, "chatd_worker_restarts_total", "counter", "Times the parent replaced the worker.");
	for (int i = 0; i < n; i++)
		prom__put(b, "chatd_worker_restarts_total{worker=\"%d\"} %lld\n", i,
		    (long long)LOAD(&s->w[i].restarts));
	prom__head(b, "chatd_worker_start_time_seconds", "gauge", "When the worker's process started.");
	for (int i = 0; i < n; i++)
		prom__put(b, "chatd_worker_start_time_seconds{worker=\"%d\"} %.3f\n", i,
		    (double)LOAD(&s->w[i].started_ms) / 1000.0);
	prom__head(b, "chatd_worker_cpu_ratio", "gauge",
	    "CPU time over the last second, in CPUs (1 = one CPU busy).");
	for (int i = 0; i < n; i++)
		prom__put(b, "chatd_worker_cpu_ratio{worker=\"%d\"} %.4f\n", i,
		    (double)LOAD(&s->w[i].cpu_pct_x100) / 10000.0);
	prom__head(b, "chatd_worker_resident_memory_bytes", "gauge",
	    "Resident set size of the worker process.");
	for (int i = 0; i < n; i++)
		prom__put(b, "chatd_worker_resident_memory_bytes{worker=\"%d\"} %lld\n", i,
		    (long long)LOAD(&s->w[i].rss_kb) * 1024);
	prom__head(b, "chatd_redis_ping_seconds", "gauge", "The worker's last Redis PING round trip.");
	for (int i = 0; i < n; i++)
		prom__put(b, "chatd_redis_ping_seconds{worker=\"%d\"} %.6f\n", i,
		    (double)LOAD(&s->w[i].redis_ping_us) / 1e6);
}

static void
prom__labelled(struct prom_buf *b)
{
	struct metrics_shm *s = metrics__shm;
	int n = (int)s->nworkers;
	static const struct {
		const char *reason;
		enum metrics_field f;
	} refused[] = {
		{ "auth", M_REFUSED_AUTH }, { "origin", M_REFUSED_ORIGIN }, { "rate", M_REFUSED_RATE },
		{ "bad_request", M_REFUSED_BAD }, { "upgrade_required", M_REFUSED_UPGRADE },
		{ "unavailable", M_REFUSED_BUSY },
	};

	prom__head(b, "chatd_connections_closed_total", "counter",
	    "WebSocket connections ended, by close reason.");
	for (int i = 0; i < n; i++)
		for (int k = 0; k < METRICS_CLOSE_REASONS; k++)
			prom__put(b, "chatd_connections_closed_total{worker=\"%d\",reason=\"%s\"} %lld\n",
			    i, metrics_close_names[k], (long long)LOAD(&s->w[i].closes[k]));
	prom__head(b, "chatd_errors_total", "counter", "Error frames sent to clients, by code.");
	for (int i = 0; i < n; i++)
		for (int k = 0; k < METRICS_ERROR_CODES; k++)
			prom__put(b, "chatd_errors_total{worker=\"%d\",code=\"%s\"} %lld\n",
			    i, metrics_error_names[k], (long long)LOAD(&s->w[i].errors[k]));
	prom__head(b, "chatd_handshakes_refused_total", "counter",
	    "WebSocket upgrades refused, by reason.");
	for (int i = 0; i < n; i++)
		for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++)
			prom__put(b, "chatd_handshakes_refused_total{worker=\"%d\",reason=\"%s\"} %lld\n",
			    i, refused[k].reason,
			    (long long)LOAD(metrics__field(&s->w[i], refused[k].f)));
}

/* A histogram per worker; _count is the +Inf bucket of the same reading,
 * so the two agree even while the worker writes. */
static void
prom__histogram(struct prom_buf *b, const char *name, const char *help, enum metrics_hist_kind h)
{
	struct metrics_shm *s = metrics__shm;

	prom__head(b, name, "histogram", help);
	for (int i = 0; i < (int)s->nworkers; i++) {
		const struct metrics_hist *m = &s->w[i].hist[h];
		int64_t cum = 0;

		for (int k = 0; k < METRICS_HIST_BUCKETS; k++) {
			cum += LOAD(&m->n[k]);
			if (k < METRICS_HIST_BUCKETS - 1)
				prom__put(b, "%s_bucket{worker=\"%d\",le=\"%g\"} %lld\n", name, i,
				    (double)metrics_hist_bounds_us[k] / 1e6, (long long)cum);
			else
				prom__put(b, "%s_bucket{worker=\"%d\",le=\"+Inf\"} %lld\n", name, i,
				    (long long)cum);
		}
		prom__put(b, "%s_sum{worker=\"%d\"} %.6f\n", name, i,
		    (double)LOAD(&m->sum_us) / 1e6);
		prom__put(b, "%s_count{worker=\"%d\"} %lld\n", name, i, (long long)cum);
	}
}

char *
metrics_prometheus(size_t *len)
{
	struct prom_buf b = { xmalloc(16384), 0, 16384 };

	prom__counters(&b);
	prom__labelled(&b);
	prom__gauges(&b);
	prom__workers(&b);
	prom__histogram(&b, "chatd_ack_latency_seconds",
	    "From a message:send's arrival to its ack.", MH_ACK);
	prom__histogram(&b, "chatd_delivery_latency_seconds",
	    "From a message's arrival to its write on a recipient's socket.", MH_DELIVERY);
	prom__histogram(&b, "chatd_postgres_query_seconds",
	    "From a PostgreSQL query's send to its result.", MH_PG_QUERY);
	*len = b.len;
	return b.p;
}
