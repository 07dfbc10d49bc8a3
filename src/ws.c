#include "ws.h"
#include "auth.h"
#include "cmd.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "srv.h"
#include "util.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#define WS_RX_KEEP 65536	/* a larger reassembly buffer is freed after use */

struct ws_pss {
	struct conn *c;		/* owned reference; NULL for plain HTTP */
	int counted;		/* in ws_sockets until lws frees the wsi */
};

/* WebSocket sockets lws still holds, including those whose close
 * handshake is under way after LWS_CALLBACK_CLOSED. */
static int ws_sockets;

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

/* The only place lws lets a handshake be refused with a status. */
static int
ws__confirm_upgrade(struct lws *wsi)
{
	char uri[256];
	struct auth_identity id;
	const char *reason = NULL;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0) {
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "WebSocket endpoint is /ws");
		return 1;
	}
	if (srv.draining) {
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "server draining");
		return 1;
	}
	if (ws__identify(wsi, &id, &reason) != 0) {
		log_info("handshake refused (401): %s", reason);
		lws_return_http_status(wsi, HTTP_STATUS_UNAUTHORIZED, reason);
		return 1;
	}
	return 0;
}

static int
ws__established(struct lws *wsi, struct ws_pss *pss)
{
	struct auth_identity id;
	const char *reason = NULL;
	char hello[768];
	int n;

	if (ws__identify(wsi, &id, &reason) != 0)
		return -1;	/* checked at CONFIRM_UPGRADE; cannot happen */
	pss->c = conn_new(wsi, &id);
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

static int
ws__receive(struct lws *wsi, struct conn *c, const char *in, size_t len)
{
	if (c->killing)
		return 0;	/* closing: ignore what is still arriving */
	if (lws_is_first_fragment(wsi))
		c->rxlen = 0;
	if (c->rxlen + len > (size_t)srv.cfg->max_frame_bytes) {
		log_info("conn %s (%s): frame over %d bytes, closing 1009", c->cid, c->id.user,
		    srv.cfg->max_frame_bytes);
		conn_kill(c, CONN_CLOSE_TOO_BIG);
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
	if (lws_frame_is_binary(wsi))
		cmd_error(c, NULL, "bad_request", "frames must be text (UTF-8 JSON)");
	else
		cmd_dispatch(c, c->rx, c->rxlen);
	c->rxlen = 0;
	if (c->rxcap > WS_RX_KEEP) {
		free(c->rx);
		c->rx = NULL;
		c->rxcap = 0;
	}
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
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return pss->c ? conn_on_writable(pss->c) : 0;
	case LWS_CALLBACK_CLOSED:
		if (pss->c != NULL) {
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
	{ "chat.v1", ws_callback, sizeof(struct ws_pss), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};
