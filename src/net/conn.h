#ifndef CHATD_CONN_H
#define CHATD_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/auth.h"
#include "net/ws_frame.h"

struct outbuf;
struct room;
struct conn;
struct http_req;

/* Close codes chatd sends (protocol section 2). */
#define CONN_CLOSE_DRAIN 1001
#define CONN_CLOSE_SLOW 1013
#define CONN_CLOSE_TOO_BIG 1009
#define CONN_CLOSE_BAD_UTF8 1007
#define CONN_CLOSE_TOKEN_EXPIRED 4001
#define CONN_CLOSE_HEARTBEAT 4008
/* A close frame that cannot be written (the client reads nothing) is
 * given this long; then the socket is closed anyway. */
#define CONN_CLOSE_GRACE_MS 5000
/* After chatd's last byte (FIN sent), the client has this long to close
 * its side before the socket is closed anyway. */
#define CONN_LINGER_MS 2000

/* Who the connection is (set when a WebSocket is accepted). user and
 * tenant point into conn.idnames. */
struct conn_identity {
	const char *user;
	const char *tenant;
	int64_t exp;		/* seconds since the epoch */
	int admin;
};

/* What the socket speaks. Every connection starts as HTTP; an accepted
 * upgrade makes it a WebSocket, a stream route an event stream. */
enum conn_kind { CONN_HTTP, CONN_WS, CONN_SSE };

/* Where the socket is in its life. */
enum conn_phase {
	CONN_OPEN,		/* reading and writing */
	CONN_ENDING,		/* the last bytes are queued: no more input is acted on */
	CONN_SHUT,		/* everything written, FIN sent: waiting for the peer's */
	CONN_GONE		/* uv_close called: the handle's callback frees */
};

/*
 * One client socket, from accept to close: an HTTP connection, a WebSocket
 * or an event stream. One allocation holds the libuv handle and the
 * strings cid and ip; idle WebSockets are most of a server's
 * memory (docs/architecture.md), so what only the handshake needs lives in
 * req and is freed after it, and the frame reader exists only while a frame
 * or a message is incomplete. Reading uses the loop's one buffer (net/conn.c).
 */
struct conn {
	uv_tcp_t tcp;			/* the socket; first, so a handle is its conn */
	struct http_req *req;		/* CONN_HTTP: the request being read; owned */
	struct wsframe_reader *rd;	/* CONN_WS: frames being read; owned, only while a
					 * frame or message is incomplete (net/ws.c) */
	struct conn_identity id;
	char *idnames;			/* user and tenant, NUL-ended; owned */
	const char *ip;			/* the peer's address, in cid[] after the cid */
	struct conn *prev, *next;	/* every socket of this worker */
	struct outbuf **q;		/* ring of queued outbufs (refs); owned */
	uint32_t qhead, qlen, qcap;	/* q: NULL once conn_sweep saw it empty */
	uint32_t qframes;		/* frames in the queued outbufs */
	uint32_t qoff;			/* bytes of q[qhead] already written */
	uint32_t inflight;		/* outbufs at the head in a uv_write */
	size_t qbytes;			/* bytes queued, not yet written */
	uv_write_t *wreq;		/* the uv_write in flight; owned */
	union {
		uint64_t progress_ms;	/* OPEN: last write, or when the queue filled from empty */
		uint64_t close_ms;	/* ENDING, SHUT: when the close began */
	};
	uint64_t rx_ms;			/* last frame or pong from the client (loop time) */
	union {
		uint64_t ping_ms;	/* CONN_WS: last heartbeat ping sent (loop time) */
		uint64_t start_ms;	/* CONN_HTTP: when this request began to be awaited */
	};
	struct sub **subs;		/* &sub1 or owned; the subs are owned, each with its room */
	struct sub *sub1;		/* subs while there is at most one (most join one room) */
	int nsubs, subcap;
	int refs;			/* 1 for the socket + 1 per request in flight */
	int close_code;			/* close once the queue is written */
	uint8_t kind;			/* enum conn_kind */
	uint8_t phase;			/* enum conn_phase */
	uint8_t killing;		/* ENDING or later: no more is sent or executed */
	uint8_t flush_queued;		/* in the list of this turn's writes */
	uint8_t end_after_write;	/* CONN_HTTP: close once the queue is written */
	uint8_t reading_paused;		/* CONN_HTTP: too much output waiting */
	uint8_t counted;		/* CONN_WS: in the admission counts */
	uint8_t peer_done;		/* the peer sent FIN: close once ours is out */
	uint8_t virt;			/* no socket: conn_virtual's */
	uint8_t rest;			/* CONN_HTTP: enum conn_rest, a command's request */
	uint16_t rest_ok;		/* CONN_HTTP: the status of its success (200, 201) */
	char cid[];			/* "<worker>-<n>" (logs, hello), then ip; NUL-ended */
};

/* A command over HTTP (net/rest.c): waiting for its answer, answered. */
enum conn_rest {
	CONN_REST_NONE,
	CONN_REST_WAITING,	/* its handler is running */
	CONN_REST_ANSWERED,	/* ...and answered before returning */
	CONN_REST_DEFERRED	/* the answer comes later: no next request until then */
};

/* A socket accept4()ed by the worker: becomes a connection reading HTTP.
 * NULL (the fd closed) when libuv refuses it. */
struct conn *conn_accept(uv_loop_t *loop, int fd);
/*
 * A connection that is no socket: one request of another transport (a
 * FastCGI request of chatd-fcgi, net/fcgi.c) run by the command handlers as
 * an HTTP connection's. Kind CONN_HTTP, peer address ip, one reference (the
 * caller's); not in the list of sockets, so the sweep, the drain and the
 * figures do not see it. Its answer goes through conn_http_answer_json;
 * anything sent or closed on it otherwise is dropped. Every command holds
 * it while it waits (reply_req), so it lives until the last conn_unref,
 * which frees it (no handle to close).
 */
struct conn *conn_virtual(const char *ip);
/* The HTTP connection c becomes a WebSocket of id. */
void conn_set_identity(struct conn *c, const struct auth_identity *id);
/* An HTTP request's user (a command over HTTP): c stays an HTTP
 * connection, counted nowhere; the next request's replaces it. */
void conn_set_request_identity(struct conn *c, const struct auth_identity *id);
/* How a command's answer reaches an HTTP connection (net/http.c sets it):
 * proto/reply.c calls it for a connection of kind CONN_HTTP. */
typedef void conn_http_answer(struct conn *c, int status, const char *json, size_t len,
    const char *headers);
void conn_set_http_answer(conn_http_answer *fn);
void conn_http_answer_json(struct conn *c, int status, const char *json, size_t len,
    const char *headers);

/* What reads a kind's bytes (net/http.c, net/ws.c register theirs). data
 * is the loop's read buffer: the reader may change it, and keeps nothing
 * of it after returning. */
typedef void conn_reader(struct conn *c, char *data, size_t n);
void conn_set_reader(enum conn_kind kind, conn_reader *fn);
/* Called once for every connection that closes, before its queue and
 * state go (chat/room leaves its rooms; net/ws releases its admission). */
typedef void conn_hook(struct conn *c);
void conn_on_close(conn_hook *fn);
/* Called once for every connection that becomes a WebSocket (its
 * identity set): chat/presence counts it, chat/personal indexes it. */
void conn_on_open(conn_hook *fn);
/* What the connection needs of its subscriptions (struct sub is
 * chat/room's, which registers these): a subscription's room id, for
 * conn_find_sub; and marking one whose queued events were replaced by a
 * room:gap, which gets nothing more until the client joins again. */
void conn_set_sub_ops(const char *(*room_id)(const struct sub *s), void (*gapped)(struct sub *s),
    int64_t (*seq)(const struct sub *s));
/* An event stream's cursor: "room=seq,..." of its subscriptions, the last
 * seq each was given (what Last-Event-ID brings back), room's being seq.
 * Its length. */
size_t conn_cursor(const struct conn *c, const char *room, int64_t seq, char *buf, size_t len);
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);

/* Connections listed for something at the end of this loop turn: each
 * once, while *flag is set, with a reference the list's owner drops when it
 * takes c off. */
struct conn_list {
	struct conn **v;	/* owned */
	int n, cap;
};
/* Appends c (and sets *flag) unless *flag is set. 1: appended. */
int conn_list_add(struct conn_list *l, struct conn *c, uint8_t *flag);
/* An open WebSocket (or a room event stream: a user's) that is not closing. */
int conn_open(const struct conn *c);

/* Queue an outbuf (takes a new ref) to be written at the end of the loop
 * turn. A queue full of room events replaces them by room:gap; one full
 * of replies closes the connection with 1013. An empty queue takes any one
 * outbuf (a long history page, or a room's whole batch of one turn, which
 * is shared, not copied). 1 queued, 0 dropped. */
int conn_send(struct conn *c, struct outbuf *b);
void conn_send_text(struct conn *c, const char *text, size_t len);
/* HTTP bytes (a response, an event of a stream), as they are. */
void conn_send_raw(struct conn *c, const char *bytes, size_t len);
/* Close with code once what is queued and in flight is done (HTTP: once
 * the response is written). */
void conn_close(struct conn *c, int code);
/* Close now: drop what is queued, send a close frame with code (a
 * WebSocket), then FIN; nothing more is read or executed. */
void conn_kill(struct conn *c, int code, const char *why);
/* Close the socket at once (a write failed, the peer reset). */
void conn_abort(struct conn *c);
/* End an HTTP connection once its queued response is written. */
void conn_end_after_write(struct conn *c);
/* Stop or resume reading an HTTP connection (pipelined requests waiting
 * for their responses to be written). */
void conn_pause_reading(struct conn *c, int pause);

/* Worker start and exit. */
void conn_start(void);
void conn_shutdown(void);

struct sub *conn_find_sub(struct conn *c, const char *room_id);
void conn_add_sub(struct conn *c, struct sub *s);
void conn_remove_sub(struct conn *c, struct sub *s);

/* The client sent something (a frame or a pong): it is alive. */
void conn_heard(struct conn *c);

/* Once a second: close WebSockets whose token expired (4001) or whose
 * queue made no progress for stall_timeout_ms (1013); ping those silent for
 * heartbeat_ms, close those that leave a ping unanswered (4008); end HTTP
 * requests not read within handshake_timeout_s (408); close sockets whose
 * peer did not finish closing; free idle queue rings. */
void conn_sweep(void);

/* Every socket of this worker, and how many. */
struct conn *conn_first(void);
int conn_count(void);
/* Bytes of memory that the connections hold (structs, strings, queues,
 * readers), for the memory figures. */
int64_t conn_heap_bytes(void);

#endif
