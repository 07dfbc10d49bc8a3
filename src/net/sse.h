#ifndef CHATD_SSE_H
#define CHATD_SSE_H

#include <stddef.h>

struct conn;

/*
 * Server-Sent Events: an HTTP response that stays open and carries events
 * ("event:", "data:", "id:" lines) as they happen. A stream is a
 * connection of kind CONN_SSE with the same bounded queue of shared
 * outbufs as a WebSocket: an event is framed once and queued by reference
 * to every stream of its topic; a stream whose queue passes
 * outbound_max_bytes is closed (slow consumer), never buffered without
 * bound. A comment line every SSE_KEEPALIVE_S keeps proxies from closing
 * a quiet stream.
 */

#define SSE_KEEPALIVE_S 15

enum sse_topic {
	SSE_MONITORING,		/* the monitoring document, once a second */
	SSE_ROOMS		/* a user's rooms: their events (chat/join.c joins them) */
};

/* Answer the request on c with the stream's head and keep c as a stream
 * of topic (its HTTP request state goes). */
void sse_open(struct conn *c, enum sse_topic topic);
/* Queue one event (text of data may hold newlines: each line becomes a
 * "data:" line) to every stream of topic. */
void sse_publish(enum sse_topic topic, const char *event, const char *data, size_t len);
/* Streams open for topic. */
int sse_count(enum sse_topic topic);
/* Once a second: the monitoring document, keep-alive comments. */
void sse_tick(void);
void sse_shutdown(void);

#endif
