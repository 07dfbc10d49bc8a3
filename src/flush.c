#include "flush.h"
#include "conn.h"
#include "metrics.h"
#include "obuf.h"
#include "room.h"
#include "sendq.h"
#include "ws.h"
#include "srv.h"
#include "util.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_BATCH 65536	/* bytes gathered into one socket write */
#define FLUSH_ALONE 8192	/* an obuf this big is written as it is */

static struct conn **list;	/* references held */
static int nlist, caplist;
static uv_check_t check;
static int check_ready;
static unsigned char *scratch;	/* FLUSH_BATCH; owned */

static void
flush__pop(struct conn *c)
{
	struct obuf *b = c->q[c->qhead];

	c->qbytes -= b->len;
	c->qframes -= b->nframes;
	obuf_unref(b);
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
}

/* Raw bytes: the obufs hold complete frames, and lws passes
 * LWS_WRITE_HTTP through as it is (a part the socket does not take is
 * copied into lws' own buffer, which lws_partial_buffered() reports). */
static int
flush__send(struct conn *c, unsigned char *p, size_t len)
{
	if (lws_write(c->wsi, p, len, LWS_WRITE_HTTP) < (int)len)
		return -1;
	metrics_add(M_WRITES, 1);
	metrics_add(M_WRITE_BYTES, (int64_t)len);
	c->progress_ms = util_mono_ms();
	return 0;
}

int
flush_write(struct conn *c)
{
	/* lws_send_pipe_choked() costs a poll() syscall per call. */
	while (c->qlen > 0 && !lws_partial_buffered(c->wsi)) {
		struct obuf *b = c->q[c->qhead];
		size_t used = 0;

		if (c->qlen == 1 || b->len >= FLUSH_ALONE) {
			/* Usually a room's batch of this loop turn: no copy. */
			if (flush__send(c, b->data, b->len) != 0)
				return -1;
			flush__pop(c);
			continue;
		}
		if (scratch == NULL)
			scratch = xmalloc(FLUSH_BATCH);
		/* Small obufs (replies, single events) gathered into one write. */
		while (c->qlen > 0) {
			b = c->q[c->qhead];
			if (b->len >= FLUSH_ALONE || used + b->len > FLUSH_BATCH)
				break;
			memcpy(scratch + used, b->data, b->len);
			used += b->len;
			flush__pop(c);
		}
		if (flush__send(c, scratch, used) != 0)
			return -1;
	}
	return 0;
}

static void
flush__run(uv_check_t *h)
{
	(void)h;
	/* First what clients still have to say, then their sends of this
	 * turn to Redis (one script call per room), then the rooms' batches
	 * of this turn into the queues, then the writes. */
	ws_read_more();
	sendq_flush();
	room_seal_batches();
	for (int i = 0; i < nlist; i++) {
		struct conn *c = list[i];

		c->flush_queued = 0;
		if (c->wsi != NULL && !c->killing && c->qlen > 0) {
			if (flush_write(c) != 0)
				conn_kill(c, 1011, "write failed");
			else if (c->qlen > 0 || c->close_code)
				lws_callback_on_writable(c->wsi);
		}
		conn_unref(c);
	}
	nlist = 0;
	uv_check_stop(&check);
}

void
flush_kick(void)
{
	if (!check_ready) {
		uv_check_init(srv.loop, &check);
		check_ready = 1;
	}
	if (!uv_is_active((uv_handle_t *)&check))
		uv_check_start(&check, flush__run);
}

void
flush_want(struct conn *c)
{
	if (c->flush_queued)
		return;
	if (nlist == caplist) {
		caplist = caplist ? caplist * 2 : 256;
		list = xrealloc(list, (size_t)caplist * sizeof(*list));
	}
	c->flush_queued = 1;
	conn_ref(c);
	list[nlist++] = c;
	flush_kick();
}

void
flush_shutdown(void)
{
	if (check_ready) {
		flush__run(&check);
		uv_close((uv_handle_t *)&check, NULL);
		check_ready = 0;
	}
	sendq_shutdown();
	free(list);
	list = NULL;
	caplist = 0;
	free(scratch);
	scratch = NULL;
}
