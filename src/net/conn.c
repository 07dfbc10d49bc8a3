#include "net/conn.h"
#include "net/flush.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "net/outbuf.h"
#include "chat/room.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <libwebsockets.h>
#include <libwebsockets/lws-eventlib-exports.h>
#include <stdlib.h>
#include <string.h>

static struct conn *conn_list;
static int conn_n;

/*
 * Closing politely (a close frame with our code) cannot be done by
 * returning -1 from an lws callback here: Debian's libwebsockets 4.1.6 is
 * built with _DEBUG, and on libuv its "close_and_handled uv repeat test"
 * closes the socket a second time, before the close frame is written. So
 * a close is set up with lws_close_reason() and carried out one loop turn
 * later, outside lws' service, with lws_close_free_wsi().
 */
static void conn__drop_queue(struct conn *c);

static struct conn **kill_list;		/* references held */
static int kill_n, kill_cap;
static uv_timer_t kill_timer;
static int kill_timer_ready;

static void
conn__kill_cb(uv_timer_t *t)
{
	(void)t;
	while (kill_n > 0) {
		struct conn *c = kill_list[--kill_n];

		if (c->wsi != NULL)
			lws_close_free_wsi(c->wsi, LWS_CLOSE_STATUS_NOSTATUS, "chatd close");
		conn_unref(c);
	}
}

static void
conn__kill_later(struct conn *c, int code, const char *why)
{
	if (c->killing || c->wsi == NULL)
		return;
	c->killing = 1;
	lws_close_reason(c->wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
	if (!kill_timer_ready) {
		uv_timer_init(srv.loop, &kill_timer);
		kill_timer_ready = 1;
	}
	if (kill_n == kill_cap) {
		kill_cap = kill_cap ? kill_cap * 2 : 64;
		kill_list = xrealloc(kill_list, (size_t)kill_cap * sizeof(*kill_list));
	}
	conn_ref(c);
	kill_list[kill_n++] = c;
	uv_timer_start(&kill_timer, conn__kill_cb, 0, 0);
}

void
conn_kill(struct conn *c, int code, const char *why)
{
	if (c->wsi == NULL)
		return;
	if (!c->close_code)
		c->close_code = code;
	conn__drop_queue(c);
	/* Input is ignored from now on (ws.c), but still read: lws must see
	 * the client's close reply to finish the close at once. */
	conn__kill_later(c, code, why);
}

void
conn_shutdown(void)
{
	conn__kill_cb(NULL);
	free(kill_list);
	kill_list = NULL;
	kill_cap = 0;
	if (kill_timer_ready)
		uv_close((uv_handle_t *)&kill_timer, NULL);
	kill_timer_ready = 0;
}

struct conn *
conn_new(struct lws *wsi, const struct auth_identity *id, const char *ip)
{
	char cid[32];
	size_t lcid, lip, luser, ltenant;
	struct conn *c;
	char *p;

	snprintf(cid, sizeof(cid), "%d-%llu", srv.index, (unsigned long long)++srv.conn_counter);
	lcid = strlen(cid) + 1;
	lip = strlen(ip) + 1;
	luser = strlen(id->user) + 1;
	ltenant = strlen(id->tenant) + 1;
	c = xcalloc(1, sizeof(*c) + lcid + lip + luser + ltenant);
	p = c->names;
	c->cid = memcpy(p, cid, lcid);
	c->ip = memcpy(p += lcid, ip, lip);
	c->id.user = memcpy(p += lip, id->user, luser);
	c->id.tenant = memcpy(p + luser, id->tenant, ltenant);
	c->id.exp = id->exp;
	c->id.admin = id->admin;
	c->wsi = wsi;
	c->refs = 1;	/* the queue ring is allocated on first use */
	c->rx_ms = c->ping_ms = uv_now(srv.loop);
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
		outbuf_unref(c->q[c->qhead]);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	c->qbytes = 0;
	c->qframes = 0;
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

int
conn_list_add(struct conn_list *l, struct conn *c, int *flag)
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

static void
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
 * Replies and other frames are kept. The incoming frame b is dropped too
 * if it is a room event.
 */
static int
conn__overflow(struct conn *c, struct outbuf *b)
{
	int queued = 0;

	struct outbuf **old = c->q;
	uint32_t head = c->qhead, len = c->qlen, cap = c->qcap;
	struct outbuf **gaps = xcalloc(len + 1, sizeof(*gaps));	/* first event per room */
	int ngaps = 0;

	for (uint32_t i = 0; i <= len; i++) {
		struct outbuf *e = i < len ? old[(head + i) % cap] : b;
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
		struct outbuf *e = old[(head + i) % cap];

		if (conn__is_event(e)) {
			outbuf_unref(e);
		} else {
			c->q[c->qlen++] = e;	/* the reference moves */
			c->qbytes += e->len;
			c->qframes += e->nframes;
		}
	}
	free(old);
	for (int g = 0; g < ngaps; g++) {
		struct sub *s = conn_find_sub(c, gaps[g]->room);
		char text[160];
		int n = snprintf(text, sizeof(text),
		    "{\"type\":\"room:gap\",\"room\":\"%s\",\"after_seq\":%lld}",
		    gaps[g]->room, (long long)(gaps[g]->seq - 1));
		struct outbuf *m = outbuf_new(text, (size_t)n, 0);

		if (s != NULL)
			s->gapped = 1;
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
	flush_want(c);
	return queued;
}

int
conn_send(struct conn *c, struct outbuf *b)
{
	/* Replies still go out while a drain waits for in-flight requests. */
	if (c->wsi == NULL || c->killing || c->close_code == CONN_CLOSE_SLOW)
		return 0;
	if (conn__full(c, b))
		return conn__overflow(c, b);
	conn__push(c, b);
	flush_want(c);
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
conn_close(struct conn *c, int code)
{
	if (c->wsi == NULL || c->close_code)
		return;
	c->close_code = code;
	c->close_ms = util_mono_ms();
	/* A slow consumer loses what it has not read; others finish writing. */
	if (code == CONN_CLOSE_SLOW)
		conn__drop_queue(c);
	lws_callback_on_writable(c->wsi);
}

int
conn_on_writable(struct conn *c)
{
	if (c->killing)
		return 0;
	if (flush_write(c) != 0)
		return -1;
	if (c->qlen > 0) {
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->close_code && (c->refs <= 1 || c->close_code != CONN_CLOSE_DRAIN)) {
		log_debug("conn %s: closing with %d", c->cid, c->close_code);
		conn__kill_later(c, c->close_code, c->close_code == CONN_CLOSE_DRAIN ?
		    "server draining" : "slow consumer");
	}
	return 0;
}

void
conn_heard(struct conn *c)
{
	c->rx_ms = uv_now(srv.loop);
}

/* A ping frame as it goes on the wire, shared. Not empty: the client's
 * pong echoes the payload, and lws 4.1.6 passes no empty pong on to the
 * protocol callback (LWS_CALLBACK_RECEIVE_PONG). */
static struct outbuf *
conn__ping(void)
{
	static struct outbuf *ping;

	if (ping == NULL) {
		ping = outbuf_new("hb", 2, 0);
		ping->data[0] = 0x89;
	}
	return ping;
}

/* The heartbeat, done here rather than by lws' retry policy: lws keeps a
 * timer per connection for it in one list sorted by a linear walk, which
 * made every new connection cost O(connections). A connection silent for
 * hb gets a ping; one that leaves that ping unanswered for hb more is
 * closed. (Closing on 2 hb of silence alone closed clients that answered:
 * the sweep runs every second, so with hb near that step a sweep could find
 * the silence since the last pong just under hb, send nothing, and the next
 * one, a little late, find it over 2 hb.) 1 when c was closed. */
static int
conn__heartbeat(struct conn *c, uint64_t now)
{
	uint64_t hb = (uint64_t)srv.cfg->heartbeat_ms;

	if (now < c->rx_ms || now < c->ping_ms)
		return 0;
	if (c->ping_ms > c->rx_ms) {		/* a ping out since the last frame */
		if (now - c->ping_ms < hb)
			return 0;
		log_info("conn %s (%s): silent for %llu ms, closing 4008", c->cid, c->id.user,
		    (unsigned long long)(now - c->rx_ms));
		conn_kill(c, CONN_CLOSE_HEARTBEAT, "heartbeat timeout");
		return 1;
	}
	if (now - c->rx_ms >= hb) {
		c->ping_ms = now;
		conn_send(c, conn__ping());
	}
	return 0;
}

void
conn_sweep(void)
{
	int64_t now_s = util_now_ms() / 1000;
	uint64_t now = util_mono_ms(), loop_now = uv_now(srv.loop);

	for (struct conn *c = conn_list; c != NULL; c = c->next) {
		if (c->qlen == 0 && c->q != NULL) {
			/* An idle connection keeps no queue ring (most are
			 * idle); the next send allocates one again. */
			free(c->q);
			c->q = NULL;
			c->qcap = c->qhead = 0;
		}
		if (c->killing)
			continue;
		if (c->id.exp < now_s - srv.cfg->jwt_leeway_s) {
			metrics_add(M_TOKEN_EXPIRED, 1);
			conn_kill(c, CONN_CLOSE_TOKEN_EXPIRED, "token expired");
		} else if (c->close_code == 0 && conn__heartbeat(c, loop_now)) {
			continue;
		} else if (c->close_code == CONN_CLOSE_SLOW) {
			/* The close frame waits behind what lws still holds; a
			 * client that reads nothing at all is dropped. */
			if (now - c->close_ms > CONN_CLOSE_GRACE_MS)
				lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		} else if (c->qlen > 0 && now > c->progress_ms &&
		    now - c->progress_ms > (uint64_t)srv.cfg->stall_timeout_ms) {
			/* (A ping conn__heartbeat just queued has a progress_ms
			 * read after now: unsigned, now - progress_ms wrapped.) */
			metrics_add(M_SLOW_CLOSES, 1);
			log_info("conn %s (%s): no write progress for %d ms, closing 1013",
			    c->cid, c->id.user, srv.cfg->stall_timeout_ms);
			conn_close(c, CONN_CLOSE_SLOW);
		}
	}
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
		c->subcap = c->subcap ? c->subcap * 2 : 1;	/* most join one room */
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
