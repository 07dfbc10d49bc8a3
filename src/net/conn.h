#ifndef CHATD_CONN_H
#define CHATD_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "net/auth.h"

struct lws;
struct outbuf;
struct room;
struct conn;

/* Close codes chatd sends (protocol section 2). */
#define CONN_CLOSE_DRAIN 1001
#define CONN_CLOSE_SLOW 1013
#define CONN_CLOSE_TOO_BIG 1009
#define CONN_CLOSE_BAD_UTF8 1007
#define CONN_CLOSE_TOKEN_EXPIRED 4001
#define CONN_CLOSE_HEARTBEAT 4008
/* A 1013 close waits this long for the client to read before the drop. */
#define CONN_CLOSE_GRACE_MS 5000

enum sub_state { SUB_JOINING, SUB_LIVE };
enum sub_role { SUB_MEMBER, SUB_MODERATOR, SUB_ADMIN };

/* One connection's subscription to one local room. Owned by the
 * connection; the room holds a pointer at subs[ridx]. */
struct sub {
	struct conn *c;
	struct room *room;
	int64_t delivered_seq;	/* highest seq queued to the client */
	struct outbuf **pend;	/* live events held while joining; owned refs */
	int64_t muted_until_ms;
	uint64_t gen;		/* unique per subscription: a freed one's address may come back */
	int ridx;
	int npend, pendcap;
	int pend_frames;
	uint8_t state;		/* enum sub_state */
	uint8_t role;		/* enum sub_role */
	uint8_t broadcast;	/* the room's kind is broadcast */
	uint8_t gapped;		/* events were dropped: nothing more until the client rejoins */
	uint8_t missed;		/* the subscriber link dropped while joining */
};

/* Who the connection is. user and tenant point into the connection's own
 * allocation (conn.names). */
struct conn_identity {
	const char *user;
	const char *tenant;
	int64_t exp;		/* seconds since the epoch */
	int admin;
};

/* One WebSocket connection. One allocation: the strings cid, ip, user and
 * tenant live in names[], sized to fit (idle connections are most of a
 * server's memory; docs/architecture.md). */
struct conn {
	struct lws *wsi;		/* NULL once lws closed it */
	struct conn_identity id;
	const char *cid;		/* "<worker>-<n>", for the logs and hello */
	const char *ip;			/* the peer's address */
	struct conn *prev, *next;	/* all connections of this worker */
	char *rx;			/* frame being reassembled; owned */
	size_t rxlen, rxcap;
	struct outbuf **q;		/* ring of queued obufs (refs); owned */
	uint32_t qhead, qlen, qcap;	/* q: NULL once conn_sweep saw it empty */
	uint32_t qframes;		/* frames in the queued obufs */
	size_t qbytes;			/* bytes queued */
	uint64_t progress_ms;		/* last write, or when the queue filled from empty */
	uint64_t rx_ms;			/* last frame or pong from the client (loop time) */
	uint64_t ping_ms;		/* last heartbeat ping sent (loop time) */
	struct sub **subs;		/* owned, with each sub */
	int nsubs, subcap;
	int refs;			/* 1 for the socket + 1 per request in flight */
	int close_code;			/* close once the queue is written */
	uint64_t close_ms;		/* when close_code was set */
	int killing;			/* a polite close is scheduled */
	int flush_queued;		/* in flush.c's list for this loop turn */
	int rx_queued;			/* in ws.c's list of this turn's readers */
	int corked;			/* TCP_CORK on: the 101 waits for the hello */
	char names[];			/* cid, ip, user, tenant, each NUL-ended */
};

struct conn *conn_new(struct lws *wsi, const struct auth_identity *id, const char *ip);
/* lws closed the socket: leave every room, drop the queue, drop a ref. */
void conn_closed(struct conn *c);
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);

/* Connections listed for something at the end of this loop turn (ws.c's
 * readers, flush.c's writes): each once, while *flag is set, with a
 * reference the list's owner drops when it takes c off. */
struct conn_list {
	struct conn **v;	/* owned */
	int n, cap;
};
/* Appends c (and sets *flag) unless *flag is set. 1: appended. */
int conn_list_add(struct conn_list *l, struct conn *c, int *flag);
int conn_open(const struct conn *c);

/* Queue an obuf (takes a new ref) to be written at the end of the loop
 * turn. A queue full of room events replaces them by room:gap; one full
 * of replies closes the connection with 1013. An empty queue takes any one
 * obuf (a long history page, or a room's whole batch of one turn, which is
 * shared, not copied). 1 queued, 0 dropped. */
int conn_send(struct conn *c, struct outbuf *b);
void conn_send_text(struct conn *c, const char *text, size_t len);
/* Close with code once what is queued and in flight is done. */
void conn_close(struct conn *c, int code);
/* Close now with code, dropping what is queued, without reading more. */
void conn_kill(struct conn *c, int code, const char *why);
/* Worker exit: carry out scheduled closes, release the timer. */
void conn_shutdown(void);
/* Called in LWS_CALLBACK_SERVER_WRITEABLE: -1 means close now. */
int conn_on_writable(struct conn *c);

struct sub *conn_find_sub(struct conn *c, const char *room_id);
void conn_add_sub(struct conn *c, struct sub *s);
void conn_remove_sub(struct conn *c, struct sub *s);

/* The client sent something (a frame or a pong): it is alive. */
void conn_heard(struct conn *c);

/* Once a second: close connections whose token expired (4001) or whose
 * queue made no progress for stall_timeout_ms (1013); ping connections
 * silent for heartbeat_ms, close those silent for twice that (4008); free
 * the queue ring of connections with nothing queued. */
void conn_sweep(void);

/* Every open connection of this worker. */
struct conn *conn_first(void);
int conn_count(void);

#endif
