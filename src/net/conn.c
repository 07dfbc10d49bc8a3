#include "net/conn.h"
#include "net/conn_private.h"
#include "net/http_req.h"
#include "net/outbuf.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "proc/srv.h"
#include "proc/turn.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * A client socket's life: accept, reading into the loop's one buffer and
 * handing the bytes to its kind's reader (net/http.c, net/ws.c), the close
 * (close frame, FIN, linger). Its queue and writes are in
 * net/conn_queue.c, the once-a-second sweep (heartbeat, token expiry,
 * stalled writes, HTTP timeouts) in net/conn_sweep.c.
 */

/* The loop's one read buffer: every socket reads into it, and a reader
 * keeps only what it cannot use yet (an incomplete frame or request). */
#define CONN_READ_BUF (64 * 1024)
#define CONN_HOOKS_MAX 8

static struct conn *conn_list;
static int conn_n;
static char read_buf[CONN_READ_BUF];
static conn_reader *readers[CONN_SSE + 1];
static conn_hook *hooks[CONN_HOOKS_MAX];
static const char *(*sub_room)(const struct sub *s);
static int64_t (*sub_seq)(const struct sub *s);
static void (*sub_gapped)(struct sub *s);
static int nhooks;
static conn_http_answer *http_answer;
static conn_hook *open_hooks[CONN_HOOKS_MAX];
static int nopen_hooks;


void
conn_set_reader(enum conn_kind kind, conn_reader *fn)
{
	readers[kind] = fn;
}

void
conn_set_sub_ops(const char *(*room_id)(const struct sub *s), void (*gapped)(struct sub *s),
    int64_t (*seq)(const struct sub *s))
{
	sub_room = room_id;
	sub_gapped = gapped;
	sub_seq = seq;
}

size_t
conn_cursor(const struct conn *c, const char *room, int64_t seq, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < c->nsubs && sub_room != NULL && sub_seq != NULL; i++) {
		const char *r = sub_room(c->subs[i]);
		int64_t s = strcmp(r, room) == 0 ? seq : sub_seq(c->subs[i]);
		int w = snprintf(buf + n, len - n, "%s%s=%lld", i ? "," : "", r, (long long)s);

		if (w < 0 || (size_t)w >= len - n) {
			buf[n] = '\0';
			break;
		}
		n += (size_t)w;
	}
	return n;
}

void
conn_set_http_answer(conn_http_answer *fn)
{
	http_answer = fn;
}

void
conn_http_answer_json(struct conn *c, int status, const char *json, size_t len,
    const char *headers)
{
	if (http_answer != NULL)
		http_answer(c, status, json, len, headers);
}

void
conn_set_request_identity(struct conn *c, const struct auth_identity *id)
{
	size_t luser = strlen(id->user) + 1, ltenant = strlen(id->tenant) + 1;

	free(c->idnames);
	c->idnames = xmalloc(luser + ltenant);
	c->id.user = memcpy(c->idnames, id->user, luser);
	c->id.tenant = memcpy(c->idnames + luser, id->tenant, ltenant);
	c->id.exp = id->exp;
	c->id.admin = id->admin;
}

void
conn_on_open(conn_hook *fn)
{
	if (nopen_hooks == CONN_HOOKS_MAX)
		log_fatal("conn: more than %d open hooks", CONN_HOOKS_MAX);
	open_hooks[nopen_hooks++] = fn;
}

void
conn_on_close(conn_hook *fn)
{
	if (nhooks == CONN_HOOKS_MAX)
		log_fatal("conn: more than %d close hooks", CONN_HOOKS_MAX);
	hooks[nhooks++] = fn;
}

conn_reader *
conn__reader(enum conn_kind kind)
{
	return readers[kind];
}

void
conn__mark_gapped(struct sub *s)
{
	sub_gapped(s);
}

void
conn__read_buffered(struct conn *c)
{
	if (readers[c->kind] != NULL)
		readers[c->kind](c, NULL, 0);
}

static struct conn *
conn__of(void *handle)
{
	return (struct conn *)handle;	/* tcp is the first member */
}


static void
conn__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = read_buf;
	buf->len = sizeof(read_buf);
}

static void
conn__eof(struct conn *c)
{
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->peer_done = 1;
	/* A client that half-closes after its request still gets the
	 * response, and one that closes after its close frame still gets
	 * ours: what is queued is written first. */
	if (c->phase < CONN_SHUT && (c->qlen > 0 || c->wreq != NULL) &&
	    (c->kind == CONN_HTTP || c->phase == CONN_ENDING)) {
		c->end_after_write = 1;
		return;
	}
	conn__close_handle(c);
}

static void
conn__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = conn__of(s);

	if (nread > 0) {
		if (c->phase == CONN_OPEN && !c->killing && readers[c->kind] != NULL) {
			conn_ref(c);
			readers[c->kind](c, buf->base, (size_t)nread);
			conn_unref(c);
		}
		return;
	}
	if (nread == 0)
		return;
	if (nread == UV_EOF)
		conn__eof(c);
	else
		conn_abort(c);
}

struct conn *
conn_accept(uv_loop_t *loop, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?", cid[32];
	size_t lcid, lip;
	struct conn *c;


	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
	}
	snprintf(cid, sizeof(cid), "%d-%llu", srv.index, (unsigned long long)++srv.conn_counter);
	lcid = strlen(cid) + 1;
	lip = strlen(ip) + 1;
	c = xcalloc(1, sizeof(*c) + lcid + lip);
	memcpy(c->cid, cid, lcid);
	c->ip = memcpy(c->cid + lcid, ip, lip);
	if (uv_tcp_init(loop, &c->tcp) != 0 || uv_tcp_open(&c->tcp, fd) != 0) {
		log_warn("accept: libuv refused socket %d", fd);
		close(fd);
		free(c);
		return NULL;
	}
	c->refs = 1;	/* the socket's, dropped in the handle's close callback */
	c->kind = CONN_HTTP;
	c->phase = CONN_OPEN;
	c->start_ms = c->rx_ms = uv_now(loop);
	c->next = conn_list;
	if (conn_list)
		conn_list->prev = c;
	conn_list = c;
	conn_n++;
	if (uv_read_start((uv_stream_t *)&c->tcp, conn__alloc_cb, conn__read_cb) != 0)
		conn__close_handle(c);
	return c;
}

struct conn *
conn_virtual(const char *ip)
{
	char cid[32];
	size_t lcid, lip = strlen(ip) + 1;
	struct conn *c;

	snprintf(cid, sizeof(cid), "v%d-%llu", srv.index, (unsigned long long)++srv.conn_counter);
	lcid = strlen(cid) + 1;
	c = xcalloc(1, sizeof(*c) + lcid + lip);
	memcpy(c->cid, cid, lcid);
	c->ip = memcpy(c->cid + lcid, ip, lip);
	c->refs = 1;
	c->virt = 1;
	c->kind = CONN_HTTP;
	c->phase = CONN_OPEN;
	return c;
}

void
conn_set_identity(struct conn *c, const struct auth_identity *id)
{
	size_t luser = strlen(id->user) + 1, ltenant = strlen(id->tenant) + 1;

	c->idnames = xmalloc(luser + ltenant);
	c->id.user = memcpy(c->idnames, id->user, luser);
	c->id.tenant = memcpy(c->idnames + luser, id->tenant, ltenant);
	c->id.exp = id->exp;
	c->id.admin = id->admin;
	c->kind = CONN_WS;
	c->counted = 1;
	c->rx_ms = c->ping_ms = uv_now(srv.loop);
	metrics_add(M_CONNS_ACTIVE, 1);
	metrics_add(M_CONNS_TOTAL, 1);
	for (int i = 0; i < nopen_hooks; i++)
		open_hooks[i](c);
}

/* The connection stops taking part: every close hook runs once (its
 * rooms are left, its admission released). The socket may still write
 * its last bytes. */
static void
conn__release(struct conn *c)
{
	if (c->killing)
		return;
	c->killing = 1;
	for (int i = 0; i < nhooks; i++)
		hooks[i](c);
	if (c->counted) {
		c->counted = 0;
		metrics_add(M_CONNS_ACTIVE, -1);
		metrics_conn_closed(c->close_code, c->ip, c->id.tenant, c->id.user);
	}
}

static void
conn__closed_cb(uv_handle_t *h)
{
	struct conn *c = conn__of(h);

	if (c->prev)
		c->prev->next = c->next;
	else
		conn_list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	conn_n--;
	conn_unref(c);
}

void
conn__close_handle(struct conn *c)
{
	if (c->phase == CONN_GONE || c->virt)
		return;
	conn__release(c);
	c->phase = CONN_GONE;
	uv_close((uv_handle_t *)&c->tcp, conn__closed_cb);
}

void
conn_abort(struct conn *c)
{
	conn__close_handle(c);
}

static void
conn__shutdown_cb(uv_shutdown_t *req, int status)
{
	(void)status;
	free(req);
}

/* Everything is written: send FIN, then wait (CONN_LINGER_MS at most) for
 * the peer to close its side, reading and discarding what it still sends,
 * so that its last bytes do not turn the close into a reset. */
void
conn__shutdown(struct conn *c)
{
	uv_shutdown_t *req;

	if (c->phase >= CONN_SHUT)
		return;
	conn__release(c);
	c->phase = CONN_SHUT;
	c->close_ms = util_mono_ms();
	req = xmalloc(sizeof(*req));
	if (uv_shutdown(req, (uv_stream_t *)&c->tcp, conn__shutdown_cb) != 0) {
		free(req);
		conn__close_handle(c);
		return;
	}
	if (c->peer_done) {
		conn__close_handle(c);	/* both sides are done */
		return;
	}
	if (c->reading_paused || !uv_is_active((uv_handle_t *)&c->tcp))
		uv_read_start((uv_stream_t *)&c->tcp, conn__alloc_cb, conn__read_cb);
	c->reading_paused = 0;
}

void
conn_ref(struct conn *c)
{
	c->refs++;
}

int
conn_list_add(struct conn_list *l, struct conn *c, uint8_t *flag)
{
	if (*flag)
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = xrealloc(l->v, (size_t)l->cap * sizeof(*l->v));
	}
	*flag = 1;
	conn_ref(c);
	l->v[l->n++] = c;
	return 1;
}

void
conn_unref(struct conn *c)
{
	if (--c->refs > 0) {
		/* A close waiting for in-flight requests may go now. */
		if (c->refs == 1 && c->close_code && c->phase == CONN_OPEN)
			conn__want_write(c);
		return;
	}
	conn__drop_queue(c);
	while (c->qlen > 0) {
		outbuf_unref(c->q[c->qhead]);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	if (c->req != NULL) {
		http_req_free(c->req);
		free(c->req);
	}
	if (c->rd != NULL) {
		wsframe_reader_free(c->rd);
		free(c->rd);
	}
	free(c->idnames);
	free(c->q);
	if (c->subs != &c->sub1)
		free(c->subs);
	free(c);
}

int
conn_open(const struct conn *c)
{
	return (c->kind == CONN_WS || (c->kind == CONN_SSE && c->idnames != NULL)) &&
	    c->phase == CONN_OPEN && !c->killing && c->close_code == 0;
}

void
conn_kill(struct conn *c, int code, const char *why)
{
	unsigned char frame[2 + WSFRAME_CONTROL_MAX];
	struct outbuf *b;
	size_t n;

	if (c->killing || c->phase != CONN_OPEN || c->virt)
		return;
	if (!c->close_code)
		c->close_code = code;
	conn__release(c);
	c->phase = CONN_ENDING;
	c->close_ms = util_mono_ms();
	conn__drop_queue(c);
	if (c->kind == CONN_WS) {
		n = wsframe_close(frame, code, why);
		b = outbuf_raw((const char *)frame, n);	/* header and body */
		conn__push(c, b);
		outbuf_unref(b);
	}
	conn__want_write(c);
}

void
conn_close(struct conn *c, int code)
{
	if (c->killing || c->close_code || c->phase != CONN_OPEN || c->virt)
		return;
	if (code == CONN_CLOSE_SLOW || c->kind == CONN_SSE) {
		/* A slow consumer loses what it has not read. */
		conn_kill(c, code, code == CONN_CLOSE_SLOW ? "slow consumer" : "server draining");
		return;
	}
	c->close_code = code;
	c->close_ms = util_mono_ms();
	if (c->kind == CONN_HTTP)
		c->end_after_write = 1;
	conn__want_write(c);
}

void
conn_end_after_write(struct conn *c)
{
	if (c->virt)
		return;
	c->end_after_write = 1;
	conn__want_write(c);
}

void
conn_pause_reading(struct conn *c, int pause)
{
	if (c->phase != CONN_OPEN || c->reading_paused == pause || c->virt)
		return;
	c->reading_paused = (uint8_t)pause;
	if (pause)
		uv_read_stop((uv_stream_t *)&c->tcp);
	else
		uv_read_start((uv_stream_t *)&c->tcp, conn__alloc_cb, conn__read_cb);
}

void
conn_start(void)
{
	turn_register(TURN_WRITE, conn__write_step);
}

void
conn_shutdown(void)
{
	conn__write_shutdown();
	for (struct conn *c = conn_list; c != NULL; c = c->next)
		conn__close_handle(c);
}


void
conn_heard(struct conn *c)
{
	c->rx_ms = uv_now(srv.loop);
}

/* A ping frame as it goes on the wire, shared. Not empty: the client's
 * pong echoes the payload. */
struct sub *
conn_find_sub(struct conn *c, const char *room_id)
{
	for (int i = 0; i < c->nsubs; i++)
		if (strcmp(sub_room(c->subs[i]), room_id) == 0)
			return c->subs[i];
	return NULL;
}

void
conn_add_sub(struct conn *c, struct sub *s)
{
	if (c->subcap == 0) {
		c->subs = &c->sub1;
		c->subcap = 1;
	} else if (c->nsubs == c->subcap) {
		struct sub **v = xmalloc((size_t)c->subcap * 2 * sizeof(*v));

		memcpy(v, c->subs, (size_t)c->nsubs * sizeof(*v));
		if (c->subs != &c->sub1)
			free(c->subs);
		c->subs = v;
		c->subcap *= 2;
	}
	c->subs[c->nsubs++] = s;
}

void
conn_remove_sub(struct conn *c, struct sub *s)
{
	for (int i = 0; i < c->nsubs; i++) {
		if (c->subs[i] == s) {
			c->subs[i] = c->subs[--c->nsubs];
			return;
		}
	}
}

struct conn *
conn_first(void)
{
	return conn_list;
}

int
conn_count(void)
{
	return conn_n;
}

int64_t
conn_heap_bytes(void)
{
	int64_t n = 0;

	for (struct conn *c = conn_list; c != NULL; c = c->next) {
		n += (int64_t)malloc_usable_size(c) + (int64_t)malloc_usable_size(c->idnames) +
		    (int64_t)malloc_usable_size(c->q) +
		    (int64_t)(c->subs != &c->sub1 ? malloc_usable_size(c->subs) : 0) +
		    (c->rd != NULL ? (int64_t)malloc_usable_size(c->rd) +
		    (int64_t)wsframe_reader_held(c->rd) : 0);
		if (c->req != NULL)
			n += (int64_t)malloc_usable_size(c->req) + (int64_t)malloc_usable_size(c->req->buf);
	}
	return n;
}
