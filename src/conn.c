#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "obuf.h"
#include "room.h"
#include "srv.h"
#include "util.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

static struct conn *conn_list;
static int conn_n;

struct conn *
conn_new(struct lws *wsi, const struct auth_identity *id)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->wsi = wsi;
	c->id = *id;
	snprintf(c->cid, sizeof(c->cid), "%d-%llu", srv.index,
	    (unsigned long long)++srv.conn_counter);
	c->refs = 1;
	c->qcap = 16;
	c->q = xcalloc(c->qcap, sizeof(*c->q));
	c->next = conn_list;
	if (conn_list)
		conn_list->prev = c;
	conn_list = c;
	conn_n++;
	metrics_add(M_CONNS_ACTIVE, 1);
	metrics_add(M_CONNS_TOTAL, 1);
	return c;
}

static void
conn__drop_queue(struct conn *c)
{
	while (c->qlen > 0) {
		obuf_unref(c->q[c->qhead]);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
}

void
conn_closed(struct conn *c)
{
	while (c->nsubs > 0)
		room_detach(c->subs[c->nsubs - 1]);
	conn__drop_queue(c);
	c->wsi = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		conn_list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	conn_n--;
	metrics_add(M_CONNS_ACTIVE, -1);
	conn_unref(c);
}

void
conn_ref(struct conn *c)
{
	c->refs++;
}

void
conn_unref(struct conn *c)
{
	if (--c->refs > 0) {
		/* A close waiting for in-flight requests may go now. */
		if (c->refs == 1 && c->close_code && c->wsi)
			lws_callback_on_writable(c->wsi);
		return;
	}
	free(c->rx);
	free(c->q);
	free(c->subs);
	free(c);
}

int
conn_open(const struct conn *c)
{
	return c->wsi != NULL && c->close_code == 0;
}

void
conn_send(struct conn *c, struct obuf *b)
{
	/* Replies still go out while a drain waits for in-flight requests. */
	if (c->wsi == NULL || c->close_code == CONN_CLOSE_SLOW)
		return;
	if (c->qlen == c->qcap) {
		if (c->qcap >= (uint32_t)srv.cfg->outbound_max_frames) {
			log_info("conn %s (%s): outbound queue full, closing 1013",
			    c->cid, c->id.user);
			conn_close(c, CONN_CLOSE_SLOW);
			return;
		}
		/* Grow the ring, unrolling it. */
		uint32_t ncap = c->qcap * 2;
		struct obuf **nq = xcalloc(ncap, sizeof(*nq));

		for (uint32_t i = 0; i < c->qlen; i++)
			nq[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	obuf_ref(b);
	c->q[(c->qhead + c->qlen) % c->qcap] = b;
	c->qlen++;
	lws_callback_on_writable(c->wsi);
}

void
conn_send_text(struct conn *c, const char *text, size_t len)
{
	struct obuf *b = obuf_new(text, len, 0);

	conn_send(c, b);
	obuf_unref(b);
}

void
conn_close(struct conn *c, int code)
{
	if (c->wsi == NULL || c->close_code)
		return;
	c->close_code = code;
	/* A slow consumer loses what it has not read; others finish writing. */
	if (code == CONN_CLOSE_SLOW)
		conn__drop_queue(c);
	lws_callback_on_writable(c->wsi);
}

int
conn_on_writable(struct conn *c)
{
	while (c->qlen > 0) {
		struct obuf *b = c->q[c->qhead];
		int n = lws_write(c->wsi, obuf_payload(b), b->len, LWS_WRITE_TEXT);

		if (n < (int)b->len)
			return -1;
		obuf_unref(b);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
		if (lws_send_pipe_choked(c->wsi))
			break;
	}
	if (c->qlen > 0) {
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->close_code && (c->refs <= 1 || c->close_code != CONN_CLOSE_DRAIN)) {
		static const char *const why[] = { "server draining", "slow consumer" };

		lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
		    (unsigned char *)(c->close_code == 1001 ? why[0] : why[1]),
		    strlen(c->close_code == 1001 ? why[0] : why[1]));
		return -1;
	}
	return 0;
}

struct sub *
conn_find_sub(struct conn *c, const char *room_id)
{
	for (int i = 0; i < c->nsubs; i++)
		if (strcmp(room_sub_room_id(c->subs[i]), room_id) == 0)
			return c->subs[i];
	return NULL;
}

void
conn_add_sub(struct conn *c, struct sub *s)
{
	if (c->nsubs == c->subcap) {
		c->subcap = c->subcap ? c->subcap * 2 : 4;
		c->subs = xrealloc(c->subs, (size_t)c->subcap * sizeof(*c->subs));
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
