#ifndef CHATD_SRV_H
#define CHATD_SRV_H

#include <stdint.h>
#include <uv.h>

#include "proc/config.h"

struct rlink;
struct pgq;

/* The state of one worker process, set up by worker_run(). Everything in
 * a worker runs on this one loop, so nothing here needs a lock. */
struct srv {
	const struct cfg *cfg;
	int index;			/* worker index, 0..workers-1 */
	uv_loop_t *loop;
	struct rlink *rcmd;		/* commands and scripts */
	struct rlink *rsub;		/* SUBSCRIBE only */
	struct rlink *rsync;		/* the sync consumer's blocking reads */
	struct pgq *pg;			/* requests (rooms, members, history) */
	struct pgq *pgsync;		/* the sync consumer's batches */
	int draining;
	uint64_t conn_counter;
};

extern struct srv srv;

#endif
