#ifndef CHATD_OUTBUF_H
#define CHATD_OUTBUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * Outbound bytes for WebSocket clients: one or more complete, unmasked
 * text frames (header and payload), framed once and shared by reference
 * between every connection they are queued to, and written to the socket
 * as they are (no copy, no framing per recipient).
 *
 * A single frame (outbuf_new) is a reply or one event. A batch (outbuf_append)
 * is the run of one room's events published during one loop turn: every
 * subscriber of the room gets one reference to it, so fan-out costs a
 * reference per subscriber per loop turn, not per event.
 */
struct outbuf {
	uint32_t refs;
	uint32_t len;		/* framed bytes in data */
	uint32_t cap;		/* bytes allocated for data */
	uint32_t nframes;
	int64_t seq;		/* room events: the lowest seq; 0 for anything else */
	int64_t last_seq;	/* room events: the highest seq */
	int64_t ts_ms;		/* live room events (outbuf_append): the earliest
				 * "ts", server ms at the send; 0: none */
	struct outbuf *sse;	/* outbuf_as_sse's translation, made once; owned */
	struct outbuf **parts;	/* outbuf_sse_events', made once; owned */
	struct outbuf *sse1;	/* outbuf_sse_one_room's, made once; owned */
	uint8_t raw;		/* bytes as they are, not WebSocket frames */
	uint8_t bounded;	/* an event stream's join history: bounded by its
				 * own limit (max_resume_gap), queued past the
				 * queue's (as a WebSocket's join ack is) */
	char room[65];		/* the room of room events */
	unsigned char data[];
};

/* Bytes as they are (an HTTP response, an event stream's text). */
struct outbuf *outbuf_raw(const char *bytes, size_t len);
/* One server frame of opcode (a control frame: ping, close). */
struct outbuf *outbuf_frame(int opcode, const unsigned char *payload, size_t len);
/* One frame. seq != 0 makes it a room event (the caller sets room). */
struct outbuf *outbuf_new(const char *payload, size_t len, int64_t seq);
/* Append one room event frame to the batch *bp (created when NULL). Only
 * while the caller holds the one reference: the batch may move. */
void outbuf_append(struct outbuf **bp, const char *payload, size_t len, int64_t seq);
/* A new obuf with the frames of b whose seq is 0 or above after_seq, or
 * NULL if there are none. */
struct outbuf *outbuf_after(const struct outbuf *b, int64_t after_seq);
/* The same frames as Server-Sent Events ("event: <type>", "data: <JSON>",
 * a blank line each), made once per outbuf and shared (borrowed: valid
 * while b is); seqs, room and frame count as b's. Raw bytes are b. */
struct outbuf *outbuf_as_sse(struct outbuf *b);
/* Room events as Server-Sent Events, one outbuf per event ("event:",
 * "data:", no blank line: the stream adds its "id:" line and one), made
 * once per outbuf and shared; each has its event's seq and the room. *n is
 * b's frame count. Borrowed, valid while b is. */
struct outbuf **outbuf_sse_events(struct outbuf *b, uint32_t *n);
/* Room events as Server-Sent Events each with its "id: <room>=<seq>" line
 * and blank line: the whole cursor of a stream of that one room, so one
 * outbuf serves every such stream (made once, borrowed as above). */
struct outbuf *outbuf_sse_one_room(struct outbuf *b);
/* A new outbuf with the frames of b but the typing events ({"type":
 * "typing:...) of user (a typist's own connections never see them), or
 * NULL if none is left. */
struct outbuf *outbuf_without_typing(const struct outbuf *b, const char *user);
void outbuf_ref(struct outbuf *b);
void outbuf_unref(struct outbuf *b);

/* The "seq" of a room event JSON text that starts with the type and room
 * fields as chatd writes them; 0 when there is none. */
int64_t outbuf_scan_seq(const char *json, size_t len);
/* Its "ts" (message:new: the server's ms at the send's arrival), or 0. */
int64_t outbuf_scan_ts(const char *json, size_t len);

#endif
