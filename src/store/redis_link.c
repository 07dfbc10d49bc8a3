#include "store/redis_link.h"
#include "store/redis_link_uv.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "lib/util.h"

#include <stdarg.h>
#include <string.h>

#define RLINK_BACKOFF_MIN_MS 50
#define RLINK_BACKOFF_MAX_MS 2000
#define RLINK_CONNECT_TIMEOUT_MS 1000

struct rlink {
	uv_loop_t *loop;
	char name[16];
	char host[256];
	int port;
	int db;
	const struct rlink_ops *ops;
	void *arg;
	redisAsyncContext *ac;	/* owned by hiredis; NULL while down */
	int up;
	int closing;
	int timer_closed;
	int ever_up;
	unsigned backoff_ms;
	uv_timer_t timer;	/* reconnect; closed in rlink_close */
};

static void rlink__connect(struct rlink *l);
static void rlink__schedule(struct rlink *l);
static void rlink__maybe_free(struct rlink *l);

static void
rlink__timer_cb(uv_timer_t *t)
{
	rlink__connect(t->data);
}

/*
 * A connect that gets no answer (a dropped SYN, an address that does not
 * answer) is given up here; a context that never connected is freed
 * without callbacks.
 */
static void
rlink__connect_timeout(uv_timer_t *t)
{
	struct rlink *l = t->data;
	redisAsyncContext *ac = l->ac;

	if (l->up || ac == NULL)
		return;
	l->ac = NULL;
	redisAsyncFree(ac);
	if (l->backoff_ms <= RLINK_BACKOFF_MIN_MS)
		log_warn("redis %s link: cannot connect to %s:%d (no answer in %d ms)", l->name,
		    l->host, l->port, RLINK_CONNECT_TIMEOUT_MS);
	rlink__schedule(l);
}

static void
rlink__schedule(struct rlink *l)
{
	if (l->closing)
		return;
	uv_timer_start(&l->timer, rlink__timer_cb, l->backoff_ms, 0);
	l->backoff_ms = l->backoff_ms * 2 > RLINK_BACKOFF_MAX_MS ? RLINK_BACKOFF_MAX_MS : l->backoff_ms * 2;
}

static void
rlink__lost(struct rlink *l, const char *why)
{
	int was_up = l->up;

	l->ac = NULL;
	l->up = 0;
	if (l->closing) {
		rlink__maybe_free(l);
		return;
	}
	if (was_up) {
		log_warn("redis %s link to %s:%d lost: %s", l->name, l->host, l->port, why);
		metrics_add(M_REDIS_ERRORS, 1);
		if (l->ops->down)
			l->ops->down(l, l->arg);
	}
	rlink__schedule(l);
}

static void
rlink__on_connect(const redisAsyncContext *ac, int status)
{
	struct rlink *l = ac->data;

	if (status != REDIS_OK) {
		/* hiredis frees ac after this callback. */
		uv_timer_stop(&l->timer);
		if (l->backoff_ms <= RLINK_BACKOFF_MIN_MS && !l->closing)
			log_warn("redis %s link: cannot connect to %s:%d: %s", l->name, l->host,
			    l->port, ac->errstr);
		rlink__lost(l, ac->errstr);
		return;
	}
	uv_timer_stop(&l->timer);
	if (l->ever_up)
		metrics_add(M_REDIS_RECONNECTS, 1);
	l->ever_up = 1;
	l->up = 1;
	l->backoff_ms = RLINK_BACKOFF_MIN_MS;
	if (l->db != 0)
		redisAsyncCommand(l->ac, NULL, NULL, "SELECT %d", l->db);
	log_info("redis %s link connected to %s:%d", l->name, l->host, l->port);
	if (l->ops->up)
		l->ops->up(l, l->arg);
}

static void
rlink__on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rlink *l = ac->data;

	if (l->closing) {
		l->ac = NULL;
		l->up = 0;
		rlink__maybe_free(l);
		return;
	}
	rlink__lost(l, status == REDIS_OK ? "closed" : ac->errstr);
}

static void
rlink__connect(struct rlink *l)
{
	redisAsyncContext *ac;

	if (l->closing)
		return;
	ac = redisAsyncConnect(l->host, l->port);
	if (ac == NULL)
		log_fatal("redis: out of memory");
	if (ac->err) {
		log_warn("redis %s link: %s", l->name, ac->errstr);
		redisAsyncFree(ac);
		rlink__schedule(l);
		return;
	}
	ac->data = l;
	l->ac = ac;
	if (rlink_uv_attach(ac, l->loop) != REDIS_OK)
		log_fatal("redis: cannot attach to the loop");
	redisAsyncSetConnectCallback(ac, rlink__on_connect);
	redisAsyncSetDisconnectCallback(ac, rlink__on_disconnect);
	uv_timer_start(&l->timer, rlink__connect_timeout, RLINK_CONNECT_TIMEOUT_MS, 0);
}

struct rlink *
rlink_new(uv_loop_t *loop, const char *name, const char *host, int port, int db,
    const struct rlink_ops *ops, void *arg)
{
	struct rlink *l = xcalloc(1, sizeof(*l));

	l->loop = loop;
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->host, sizeof(l->host), "%s", host);
	l->port = port;
	l->db = db;
	l->ops = ops;
	l->arg = arg;
	l->backoff_ms = RLINK_BACKOFF_MIN_MS;
	uv_timer_init(loop, &l->timer);
	l->timer.data = l;
	return l;
}

void
rlink_start(struct rlink *l)
{
	rlink__connect(l);
}

int
rlink_up(const struct rlink *l)
{
	return l->up;
}

int
rlink_cmd(struct rlink *l, redisCallbackFn *fn, void *priv, const char *fmt, ...)
{
	va_list ap;
	int rc;

	if (!l->up)
		return -1;
	va_start(ap, fmt);
	rc = redisvAsyncCommand(l->ac, fn, priv, fmt, ap);
	va_end(ap);
	return rc == REDIS_OK ? 0 : -1;
}

int
rlink_cmdargv(struct rlink *l, redisCallbackFn *fn, void *priv, int argc,
    const char **argv, const size_t *argvlen)
{
	if (!l->up)
		return -1;
	return redisAsyncCommandArgv(l->ac, fn, priv, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

static void
rlink__maybe_free(struct rlink *l)
{
	if (l->closing && l->timer_closed && l->ac == NULL)
		free(l);
}

static void
rlink__timer_closed(uv_handle_t *h)
{
	struct rlink *l = h->data;

	l->timer_closed = 1;
	rlink__maybe_free(l);
}

void
rlink_close(struct rlink *l)
{
	redisAsyncContext *ac = l->ac;
	int was_up = l->up;

	l->closing = 1;
	uv_timer_stop(&l->timer);
	uv_close((uv_handle_t *)&l->timer, rlink__timer_closed);
	if (ac == NULL)
		return;
	redisAsyncDisconnect(ac);
	/* A link still connecting is freed at once, without a callback. */
	if (!was_up)
		l->ac = NULL;
}

int
rlink_failed(const redisReply *r)
{
	return r == NULL || r->type == REDIS_REPLY_ERROR;
}
