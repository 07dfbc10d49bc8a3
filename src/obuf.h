#ifndef CHATD_OBUF_H
#define CHATD_OBUF_H

#include <stddef.h>
#include <stdint.h>

/* An outbound WebSocket text frame, encoded once and shared by reference
 * between every connection it is queued to. LWS_PRE bytes of headroom sit
 * in front of the payload for the frame header lws writes there. */
struct obuf {
	uint32_t refs;
	uint32_t len;		/* payload bytes */
	int64_t seq;		/* room event seq, 0 for anything else */
	char room[65];		/* the room of a room event */
	unsigned char data[];	/* LWS_PRE + len + 1 (NUL) */
};

struct obuf *obuf_new(const char *payload, size_t len, int64_t seq);
/* Takes ownership of a NUL-terminated heap string's bytes (copied once). */
struct obuf *obuf_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void obuf_ref(struct obuf *b);
void obuf_unref(struct obuf *b);
unsigned char *obuf_payload(struct obuf *b);

/* The "seq" of a room event JSON text that starts with the type and room
 * fields as chatd writes them; 0 when there is none. */
int64_t obuf_scan_seq(const char *json, size_t len);

#endif
