#include "net/ws.h"
#include "net/auth.h"
#include "proto/cmd.h"
#include "net/conn.h"
#include "net/flush.h"
#include "net/admit.h"
#include "proc/metrics.h"
#include "net/http.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <libwebsockets.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* lws' receive buffer, allocated for every connection: small, as most
 * frames are (a frame larger than it arrives in pieces, put together in
 * conn->rx, which is freed after each such frame). */
#define WS_RX_CHUNK 256
/* lws reads at most WS_RX_CHUNK (+ LWS_PRE) bytes per socket per loop
 * turn; a client with more waiting (a fast sender) is read again at the end
 * of the turn, up to this many times (~34 KiB), so that its requests reach
 * Redis in one pipelined burst instead of one or two per turn. */
#define WS_RX_TURN_READS 128
#define WS_TX_CHUNK (256 * 1024)	/* at most this per send() (flush.c writes 64 KiB) */

struct ws_pss {
	struct conn *c;		/* owned reference; NULL for plain HTTP */
	int counted;		/* in ws_sockets until lws frees the wsi */
};

/* WebSocket sockets lws still holds, including those whose close
 * handshake is under way after LWS_CALLBACK_CLOSED. */
static int ws_sockets;

/* Connections that received something this loop turn; references held. */
static struct conn_list rx;

static void
ws__rx_mark(struct conn *c)
{
	if (conn_list_add(&rx, c, &c->rx_queued))
		flush_kick();
}

void
ws_read_more(void)
{
	for (int i = 0; i < rx.n; i++) {
		struct conn *c = rx.v[i];

		for (int k = 1; k < WS_RX_TURN_READS && c->wsi != NULL && !c->killing; k++) {
			struct lws_pollfd pfd;
			int avail = 0;

			pfd.fd = lws_get_socket_fd(c->wsi);
			if (pfd.fd < 0 || ioctl(pfd.fd, FIONREAD, &avail) != 0 || avail <= 0)
				break;
			pfd.events = pfd.revents = LWS_POLLIN;
			/* What lws does for a readable socket (its libuv poll
			 * callback); the connection may close in it. */
			lws_service_fd(srv.lws, &pfd);
		}
		c->rx_queued = 0;
		conn_unref(c);
	}
	rx.n = 0;
}

static int64_t lib_heap;	/* bytes lws holds, by malloc_usable_size */

static void *
ws__lib_realloc(void *ptr, size_t size, const char *reason)
{
	size_t had = malloc_usable_size(ptr);	/* 0 for NULL */
	void *p;

	(void)reason;
	if (size == 0) {
		free(ptr);
		lib_heap -= (int64_t)had;
		return NULL;
	}
	p = realloc(ptr, size);
	if (p != NULL)
		lib_heap += (int64_t)malloc_usable_size(p) - (int64_t)had;
	return p;
}

void
ws_count_lib_heap(void)
{
	lws_set_allocator(ws__lib_realloc);
}

void
ws_report_heap(void)
{
	metrics_set(M_LWS_HEAP, lib_heap);
}

void
ws_shutdown(void)
{
	for (int i = 0; i < rx.n; i++) {
		rx.v[i]->rx_queued = 0;
		conn_unref(rx.v[i]);
	}
	free(rx.v);
	memset(&rx, 0, sizeof(rx));
}

int
ws_open_sockets(void)
{
	return ws_sockets;
}

/* The token from ?token= or Authorization: Bearer. */
static int
ws__token(struct lws *wsi, char *buf, int len)
{
	char auth[4200];
	const char *v;
	int n;

	/* lws copies "token=VALUE" into buf and points at VALUE. */
	v = lws_get_urlarg_by_name(wsi, "token=", buf, len);
	if (v != NULL) {
		memmove(buf, v, strlen(v) + 1);
		return 0;
	}
	n = lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION);
	if (n > 7 && strncasecmp(auth, "Bearer ", 7) == 0 && n - 7 < len) {
		memcpy(buf, auth + 7, (size_t)(n - 7) + 1);
		return 0;
	}
	buf[0] = '\0';
	return -1;
}

static int
ws__identify(struct lws *wsi, struct auth_identity *id, const char **reason)
{
	char token[4200];

	ws__token(wsi, token, sizeof(token));
	return auth_verify(srv.cfg, token, id, reason);
}

/* Does the entry [p, p+n) of a comma/space separated list equal s? */
static int
ws__listed(const char *list, const char *s)
{
	size_t len = strlen(s);

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
ws__origin_ok(struct lws *wsi)
{
	char origin[512], host[256];
	const char *o;

	if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
		return srv.cfg->allow_missing_origin;
	if (strcmp(srv.cfg->allowed_origins, "*") == 0 || ws__listed(srv.cfg->allowed_origins, origin))
		return 1;
	o = strstr(origin, "://");
	return o != NULL && lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) > 0 &&
	    strcmp(o + 3, host) == 0;
}

static int
ws__refuse(struct lws *wsi, const char *ip, int status, const char *why,
    enum metrics_field counter)
{
	log_info("handshake from %s refused (%d): %s", ip, status, why);
	metrics_add(counter, 1);
	lws_return_http_status(wsi, (unsigned int)status, why);
	return 1;
}

/* The identity verified at HTTP_CONFIRM_UPGRADE, for ESTABLISHED: lws
 * runs both for one connection within one service call, so one slot is
 * enough, and a miss only means verifying the token again. Cleared at
 * every upgrade, set only when it is accepted. */
static struct {
	const struct lws *wsi;
	struct auth_identity id;
	char ip[48];		/* the peer, read once (getpeername); as conn ip */
} ws_confirmed;

/* The only place lws lets a handshake be refused with a status. */
static int
ws__confirm_upgrade(struct lws *wsi)
{
	char uri[256], ip[48];
	struct auth_identity id;
	const char *reason = NULL;
	int one = 1;

	ws_confirmed.wsi = NULL;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0) {
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "WebSocket endpoint is /ws");
		return 1;
	}
	if (srv.draining) {
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "server draining");
		return 1;
	}
	/* The peer, read once: for the guard, a refusal's log line and the
	 * connection (ws_confirmed). */
	lws_get_peer_simple(wsi, ip, sizeof(ip));
	if (!ws__origin_ok(wsi))
		return ws__refuse(wsi, ip, HTTP_STATUS_FORBIDDEN, "origin not allowed",
		    M_REFUSED_ORIGIN);
	if (admit_attempt(ip) != 0)
		return ws__refuse(wsi, ip, 429, "too many connection attempts", M_REFUSED_RATE);
	if (admit_auth_blocked(ip) != 0)
		return ws__refuse(wsi, ip, 429, "too many failed authentications", M_REFUSED_RATE);
	if (ws__identify(wsi, &id, &reason) != 0) {
		admit_auth_failed(ip);
		return ws__refuse(wsi, ip, HTTP_STATUS_UNAUTHORIZED, reason, M_REFUSED_AUTH);
	}
	switch (admit_conn_check(ip, id.tenant, id.user)) {
	case -1:
		return ws__refuse(wsi, ip, 429, "too many connections from this address",
		    M_REFUSED_RATE);
	case -2:
		return ws__refuse(wsi, ip, 429, "too many connections for this user",
		    M_REFUSED_RATE);
	}
	ws_confirmed.wsi = wsi;
	ws_confirmed.id = id;
	snprintf(ws_confirmed.ip, sizeof(ws_confirmed.ip), "%s", ip);
	/* lws writes the 101 when this returns; corked, it leaves with the
	 * hello (flush_write uncorks), one segment instead of two. */
	setsockopt(lws_get_socket_fd(wsi), IPPROTO_TCP, TCP_CORK, &one, sizeof(one));
	return 0;
}

static int
ws__established(struct lws *wsi, struct ws_pss *pss)
{
	struct auth_identity id;
	const char *reason = NULL;
	char hello[768], peer[48];
	const char *ip = NULL;
	int n;

	if (ws_confirmed.wsi == wsi) {
		id = ws_confirmed.id;
		ip = ws_confirmed.ip;
		ws_confirmed.wsi = NULL;
	} else if (ws__identify(wsi, &id, &reason) != 0) {
		return -1;	/* checked at CONFIRM_UPGRADE; cannot happen */
	}
	if (ip == NULL) {
		lws_get_peer_simple(wsi, peer, sizeof(peer));
		ip = peer;
	}
	pss->c = conn_new(wsi, &id, ip);
	pss->c->corked = 1;
	admit_conn_opened(pss->c->ip, id.tenant, id.user);
	pss->counted = 1;
	ws_sockets++;
	n = snprintf(hello, sizeof(hello),
	    "{\"type\":\"hello\",\"user\":\"%s\",\"tenant\":\"%s\",\"role\":\"%s\","
	    "\"conn\":\"%s\",\"instance\":\"%s\",\"worker\":%d,\"heartbeat_ms\":%d,"
	    "\"limits\":{\"max_frame_bytes\":%d,\"max_body_bytes\":%d,"
	    "\"history_on_join\":%d,\"max_rooms_per_conn\":%d}}",
	    id.user, id.tenant, id.admin ? "admin" : "member", pss->c->cid,
	    srv.cfg->instance, srv.index, srv.cfg->heartbeat_ms, srv.cfg->max_frame_bytes,
	    srv.cfg->max_body_bytes, srv.cfg->history_on_join, srv.cfg->max_rooms_per_conn);
	conn_send_text(pss->c, hello, (size_t)n);
	return 0;
}

/* One complete client frame. */
static int
ws__frame(struct lws *wsi, struct conn *c, const char *text, size_t len)
{
	if (lws_frame_is_binary(wsi)) {
		cmd_error(c, NULL, "bad_request", "frames must be text (UTF-8 JSON)");
	} else if (!util_valid_utf8(text, len)) {
		/* RFC 6455 8.1: fail the connection. */
		log_info("conn %s (%s): invalid UTF-8, closing 1007", c->cid, c->id.user);
		conn_kill(c, CONN_CLOSE_BAD_UTF8, "invalid UTF-8");
	} else {
		cmd_dispatch(c, text, len);
	}
	return 0;
}

static int
ws__receive(struct lws *wsi, struct conn *c, const char *in, size_t len)
{
	if (c->killing)
		return 0;	/* closing: ignore what is still arriving */
	ws__rx_mark(c);
	conn_heard(c);
	if (lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) &&
	    lws_remaining_packet_payload(wsi) == 0) {
		/* The whole frame in one piece (the usual case): no copy, and
		 * no reassembly buffer kept per connection. */
		if (len > (size_t)srv.cfg->max_frame_bytes) {
			conn_kill(c, CONN_CLOSE_TOO_BIG, "frame too large");
			return 0;
		}
		return ws__frame(wsi, c, in, len);
	}
	if (lws_is_first_fragment(wsi))
		c->rxlen = 0;
	if (c->rxlen + len > (size_t)srv.cfg->max_frame_bytes) {
		log_info("conn %s (%s): frame over %d bytes, closing 1009", c->cid, c->id.user,
		    srv.cfg->max_frame_bytes);
		conn_kill(c, CONN_CLOSE_TOO_BIG, "frame too large");
		return 0;
	}
	if (c->rxlen + len + 1 > c->rxcap) {
		c->rxcap = c->rxlen + len + 1 > 4096 ? (c->rxlen + len + 1) * 2 : 4096;
		if (c->rxcap > (size_t)srv.cfg->max_frame_bytes + 1)
			c->rxcap = (size_t)srv.cfg->max_frame_bytes + 1;
		c->rx = xrealloc(c->rx, c->rxcap);
	}
	memcpy(c->rx + c->rxlen, in, len);
	c->rxlen += len;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
		return 0;
	ws__frame(wsi, c, c->rx, c->rxlen);
	c->rxlen = 0;
	free(c->rx);
	c->rx = NULL;
	c->rxcap = 0;
	return 0;
}

static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	struct ws_pss *pss = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return ws__confirm_upgrade(wsi);
	case LWS_CALLBACK_ESTABLISHED:
		return ws__established(wsi, pss);
	case LWS_CALLBACK_RECEIVE:
		return pss->c ? ws__receive(wsi, pss->c, in, len) : -1;
	case LWS_CALLBACK_RECEIVE_PONG:
		if (pss->c != NULL)
			conn_heard(pss->c);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return pss->c ? conn_on_writable(pss->c) : 0;
	case LWS_CALLBACK_CLOSED:
		if (pss->c != NULL) {
			admit_conn_closed(pss->c->ip, pss->c->id.tenant, pss->c->id.user);
			conn_closed(pss->c);
			pss->c = NULL;
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (pss != NULL && pss->counted) {
			pss->counted = 0;
			ws_sockets--;
		}
		return 0;
	case LWS_CALLBACK_HTTP:
		return http_request(wsi, in);
	case LWS_CALLBACK_HTTP_FILE_COMPLETION:
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

const struct lws_protocols ws_protocols[] = {
	/* A small receive buffer per connection: frames larger than it
	 * arrive in pieces and are put together in conn->rx. The send size
	 * must be set apart: lws otherwise caps every send() at the receive
	 * buffer's size and queues the rest for the next POLLOUT. */
	{ "chat.v1", ws_callback, sizeof(struct ws_pss), WS_RX_CHUNK, 0, NULL, WS_TX_CHUNK },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};
