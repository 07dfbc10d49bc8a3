#include "store/pg_queue.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "lib/util.h"
#include "lib/uvpoll.h"

#include <stdlib.h>
#include <string.h>

#define PGQ_BACKOFF_MIN_MS 100
#define PGQ_BACKOFF_MAX_MS 2000
#define PGQ_MAX_PARAMS 16
/* Each distinct SQL text is prepared once per connection (the first time
 * it runs) and executed by name after that: PostgreSQL then plans it once
 * instead of for every join, history page and sync batch. */
#define PGQ_MAX_STMTS 32

struct pgq_item {
	struct pgq_item *next;
	char *sql;			/* owned */
	int nparams;
	char *params[PGQ_MAX_PARAMS];	/* owned */
	pgq_cb *cb;
	void *arg;
	int unprepared;			/* its SQL could not be prepared: run it as it is */
};

enum pgq_state { PGQ_DOWN, PGQ_CONNECTING, PGQ_UP };

struct pgq {
	uv_loop_t *loop;
	char name[16];
	char *conninfo;		/* owned */
	int max_queue;
	PGconn *conn;		/* owned */
	enum pgq_state state;
	int fd;
	int armed;		/* the events poll watches */
	uv_poll_t *poll;	/* owned until its close callback */
	uv_timer_t timer;	/* reconnect backoff */
	unsigned backoff_ms;
	int closing;
	int ever_up;
	struct pgq_item *head, *tail;	/* head is in flight when sent */
	int sent;
	int queued;
	PGresult *last;		/* owned: the newest result of the query in flight */
	char *stmts[PGQ_MAX_STMTS];	/* owned: SQL prepared as "chatd_<index>" */
	int nstmts;
	int preparing;		/* the head item's SQL is being prepared */
	uint64_t sent_us;	/* when the query in flight was sent */
};

static void pgq__fail_conn(struct pgq *q, const char *why);
static void pgq__kick(struct pgq *q);

static void
pgq__forget_stmts(struct pgq *q)
{
	for (int i = 0; i < q->nstmts; i++)
		free(q->stmts[i]);
	q->nstmts = 0;
	q->preparing = 0;
}

/* The prepared statement of sql, or -1. */
static int
pgq__stmt(const struct pgq *q, const char *sql)
{
	for (int i = 0; i < q->nstmts; i++)
		if (strcmp(q->stmts[i], sql) == 0)
			return i;
	return -1;
}

static void
pgq__item_free(struct pgq_item *it)
{
	free(it->sql);
	for (int i = 0; i < it->nparams; i++)
		free(it->params[i]);
	free(it);
}

static void
pgq__poll_closed(uv_handle_t *h)
{
	free(h);
}

static void
pgq__unwatch(struct pgq *q)
{
	if (q->poll != NULL) {
		uv_poll_stop(q->poll);
		uv_close((uv_handle_t *)q->poll, pgq__poll_closed);
		q->poll = NULL;
	}
	q->fd = -1;
}

static void pgq__on_io(uv_poll_t *p, int status, int events);

static void
pgq__watch(struct pgq *q, int events)
{
	int fd = PQsocket(q->conn);

	/* PQsocket may change while connecting: re-create the handle then. */
	if (q->poll != NULL && fd != q->fd)
		pgq__unwatch(q);
	if (q->poll == NULL) {
		q->poll = xmalloc(sizeof(*q->poll));
		if (uv_poll_init(q->loop, q->poll, fd) != 0)
			log_fatal("pgq: uv_poll_init failed");
		q->poll->data = q;
		q->fd = fd;
		q->armed = 0;
	}
	uvpoll_watch(q->poll, &q->armed, events, pgq__on_io);
}

static void
pgq__connect_step(struct pgq *q)
{
	switch (PQconnectPoll(q->conn)) {
	case PGRES_POLLING_READING:
		pgq__watch(q, UV_READABLE);
		return;
	case PGRES_POLLING_WRITING:
		pgq__watch(q, UV_WRITABLE);
		return;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(q->conn, 1) != 0) {
			pgq__fail_conn(q, "cannot set non-blocking");
			return;
		}
		q->state = PGQ_UP;
		q->backoff_ms = PGQ_BACKOFF_MIN_MS;
		log_info("postgres %s connection up", q->name);
		q->ever_up = 1;
		pgq__watch(q, UV_READABLE);
		pgq__kick(q);
		return;
	default:
		pgq__fail_conn(q, PQerrorMessage(q->conn));
		return;
	}
}

static void
pgq__timer_cb(uv_timer_t *t)
{
	struct pgq *q = t->data;

	if (q->closing)
		return;
	q->conn = PQconnectStart(q->conninfo);
	if (q->conn == NULL)
		log_fatal("pgq: out of memory");
	if (PQstatus(q->conn) == CONNECTION_BAD) {
		pgq__fail_conn(q, PQerrorMessage(q->conn));
		return;
	}
	q->state = PGQ_CONNECTING;
	pgq__connect_step(q);
}

static void
pgq__fail_all(struct pgq *q)
{
	while (q->head != NULL) {
		struct pgq_item *it = q->head;

		q->head = it->next;
		q->queued--;
		if (it->cb)
			it->cb(NULL, it->arg);
		pgq__item_free(it);
	}
	q->tail = NULL;
	q->sent = 0;
}

/* The connection goes: its watcher, its last result, its prepared
 * statements (a new connection prepares them again). */
static void
pgq__drop_conn(struct pgq *q)
{
	pgq__unwatch(q);
	PQclear(q->last);
	q->last = NULL;
	if (q->conn != NULL) {
		PQfinish(q->conn);
		q->conn = NULL;
	}
	pgq__forget_stmts(q);
	q->state = PGQ_DOWN;
}

static void
pgq__fail_conn(struct pgq *q, const char *why)
{
	char msg[256];
	size_t n;

	snprintf(msg, sizeof(msg), "%s", why ? why : "unknown error");
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';	/* one log line */
	if (q->state == PGQ_UP || q->backoff_ms == PGQ_BACKOFF_MIN_MS)
		log_warn("postgres %s connection %s: %s", q->name,
		    q->state == PGQ_UP ? "lost" : "failed", msg);
	if (q->state == PGQ_UP)
		metrics_add(M_PG_ERRORS, 1);
	pgq__drop_conn(q);
	pgq__fail_all(q);
	if (q->closing)
		return;
	uv_timer_start(&q->timer, pgq__timer_cb, q->backoff_ms, 0);
	q->backoff_ms = q->backoff_ms * 2 > PGQ_BACKOFF_MAX_MS ? PGQ_BACKOFF_MAX_MS : q->backoff_ms * 2;
}

/* Sends the head item if nothing is in flight. */
static void
pgq__kick(struct pgq *q)
{
	struct pgq_item *it = q->head;
	char name[24];
	int stmt, ok;

	if (q->state != PGQ_UP || q->sent || it == NULL)
		return;
	stmt = pgq__stmt(q, it->sql);
	snprintf(name, sizeof(name), "chatd_%d", stmt >= 0 ? stmt : q->nstmts);
	if (stmt >= 0) {
		ok = PQsendQueryPrepared(q->conn, name, it->nparams,
		    (const char *const *)it->params, NULL, NULL, 0);
	} else if (q->nstmts < PGQ_MAX_STMTS && !it->unprepared) {
		ok = PQsendPrepare(q->conn, name, it->sql, it->nparams, NULL);
		q->preparing = 1;
	} else {
		ok = PQsendQueryParams(q->conn, it->sql, it->nparams, NULL,
		    (const char *const *)it->params, NULL, NULL, 0);
	}
	if (!ok) {
		pgq__fail_conn(q, PQerrorMessage(q->conn));
		return;
	}
	q->sent = 1;
	q->sent_us = uv_hrtime() / 1000;
	pgq__watch(q, PQflush(q->conn) == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static void
pgq__read(struct pgq *q)
{
	PGresult *res, *last;
	struct pgq_item *it;

	if (!PQconsumeInput(q->conn)) {
		pgq__fail_conn(q, PQerrorMessage(q->conn));
		return;
	}
	if (!q->sent) {
		/* Notices only; a broken connection shows up in PQstatus. */
		if (PQstatus(q->conn) == CONNECTION_BAD)
			pgq__fail_conn(q, PQerrorMessage(q->conn));
		return;
	}
	/* A result may be complete before the end of the query arrives in a
	 * later read: keep it until PQgetResult says the query is done. */
	for (;;) {
		if (PQisBusy(q->conn))
			return;
		res = PQgetResult(q->conn);
		if (res == NULL)
			break;
		PQclear(q->last);
		q->last = res;
	}
	last = q->last;
	q->last = NULL;
	if (q->preparing) {
		/* The head item's statement is ready, or cannot be prepared:
		 * then it runs unprepared, and its error comes from there. */
		q->preparing = 0;
		q->sent = 0;
		if (last != NULL && pgq_ok(last))
			q->stmts[q->nstmts++] = xstrdup(q->head->sql);
		else
			q->head->unprepared = 1;
		PQclear(last);
		pgq__kick(q);
		return;
	}
	it = q->head;
	q->head = it->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->queued--;
	q->sent = 0;
	metrics_latency(MH_PG_QUERY, (int64_t)(uv_hrtime() / 1000 - q->sent_us));
	if (last != NULL && !pgq_ok(last)) {
		log_warn("postgres %s query failed: %s", q->name, PQresultErrorMessage(last));
		metrics_add(M_PG_ERRORS, 1);
	}
	if (it->cb)
		it->cb(last, it->arg);
	PQclear(last);
	pgq__item_free(it);
	if (q->state == PGQ_UP && PQstatus(q->conn) == CONNECTION_BAD) {
		pgq__fail_conn(q, PQerrorMessage(q->conn));
		return;
	}
	pgq__kick(q);
}

static void
pgq__on_io(uv_poll_t *p, int status, int events)
{
	struct pgq *q = p->data;

	if (status < 0)
		q->armed = 0;	/* libuv stopped the handle on the error */
	if (q->state == PGQ_CONNECTING) {
		pgq__connect_step(q);
		return;
	}
	if (q->state != PGQ_UP)
		return;
	if (status < 0) {
		pgq__fail_conn(q, uv_strerror(status));
		return;
	}
	if (events & UV_WRITABLE) {
		int r = PQflush(q->conn);

		if (r < 0) {
			pgq__fail_conn(q, PQerrorMessage(q->conn));
			return;
		}
		if (r == 0)
			pgq__watch(q, UV_READABLE);
	}
	if (events & UV_READABLE)
		pgq__read(q);
}

struct pgq *
pgq_new(uv_loop_t *loop, const char *name, const char *conninfo, int max_queue)
{
	struct pgq *q = xcalloc(1, sizeof(*q));

	q->loop = loop;
	snprintf(q->name, sizeof(q->name), "%s", name);
	q->conninfo = xstrdup(conninfo);
	q->max_queue = max_queue;
	q->fd = -1;
	q->backoff_ms = PGQ_BACKOFF_MIN_MS;
	uv_timer_init(loop, &q->timer);
	q->timer.data = q;
	return q;
}

void
pgq_start(struct pgq *q)
{
	uv_timer_start(&q->timer, pgq__timer_cb, 0, 0);
}

int
pgq_up(const struct pgq *q)
{
	return q->state == PGQ_UP;
}

int
pgq_busy(const struct pgq *q)
{
	return q->queued;
}

int
pgq_exec(struct pgq *q, const char *sql, int nparams, const char *const *params,
    pgq_cb *cb, void *arg)
{
	struct pgq_item *it;

	if (q->closing || q->state != PGQ_UP || q->queued >= q->max_queue ||
	    nparams > PGQ_MAX_PARAMS)
		return -1;
	it = xcalloc(1, sizeof(*it));
	it->sql = xstrdup(sql);
	it->nparams = nparams;
	for (int i = 0; i < nparams; i++)
		it->params[i] = params[i] ? xstrdup(params[i]) : NULL;
	it->cb = cb;
	it->arg = arg;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->queued++;
	pgq__kick(q);
	return 0;
}

static void
pgq__timer_closed(uv_handle_t *h)
{
	struct pgq *q = h->data;

	free(q->conninfo);
	free(q);
}

void
pgq_close(struct pgq *q)
{
	q->closing = 1;
	pgq__fail_all(q);
	pgq__drop_conn(q);
	uv_timer_stop(&q->timer);
	uv_close((uv_handle_t *)&q->timer, pgq__timer_closed);
}

int
pgq_ok(const PGresult *res)
{
	ExecStatusType st;

	if (res == NULL)
		return 0;
	st = PQresultStatus(res);
	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}
