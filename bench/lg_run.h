/* loadgen: the run's state, shared by loadgen.c (options, loop, report) and
 * lg_conn.c (sockets, handshake, frames, the chat protocol). One thread. */
#ifndef LG_RUN_H
#define LG_RUN_H

#include "lg.h"

#include <netinet/in.h>
#include <stdint.h>

#define LG_ID_MAX 64		/* chatd ids: [A-Za-z0-9._:-]{1,64} */
#define LG_MAX_SRC 64
#define LG_MAX_CODES 32
#define LG_ACK_RING 256		/* send times kept per sender for ack latency */
#define LG_WBUF_MAX (16u << 20)	/* pending output per connection */
#define LG_FRAME_MAX (64u << 20)	/* largest incoming message */

enum lg_phase { P_SETUP, P_WAIT, P_WARMUP, P_MEASURE, P_DRAIN, P_DONE };

enum lg_state {
	C_NEW,			/* not started */
	C_CONNECTING,		/* TCP connect in progress */
	C_HANDSHAKE,		/* upgrade sent, waiting for 101 */
	C_HELLO,		/* upgraded, waiting for hello */
	C_READY,		/* hello seen, waiting for its turn to join */
	C_CREATING,		/* room:create sent */
	C_JOINING,		/* room:join sent */
	C_RETRY,		/* join refused with unavailable/rate_limited: again soon */
	C_JOINED,
	C_FAILED,		/* failed during set-up (counted once) */
	C_DEAD			/* lost after set-up */
};

struct conn {
	int fd;
	uint32_t idx;
	uint32_t room;
	uint8_t state;
	uint8_t pollout;	/* EPOLLOUT armed */
	uint8_t frag_op;	/* opcode of the message being reassembled */
	char key[WS_KEY_LEN + 1];	/* Sec-WebSocket-Key while upgrading */
	uint64_t t_start;	/* connect() time, then the join's, ns */
	uint8_t *rbuf;		/* owned: bytes of an incomplete frame */
	uint32_t rlen, rcap;
	uint8_t *wbuf;		/* owned: output the socket did not take */
	uint32_t woff, wlen, wcap;
	uint8_t *frag;		/* owned: fragments of a message */
	size_t fraglen, fragcap;
	uint64_t next_id;	/* message:send request ids */
	uint64_t *ring;		/* owned, senders only: send time by id % LG_ACK_RING */
	uint16_t retries;	/* join attempts refused so far */
};

struct room {
	char id[LG_ID_MAX + 1];
	uint32_t size;		/* connections assigned */
	uint32_t joined;	/* of which joined */
	int created;		/* room:create answered (or not needed) */
	uint32_t creator;	/* index of the connection that creates it */
};

struct errtab {
	int n;
	struct { char code[32]; uint64_t count; } e[LG_MAX_CODES];
};

struct opts {
	const char *host;
	int port;
	const char *path;
	uint32_t conns, rooms, senders, users;
	double rate;		/* messages/s, aggregate */
	double duration, warmup, drain, setup_timeout;
	double start_at;	/* CLOCK_REALTIME seconds; 0 = at once */
	int start_on_signal;	/* after set-up, wait for SIGUSR1 */
	int pause_at_hellos;	/* after the hellos, say so and wait for SIGUSR1 */
	const char *token_cmd;
	const char *secret;
	const char *tenant;
	const char *prefix;
	double connect_rate;	/* connections/s; 0 = unlimited */
	uint32_t max_pending;	/* handshakes in flight */
	uint32_t max_joins;	/* room:create/join requests in flight */
	int create_rooms, idle, json;
	uint32_t body_bytes;
	uint32_t chatty;	/* people after the senders who type and read (lg_chatty.c) */
	uint32_t coalesce_ms;	/* the server's typing/receipt coalescing window */
	long token_ttl;
	int nsrc;
	struct sockaddr_in src[LG_MAX_SRC];
	struct sockaddr_in dst;
};

struct lg {
	struct opts o;
	int ep;
	enum lg_phase phase;
	struct conn *conns;	/* owned, o.conns */
	struct room *rooms;	/* owned, o.rooms */
	char **tokens;		/* owned, one per user */
	uint8_t *buf;		/* owned: shared receive buffer */
	size_t bufcap;
	uint8_t *out;		/* owned: frame being built */
	size_t outcap;
	uint64_t now_read;	/* when the frames being handled were read */
	uint64_t rx_ns;		/* when the kernel received them (CLOCK_MONOTONIC) */
	uint64_t real_minus_mono;	/* CLOCK_REALTIME - CLOCK_MONOTONIC, ns */

	/* set-up: every connection reaches hello, then they join */
	uint32_t started, pending, hellos, joined, settled;
	uint32_t join_cursor, joins_inflight, join_retries;
	struct conn **retry_q;	/* owned: FIFO of C_RETRY connections */
	uint64_t *retry_at;	/* owned: when each may try again */
	uint32_t retry_head, retry_len;
	int hellos_marked;	/* "hellos done" printed (--pause-at-hellos) */
	uint64_t t_setup0, t_first_hello, t_last_hello, t_join0, t_last_join, t_setup_done;
	struct errtab setup_err;
	struct hist hs;		/* connect() to hello */
	struct hist joinh;	/* hello to join ack */

	/* run */
	uint64_t t_warm, t_meas, t_send_end, t_drain_end;
	uint64_t t_last_rx;	/* last measured delivery received */
	uint64_t sent, sent_warm, acked, acked_warm, expected, send_skipped;
	uint64_t received, received_warm, received_other;
	uint64_t frames_in, bytes_in, gaps, pings, lost_conns;
	struct errtab err;	/* error frames by code, connection losses */
	struct hist lat;	/* end to end, to the kernel's receive time */
	struct hist lat_app;	/* end to end, to when loadgen read it */
	struct hist acklat;	/* send to ack */
	struct hist lag;	/* how late sends left after their due time */
};

extern struct lg g;

uint64_t mono_ns(void);
void err_count(struct errtab *t, const char *code, size_t len);
/* The value of "key" in a flat JSON object: a string's contents (no
 * escapes in the fields read here) or a bare token. Returns 0 when found. */
int json_field(const char *p, size_t len, const char *key, const char **v, size_t *vlen);

/* lg_conn.c */
void conn_start(struct conn *c);
/* Sends room:create (the room's creator) or room:join. */
void conn_create(struct conn *c);
void conn_join(struct conn *c);
void conn_event(struct conn *c, uint32_t events);
void conn_send_message(struct conn *c, uint64_t due, int measured);
/* One text frame of len bytes (nothing when len <= 0, or not joined). */
void conn_send_text(struct conn *c, const char *text, int len);
/* Gives up on a connection still setting up (set-up timeout). */
void conn_abandon(struct conn *c, const char *why);
/* Closes every socket with a reset (no TIME_WAIT left on the ports). */
void conn_close_all(void);

/* lg_chatty.c: the chatty room's people (--chatty); the loop calls the
 * first four, lg_conn.c the rest on what arrives. */
int chatty_init(void);
void chatty_begin(uint64_t now);
/* Does what is due by now; returns when the next action is due. */
uint64_t chatty_act(uint64_t now);
void chatty_end(uint64_t now);
void chatty_message_new(struct conn *c, const char *p, size_t len);
void chatty_delivered(void);
void chatty_typing_update(struct conn *c, const char *p, size_t len);
void chatty_receipt_update(struct conn *c, const char *p, size_t len);
/* "typing" or "receipt" for the ids of the people's requests, else NULL. */
const char *chatty_op(const char *id, size_t idlen);
/* Counts the ack of a people's request; 0 when id is not one. */
int chatty_ack(const char *id, size_t idlen);
/* Counts an error answer to one of them. */
void chatty_error(void);
/* 1 when every request of the people has been answered and what the
 * server coalesced has had time to arrive. */
int chatty_drained(uint64_t now);
void chatty_report_json(FILE *f);
void chatty_report_text(FILE *f);

#endif
