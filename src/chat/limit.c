#include "chat/limit.h"
#include "proc/metrics.h"
#include "proc/srv.h"
#include "store/redis.h"
#include "store/redis_link.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const limit_names[LIMIT_NOPS] = {
	"edit", "delete", "react", "member", "search"
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
limit_take(const char *tenant, const char *user, enum limit_op op, limit_cb *cb, void *arg)
{
	struct limit_req *lr = xcalloc(1, sizeof(*lr));
	char key[200], rate[16], burst[16];

	lr->cb = cb;
	lr->arg = arg;
	redis_rate_key(key, sizeof(key), tenant, user, limit_names[op]);
	snprintf(rate, sizeof(rate), "%d", srv.cfg->rate_send_per_s);
	snprintf(burst, sizeof(burst), "%d", srv.cfg->rate_send_burst);
	if (!redis_ready() || rlink_cmd(srv.rcmd, limit__answered, lr, "EVALSHA %s 1 %s %s %s",
	    redis_rate_sha(), key, rate, burst) != 0) {
		cb(arg, -1);
		free(lr);
	}
}
