#include "net/sse.h"
#include "net/conn.h"
#include "net/http_req.h"
#include "net/outbuf.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "proc/srv.h"

#include <stdlib.h>
#include <string.h>

/* Every open stream of this worker, with a reference, and its topic. */
static struct sse_stream {
	struct conn *c;
	enum sse_topic topic;
} *streams;
static int nstreams, capstreams;
static int hooked;
static unsigned ticks;

static void
sse__closed(struct conn *c)
{
	for (int i = 0; i < nstreams; i++) {
		if (streams[i].c != c)
			continue;
		streams[i] = streams[--nstreams];
		conn_unref(c);
		return;
	}
}

/* One event as the stream carries it: each line of data its own "data:"
 * line, a blank line at the end. event NULL: a comment (data is its text). */
static struct outbuf *
sse__event(const char *event, const char *data, size_t len)
{
	size_t cap = 32 + (event ? strlen(event) : 0) + len * 2 + 8, n = 0;
	char *text = xmalloc(cap);
	struct outbuf *b;
	const char *p = data, *end = data + len;

	if (event == NULL) {
		n = (size_t)snprintf(text, cap, ": %.*s\n\n", (int)len, data);
		goto done;
	}
	n = (size_t)snprintf(text, cap, "event: %s\n", event);
	do {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = (size_t)((nl ? nl : end) - p);

		memcpy(text + n, "data: ", 6);
		memcpy(text + n + 6, p, l);
		n += 6 + l;
		text[n++] = '\n';
		p = nl ? nl + 1 : end;
	} while (p < end);
	text[n++] = '\n';
done:
	b = outbuf_raw(text, n);
	free(text);
	return b;
}

static void
sse__send(struct conn *c, struct outbuf *b)
{
	if (c->phase != CONN_OPEN || c->killing)
		return;
	if (c->qlen > 0 && c->qbytes + b->len > (size_t)srv.cfg->outbound_max_bytes) {
		metrics_add(M_SLOW_CLOSES, 1);
		log_info("stream %s (%s): not reading, closed", c->cid, c->ip);
		conn_kill(c, CONN_CLOSE_SLOW, "slow consumer");
		return;
	}
	conn_send(c, b);
}

/* b to every stream of topic. sse__send may close a stream, which leaves
 * the array: from the end. */
static void
sse__broadcast(enum sse_topic topic, struct outbuf *b)
{
	for (int i = nstreams - 1; i >= 0; i--)
		if (i < nstreams && streams[i].topic == topic)
			sse__send(streams[i].c, b);
}

void
sse_publish(enum sse_topic topic, const char *event, const char *data, size_t len)
{
	struct outbuf *b = sse__event(event, data, len);

	sse__broadcast(topic, b);
	outbuf_unref(b);
}

int
sse_count(enum sse_topic topic)
{
	int n = 0;

	for (int i = 0; i < nstreams; i++)
		n += streams[i].topic == topic;
	return n;
}

static void
sse__monitoring(struct conn *only)
{
	char *json = metrics_json();
	struct outbuf *b = sse__event("monitoring", json, strlen(json));

	if (only != NULL)
		sse__send(only, b);
	else
		sse__broadcast(SSE_MONITORING, b);
	outbuf_unref(b);
	free(json);
}

void
sse_open(struct conn *c, enum sse_topic topic)
{
	static const char head[] =
	    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
	    "X-Accel-Buffering: no\r\nServer: chatd\r\n\r\n";

	if (!hooked) {
		conn_on_close(sse__closed);
		hooked = 1;
	}
	conn_send_raw(c, head, sizeof(head) - 1);
	c->kind = CONN_SSE;
	http_req_free(c->req);
	free(c->req);
	c->req = NULL;
	if (nstreams == capstreams) {
		capstreams = capstreams ? capstreams * 2 : 8;
		streams = xrealloc(streams, (size_t)capstreams * sizeof(*streams));
	}
	conn_ref(c);
	streams[nstreams].c = c;
	streams[nstreams].topic = topic;
	nstreams++;
	if (topic == SSE_MONITORING)
		sse__monitoring(c);
}

void
sse_tick(void)
{
	static const char ka[] = "keepalive";

	if (nstreams == 0)
		return;
	if (sse_count(SSE_MONITORING) > 0)
		sse__monitoring(NULL);
	if (++ticks % SSE_KEEPALIVE_S == 0)
		for (int t = SSE_MONITORING; t <= SSE_ROOMS; t++)
			sse_publish((enum sse_topic)t, NULL, ka, sizeof(ka) - 1);
}

void
sse_shutdown(void)
{
	while (nstreams > 0) {
		struct conn *c = streams[--nstreams].c;

		conn_unref(c);
	}
	free(streams);
	streams = NULL;
	capstreams = 0;
}
