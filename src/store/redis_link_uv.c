#include "store/redis_link_uv.h"
#include "lib/util.h"
#include "lib/uvpoll.h"

#include <stdlib.h>
#include <sys/ioctl.h>

/* hiredis reads 16 KiB per call. Under load (a burst of published events)
 * one read per loop turn would cap what a turn can fan out, so a readable
 * link is read on while the socket has bytes, up to this many reads. */
#define RLINK_UV_READS 64

struct rlink_uv {
	redisAsyncContext *ac;	/* NULL once hiredis cleaned up */
	uv_poll_t poll;
	int events;		/* what hiredis wants watched */
	int armed;		/* what the poll handle watches */
};

static void
rlink_uv__io(uv_poll_t *h, int status, int events)
{
	struct rlink_uv *p = h->data;

	/* On an error let hiredis try what it waits for: it finds the error.
	 * libuv has stopped the handle: whatever hiredis asks next re-arms it. */
	if (status < 0) {
		events = p->events;
		p->armed = 0;
	}
	if (p->ac != NULL && (events & UV_READABLE)) {
		redisAsyncHandleRead(p->ac);
		for (int i = 1; i < RLINK_UV_READS && p->ac != NULL; i++) {
			int avail = 0;

			if (ioctl(p->ac->c.fd, FIONREAD, &avail) != 0 || avail <= 0)
				break;
			redisAsyncHandleRead(p->ac);
		}
	}
	if (p->ac != NULL && (events & UV_WRITABLE))
		redisAsyncHandleWrite(p->ac);
}

/* hiredis asks for reads after every read and for writes with every
 * command: uvpoll_watch calls libuv only when the events change. */
static void
rlink_uv__update(struct rlink_uv *p)
{
	uvpoll_watch(&p->poll, &p->armed, p->events, rlink_uv__io);
}

static void
rlink_uv__add_read(void *data)
{
	struct rlink_uv *p = data;

	p->events |= UV_READABLE;
	rlink_uv__update(p);
}

static void
rlink_uv__del_read(void *data)
{
	struct rlink_uv *p = data;

	p->events &= ~UV_READABLE;
	rlink_uv__update(p);
}

static void
rlink_uv__add_write(void *data)
{
	struct rlink_uv *p = data;

	p->events |= UV_WRITABLE;
	rlink_uv__update(p);
}

static void
rlink_uv__del_write(void *data)
{
	struct rlink_uv *p = data;

	p->events &= ~UV_WRITABLE;
	rlink_uv__update(p);
}

static void
rlink_uv__closed(uv_handle_t *h)
{
	free(h->data);
}

static void
rlink_uv__cleanup(void *data)
{
	struct rlink_uv *p = data;

	p->ac = NULL;
	uv_close((uv_handle_t *)&p->poll, rlink_uv__closed);
}

int
rlink_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	struct rlink_uv *p;

	if (ac->ev.data != NULL)
		return REDIS_ERR;
	p = xcalloc(1, sizeof(*p));
	if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
		free(p);
		return REDIS_ERR;
	}
	p->poll.data = p;
	p->ac = ac;
	ac->ev.data = p;
	ac->ev.addRead = rlink_uv__add_read;
	ac->ev.delRead = rlink_uv__del_read;
	ac->ev.addWrite = rlink_uv__add_write;
	ac->ev.delWrite = rlink_uv__del_write;
	ac->ev.cleanup = rlink_uv__cleanup;
	return REDIS_OK;
}
