#ifndef CHATD_WS_FRAME_H
#define CHATD_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * RFC 6455 frames, server side, with no socket and no event loop: bytes in,
 * events out. The reader applies every rule a server must check (masking,
 * RSV bits, opcodes, fragmentation, control frames, close codes and reasons,
 * UTF-8 of text, the message size from the frame header) and reports a
 * violation as one failure with the close code to send. Pure, so unit tests
 * and the fuzzer drive exactly what the server runs.
 *
 * Memory: nothing while idle. A frame that arrives whole in one read is
 * handed over in place (unmasked in the caller's buffer); only an
 * incomplete frame is copied into the reader (buf), and only a fragmented
 * message is put together (msg). Both are freed as soon as they are used.
 */

enum wsframe_opcode {
	WSFRAME_CONT = 0x0,
	WSFRAME_TEXT = 0x1,
	WSFRAME_BINARY = 0x2,
	WSFRAME_CLOSE = 0x8,
	WSFRAME_PING = 0x9,
	WSFRAME_PONG = 0xA
};

/* Close codes (RFC 6455 7.4.1). */
#define WSFRAME_CLOSE_NORMAL 1000
#define WSFRAME_CLOSE_GOING_AWAY 1001
#define WSFRAME_CLOSE_PROTOCOL 1002
#define WSFRAME_CLOSE_NO_STATUS 1005	/* received without a code; never sent */
#define WSFRAME_CLOSE_BAD_DATA 1007
#define WSFRAME_CLOSE_TOO_BIG 1009

#define WSFRAME_CONTROL_MAX 125
#define WSFRAME_HEADER_MAX 14	/* client frame: 2 + 8 (length) + 4 (mask) */

/*
 * What the reader reports. Each returns 0 to go on reading, or -1 to stop
 * (the connection is closing): wsframe_read then returns at once. Data
 * pointers are valid only during the call.
 *
 * message: a complete text or binary message (text already validated).
 * ping, pong: a control frame's payload (at most 125 bytes), in order, even
 *   in the middle of a fragmented message.
 * close: the peer's close frame, code WSFRAME_CLOSE_NO_STATUS when it had
 *   no body; code and UTF-8 reason already validated. Nothing after it is
 *   read.
 * fail: the peer broke the protocol; code is 1002, 1007 or 1009 and why a
 *   short text for the close reason and the log. Nothing after it is read.
 * An event left NULL is skipped (close and fail still stop the reader).
 */
struct wsframe_events {
	int (*message)(void *ctx, int opcode, unsigned char *data, size_t len);
	int (*ping)(void *ctx, const unsigned char *data, size_t len);
	int (*pong)(void *ctx, const unsigned char *data, size_t len);
	int (*close)(void *ctx, int code, const char *reason, size_t len);
	int (*fail)(void *ctx, int code, const char *why);
};

struct wsframe_reader {
	unsigned char *buf;	/* an incomplete frame, from its first byte; owned */
	uint32_t len, cap;	/* bytes in buf, allocated */
	uint32_t checked;	/* payload bytes of buf's frame unmasked and UTF-8 checked */
	uint32_t max_message;	/* bytes of one message (all its fragments) */
	unsigned char *msg;	/* the fragmented message so far; owned */
	uint32_t msglen, msgcap;
	uint32_t utf8;		/* UTF-8 state of the text message so far */
	uint8_t msgop;		/* opcode of the message being put together, 0: none */
	uint8_t done;		/* close or fail reported: nothing more is read */
};

/* A reader for messages of at most max_message bytes. */
void wsframe_reader_init(struct wsframe_reader *r, uint64_t max_message);
/* Frees what the reader holds (it can be used again after init). */
void wsframe_reader_free(struct wsframe_reader *r);

/* Feed the bytes read from the socket, in order. data is modified
 * (unmasked in place). 0: everything was consumed (part of it may be kept
 * in the reader); -1: an event returned -1 or close/fail was reported;
 * nothing more may be fed. */
int wsframe_read(struct wsframe_reader *r, unsigned char *data, size_t len,
    const struct wsframe_events *ev, void *ctx);

/* 1 when the reader is between messages, with nothing held and nothing
 * reported that ends it: it may be freed and made again for the next
 * bytes. */
int wsframe_reader_idle(const struct wsframe_reader *r);

/* Bytes the reader holds (buf and msg), for the memory figures. */
size_t wsframe_reader_held(const struct wsframe_reader *r);

/* The header of an unmasked server frame with FIN set: writes 2, 4 or 10
 * bytes at h and returns how many. */
size_t wsframe_header(unsigned char *h, int opcode, uint64_t len);

/* A close frame (header and body) with code and reason (cut to fit 125
 * bytes at a UTF-8 boundary) into out (at least 2 + 125 bytes); returns
 * its length. code 0: an empty close. */
size_t wsframe_close(unsigned char *out, int code, const char *reason);

/* 1 when code may appear in a close frame on the wire (RFC 6455 7.4). */
int wsframe_close_code_valid(int code);

#endif
