/* loadgen: one WebSocket connection's life, from connect() to its last frame.
 * Everything here runs from the epoll loop in loadgen.c and never blocks. */
#include "lg_run.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static void conn__set_events(struct conn *c, uint32_t ev, int op);

static void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL) {
		fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return q;
}

static void
conn__free_buffers(struct conn *c)
{
	free(c->rbuf);
	free(c->wbuf);
	free(c->frag);
	c->rbuf = c->wbuf = c->frag = NULL;
	c->rlen = c->rcap = c->woff = c->wlen = c->wcap = 0;
	c->fraglen = c->fragcap = 0;
}

static void
conn__close_fd(struct conn *c)
{
	struct linger lin = { 1, 0 };

	if (c->fd < 0)
		return;
	/* A reset instead of FIN: no TIME_WAIT left on the port, which the next
	 * run (thousands of connections per source address) needs. */
	(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
	close(c->fd);
	c->fd = -1;
}

/* Counts a set-up failure once; the connection takes no further part. */
static void
conn__fail(struct conn *c, const char *why)
{
	if (c->state == C_FAILED || c->state == C_DEAD)
		return;
	if (c->state <= C_HELLO && c->state != C_NEW)
		g.pending--;
	if (c->state == C_CREATING || c->state == C_JOINING)
		g.joins_inflight--;
	err_count(&g.setup_err, why, strlen(why));
	c->state = C_FAILED;
	g.settled++;
	conn__close_fd(c);
	conn__free_buffers(c);
}

/* A connection that was joined is gone: its deliveries will count as lost. */
static void
conn__lost(struct conn *c, const char *why)
{
	if (c->state != C_JOINED) {
		conn__fail(c, why);
		return;
	}
	err_count(&g.err, why, strlen(why));
	g.lost_conns++;
	c->state = C_DEAD;
	conn__close_fd(c);
	conn__free_buffers(c);
}

void
conn_abandon(struct conn *c, const char *why)
{
	conn__fail(c, why);
}

void
conn_start(struct conn *c)
{
	int one = 1, fd;
	const struct sockaddr_in *src = g.o.nsrc ? &g.o.src[c->idx % (uint32_t)g.o.nsrc] : NULL;

	c->t_start = mono_ns();
	c->state = C_CONNECTING;
	g.pending++;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn__fail(c, errno == EMFILE || errno == ENFILE ? "socket_emfile" : "socket");
		return;
	}
	c->fd = fd;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* The kernel's receive time of each read (see conn__read). */
	(void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
	if (src != NULL) {
		/* The port is chosen at connect() for the 4-tuple, not at bind()
		 * for the address alone: ~28k ports per source address otherwise. */
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (const struct sockaddr *)src, sizeof(*src)) != 0) {
			conn__fail(c, "bind");
			return;
		}
	}
	if (connect(fd, (const struct sockaddr *)&g.o.dst, sizeof(g.o.dst)) != 0 &&
	    errno != EINPROGRESS) {
		conn__fail(c, errno == EADDRNOTAVAIL ? "connect_eaddrnotavail" : "connect");
		return;
	}
	conn__set_events(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void
conn__set_events(struct conn *c, uint32_t ev, int op)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (epoll_ctl(g.ep, op, c->fd, &e) != 0) {
		perror("loadgen: epoll_ctl");
		exit(1);
	}
	c->pollout = (ev & EPOLLOUT) != 0;
}

/* Queues or writes n bytes; a socket that cannot take them now gets the
 * rest later in conn__flush() (EPOLLOUT). */
static void
conn__write(struct conn *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	ssize_t k;

	if (c->fd < 0)
		return;
	if (c->wlen == 0) {
		k = send(c->fd, b, n, MSG_NOSIGNAL);
		if (k == (ssize_t)n)
			return;
		if (k < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				conn__lost(c, "write_error");
				return;
			}
			k = 0;
		}
		b += k;
		n -= (size_t)k;
	}
	if (c->wlen + n > LG_WBUF_MAX) {
		conn__lost(c, "client_wbuf_full");
		return;
	}
	if (c->woff + c->wlen + n > c->wcap) {
		if (c->woff > 0) {
			memmove(c->wbuf, c->wbuf + c->woff, c->wlen);
			c->woff = 0;
		}
		if (c->wlen + n > c->wcap) {
			c->wcap = (uint32_t)(c->wlen + n) * 2 + 256;
			c->wbuf = xrealloc(c->wbuf, c->wcap);
		}
	}
	memcpy(c->wbuf + c->woff + c->wlen, b, n);
	c->wlen += (uint32_t)n;
	if (!c->pollout)
		conn__set_events(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

static void
conn__flush(struct conn *c)
{
	ssize_t k;

	while (c->wlen > 0) {
		k = send(c->fd, c->wbuf + c->woff, c->wlen, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn__lost(c, "write_error");
			return;
		}
		c->woff += (uint32_t)k;
		c->wlen -= (uint32_t)k;
	}
	c->woff = 0;
	conn__set_events(c, EPOLLIN, EPOLL_CTL_MOD);
}

static void
conn__send_frame(struct conn *c, int opcode, const void *payload, size_t len)
{
	if (len + WS_MAX_HEADER > g.outcap) {
		g.outcap = (len + WS_MAX_HEADER) * 2;
		g.out = xrealloc(g.out, g.outcap);
	}
	conn__write(c, g.out, ws_encode(g.out, opcode, payload, len));
}

static void
conn__send_text(struct conn *c, const char *text, int len)
{
	if (len > 0)
		conn__send_frame(c, WS_TEXT, text, (size_t)len);
}

void
conn_send_text(struct conn *c, const char *text, int len)
{
	if (c->state == C_JOINED)
		conn__send_text(c, text, len);
}

/* ------------------------------------------------------------- set-up */

static void
conn__connected(struct conn *c)
{
	int err = 0;
	socklen_t elen = sizeof(err);
	char req[2048];
	int n;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
		conn__fail(c, err == ECONNREFUSED ? "connect_refused" : "connect");
		return;
	}
	ws_make_key(c->key);
	n = snprintf(req, sizeof(req), "GET %s?token=%s HTTP/1.1\r\nHost: %s:%d\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n", g.o.path,
	    g.tokens[c->idx % g.o.users], g.o.host, g.o.port, c->key);
	if (n < 0 || (size_t)n >= sizeof(req)) {
		conn__fail(c, "request_too_long");
		return;
	}
	c->state = C_HANDSHAKE;
	conn__set_events(c, EPOLLIN, EPOLL_CTL_MOD);
	conn__write(c, req, (size_t)n);
}

/* Reads the 101 answer at p. Returns the header length, 0 when incomplete,
 * -1 when the connection failed. */
static long
conn__upgrade_answer(struct conn *c, const char *p, size_t len)
{
	const char *end = memmem(p, len, "\r\n\r\n", 4), *line, *eol;
	char why[32];
	int status = 0, accepted = 0;

	if (end == NULL) {
		if (len > 16384) {
			conn__fail(c, "http_header_too_long");
			return -1;
		}
		return 0;
	}
	if (len >= 12 && memcmp(p, "HTTP/1.", 7) == 0)
		status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (status != 101) {
		snprintf(why, sizeof(why), "http_%d", status);
		conn__fail(c, why);
		return -1;
	}
	for (line = memchr(p, '\n', (size_t)(end - p)); line && line < end; line = eol) {
		line++;
		eol = memchr(line, '\n', (size_t)(end + 2 - line));
		if (eol == NULL)
			break;
		if ((size_t)(eol - line) > 21 && strncasecmp(line, "sec-websocket-accept:", 21) == 0) {
			const char *v = line + 21, *ve = eol;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			accepted = ws_accept_ok(c->key, v, (size_t)(ve - v));
		}
	}
	if (!accepted) {
		conn__fail(c, "bad_accept");
		return -1;
	}
	c->state = C_HELLO;
	return end + 4 - p;
}

/* Both count as one request in flight until the join's answer. */
void
conn_join(struct conn *c)
{
	char msg[256];

	if (c->state != C_CREATING)
		g.joins_inflight++;
	c->state = C_JOINING;
	c->t_start = mono_ns();
	conn__send_text(c, msg, snprintf(msg, sizeof(msg),
	    "{\"type\":\"room:join\",\"id\":\"j\",\"room\":\"%s\"}", g.rooms[c->room].id));
}

void
conn_create(struct conn *c)
{
	const char *id = g.rooms[c->room].id;
	char msg[256];

	g.joins_inflight++;
	c->state = C_CREATING;
	conn__send_text(c, msg, snprintf(msg, sizeof(msg),
	    "{\"type\":\"room:create\",\"id\":\"c\",\"room\":\"%s\",\"name\":\"%s\"}", id, id));
}

static void
conn__hello(struct conn *c)
{
	uint64_t now = mono_ns();

	g.pending--;
	g.hellos++;
	if (g.t_first_hello == 0)
		g.t_first_hello = now;
	g.t_last_hello = now;
	hist_add(&g.hs, now - c->t_start);
	c->state = C_READY;
}

/* unavailable and rate_limited mean "retry" (docs/protocol.md): the join
 * goes to the back of the retry queue, after retry_after_ms if given. */
static void
conn__join_later(struct conn *c, const char *p, size_t len)
{
	const char *v;
	size_t vlen;
	uint64_t ms = 100;
	uint32_t slot;

	if (json_field(p, len, "retry_after_ms", &v, &vlen) == 0) {
		ms = 0;
		for (size_t i = 0; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
			ms = ms * 10 + (uint64_t)(v[i] - '0');
		if (ms < 10)
			ms = 10;
	}
	g.joins_inflight--;
	g.join_retries++;
	c->retries++;
	c->state = C_RETRY;
	slot = (g.retry_head + g.retry_len++) % g.o.conns;
	g.retry_q[slot] = c;
	g.retry_at[slot] = mono_ns() + ms * 1000000ull + (rnd_next() % (ms * 500000ull + 1));
}

static void
conn__joined(struct conn *c)
{
	uint64_t now = mono_ns();

	c->state = C_JOINED;
	g.joins_inflight--;
	g.rooms[c->room].joined++;
	g.joined++;
	g.settled++;
	g.t_last_join = now;
	hist_add(&g.joinh, now - c->t_start);
	free(c->frag);		/* a large join ack may have grown it */
	c->frag = NULL;
	c->fraglen = c->fragcap = 0;
}

/* ----------------------------------------------------- incoming frames */

int
json_field(const char *p, size_t len, const char *key, const char **v, size_t *vlen)
{
	size_t klen = strlen(key);
	const char *end = p + len, *q = p, *s;

	while ((q = memmem(q, (size_t)(end - q), key, klen)) != NULL) {
		s = q + klen;
		q++;
		if (s - klen == p || s[-klen - 1] != '"' || s >= end || *s != '"')
			continue;
		s++;
		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		if (s >= end || *s != ':')
			continue;
		s++;
		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		if (s < end && *s == '"') {
			const char *e = memchr(s + 1, '"', (size_t)(end - s - 1));

			if (e == NULL)
				return -1;
			*v = s + 1;
			*vlen = (size_t)(e - s - 1);
			return 0;
		}
		*v = s;
		while (s < end && *s != ',' && *s != '}' && *s != ' ')
			s++;
		*vlen = (size_t)(s - *v);
		return 0;
	}
	return -1;
}

#define STARTS(p, n, lit) ((n) >= sizeof(lit) - 1 && memcmp((p), (lit), sizeof(lit) - 1) == 0)

/* "body":" in [p, end): memchr for its 'y' and a fixed-length compare,
 * several times faster than memmem on frames of a few hundred bytes (the
 * load generator reads millions of them per second). */
static const char *
conn__find_body(const char *p, const char *end)
{
	const char *y = p + 4;

	while (y + 4 <= end && (y = memchr(y, 'y', (size_t)(end - y))) != NULL) {
		if (y + 4 <= end && memcmp(y - 4, "\"bod", 4) == 0 && memcmp(y + 1, "\":\"", 3) == 0)
			return y - 4;
		y++;
	}
	return NULL;
}

static void
conn__message_new(const char *p, size_t len)
{
	/* The body is near the end (only ts and client_msg_id follow it):
	 * search the tail first, the whole frame if that fails. */
	size_t tail = g.o.body_bytes + 192;
	const char *end = p + len, *b = NULL;
	uint64_t ts = 0;

	if (len > tail)
		b = conn__find_body(end - tail, end);
	if (b == NULL)
		b = conn__find_body(p, end);

	if (b == NULL || b + 9 + LG_DUE_DIGITS >= end) {
		g.received_other++;
		return;
	}
	b += 8;
	if (*b != 'm' && *b != 'w') {
		g.received_other++;
		return;
	}
	/* Fixed width (conn_send_message): no branch on the digits. */
	for (int i = 1; i <= LG_DUE_DIGITS; i++)
		ts = ts * 10 + (uint64_t)(unsigned char)(b[i] - '0');
	if (*b == 'w') {
		g.received_warm++;
		return;
	}
	g.received++;
	g.t_last_rx = g.rx_ns;
	if (g.o.chatty)
		chatty_delivered();
	hist_add(&g.lat, g.rx_ns > ts ? g.rx_ns - ts : 0);
	hist_add(&g.lat_app, g.now_read > ts ? g.now_read - ts : 0);
}

static void
conn__ack(struct conn *c, const char *p, size_t len)
{
	const char *id;
	size_t idlen;
	uint64_t n = 0;

	if (json_field(p, len, "id", &id, &idlen) != 0)
		return;
	if (idlen == 1 && id[0] == 'c' && c->state == C_CREATING) {
		g.rooms[c->room].created = 1;
		conn_join(c);
		return;
	}
	if (idlen == 1 && id[0] == 'j') {
		if (c->state == C_JOINING)
			conn__joined(c);
		return;
	}
	if (g.o.chatty && chatty_ack(id, idlen))
		return;
	for (size_t i = 0; i < idlen && id[i] >= '0' && id[i] <= '9'; i++)
		n = n * 10 + (uint64_t)(id[i] - '0');
	if (n & 1) {		/* odd ids: sent during warm-up */
		g.acked_warm++;
		return;
	}
	g.acked++;
	n /= 2;			/* the send's number on this connection */
	if (c->ring != NULL && n < c->next_id && c->next_id - n <= LG_ACK_RING)
		hist_add(&g.acklat, mono_ns() - c->ring[n % LG_ACK_RING]);
}

static void
conn__error(struct conn *c, const char *p, size_t len)
{
	const char *code = "unknown", *id = NULL, *op;
	size_t clen = 7, idlen = 0;
	char key[40];

	(void)json_field(p, len, "code", &code, &clen);
	(void)json_field(p, len, "id", &id, &idlen);
	if (clen > 24)
		clen = 24;
	if (idlen == 1 && id[0] == 'c' && c->state == C_CREATING) {
		/* conflict: someone made it already; anything else: the joins
		 * will fail and say why. */
		if (clen != 8 || memcmp(code, "conflict", 8) != 0) {
			snprintf(key, sizeof(key), "create_%.*s", (int)clen, code);
			err_count(&g.setup_err, key, strlen(key));
		}
		g.rooms[c->room].created = 1;
		conn_join(c);
		return;
	}
	if (idlen == 1 && id[0] == 'j' && c->state == C_JOINING) {
		if (c->retries < 100 && ((clen == 11 && memcmp(code, "unavailable", 11) == 0) ||
		    (clen == 12 && memcmp(code, "rate_limited", 12) == 0))) {
			conn__join_later(c, p, len);
			return;
		}
		snprintf(key, sizeof(key), "join_%.*s", (int)clen, code);
		conn__fail(c, key);
		return;
	}
	if (g.o.chatty && (op = chatty_op(id, idlen)) != NULL) {
		snprintf(key, sizeof(key), "%s_%.*s", op, (int)clen, code);
		err_count(&g.err, key, strlen(key));
		chatty_error();
		return;
	}
	err_count(&g.err, code, clen);
}

static void
conn__text(struct conn *c, const char *p, size_t len)
{
	const char *type;
	size_t tlen;

	if (STARTS(p, len, "{\"type\":\"message:new\"")) {
		conn__message_new(p, len);
		if (g.o.chatty)
			chatty_message_new(c, p, len);
		return;
	}
	if (STARTS(p, len, "{\"type\":\"ack\"")) {
		conn__ack(c, p, len);
		return;
	}
	if (json_field(p, len, "type", &type, &tlen) != 0) {
		g.received_other++;
		return;
	}
	if (tlen == 11 && memcmp(type, "message:new", 11) == 0) {
		conn__message_new(p, len);
		if (g.o.chatty)
			chatty_message_new(c, p, len);
	} else if (g.o.chatty && tlen == 13 && memcmp(type, "typing:update", 13) == 0)
		chatty_typing_update(c, p, len);
	else if (g.o.chatty && tlen == 14 && memcmp(type, "receipt:update", 14) == 0)
		chatty_receipt_update(c, p, len);
	else if (tlen == 3 && memcmp(type, "ack", 3) == 0)
		conn__ack(c, p, len);
	else if (tlen == 5 && memcmp(type, "error", 5) == 0)
		conn__error(c, p, len);
	else if (tlen == 5 && memcmp(type, "hello", 5) == 0 && c->state == C_HELLO)
		conn__hello(c);
	else if (tlen == 8 && memcmp(type, "room:gap", 8) == 0)
		g.gaps++;
	else
		g.received_other++;
}

static void
conn__close_frame(struct conn *c, const uint8_t *p, size_t len)
{
	char why[32];
	int code = len >= 2 ? p[0] << 8 | p[1] : 1005;

	conn__send_frame(c, WS_CLOSE, p, len >= 2 ? 2 : 0);
	snprintf(why, sizeof(why), "close_%d", code);
	conn__lost(c, why);
}

static void
conn__message(struct conn *c, int opcode, const uint8_t *p, size_t len)
{
	g.frames_in++;
	if (opcode == WS_TEXT)
		conn__text(c, (const char *)p, len);
	else
		g.received_other++;
}

static void
conn__frame(struct conn *c, const struct ws_frame *f, uint8_t *p)
{
	size_t len = (size_t)f->len;

	switch (f->opcode) {
	case WS_PING:
		g.pings++;
		conn__send_frame(c, WS_PONG, p, len);
		return;
	case WS_PONG:
		return;
	case WS_CLOSE:
		conn__close_frame(c, p, len);
		return;
	case WS_CONT:
		if (c->frag_op == 0) {
			conn__lost(c, "protocol_continuation");
			return;
		}
		break;
	default:
		if (c->frag_op != 0) {
			conn__lost(c, "protocol_fragments");
			return;
		}
		if (f->fin) {
			conn__message(c, f->opcode, p, len);
			return;
		}
		c->frag_op = (uint8_t)f->opcode;
		break;
	}
	if (c->fraglen + len > LG_FRAME_MAX) {
		conn__lost(c, "message_too_large");
		return;
	}
	if (c->fraglen + len > c->fragcap) {
		c->fragcap = (c->fraglen + len) * 2;
		c->frag = xrealloc(c->frag, c->fragcap);
	}
	memcpy(c->frag + c->fraglen, p, len);
	c->fraglen += len;
	if (f->fin) {
		int op = c->frag_op;
		size_t n = c->fraglen;

		c->frag_op = 0;
		c->fraglen = 0;
		conn__message(c, op, c->frag, n);
	}
}

/* Reads what the socket has, handles every complete frame in the shared
 * buffer and keeps the incomplete rest in the connection.
 *
 * A delivery's latency ends when the kernel received its bytes (the
 * SO_TIMESTAMPNS time of the read, that of its last segment), not when this
 * process got round to reading them: with one frame per read, reading 1,000
 * sockets takes this process several milliseconds, which would otherwise
 * count as chatd's. Both are reported (latency_us, latency_app_us). */
static void
conn__read(struct conn *c)
{
	size_t have = c->rlen, total, off = 0;
	union { char buf[CMSG_SPACE(sizeof(struct timespec)) * 2]; struct cmsghdr align; } ctl;
	struct msghdr msg = { 0 };
	struct cmsghdr *cm;
	struct iovec iov;
	struct ws_frame f;
	ssize_t n;
	int rc;

	if (have)
		memcpy(g.buf, c->rbuf, have);
	iov.iov_base = g.buf + have;
	iov.iov_len = g.bufcap - have;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	n = recvmsg(c->fd, &msg, 0);
	if (n == 0) {
		conn__lost(c, "eof");
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn__lost(c, errno == ECONNRESET ? "reset" : "read_error");
		return;
	}
	g.bytes_in += (uint64_t)n;
	g.now_read = mono_ns();
	g.rx_ns = g.now_read;
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;
			uint64_t real;

			memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
			real = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
			if (real > g.real_minus_mono && real - g.real_minus_mono <= g.now_read)
				g.rx_ns = real - g.real_minus_mono;
		}
	}
	total = have + (size_t)n;
	if (c->state == C_HANDSHAKE) {
		long k = conn__upgrade_answer(c, (const char *)g.buf, total);

		if (k < 0)
			return;
		off = (size_t)k;
		if (k == 0)
			goto keep;
	}
	while (c->fd >= 0) {
		rc = ws_parse_header(g.buf + off, total - off, &f);
		if (rc == 0)
			break;
		if (rc < 0 || f.len > LG_FRAME_MAX) {
			conn__lost(c, rc < 0 ? "protocol" : "frame_too_large");
			return;
		}
		if (total - off < f.header + f.len)
			break;
		if (f.masked)
			ws_unmask(g.buf + off + f.header, (size_t)f.len, f.mask, 0);
		conn__frame(c, &f, g.buf + off + f.header);
		off += f.header + (size_t)f.len;
	}
	if (c->fd < 0)
		return;
keep:
	c->rlen = (uint32_t)(total - off);
	if (c->rlen > c->rcap) {
		c->rcap = c->rlen * 2;
		c->rbuf = xrealloc(c->rbuf, c->rcap);
	}
	if (c->rlen)
		memmove(c->rbuf, g.buf + off, c->rlen);
	/* Room for the rest plus a good read next time: a frame larger than
	 * the shared buffer grows it. */
	if (c->rlen + 65536 > g.bufcap) {
		g.bufcap = (c->rlen + 65536) * 2;
		g.buf = xrealloc(g.buf, g.bufcap);
	}
}

void
conn_event(struct conn *c, uint32_t events)
{
	if (c->fd < 0)
		return;
	if (c->state == C_CONNECTING) {
		conn__connected(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		conn__read(c);
	if (c->fd >= 0 && (events & EPOLLOUT))
		conn__flush(c);
}

/* ------------------------------------------------------------ sending */

/* One message:send whose body starts with 'm' (measured) or 'w' (warm-up)
 * and the due time in CLOCK_MONOTONIC ns, padded to body_bytes. Request
 * ids are even for measured sends, odd for warm-up ones. */
void
conn_send_message(struct conn *c, uint64_t due, int measured)
{
	static char *payload;
	static size_t cap;
	size_t need = g.o.body_bytes + 512;
	uint64_t id;
	int n;

	if (c->state != C_JOINED) {
		g.send_skipped++;
		return;
	}
	if (cap < need) {
		cap = need;
		payload = xrealloc(payload, cap);
	}
	id = (c->next_id++) * 2 + (measured ? 0 : 1);
	n = snprintf(payload, cap, "{\"type\":\"message:send\",\"id\":%llu,\"room\":\"%s\","
	    "\"client_msg_id\":\"%sc%u-%llu\",\"body\":\"%c%0*llu",
	    (unsigned long long)id, g.rooms[c->room].id, g.o.prefix, c->idx,
	    (unsigned long long)id, measured ? 'm' : 'w', LG_DUE_DIGITS, (unsigned long long)due);
	if (n < 0 || (size_t)n >= cap)
		return;
	for (uint32_t b = 1 + LG_DUE_DIGITS; b < g.o.body_bytes; b++)
		payload[n++] = 'x';
	payload[n++] = '"';
	payload[n++] = '}';
	if (c->ring == NULL)
		c->ring = calloc(LG_ACK_RING, sizeof(*c->ring));
	if (c->ring != NULL)
		c->ring[(id / 2) % LG_ACK_RING] = mono_ns();
	conn__send_frame(c, WS_TEXT, payload, (size_t)n);
}

void
conn_close_all(void)
{
	for (uint32_t i = 0; i < g.o.conns; i++) {
		conn__close_fd(&g.conns[i]);
		conn__free_buffers(&g.conns[i]);
		free(g.conns[i].ring);
		g.conns[i].ring = NULL;
	}
}
