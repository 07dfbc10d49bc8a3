#ifndef CHATD_SYNC_H
#define CHATD_SYNC_H

/* The sync consumer: one member of the Redis consumer group on the sync
 * stream per worker, writing batches into PostgreSQL (room_events and the
 * messages projection, one transaction, ON CONFLICT DO NOTHING) and XACKing
 * them after the commit. Pending entries of this consumer (a worker that
 * died and came back under the same name) are read again first. */

/* Also registers for the sync link's ups (store/redis.h). */
void sync_start(void);
/* Stop reading; in-flight batch finishes. */
void sync_stop(void);
/* A batch is being written. */
int sync_busy(void);

#include "store/pg_queue.h"

/* One event as the batch JSON the sync statement takes; caller frees. */
char *sync_batch_json(const char *tenant, const char *room_id, long long seq, const char *event);
/* Runs the sync statement for a batch on q (idempotent). 0 queued. */
int sync_write(struct pgq *q, const char *batch_json, pgq_cb *cb, void *arg);

#endif
