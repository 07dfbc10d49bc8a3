#include "net/flush.h"
#include "net/conn.h"
#include "chat/member.h"
#include "proc/metrics.h"
#include "net/outbuf.h"
#include "chat/room.h"
#include "store/send_batch.h"
#include "net/ws.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_BATCH 65536	/* bytes gathered into one socket write */
#define FLUSH_ALONE 8192	/* an obuf this big is written as it is */
/* Connections written per loop turn. A loopback write costs ~9 us here, so
 * a room of 1,000 takes ~9 ms to write: in chunks, the loop reads (and
 * sends to Redis) between them, and what arrives meanwhile joins the
 * queues of the connections not yet written, leaving in the same write. */
#define FLUSH_CHUNK 128

static struct conn_list todo;	/* [head, todo.n) still to write */
static int head;
static uv_check_t check;
static uv_idle_t idle;		/* no blocking poll while writes wait */
static int check_ready;
static unsigned char *scratch;	/* FLUSH_BATCH; owned */

static void
flush__pop(struct conn *c)
{
	struct outbuf *b = c->q[c->qhead];

	c->qbytes -= b->len;
	c->qframes -= b->nframes;
	outbuf_unref(b);
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

static void
flush__uncork(struct conn *c)
{
	int zero = 0;

	c->corked = 0;
	if (c->wsi == NULL)
		return;
	setsockopt(lws_get_socket_fd(c->wsi), IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero));
}

static int
flush__write(struct conn *c)
{
	/* lws_send_pipe_choked() costs a poll() syscall per call. */
	while (c->qlen > 0 && !lws_partial_buffered(c->wsi)) {
		struct outbuf *b = c->q[c->qhead];
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

int
flush_write(struct conn *c)
{
	int rc = flush__write(c);

	if (c->corked)
		flush__uncork(c);
	return rc;
}

static void
flush__idle_cb(uv_idle_t *h)
{
	(void)h;
}

static void
flush__run(uv_check_t *h)
{
	int end;

	(void)h;
	/* First what clients still have to say, then their sends of this
	 * turn to Redis (one script call for many rooms), their joins' member
	 * checks to PostgreSQL (one statement), then the rooms' batches
	 * of this turn into the queues, then the writes: the next
	 * FLUSH_CHUNK connections in the order they asked. */
	ws_read_more();
	sendbatch_flush();
	member_flush();
	room_seal_batches();
	if (head > 0) {
		memmove(todo.v, todo.v + head, (size_t)(todo.n - head) * sizeof(*todo.v));
		todo.n -= head;
		head = 0;
	}
	end = todo.n < FLUSH_CHUNK ? todo.n : FLUSH_CHUNK;
	/* conn_kill may append to the list (and move it): index, never cache. */
	while (head < end) {
		struct conn *c = todo.v[head++];

		c->flush_queued = 0;
		if (c->wsi != NULL && !c->killing && c->qlen > 0) {
			if (flush_write(c) != 0)
				conn_kill(c, 1011, "write failed");
			else if (c->qlen > 0 || c->close_code)
				lws_callback_on_writable(c->wsi);
		}
		conn_unref(c);
	}
	if (head < todo.n) {
		uv_idle_start(&idle, flush__idle_cb);
		return;
	}
	head = todo.n = 0;
	uv_idle_stop(&idle);
	uv_check_stop(&check);
}

void
flush_kick(void)
{
	if (!check_ready) {
		uv_check_init(srv.loop, &check);
		uv_idle_init(srv.loop, &idle);
		check_ready = 1;
	}
	if (!uv_is_active((uv_handle_t *)&check))
		uv_check_start(&check, flush__run);
}

void
flush_want(struct conn *c)
{
	if (conn_list_add(&todo, c, &c->flush_queued))
		flush_kick();
}

void
flush_shutdown(void)
{
	if (check_ready) {
		do
			flush__run(&check);
		while (todo.n > 0);
		uv_close((uv_handle_t *)&check, NULL);
		uv_close((uv_handle_t *)&idle, NULL);
		check_ready = 0;
	}
	sendbatch_shutdown();
	free(todo.v);
	memset(&todo, 0, sizeof(todo));
	free(scratch);
	scratch = NULL;
}
