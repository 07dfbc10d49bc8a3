#include "proc/metrics.h"
#include "proc/metrics_private.h"
#include "lib/util.h"
#include "proc/log.h"

#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#define shm metrics__shm

/*
 * The monitoring document (docs/monitoring.md names every field). Built
 * from the shared slots by whichever worker answers: totals are sums over
 * the workers, "per second" figures are the last finished second of each
 * worker (metrics_tick), latency percentiles come from the last second's
 * histograms summed over the workers.
 */

/* What one pass over the slots gathers. */
struct metrics_view {
	int64_t now;
	int n, live;
	int64_t sum[M_COUNT];
	int64_t closes[METRICS_CLOSE_REASONS];
	int64_t errors[METRICS_ERROR_CODES];
	int64_t rate[METRICS_RATES];
	struct metrics_hist last[METRICS_HISTS];
	int64_t max_us[METRICS_HISTS];
	int64_t count_total[METRICS_HISTS];	/* cumulative observations */
	int redis_up, pg_up;
	int64_t ping_us, sync_last, batch_us;
	int64_t redis_memory;	/* the newest figure any live worker has */
};

static double
metrics__ms(int64_t us)
{
	return (double)us / 1000.0;
}

/* The q-quantile of a histogram, in ms: the upper bound of the bucket it
 * falls in, capped by the observed maximum (and the maximum for +Inf). */
static double
metrics__quantile(const struct metrics_hist *h, int64_t max_us, double q)
{
	int64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	rank = (int64_t)(q * (double)h->count + 0.999999);
	if (rank < 1)
		rank = 1;
	for (int b = 0; b < METRICS_HIST_BUCKETS - 1; b++) {
		seen += h->n[b];
		if (seen >= rank)
			return metrics__ms(metrics_hist_bounds_us[b] < max_us ?
			    metrics_hist_bounds_us[b] : max_us);
	}
	return metrics__ms(max_us);
}

static json_t *
metrics__latency_json(const struct metrics_hist *h, int64_t max_us, int64_t total)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:f, s:I, s:I}",
	    "p50_ms", metrics__quantile(h, max_us, 0.50),
	    "p90_ms", metrics__quantile(h, max_us, 0.90),
	    "p99_ms", metrics__quantile(h, max_us, 0.99),
	    "max_ms", metrics__ms(max_us),
	    "avg_ms", h->count ? metrics__ms(h->sum_us) / (double)h->count : 0.0,
	    "count", (json_int_t)h->count,
	    "count_total", (json_int_t)total);
}

/* Restarts of worker w in the last five minutes (the parent keeps the
 * last METRICS_RESTARTS_KEPT times). */
static int
metrics__recent_restarts(struct metrics_worker *w, int64_t now)
{
	int k = 0;

	for (int i = 0; i < METRICS_RESTARTS_KEPT; i++) {
		int64_t t = LOAD(&w->restart_ms[i]);

		if (t != 0 && now - t <= 300000)
			k++;
	}
	return k;
}

static json_t *
metrics__worker_json(int i, int64_t now)
{
	struct metrics_worker *w = &shm->w[i];
	json_t *o = json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
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

	json_object_set_new(o, "alive", json_boolean(LOAD(&w->pid) != 0));
	json_object_set_new(o, "restarts_5min", json_integer(metrics__recent_restarts(w, now)));
	json_object_set_new(o, "connections_closed", json_integer(LOAD(&w->conns_closed)));
	json_object_set_new(o, "opened_per_s", json_integer(LOAD(&w->rate_last[0])));
	json_object_set_new(o, "closed_per_s", json_integer(LOAD(&w->rate_last[1])));
	json_object_set_new(o, "messages_per_s", json_integer(LOAD(&w->rate_last[2])));
	json_object_set_new(o, "deliveries_per_s", json_integer(LOAD(&w->rate_last[3])));
	json_object_set_new(o, "errors_sent", json_integer(LOAD(&w->errors_sent)));
	json_object_set_new(o, "cpu_pct", json_real((double)LOAD(&w->cpu_pct_x100) / 100.0));
	json_object_set_new(o, "rss_kb", json_integer(LOAD(&w->rss_kb)));
	return o;
}

static void
metrics__gather(struct metrics_view *v, json_t *workers)
{
	memset(v, 0, sizeof(*v));
	v->now = util_now_ms();
	v->n = (int)shm->nworkers;
	v->redis_up = v->pg_up = 1;
	for (int i = 0; i < v->n; i++) {
		struct metrics_worker *w = &shm->w[i];

		json_array_append_new(workers, metrics__worker_json(i, v->now));
		/* Every field summed; the gauges that are not totals
		 * (connected, ping, last sync) are read per worker below. */
		for (int f = 0; f < M_COUNT; f++)
			v->sum[f] += LOAD(metrics__field(w, (enum metrics_field)f));
		for (int k = 0; k < METRICS_CLOSE_REASONS; k++)
			v->closes[k] += LOAD(&w->closes[k]);
		for (int k = 0; k < METRICS_ERROR_CODES; k++)
			v->errors[k] += LOAD(&w->errors[k]);
		for (int h = 0; h < METRICS_HISTS; h++)
			v->count_total[h] += LOAD(&w->hist[h].count);
		if (LOAD(&w->pid) == 0)
			continue;
		/* A dead worker's last second is not this second. */
		for (int k = 0; k < METRICS_RATES; k++)
			v->rate[k] += LOAD(&w->rate_last[k]);
		for (int h = 0; h < METRICS_HISTS; h++) {
			for (int b = 0; b < METRICS_HIST_BUCKETS; b++)
				v->last[h].n[b] += LOAD(&w->last[h].n[b]);
			v->last[h].sum_us += LOAD(&w->last[h].sum_us);
			v->last[h].count += LOAD(&w->last[h].count);
			if (LOAD(&w->last_max_us[h]) > v->max_us[h])
				v->max_us[h] = LOAD(&w->last_max_us[h]);
		}
		v->live++;
		if (!LOAD(&w->redis_connected))
			v->redis_up = 0;
		if (!LOAD(&w->pg_connected))
			v->pg_up = 0;
		if (LOAD(&w->redis_used_memory) > 0)
			v->redis_memory = LOAD(&w->redis_used_memory);
		if (LOAD(&w->redis_ping_us) > v->ping_us)
			v->ping_us = LOAD(&w->redis_ping_us);
		if (LOAD(&w->sync_last_ms) > v->sync_last) {
			v->sync_last = LOAD(&w->sync_last_ms);
			v->batch_us = LOAD(&w->sync_batch_us);
		}
	}
	v->redis_up = v->redis_up && v->live > 0;
	v->pg_up = v->pg_up && v->live > 0;
}

static json_t *
metrics__named(const char *const *names, const int64_t *v, int n)
{
	json_t *o = json_object();

	for (int i = 0; i < n; i++)
		json_object_set_new(o, names[i], json_integer(v[i]));
	return o;
}

static void
metrics__connections_json(json_t *root, const struct metrics_view *v)
{
	json_t *c = json_object_get(root, "connections");
	int64_t users = LOAD(&shm->users);

	json_object_set_new(c, "accept_paused", json_integer(v->sum[M_ACCEPT_PAUSED]));
	json_object_set_new(c, "closed", json_integer(v->sum[M_CONNS_CLOSED]));
	json_object_set_new(c, "opened_per_s", json_integer(v->rate[0]));
	json_object_set_new(c, "closed_per_s", json_integer(v->rate[1]));
	json_object_set_new(c, "closed_by_reason",
	    metrics__named(metrics_close_names, v->closes, METRICS_CLOSE_REASONS));
	json_object_set_new(c, "users", json_integer(users));
	json_object_set_new(c, "per_user", json_real(users > 0 ?
	    (double)v->sum[M_CONNS_ACTIVE] / (double)users : 0.0));
}

static void
metrics__traffic_json(json_t *root, const struct metrics_view *v)
{
	json_t *m = json_object_get(root, "messages");
	int64_t errs = 0;

	json_object_set_new(m, "per_s", json_integer(v->rate[2]));
	json_object_set_new(m, "deliveries_per_s", json_integer(v->rate[3]));
	json_object_set_new(root, "latency", json_pack("{s:o, s:o}",
	    "ack", metrics__latency_json(&v->last[MH_ACK], v->max_us[MH_ACK],
	    v->count_total[MH_ACK]),
	    "delivery", metrics__latency_json(&v->last[MH_DELIVERY], v->max_us[MH_DELIVERY],
	    v->count_total[MH_DELIVERY])));
	for (int k = 0; k < METRICS_ERROR_CODES; k++)
		errs += v->errors[k];
	json_object_set_new(root, "errors", json_pack("{s:I, s:o}",
	    "total", (json_int_t)errs,
	    "by_code", metrics__named(metrics_error_names, v->errors, METRICS_ERROR_CODES)));
}

static void
metrics__backends_json(json_t *root, const struct metrics_view *v)
{
	json_object_set_new(root, "redis", json_pack("{s:b, s:f, s:I, s:I, s:I}",
	    "connected", v->redis_up,
	    "last_ping_ms", metrics__ms(v->ping_us),
	    "errors", (json_int_t)v->sum[M_REDIS_ERRORS],
	    "reconnects", (json_int_t)v->sum[M_REDIS_RECONNECTS],
	    "used_memory_bytes", (json_int_t)v->redis_memory));
	json_object_set_new(root, "postgres", json_pack("{s:b, s:I, s:I, s:I, s:o}",
	    "connected", v->pg_up, "errors", (json_int_t)v->sum[M_PG_ERRORS],
	    "join_checks", (json_int_t)v->sum[M_JOIN_CHECKS],
	    "join_batches", (json_int_t)v->sum[M_JOIN_BATCHES],
	    "query", metrics__latency_json(&v->last[MH_PG_QUERY], v->max_us[MH_PG_QUERY],
	    v->count_total[MH_PG_QUERY])));
	json_object_set_new(root, "sync", json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:f}",
	    "synced", (json_int_t)v->sum[M_SYNC_SYNCED],
	    "failed", (json_int_t)v->sum[M_SYNC_FAILED],
	    "last_sync_ms", (json_int_t)v->sync_last,
	    "batch_ms", metrics__ms(v->batch_us),
	    "lag", (json_int_t)LOAD(&shm->sync_lag_entries),
	    "pending", (json_int_t)LOAD(&shm->sync_pending),
	    "lag_s", (double)LOAD(&shm->sync_age_ms) / 1000.0));
}

static void
metrics__security_json(json_t *root, const struct metrics_view *v)
{
	const int64_t *s = v->sum;
	json_t *sec = json_pack("{s:I, s:I, s:I, s:I, s:I}",
	    "handshakes_refused_auth", (json_int_t)s[M_REFUSED_AUTH],
	    "handshakes_refused_origin", (json_int_t)s[M_REFUSED_ORIGIN],
	    "handshakes_refused_rate", (json_int_t)s[M_REFUSED_RATE],
	    "rate_limited", (json_int_t)s[M_RATE_LIMITED],
	    "tokens_expired", (json_int_t)s[M_TOKEN_EXPIRED]);

	json_object_set_new(sec, "handshakes_refused", json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	    "total", (json_int_t)(s[M_REFUSED_AUTH] + s[M_REFUSED_ORIGIN] + s[M_REFUSED_RATE] +
	    s[M_REFUSED_BAD] + s[M_REFUSED_UPGRADE] + s[M_REFUSED_BUSY]),
	    "auth", (json_int_t)s[M_REFUSED_AUTH],
	    "origin", (json_int_t)s[M_REFUSED_ORIGIN],
	    "rate", (json_int_t)s[M_REFUSED_RATE],
	    "bad_request", (json_int_t)s[M_REFUSED_BAD],
	    "upgrade_required", (json_int_t)s[M_REFUSED_UPGRADE],
	    "unavailable", (json_int_t)s[M_REFUSED_BUSY]));
	json_object_set_new(root, "security", sec);
	json_object_set_new(root, "slow_consumers", json_pack("{s:I, s:I, s:I}",
	    "gaps", (json_int_t)s[M_GAPS], "closed", (json_int_t)s[M_SLOW_CLOSES],
	    "closed_per_s", (json_int_t)v->rate[5]));
	json_object_set_new(root, "output", json_pack("{s:I, s:I}",
	    "socket_writes", (json_int_t)s[M_WRITES], "bytes", (json_int_t)s[M_WRITE_BYTES]));
}

/* The machine's load averages (/proc/loadavg, a small file) and CPUs. */
static json_t *
metrics__machine_json(void)
{
	double l[3] = { 0, 0, 0 };
	FILE *f = fopen("/proc/loadavg", "r");

	if (f != NULL) {
		if (fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3)
			l[0] = l[1] = l[2] = 0;
		fclose(f);
	}
	return json_pack("{s:f, s:f, s:f, s:I}", "load1", l[0], "load5", l[1],
	    "load15", l[2], "cpus", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN));
}

static void
metrics__process_json(json_t *root, const struct metrics_view *v)
{
	struct rusage ru;
	struct mallinfo2 mi;
	json_t *p;
	int64_t rss = 0, cpu = 0;

	for (int i = 0; i < v->n; i++) {
		rss += LOAD(&shm->w[i].rss_kb);
		cpu += LOAD(&shm->w[i].cpu_pct_x100);
	}
	getrusage(RUSAGE_SELF, &ru);
	/* glibc's view of the answering worker's heap: what is allocated, and
	 * what is free but still mapped (RSS counts both once touched). */
	mi = mallinfo2();
	p = json_pack("{s:I, s:I, s:I, s:I}",
	    "answering_worker_maxrss_kb", (json_int_t)ru.ru_maxrss,
	    "answering_worker_heap_used_kb", (json_int_t)((mi.uordblks + mi.hblkhd) / 1024),
	    "answering_worker_heap_free_kb", (json_int_t)(mi.fordblks / 1024),
	    "conn_heap_kb", (json_int_t)(v->sum[M_CONN_HEAP] / 1024));
	json_object_set_new(p, "workers_rss_kb", json_integer(rss));
	json_object_set_new(p, "workers_cpu_pct", json_real((double)cpu / 100.0));
	json_object_set_new(root, "process", p);
}

/* Thresholds of the health verdict. */
#define HEALTH_SYNC_LAG_S 10.0
#define HEALTH_RESTARTS_5MIN 3
#define HEALTH_ACK_P99_MS 1000.0

static void
metrics__verdict(json_t *reasons, json_t *recs, int *level, int severity,
    const char *reason, const char *rec)
{
	json_array_append_new(reasons, json_string(reason));
	json_array_append_new(recs, json_string(rec));
	if (severity > *level)
		*level = severity;
}

/* "ok", "degraded" or "critical", with a reason and a recommendation per
 * finding; computed from the figures above, in the order an operator
 * would look. */
static json_t *
metrics__health_json(const struct metrics_view *v)
{
	static const char *const levels[] = { "ok", "degraded", "critical" };
	json_t *reasons = json_array(), *recs = json_array();
	double lag_s = (double)LOAD(&shm->sync_age_ms) / 1000.0;
	char buf[160];
	int level = 0;

	if (v->live < v->n) {
		snprintf(buf, sizeof(buf), "%d of %d workers running", v->live, v->n);
		metrics__verdict(reasons, recs, &level, v->live == 0 ? 2 : 1, buf,
		    "the parent restarts a dead worker; see the log for why it died");
	}
	if (!v->redis_up)
		metrics__verdict(reasons, recs, &level, 2, "Redis down: messages cannot be sent",
		    "check the Redis server and redis_url");
	if (!v->pg_up)
		metrics__verdict(reasons, recs, &level, 1, "PostgreSQL down: history and sync wait",
		    "check the PostgreSQL server and database_url");
	if (lag_s > HEALTH_SYNC_LAG_S) {
		snprintf(buf, sizeof(buf), "sync lag %.0f s: PostgreSQL slow", lag_s);
		metrics__verdict(reasons, recs, &level, 1, buf,
		    "check PostgreSQL's load and the sync batch time");
	}
	for (int i = 0; i < v->n; i++) {
		int k = metrics__recent_restarts(&shm->w[i], v->now);

		if (k >= HEALTH_RESTARTS_5MIN) {
			snprintf(buf, sizeof(buf), "worker %d restarted %d times in 5 min", i, k);
			metrics__verdict(reasons, recs, &level, 1, buf,
			    "read the log for the worker's crash");
		}
	}
	if (v->rate[4] > 0)
		metrics__verdict(reasons, recs, &level, 1, "accepting paused: out of file descriptors",
		    "raise the open files limit (ulimit -n) or add instances");
	if (v->rate[5] > 0) {
		snprintf(buf, sizeof(buf), "%lld slow consumers closed (1013) in the last second",
		    (long long)v->rate[5]);
		metrics__verdict(reasons, recs, &level, 1, buf,
		    "clients read too slowly, or the server's output is too large for them");
	}
	if (metrics__quantile(&v->last[MH_ACK], v->max_us[MH_ACK], 0.99) > HEALTH_ACK_P99_MS)
		metrics__verdict(reasons, recs, &level, 1, "ack latency p99 above 1 s",
		    "check the Redis ping and the workers' CPU");
	return json_pack("{s:s, s:o, s:o}", "status", levels[level],
	    "reasons", reasons, "recommendations", recs);
}

char *
metrics_json(void)
{
	struct metrics_view v;
	json_t *workers = json_array();
	json_t *root;
	int64_t rooms = 0;
	char *out;

	metrics__gather(&v, workers);
	for (size_t i = 0; i < METRICS_ROOM_SLOTS; i++)
		if (LOAD(&shm->rooms[i].workers) != 0)
			rooms++;
	root = json_pack("{s:I, s:I, s:i, s:i, s:{s:I, s:I}, s:o, s:{s:I, s:I}, s:{s:I, s:I}, s:I, s:I}",
	    "now_ms", (json_int_t)v.now,
	    "uptime_s", (json_int_t)((v.now - shm->start_ms) / 1000),
	    "workers_live", v.live,
	    "workers_configured", v.n,
	    "connections", "active", (json_int_t)v.sum[M_CONNS_ACTIVE], "total", (json_int_t)v.sum[M_CONNS_TOTAL],
	    "workers", workers,
	    "rooms", "with_subscribers", (json_int_t)rooms, "subscriptions", (json_int_t)v.sum[M_SUBSCRIPTIONS],
	    "messages", "sent", (json_int_t)v.sum[M_MSGS_SENT], "frames_in", (json_int_t)v.sum[M_FRAMES_IN],
	    "deliveries", (json_int_t)v.sum[M_DELIVERIES],
	    "errors_sent", (json_int_t)v.sum[M_ERRORS_SENT]);
	json_object_set_new(json_object_get(root, "rooms"), "not_counted",
	    json_integer(LOAD(&shm->rooms_overflow)));
	metrics__connections_json(root, &v);
	metrics__traffic_json(root, &v);
	metrics__backends_json(root, &v);
	metrics__security_json(root, &v);
	metrics__process_json(root, &v);
	json_object_set_new(root, "machine", metrics__machine_json());
	json_object_set_new(root, "health", metrics__health_json(&v));
	json_object_set_new(root, "events", metrics__events_json());
	json_object_set_new(root, "clients", json_pack("{s:o, s:o}",
	    "top_ips", metrics__top_json(0), "top_user_agents", metrics__top_json(1)));
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (out == NULL)
		log_fatal("metrics: json_dumps failed");
	return out;
}
