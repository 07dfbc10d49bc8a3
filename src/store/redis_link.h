#ifndef CHATD_RLINK_H
#define CHATD_RLINK_H

#include <hiredis/async.h>
#include <uv.h>

/* One asynchronous Redis connection on the worker's loop that reconnects by
 * itself with backoff (hiredis 0.14 does not). While it is down, commands
 * are refused at once (-1) and callers answer "unavailable". Every callback
 * of a command still pending when the link drops is called with a NULL
 * reply, as hiredis does. */
struct rlink;

struct rlink_ops {
	void (*up)(struct rlink *l, void *arg);		/* connected, SELECT sent */
	void (*down)(struct rlink *l, void *arg);	/* lost; reconnect scheduled */
};

struct rlink *rlink_new(uv_loop_t *loop, const char *name, const char *host, int port,
    int db, const struct rlink_ops *ops, void *arg);
void rlink_start(struct rlink *l);
int rlink_up(const struct rlink *l);
/* 0 queued, -1 link down (fn is not called). */
int rlink_cmd(struct rlink *l, redisCallbackFn *fn, void *priv, const char *fmt, ...);
int rlink_cmdargv(struct rlink *l, redisCallbackFn *fn, void *priv, int argc,
    const char **argv, const size_t *argvlen);
/* Disconnects for good; the rlink is freed once hiredis let go of it. */
void rlink_close(struct rlink *l);

/* A reply that is an error, or no reply at all (link dropped). */
int rlink_failed(const redisReply *r);

#endif
