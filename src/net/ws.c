#include "net/ws.h"
#include "net/admit.h"
#include "net/auth.h"
#include "net/conn.h"
#include "net/http_req.h"
#include "net/outbuf.h"
#include "net/ws_frame.h"
#include "lib/util.h"
#include "proto/cmd.h"
#include "proto/reply.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "proc/srv.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_PROTOCOL "chat.v1"

static int
ws__refuse(struct ws_refusal *out, int status, const char *why)
{
	if (status == 400)
		metrics_add(M_REFUSED_BAD, 1);
	else if (status == 426)
		metrics_add(M_REFUSED_UPGRADE, 1);
	else if (status == 503)
		metrics_add(M_REFUSED_BUSY, 1);
	out->status = status;
	out->why = why;
	out->header = NULL;
	return -1;
}

/* ...and counted and logged: a refusal of a well-formed handshake. */
static int
ws__deny(struct ws_refusal *out, const char *ip, int status, const char *why,
    enum metrics_field counter)
{
	log_info("handshake from %s refused (%d): %s", ip, status, why);
	metrics_add(counter, 1);
	return ws__refuse(out, status, why);
}

/* Does the entry of a comma/space separated list equal s? */
static int
ws__listed(const char *list, const char *s, size_t len)
{
	while (*list) {
		size_t n;

		while (*list == ',' || *list == ' ')
			list++;
		n = strcspn(list, ", ");
		if (n == len && n > 0 && strncmp(list, s, n) == 0)
			return 1;
		list += n;
	}
	return 0;
}

/* Browsers send Origin; a page of another site must not open a socket
 * with the user's credentials (cross-site WebSocket hijacking). The same
 * origin as the Host header is always allowed. */
static int
ws__origin_ok(const struct http_req *r)
{
	size_t on, hn;
	const char *origin = http_req_header(r, "Origin", &on);
	const char *host = http_req_header(r, "Host", &hn);
	const char *o;

	if (origin == NULL)
		return srv.cfg->allow_missing_origin;
	if (strcmp(srv.cfg->allowed_origins, "*") == 0 ||
	    ws__listed(srv.cfg->allowed_origins, origin, on))
		return 1;
	o = memmem(origin, on, "://", 3);
	return o != NULL && host != NULL && (size_t)(origin + on - (o + 3)) == hn &&
	    memcmp(o + 3, host, hn) == 0;
}

/* The token from ?token= or Authorization: Bearer. */
static void
ws__token(const struct http_req *r, char *buf, size_t len)
{
	size_t n;
	const char *bearer;

	if (http_req_arg(r, "token", buf, len) == 0)
		return;
	bearer = http_req_bearer(r, &n);
	if (bearer != NULL && n < len) {
		memcpy(buf, bearer, n);
		buf[n] = '\0';
		return;
	}
	buf[0] = '\0';
}

/* Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 4.2.1). */
static int
ws__key_ok(const char *key, size_t n)
{
	unsigned char raw[24];

	return n == 24 && key[22] == '=' && key[23] == '=' &&
	    EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}

static void
ws__accept_key(const char *key, size_t n, char out[29])
{
	unsigned char sha[SHA_DIGEST_LENGTH];
	char in[24 + sizeof(WS_GUID)];

	memcpy(in, key, n);
	memcpy(in + n, WS_GUID, sizeof(WS_GUID) - 1);
	SHA1((const unsigned char *)in, n + sizeof(WS_GUID) - 1, sha);
	EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

/* What RFC 6455 4.2.1 asks of the request itself. */
static int
ws__check_request(const struct http_req *r, struct ws_refusal *out)
{
	size_t vn, kn, hn;
	const char *version, *key;

	if (r->parser.http_major != 1 || r->parser.http_minor < 1 ||
	    http_req_header(r, "Host", &hn) == NULL)
		return ws__refuse(out, 400, "a WebSocket upgrade is an HTTP/1.1 GET with a Host");
	if (!http_req_header_has(r, "Upgrade", "websocket") ||
	    !http_req_header_has(r, "Connection", "upgrade")) {
		ws__refuse(out, 426, "WebSocket upgrade required");
		out->header = "Upgrade: websocket\r\n";
		return -1;
	}
	version = http_req_header(r, "Sec-WebSocket-Version", &vn);
	if (version == NULL || vn != 2 || memcmp(version, "13", 2) != 0) {
		ws__refuse(out, 426, "WebSocket version 13 only");
		out->header = "Sec-WebSocket-Version: 13\r\n";
		return -1;
	}
	key = http_req_header(r, "Sec-WebSocket-Key", &kn);
	if (key == NULL || !ws__key_ok(key, kn))
		return ws__refuse(out, 400, "Sec-WebSocket-Key missing or not 16 bytes of base64");
	return 0;
}

/* The door: draining, origin, rate and connection limits, the token. */
int
ws_admit(struct conn *c, const struct http_req *r, struct auth_identity *id,
    struct ws_refusal *out)
{
	char token[4200];
	const char *reason = NULL;

	if (srv.draining)
		return ws__refuse(out, 503, "server draining");
	if (!ws__origin_ok(r))
		return ws__deny(out, c->ip, 403, "origin not allowed", M_REFUSED_ORIGIN);
	if (admit_attempt(c->ip) != 0)
		return ws__deny(out, c->ip, 429, "too many connection attempts", M_REFUSED_RATE);
	if (admit_auth_blocked(c->ip) != 0)
		return ws__deny(out, c->ip, 429, "too many failed authentications", M_REFUSED_RATE);
	ws__token(r, token, sizeof(token));
	if (auth_verify(srv.cfg, token, id, &reason) != 0) {
		admit_auth_failed(c->ip);
		return ws__deny(out, c->ip, 401, reason, M_REFUSED_AUTH);
	}
	switch (admit_conn_check(c->ip, id->tenant, id->user)) {
	case -1:
		return ws__deny(out, c->ip, 429, "too many connections from this address",
		    M_REFUSED_RATE);
	case -2:
		return ws__deny(out, c->ip, 429, "too many connections for this user",
		    M_REFUSED_RATE);
	}
	return 0;
}

/* hello.limits.rates: {"send":[n,window_s],...}, the same for every
 * connection of the worker's life, so written once. */
static const char *
ws__rates(void)
{
	static char rates[RATE_NOPS * 40 + 4];
	size_t n = 0;

	if (rates[0] != '\0')
		return rates;
	for (int op = 0; op < RATE_NOPS; op++)
		n += (size_t)snprintf(rates + n, sizeof(rates) - n, "%s\"%s\":[%d,%d]",
		    op ? "," : "{", cfg_rate_names[op], srv.cfg->rate[op].n,
		    srv.cfg->rate[op].window_s);
	snprintf(rates + n, sizeof(rates) - n, "}");
	return rates;
}

static void
ws__hello(struct conn *c)
{
	char hello[1536];
	int n;

	n = snprintf(hello, sizeof(hello),
	    "{\"type\":\"hello\",\"user\":\"%s\",\"tenant\":\"%s\",\"role\":\"%s\","
	    "\"conn\":\"%s\",\"instance\":\"%s\",\"worker\":%d,\"heartbeat_ms\":%d,"
	    "\"limits\":{\"max_frame_bytes\":%d,\"max_body_bytes\":%d,"
	    "\"history_on_join\":%d,\"max_rooms_per_conn\":%d,\"rates\":%s}}",
	    c->id.user, c->id.tenant, c->id.admin ? "admin" : "member", c->cid,
	    srv.cfg->instance, srv.index, srv.cfg->heartbeat_ms, srv.cfg->max_frame_bytes,
	    srv.cfg->max_body_bytes, srv.cfg->history_on_join, srv.cfg->max_rooms_per_conn,
	    ws__rates());
	if (n < 0 || (size_t)n >= sizeof(hello))
		log_fatal("ws: the hello frame does not fit in %zu bytes", sizeof(hello));
	conn_send_text(c, hello, (size_t)n);
}

static const struct wsframe_events ws_events;
static void ws__frames(struct conn *c, char *data, size_t n);

int
ws_upgrade(struct conn *c, struct http_req *r, struct ws_refusal *out)
{
	struct auth_identity id;
	char accept[29], head[256];
	const char *key, *rest, *ua;
	size_t kn, n, uan;
	int len;

	if (ws__check_request(r, out) != 0 || ws_admit(c, r, &id, out) != 0) {
		metrics_refused(c->ip, out->status, out->why);
		return -1;
	}
	key = http_req_header(r, "Sec-WebSocket-Key", &kn);
	ws__accept_key(key, kn, accept);
	len = snprintf(head, sizeof(head),
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n%s\r\n", accept,
	    http_req_header_has(r, "Sec-WebSocket-Protocol", WS_PROTOCOL) ?
	    "Sec-WebSocket-Protocol: " WS_PROTOCOL "\r\n" : "");
	/* The 101 and the hello leave in one write at the end of the turn. */
	conn_send_raw(c, head, (size_t)len);
	conn_set_identity(c, &id);
	admit_conn_opened(c->ip, id.tenant, id.user);
	ua = http_req_header(r, "User-Agent", &uan);
	metrics_conn_opened(c->ip, id.tenant, id.user, ua, ua ? uan : 0);
	ws__hello(c);
	/* Frames the client sent right after its request are read now; the
	 * handshake's state goes. */
	rest = http_req_rest(r, &n);
	if (n > 0)
		ws__frames(c, (char *)rest, n);
	c->req = NULL;
	http_req_free(r);
	free(r);
	return 0;
}

/* ---------------------------------------------------------------- frames */

static int
ws__message(void *ctx, int opcode, unsigned char *data, size_t len)
{
	struct conn *c = ctx;

	if (opcode == WSFRAME_BINARY)
		reply_error(c, NULL, "bad_request", "frames must be text (UTF-8 JSON)");
	else
		cmd_dispatch(c, (const char *)data, len);
	return c->killing ? -1 : 0;
}

static int
ws__ping(void *ctx, const unsigned char *data, size_t len)
{
	struct conn *c = ctx;
	struct outbuf *b = outbuf_frame(WSFRAME_PONG, data, len);

	conn_send(c, b);
	outbuf_unref(b);
	return c->killing ? -1 : 0;
}

static int
ws__pong(void *ctx, const unsigned char *data, size_t len)
{
	(void)data;
	(void)len;
	conn_heard(ctx);
	return 0;
}

/* The client closes: its code is echoed (RFC 6455 5.5.1), nothing it
 * sent after the close is read. */
static int
ws__close(void *ctx, int code, const char *reason, size_t len)
{
	struct conn *c = ctx;

	(void)reason;
	(void)len;
	log_debug("conn %s (%s): client closed with %d", c->cid, c->id.user, code);
	conn_kill(c, code == WSFRAME_CLOSE_NO_STATUS ? 0 : code, "");
	return -1;
}

static int
ws__fail(void *ctx, int code, const char *why)
{
	struct conn *c = ctx;

	log_info("conn %s (%s): %s, closing %d", c->cid, c->id.user, why, code);
	conn_kill(c, code, why);
	return -1;
}

static const struct wsframe_events ws_events = {
	ws__message, ws__ping, ws__pong, ws__close, ws__fail
};

/* Most reads hold whole frames: they are read with a reader on the stack,
 * so an idle connection holds none (its 48 bytes would be a tenth of what
 * an idle WebSocket costs) and a read costs no allocation. The reader moves
 * to the heap only when a frame or a message is left incomplete, or after a
 * close or a failure (done), and goes when it is idle again. */
static void
ws__frames(struct conn *c, char *data, size_t n)
{
	struct wsframe_reader stack, *r = c->rd;

	if (r == NULL) {
		wsframe_reader_init(&stack, (uint64_t)srv.cfg->max_frame_bytes);
		r = &stack;
	}
	wsframe_read(r, (unsigned char *)data, n, &ws_events, c);
	if (!wsframe_reader_idle(r)) {
		if (r == &stack) {
			c->rd = xmalloc(sizeof(*c->rd));
			*c->rd = stack;		/* what it holds moves with it */
		}
	} else if (r != &stack) {
		wsframe_reader_free(r);
		free(r);
		c->rd = NULL;
	}
}

static void
ws__read(struct conn *c, char *data, size_t n)
{
	if (data == NULL || (c->rd != NULL && c->rd->done))
		return;
	conn_heard(c);
	ws__frames(c, data, n);
}

static void
ws__closed(struct conn *c)
{
	/* A user's WebSocket or event stream; an HTTP request's user is
	 * counted nowhere. */
	if ((c->kind == CONN_WS || c->kind == CONN_SSE) && c->idnames != NULL)
		admit_conn_closed(c->ip, c->id.tenant, c->id.user);
}

void
ws_start(void)
{
	conn_set_reader(CONN_WS, ws__read);
	conn_on_close(ws__closed);
}
