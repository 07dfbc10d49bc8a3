#include "flush.h"
#include "conn.h"
#include "obuf.h"
#include "srv.h"
#include "util.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_BATCH 65536	/* bytes of frames per socket write */

static struct conn **list;	/* references held */
static int nlist, caplist;
static uv_check_t check;
static int check_ready;
static unsigned char *scratch;	/* LWS_PRE + FLUSH_BATCH; owned */

/* The header of an unmasked server text frame; returns its length. */
static size_t
flush__header(unsigned char *h, size_t len)
{
	h[0] = 0x81;
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

static void
flush__pop(struct conn *c)
{
	struct obuf *b = c->q[c->qhead];

	c->qbytes -= b->len;
	obuf_unref(b);
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
}

int
flush_write(struct conn *c)
{
	/* lws_send_pipe_choked() costs a poll() syscall per call: a write that
	 * the socket cannot take whole is buffered by lws, and that is what
	 * lws_partial_buffered() reports, for free. */
	while (c->qlen > 0 && !lws_partial_buffered(c->wsi)) {
		struct obuf *b = c->q[c->qhead];
		size_t used = 0;

		if (c->qlen == 1 || b->len + 10 > FLUSH_BATCH) {
			/* One frame: lws frames it in the headroom, no copy. */
			if (lws_write(c->wsi, obuf_payload(b), b->len, LWS_WRITE_TEXT) < (int)b->len)
				return -1;
			flush__pop(c);
			c->progress_ms = util_mono_ms();
			continue;
		}
		if (scratch == NULL)
			scratch = xmalloc(LWS_PRE + FLUSH_BATCH);
		/* Several frames framed here, one after the other, then sent as
		 * raw bytes (lws passes LWS_WRITE_HTTP through unframed). */
		while (c->qlen > 0) {
			b = c->q[c->qhead];
			if (used + b->len + 10 > FLUSH_BATCH)
				break;
			used += flush__header(scratch + LWS_PRE + used, b->len);
			memcpy(scratch + LWS_PRE + used, obuf_payload(b), b->len);
			used += b->len;
			flush__pop(c);
		}
		if (lws_write(c->wsi, scratch + LWS_PRE, used, LWS_WRITE_HTTP) < (int)used)
			return -1;
		c->progress_ms = util_mono_ms();
	}
	return 0;
}

static void
flush__run(uv_check_t *h)
{
	(void)h;
	/* Entries added while running go round again next turn. */
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
flush_want(struct conn *c)
{
	if (c->flush_queued)
		return;
	if (!check_ready) {
		uv_check_init(srv.loop, &check);
		check_ready = 1;
	}
	if (nlist == caplist) {
		caplist = caplist ? caplist * 2 : 256;
		list = xrealloc(list, (size_t)caplist * sizeof(*list));
	}
	c->flush_queued = 1;
	conn_ref(c);
	list[nlist++] = c;
	if (nlist == 1)
		uv_check_start(&check, flush__run);
}

void
flush_shutdown(void)
{
	if (check_ready) {
		flush__run(&check);
		uv_close((uv_handle_t *)&check, NULL);
		check_ready = 0;
	}
	free(list);
	list = NULL;
	caplist = 0;
	free(scratch);
	scratch = NULL;
}
