#ifndef CHATD_PGQ_H
#define CHATD_PGQ_H

#include <libpq-fe.h>
#include <uv.h>

/* One asynchronous PostgreSQL connection on the worker's loop with a FIFO
 * of parameterised queries, one in flight at a time. Connects with
 * PQconnectStart/PQconnectPoll and reconnects with backoff by itself. */
struct pgq;

/* res is the query's last result, NULL when the connection failed before
 * the query completed. The callback must not keep res. */
typedef void pgq_cb(const PGresult *res, void *arg);

struct pgq *pgq_new(uv_loop_t *loop, const char *name, const char *conninfo, int max_queue);
void pgq_start(struct pgq *q);
int pgq_up(const struct pgq *q);
/* Queues a query; params are copied. 0 queued, -1 down or queue full
 * (cb is not called). */
int pgq_exec(struct pgq *q, const char *sql, int nparams, const char *const *params,
    pgq_cb *cb, void *arg);
int pgq_busy(const struct pgq *q);
/* Fails what is queued (callbacks get NULL), closes, frees at a safe point. */
void pgq_close(struct pgq *q);

/* The result succeeded (command or tuples). */
int pgq_ok(const PGresult *res);

#endif
