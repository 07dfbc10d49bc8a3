#include "chat/limit.h"
#include "proto/reply.h"
#include "proc/metrics.h"
#include "proc/srv.h"
#include "store/redis.h"
#include "store/redis_link.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>

/* Which rate_* key limits each operation (a new limit_op needs a line: an
 * entry left out would be RATE_SEND, 0). */
_Static_assert(LIMIT_NOPS == 8, "limit_rates names a rate for every limit_op");
static const enum cfg_rate_op limit_rates[LIMIT_NOPS] = {
	[LIMIT_EDIT] = RATE_EDIT,
	[LIMIT_DELETE] = RATE_DELETE,
	[LIMIT_REACT] = RATE_REACT,
	[LIMIT_MEMBER] = RATE_MEMBER,
	[LIMIT_SEARCH] = RATE_SEARCH,
	[LIMIT_PRESENCE] = RATE_PRESENCE,
	[LIMIT_TYPING] = RATE_TYPING,
	[LIMIT_RECEIPT] = RATE_RECEIPT,
};

struct limit_req {
	limit_cb *cb;
	void *arg;
};

static void
limit__answered(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct limit_req *lr = priv;
	long long retry = -1;

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_INTEGER)
		retry = r->integer;
	if (retry > 0)
		metrics_add(M_RATE_LIMITED, 1);
	lr->cb(lr->arg, retry);
	free(lr);
}

void
limit_take_rate(const char *tenant, const char *user, enum cfg_rate_op op, limit_cb *cb,
    void *arg)
{
	const struct cfg_rate *rate = &srv.cfg->rate[op];
	struct limit_req *lr = xcalloc(1, sizeof(*lr));
	char key[200], n[16], win_ms[24];

	lr->cb = cb;
	lr->arg = arg;
	redis_rate_key(key, sizeof(key), tenant, user, cfg_rate_names[op]);
	snprintf(n, sizeof(n), "%d", rate->n);
	snprintf(win_ms, sizeof(win_ms), "%lld", rate->window_s * 1000LL);
	if (!redis_ready() || rlink_cmd(srv.rcmd, limit__answered, lr, "EVALSHA %s 1 %s %s %s",
	    redis_rate_sha(), key, n, win_ms) != 0) {
		free(lr);
		cb(arg, -1);
	}
}

void
limit_take(const char *tenant, const char *user, enum limit_op op, limit_cb *cb, void *arg)
{
	limit_take_rate(tenant, user, limit_rates[op], cb, arg);
}

int
limit_refused(struct conn *c, const char *idjson, long long retry_ms, const char *what)
{
	if (retry_ms > 0)
		reply_error_retry(c, idjson, retry_ms, "too many %s; retry in %lld ms", what, retry_ms);
	else if (retry_ms < 0)
		reply_error(c, idjson, "unavailable", "message bus unavailable; retry");
	return retry_ms != 0;
}
