#include "net/conn.h"
#include "net/conn_private.h"
#include "net/outbuf.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "proc/srv.h"
#include "proc/turn.h"

#include <stdlib.h>
#include <string.h>

/*
 * A connection's outbound queue and its one write per loop turn: the other
 * half of net/conn.c (net/conn_private.h joins them). What goes to a
 * client is an outbuf, framed once and shared by reference; the queue is a
 * ring of references, bounded (outbound_max_frames, outbound_max_bytes),
 * and written from where it stands without a copy.
 */

#define CONN_IOV_MAX 64			/* outbufs in one write */
#define CONN_WRITE_MAX (256 * 1024)	/* bytes gathered into one write */
/* Connections written per loop turn. A loopback write costs ~9 us here, so
 * a room of 1,000 takes ~9 ms to write: in chunks, the loop reads (and
 * sends to Redis) between them, and what arrives meanwhile joins the
 * queues of the connections not yet written, leaving in the same write. */
#define CONN_TURN_WRITES 128

static struct conn_list todo;	/* [head, todo.n): this turn's writes */
static int head;
static struct conn *stepping;	/* the one whose todo reference is held */

static void conn__flush(struct conn *c);


/* Drop what is queued, except what a uv_write in flight still reads. */
void
conn__drop_queue(struct conn *c)
{
	uint32_t keep = c->wreq != NULL ? c->inflight : 0;

	while (c->qlen > keep) {
		uint32_t last = (c->qhead + c->qlen - 1) % c->qcap;
		struct outbuf *b = c->q[last];

		c->qbytes -= b->len;
		c->qframes -= b->nframes;
		outbuf_unref(b);
		c->qlen--;
	}
}

void
conn__want_write(struct conn *c)
{
	if (conn_list_add(&todo, c, &c->flush_queued))
		turn_kick();
}


void
conn__push(struct conn *c, struct outbuf *b)
{
	if (c->qlen == c->qcap) {
		/* Grow the ring, unrolling it; the limits bound it. */
		uint32_t ncap = c->qcap ? c->qcap * 2 : 4;
		struct outbuf **nq = xcalloc(ncap, sizeof(*nq));

		for (uint32_t i = 0; i < c->qlen; i++)
			nq[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	if (c->qlen == 0)
		c->progress_ms = util_mono_ms();
	outbuf_ref(b);
	c->q[(c->qhead + c->qlen) % c->qcap] = b;
	c->qlen++;
	c->qbytes += b->len;
	c->qframes += b->nframes;
}

/* An empty queue takes any one frame, so a reply larger than the byte
 * bound (a long history page) still goes out. */
static int
conn__full(const struct conn *c, const struct outbuf *b)
{
	return c->qlen > 0 && ((uint64_t)c->qframes + b->nframes > (uint64_t)srv.cfg->outbound_max_frames ||
	    c->qbytes + b->len > (size_t)srv.cfg->outbound_max_bytes);
}

static int
conn__is_event(const struct outbuf *b)
{
	return b->seq != 0 && b->room[0] != '\0';
}

/*
 * The queue is full. Room events are what may go: each room's queued
 * events are dropped and replaced by one room:gap {room, after_seq} with
 * the seq before the first one dropped, from which the client resumes with
 * room:join {since}; the subscription then stays quiet until it does.
 * Replies and other frames are kept, and so is what a write in flight
 * reads. The incoming frame b is dropped too if it is a room event.
 */
static int
conn__overflow(struct conn *c, struct outbuf *b)
{
	struct outbuf **old = c->q;
	uint32_t oldhead = c->qhead, len = c->qlen, cap = c->qcap;
	uint32_t keep = c->wreq != NULL ? c->inflight : 0;
	struct outbuf **gaps = xcalloc(len + 1, sizeof(*gaps));	/* first event per room */
	int ngaps = 0, queued = 0;

	for (uint32_t i = keep; i <= len; i++) {
		struct outbuf *e = i < len ? old[(oldhead + i) % cap] : b;
		int g;

		if (!conn__is_event(e))
			continue;
		for (g = 0; g < ngaps && strcmp(gaps[g]->room, e->room) != 0; g++)
			;
		if (g == ngaps) {
			outbuf_ref(e);
			gaps[ngaps++] = e;
		}
	}
	c->q = xcalloc(cap, sizeof(*c->q));
	c->qhead = c->qlen = c->qframes = 0;
	c->qbytes = 0;
	for (uint32_t i = 0; i < len; i++) {
		struct outbuf *e = old[(oldhead + i) % cap];

		if (i >= keep && conn__is_event(e)) {
			outbuf_unref(e);
		} else {
			c->q[c->qlen++] = e;	/* the reference moves */
			c->qbytes += e->len;
			c->qframes += e->nframes;
		}
	}
	if (keep > 0)
		c->qbytes -= c->qoff;
	free(old);
	for (int g = 0; g < ngaps; g++) {
		struct sub *s = conn_find_sub(c, gaps[g]->room);
		char text[160];
		int n = snprintf(text, sizeof(text),
		    "{\"type\":\"room:gap\",\"room\":\"%s\",\"after_seq\":%lld}",
		    gaps[g]->room, (long long)(gaps[g]->seq - 1));
		struct outbuf *m = outbuf_new(text, (size_t)n, 0);

		if (s != NULL)
			conn__mark_gapped(s);
		conn__push(c, m);
		outbuf_unref(m);
		outbuf_unref(gaps[g]);
		metrics_add(M_GAPS, 1);
	}
	free(gaps);
	if (!conn__is_event(b)) {
		/* Replies are bounded by the client's own requests: past the
		 * byte bound they still queue, up to the frame bound. */
		if (c->qframes >= (uint32_t)srv.cfg->outbound_max_frames) {
			metrics_add(M_SLOW_CLOSES, 1);
			log_info("conn %s (%s): outbound queue full of replies, closing 1013",
			    c->cid, c->id.user);
			conn_kill(c, CONN_CLOSE_SLOW, "slow consumer");
			return 0;
		}
		conn__push(c, b);
		queued = 1;
	}
	conn__want_write(c);
	return queued;
}

/* A room event's "id:" line and the blank line that ends the event: the
 * stream's cursor with the event's own seq for its room. It counts as an
 * event of the room (seq one past the event's): an overflow never leaves
 * an event without its end. */
static void
conn__push_cursor(struct conn *c, const struct outbuf *ev)
{
	size_t cap = (size_t)c->nsubs * 96 + 96, n = 4;
	char *line = xmalloc(cap);
	struct outbuf *b;

	memcpy(line, "id: ", 4);
	n += conn_cursor(c, ev->room, ev->seq, line + n, cap - n - 3);
	memcpy(line + n, "\n\n", 2);
	b = outbuf_raw(line, n + 2);
	b->seq = b->last_seq = ev->seq + 1;
	memcpy(b->room, ev->room, sizeof(b->room));
	conn__push(c, b);
	outbuf_unref(b);
	free(line);
}

/*
 * An event stream's send. A room event goes as its "event:"/"data:" lines
 * (shared by every stream) and an "id:" line of this stream's cursor, event
 * by event, so that the client's Last-Event-ID is always its last event's;
 * for a stream of one room the cursor is the event's own room and seq, so
 * the whole batch with its ids is one outbuf shared by every such stream.
 * The queue thus holds whole events: when it is full it is left as it is,
 * one room:gap follows for the event that did not fit, and the stream
 * ends; its client reconnects with the Last-Event-ID of the last event it
 * got, and misses nothing.
 */
static int
conn__send_stream(struct conn *c, struct outbuf *b)
{
	struct outbuf **parts = NULL;
	uint32_t nparts = 0;

	if (!b->bounded && conn__full(c, b)) {
		if (conn__is_event(b)) {
			char text[160];
			int n = snprintf(text, sizeof(text),
			    "{\"type\":\"room:gap\",\"room\":\"%s\",\"after_seq\":%lld}",
			    b->room, (long long)(b->seq - 1));
			struct outbuf *m = outbuf_new(text, (size_t)n, 0);

			conn__push(c, outbuf_as_sse(m));
			outbuf_unref(m);
			metrics_add(M_GAPS, 1);
		}
		metrics_add(M_SLOW_CLOSES, 1);
		log_info("stream %s (%s): not reading, ended", c->cid, c->id.user ? c->id.user : c->ip);
		c->end_after_write = 1;
		conn__want_write(c);
		return 0;
	}
	if (!conn__is_event(b) || b->raw) {
		conn__push(c, outbuf_as_sse(b));
	} else if (c->nsubs == 1) {
		/* A stream of one room: its cursor is the event's room and seq,
		 * the same for every stream of the room: one shared outbuf for
		 * the whole batch, as a WebSocket's. */
		conn__push(c, outbuf_sse_one_room(b));
	} else {
		parts = outbuf_sse_events(b, &nparts);
		for (uint32_t i = 0; i < nparts; i++) {
			conn__push(c, parts[i]);
			conn__push_cursor(c, parts[i]);
		}
	}
	conn__want_write(c);
	return 1;
}

int
conn_send(struct conn *c, struct outbuf *b)
{
	/* Replies still go out while a drain waits for in-flight requests. */
	if (c->phase != CONN_OPEN || c->killing || c->close_code == CONN_CLOSE_SLOW ||
	    c->end_after_write || c->virt)
		return 0;
	if (c->kind == CONN_SSE)
		return conn__send_stream(c, b);
	if (conn__full(c, b))
		return conn__overflow(c, b);
	conn__push(c, b);
	conn__want_write(c);
	return 1;
}

void
conn_send_text(struct conn *c, const char *text, size_t len)
{
	struct outbuf *b = outbuf_new(text, len, 0);

	conn_send(c, b);
	outbuf_unref(b);
}

void
conn_send_raw(struct conn *c, const char *bytes, size_t len)
{
	struct outbuf *b = outbuf_raw(bytes, len);

	if (c->phase == CONN_OPEN && !c->killing && !c->virt) {
		conn__push(c, b);
		conn__want_write(c);
	}
	outbuf_unref(b);
}


/* The queue from its unwritten byte on, as at most CONN_IOV_MAX buffers
 * and about CONN_WRITE_MAX bytes (always at least one buffer). */
static int
conn__iov(const struct conn *c, uv_buf_t *iov, size_t *bytes)
{
	int n = 0;

	*bytes = 0;
	while ((uint32_t)n < c->qlen && n < CONN_IOV_MAX && (n == 0 || *bytes < CONN_WRITE_MAX)) {
		struct outbuf *b = c->q[(c->qhead + (uint32_t)n) % c->qcap];
		uint32_t off = n == 0 ? c->qoff : 0;

		iov[n].base = (char *)b->data + off;
		iov[n].len = b->len - off;
		*bytes += iov[n].len;
		n++;
	}
	return n;
}

/* n bytes of the queue were written. */
static void
conn__advance(struct conn *c, size_t n)
{
	int64_t now_ms = 0;

	c->qbytes -= n;
	metrics_add(M_WRITE_BYTES, (int64_t)n);
	c->progress_ms = util_mono_ms();
	while (n > 0) {
		struct outbuf *b = c->q[c->qhead];
		size_t left = b->len - c->qoff;

		if (n < left) {
			c->qoff += (uint32_t)n;
			return;
		}
		n -= left;
		if (b->ts_ms != 0) {
			if (now_ms == 0)
				now_ms = util_now_ms();
			metrics_latency(MH_DELIVERY, (now_ms - b->ts_ms) * 1000);
		}
		c->qframes -= b->nframes;
		outbuf_unref(b);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
		c->qoff = 0;
	}
}

/* The queue is empty: what comes next in the connection's life. */
static void
conn__after_write(struct conn *c)
{
	if (c->qlen > 0 || c->wreq != NULL || c->phase >= CONN_SHUT)
		return;
	if (c->phase == CONN_ENDING) {
		conn__shutdown(c);
	} else if ((c->kind == CONN_HTTP || c->kind == CONN_SSE) && c->end_after_write) {
		c->phase = CONN_ENDING;
		conn__shutdown(c);
	} else if (c->kind == CONN_WS && c->close_code &&
	    c->refs - (c == stepping) <= 1) {	/* no request in flight */
		log_debug("conn %s: closing with %d", c->cid, c->close_code);
		conn_kill(c, c->close_code, "server draining");
	} else if (c->reading_paused) {
		conn_pause_reading(c, 0);
		conn__read_buffered(c);	/* the requests already read */
	}
}

static void
conn__written(uv_write_t *req, int status)
{
	struct conn *c = (struct conn *)req->handle;	/* tcp is the first member */
	size_t n = 0;

	free(req);
	c->wreq = NULL;
	if (status < 0) {
		c->inflight = 0;
		if (status != UV_ECANCELED)
			conn_abort(c);
		return;
	}
	for (uint32_t i = 0; i < c->inflight; i++)
		n += c->q[(c->qhead + i) % c->qcap]->len - (i == 0 ? c->qoff : 0);
	c->inflight = 0;
	conn__advance(c, n);
	conn__flush(c);
}

/*
 * One write per connection per turn: as much of the queue as the socket
 * takes now (uv_try_write, one writev), and the rest through uv_write,
 * whose callback goes on. The outbufs are written as they are: shared
 * batches, never copied per recipient.
 */
static void
conn__flush(struct conn *c)
{
	uv_buf_t iov[CONN_IOV_MAX];
	size_t bytes;
	int n, w;

	while (c->wreq == NULL && c->phase < CONN_SHUT && c->qlen > 0) {
		n = conn__iov(c, iov, &bytes);
		w = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
		if (w == UV_EAGAIN || w == UV_ENOSYS)
			w = 0;
		if (w < 0) {
			conn_abort(c);
			return;
		}
		metrics_add(M_WRITES, 1);
		if (w > 0)
			conn__advance(c, (size_t)w);
		if ((size_t)w == bytes)
			continue;
		n = conn__iov(c, iov, &bytes);
		c->wreq = xmalloc(sizeof(*c->wreq));
		c->inflight = (uint32_t)n;
		if (uv_write(c->wreq, (uv_stream_t *)&c->tcp, iov, (unsigned)n, conn__written) != 0) {
			free(c->wreq);
			c->wreq = NULL;
			c->inflight = 0;
			conn_abort(c);
			return;
		}
		return;
	}
	conn__after_write(c);
}

/* The end-of-turn step: the next CONN_TURN_WRITES connections, in the
 * order they asked. */
int
conn__write_step(void)
{
	int end;

	if (head > 0) {
		memmove(todo.v, todo.v + head, (size_t)(todo.n - head) * sizeof(*todo.v));
		todo.n -= head;
		head = 0;
	}
	end = todo.n < CONN_TURN_WRITES ? todo.n : CONN_TURN_WRITES;
	/* conn_kill may append to the list (and move it): index, never cache. */
	while (head < end) {
		struct conn *c = todo.v[head++];

		c->flush_queued = 0;
		stepping = c;
		if (c->phase < CONN_SHUT)
			conn__flush(c);
		stepping = NULL;
		conn_unref(c);
	}
	if (head < todo.n)
		return 1;
	head = todo.n = 0;
	return 0;
}

void
conn__write_shutdown(void)
{
	while (conn__write_step())
		;
	free(todo.v);
	memset(&todo, 0, sizeof(todo));
	head = 0;
}
