/* loadgen: a reader of chatd's room event stream (--sse; docs/protocol.md
 * section 9): GET /api/events?rooms=<room>&token=<jwt>, the 200 head, then
 * Server-Sent Events parsed from each read as it comes, handed to the same
 * code as the WebSocket readers' frames (lg_conn.c).
 *
 * The stream is parsed event by event: the complete events of a read are
 * handled, the incomplete rest is kept by the connection (as an incomplete
 * frame is) and parsed again with the next read, so an event's latency
 * ends at the read that brought its end, as a frame's does. */
#include "lg_run.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SSE_HEAD_MAX 16384

/* One event's fields: pointers into the read buffer, data possibly into
 * the scratch buffer when it had several "data:" lines. */
struct sse_event {
	const char *event, *data, *id;
	size_t event_len, data_len, id_len;
	int has_data, has_id;
};

/* Several "data:" lines of one event, joined with "\n" (the stream
 * allows it; chatd writes one). */
static char *scratch;
static size_t scratch_cap;

static int loud_errors;	/* refusals printed so far (a few are enough) */

#define SSE_IS(p, n, lit) ((n) == sizeof(lit) - 1 && memcmp((p), (lit), sizeof(lit) - 1) == 0)

int
sse_request(const struct conn *c, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "GET %s?rooms=%s&token=%s HTTP/1.1\r\nHost: %s:%d\r\n"
	    "Accept: text/event-stream\r\n\r\n", g.o.events_path, g.rooms[c->room].id,
	    g.tokens[c->idx % g.o.users], g.o.host, g.o.port);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* What went wrong, on stderr for the first few: a run whose readers cannot
 * open their stream must not look like a quiet one. */
static void
sse__loud(const struct conn *c, const char *what, const char *p, size_t len)
{
	if (loud_errors++ >= 5)
		return;
	if (len > 300)
		len = 300;
	fprintf(stderr, "loadgen %s: stream of connection %u (room %s): %s: %.*s\n",
	    g.o.prefix, c->idx, g.rooms[c->room].id, what, (int)len, p);
}

/* The answer's head at p: 200 and text/event-stream, or the connection
 * fails with http_<status> (or sse_content_type). Returns the head's
 * length, 0 when incomplete, -1 when the connection failed. */
static long
sse__head(struct conn *c, const char *p, size_t len)
{
	const char *end = memmem(p, len, "\r\n\r\n", 4), *line, *eol;
	int status = 0, stream = 0;
	char why[32];

	if (end == NULL) {
		if (len > SSE_HEAD_MAX) {
			sse__loud(c, "head too long", p, len);
			conn_abandon(c, "http_header_too_long");
			return -1;
		}
		return 0;
	}
	if (len >= 12 && memcmp(p, "HTTP/1.", 7) == 0)
		status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	for (line = memchr(p, '\n', (size_t)(end - p)); line && line < end; line = eol) {
		line++;
		eol = memchr(line, '\n', (size_t)(end + 2 - line));
		if (eol == NULL)
			break;
		if ((size_t)(eol - line) >= 13 + 17 && strncasecmp(line, "content-type:", 13) == 0 &&
		    memmem(line + 13, (size_t)(eol - line - 13), "text/event-stream", 17) != NULL)
			stream = 1;
	}
	if (status != 200 || !stream) {
		/* The head and what came of the body (chatd's JSON error). */
		sse__loud(c, status != 200 ? "refused" : "not text/event-stream", p, len);
		if (status != 200)
			snprintf(why, sizeof(why), "http_%d", status);
		else
			snprintf(why, sizeof(why), "sse_content_type");
		conn_abandon(c, why);
		return -1;
	}
	c->sse_open = 1;
	return end + 4 - p;
}

/* The seq of the reader's room in an "id:" cursor (room=seq,room=seq...):
 * each room of the stream as of the event; 0 when absent. */
static uint64_t
sse__id_seq(const struct conn *c, const struct sse_event *e)
{
	const char *room = g.rooms[c->room].id, *p = e->id, *end = e->id + e->id_len;
	size_t rl = strlen(room);
	uint64_t seq = 0;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p)), *stop = comma ? comma : end;

		if ((size_t)(stop - p) > rl && memcmp(p, room, rl) == 0 && p[rl] == '=') {
			for (p += rl + 1; p < stop && *p >= '0' && *p <= '9'; p++)
				seq = seq * 10 + (uint64_t)(*p - '0');
			return p == stop ? seq : 0;
		}
		p = stop + 1;
	}
	return 0;
}

/* One event, by its "event:" name. message:new goes to the WebSocket
 * readers' own code (latency, deliveries, seq order) and its "id:" must
 * carry the same seq; room:joined ends the reader's join; an error before
 * it fails the reader loudly; the rest (room:gap, error...) is read as
 * the same JSON from a WebSocket would be. */
static void
sse__dispatch(struct conn *c, const struct sse_event *e)
{
	g.sse_events++;
	if (!e->has_data)
		return;		/* nothing to dispatch (the stream's rule) */
	g.frames_in++;
	if (SSE_IS(e->event, e->event_len, "message:new")) {
		uint64_t seq = conn_message_new(c, e->data, e->data_len);

		if (seq == 0 || !e->has_id || sse__id_seq(c, e) != seq)
			g.sse_id_mismatch++;
		return;
	}
	if (SSE_IS(e->event, e->event_len, "room:joined")) {
		if (c->state == C_JOINING)
			conn_joined(c);
		else
			g.received_other++;
		return;
	}
	if (SSE_IS(e->event, e->event_len, "error") && c->state == C_JOINING) {
		const char *code = "unknown";
		size_t clen = 7;
		char why[40];

		(void)json_field(e->data, e->data_len, "code", &code, &clen);
		sse__loud(c, "error before room:joined", e->data, e->data_len);
		snprintf(why, sizeof(why), "join_%.*s", (int)(clen > 24 ? 24 : clen), code);
		conn_abandon(c, why);
		return;
	}
	conn_text(c, e->data, e->data_len);
}

/* Appends one "data:" value to the event (the second and later into the
 * scratch buffer, joined by "\n"). */
static void
sse__data(struct sse_event *e, const char *v, size_t n)
{
	size_t need;

	if (!e->has_data) {
		e->data = v;
		e->data_len = n;
		e->has_data = 1;
		return;
	}
	need = e->data_len + 1 + n;
	if (need > scratch_cap) {
		char *s = realloc(scratch, need * 2);

		if (s == NULL) {
			fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", need * 2);
			exit(1);
		}
		scratch = s;
		scratch_cap = need * 2;
	}
	if (e->data != scratch)
		memmove(scratch, e->data, e->data_len);
	scratch[e->data_len] = '\n';
	memcpy(scratch + e->data_len + 1, v, n);
	e->data = scratch;
	e->data_len = need;
}

/* One line (without its end): a comment, or a field "name: value" (one
 * space after the colon is not part of the value; no colon: an empty
 * value). Fields other than event, data and id are ignored (retry). */
static void
sse__line(struct sse_event *e, const char *p, size_t n)
{
	const char *colon = memchr(p, ':', n), *v;
	size_t name, vn;

	if (colon == p) {
		g.sse_comments++;
		return;
	}
	name = colon ? (size_t)(colon - p) : n;
	v = colon ? colon + 1 : p + n;
	vn = (size_t)(p + n - v);
	if (vn > 0 && *v == ' ')
		v++, vn--;
	if (SSE_IS(p, name, "data"))
		sse__data(e, v, vn);
	else if (SSE_IS(p, name, "event"))
		e->event = v, e->event_len = vn;
	else if (SSE_IS(p, name, "id"))
		e->id = v, e->id_len = vn, e->has_id = 1;
}

/* Handles every complete event in [p, p + len); returns the bytes used
 * (the start of the incomplete rest). Lines end with "\n" ("\r\n" too);
 * an event ends at a blank line. */
static size_t
sse__events(struct conn *c, const char *p, size_t len)
{
	const char *end = p + len, *line = p, *start = p, *nl;
	struct sse_event e = { 0 };

	while (c->fd >= 0 && line < end && (nl = memchr(line, '\n', (size_t)(end - line))) != NULL) {
		size_t n = (size_t)(nl - line);

		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0) {
			sse__dispatch(c, &e);
			memset(&e, 0, sizeof(e));
			start = nl + 1;
		} else {
			sse__line(&e, line, n);
		}
		line = nl + 1;
	}
	return (size_t)(start - p);
}

size_t
sse_input(struct conn *c, char *p, size_t len)
{
	size_t off = 0;

	if (!c->sse_open) {
		long k;

		if (c->state != C_JOINING) {
			/* Bytes before the request: chatd answers none. */
			sse__loud(c, "bytes before the request", p, len);
			conn_abandon(c, "sse_unexpected");
			return 0;
		}
		k = sse__head(c, p, len);
		if (k <= 0)
			return 0;
		off = (size_t)k;
	}
	return off + sse__events(c, p + off, len - off);
}
