#include "net/conn.h"
#include "net/conn_private.h"
#include "net/outbuf.h"
#include "net/ws_frame.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "proc/srv.h"

#include <stdlib.h>
#include <string.h>

/*
 * The once-a-second sweep over every connection (net/conn's third file):
 * closes the sockets whose close is done or stuck, pings silent
 * WebSockets and closes those that stay silent (4008), ends connections
 * whose token expired (4001) or whose queue made no progress (1013), and
 * lets the HTTP reader answer a request that timed out (408).
 */

static struct outbuf *
conn__ping(void)
{
	static struct outbuf *ping;

	if (ping == NULL)
		ping = outbuf_frame(WSFRAME_PING, (const unsigned char *)"hb", 2);
	return ping;
}

/* A connection silent for hb gets a ping; one that leaves that ping
 * unanswered for hb more is closed. (Closing on 2 hb of silence alone
 * closed clients that answered: the sweep runs every second, so with hb
 * near that step a sweep could find the silence since the last pong just
 * under hb, send nothing, and the next one, a little late, find it over
 * 2 hb.) 1 when c was closed. */
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

static void
conn__sweep_ws(struct conn *c, int64_t now_s, uint64_t now, uint64_t loop_now)
{
	if (c->id.exp < now_s - srv.cfg->jwt_leeway_s) {
		metrics_add(M_TOKEN_EXPIRED, 1);
		conn_kill(c, CONN_CLOSE_TOKEN_EXPIRED, "token expired");
	} else if (c->close_code == 0 && conn__heartbeat(c, loop_now)) {
		return;
	} else if (c->qlen > 0 && now > c->progress_ms &&
	    now - c->progress_ms > (uint64_t)srv.cfg->stall_timeout_ms) {
		/* (A ping conn__heartbeat just queued has a progress_ms read
		 * after now: unsigned, now - progress_ms wrapped.) */
		metrics_add(M_SLOW_CLOSES, 1);
		log_info("conn %s (%s): no write progress for %d ms, closing 1013",
		    c->cid, c->id.user, srv.cfg->stall_timeout_ms);
		conn_close(c, CONN_CLOSE_SLOW);
	}
}

/* A user's event stream: ended when its token expires (the client signs
 * in again and resumes with its Last-Event-ID), or when it writes nothing
 * for stall_timeout_ms with bytes waiting. */
static void
conn__sweep_stream(struct conn *c, int64_t now_s, uint64_t now)
{
	if (c->id.exp < now_s - srv.cfg->jwt_leeway_s) {
		metrics_add(M_TOKEN_EXPIRED, 1);
		conn_kill(c, CONN_CLOSE_TOKEN_EXPIRED, "token expired");
	} else if (c->qlen > 0 && now > c->progress_ms &&
	    now - c->progress_ms > (uint64_t)srv.cfg->stall_timeout_ms) {
		metrics_add(M_SLOW_CLOSES, 1);
		log_info("stream %s (%s): no write progress for %d ms, closed",
		    c->cid, c->id.user, srv.cfg->stall_timeout_ms);
		conn_kill(c, CONN_CLOSE_SLOW, "slow consumer");
	}
}

void
conn_sweep(void)
{
	int64_t now_s = util_now_ms() / 1000;
	uint64_t now = util_mono_ms(), loop_now = uv_now(srv.loop);
	uint64_t hs = (uint64_t)srv.cfg->handshake_timeout_s * 1000;
	struct conn *next;

	for (struct conn *c = conn_first(); c != NULL; c = next) {
		next = c->next;
		if (c->qlen == 0 && c->q != NULL) {
			/* An idle connection keeps no queue ring (most are
			 * idle); the next send allocates one again. */
			free(c->q);
			c->q = NULL;
			c->qcap = c->qhead = 0;
		}
		if (c->phase == CONN_SHUT && now - c->close_ms > CONN_LINGER_MS) {
			conn__close_handle(c);
		} else if (c->phase == CONN_ENDING && now - c->close_ms > CONN_CLOSE_GRACE_MS) {
			conn__close_handle(c);	/* the client reads nothing */
		} else if (c->phase != CONN_OPEN || c->killing) {
			continue;
		} else if (c->kind == CONN_WS) {
			conn__sweep_ws(c, now_s, now, loop_now);
		} else if (c->kind == CONN_SSE && c->idnames != NULL) {
			conn__sweep_stream(c, now_s, now);
		} else if (c->kind == CONN_HTTP && c->qlen == 0 && c->wreq == NULL &&
		    loop_now - c->start_ms >= hs && conn__reader(CONN_HTTP) != NULL) {
			/* The HTTP reader answers a timeout (408) when it gets
			 * no bytes with the deadline past. */
			conn__reader(CONN_HTTP)(c, NULL, 0);
		}
	}
}
