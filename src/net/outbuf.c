#include "net/outbuf.h"
#include "lib/util.h"
#include "net/ws_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBUF_HDR_MAX 10
#define OUTBUF_BATCH_MIN 4096

/* The header of an unmasked server text frame; returns its length. */
static size_t
outbuf__header(unsigned char *h, size_t len)
{
	return wsframe_header(h, WSFRAME_TEXT, len);
}

/* The frame at p (framed by outbuf__header): its payload and length. */
static const unsigned char *
outbuf__frame(const unsigned char *p, uint64_t *len)
{
	unsigned n = p[1] & 0x7f;

	if (n < 126) {
		*len = n;
		return p + 2;
	}
	if (n == 126) {
		*len = (uint64_t)p[2] << 8 | p[3];
		return p + 4;
	}
	*len = 0;
	for (int i = 0; i < 8; i++)
		*len = *len << 8 | p[2 + i];
	return p + 10;
}

static struct outbuf *
outbuf__alloc(size_t cap)
{
	struct outbuf *b;

	if (cap > UINT32_MAX)
		abort();	/* frames are bounded far below this */
	b = xmalloc(sizeof(*b) + cap);
	b->refs = 1;
	b->len = 0;
	b->cap = (uint32_t)cap;
	b->nframes = 0;
	b->seq = b->last_seq = b->ts_ms = 0;
	b->sse = NULL;
	b->parts = NULL;
	b->sse1 = NULL;
	b->raw = 0;
	b->bounded = 0;
	b->room[0] = '\0';
	return b;
}

static void
outbuf__put(struct outbuf *b, const char *payload, size_t len, int64_t seq)
{
	b->len += (uint32_t)outbuf__header(b->data + b->len, len);
	memcpy(b->data + b->len, payload, len);
	b->len += (uint32_t)len;
	b->nframes++;
	if (seq != 0) {
		if (b->seq == 0 || seq < b->seq)
			b->seq = seq;
		if (seq > b->last_seq)
			b->last_seq = seq;
	}
}

struct outbuf *
outbuf_raw(const char *bytes, size_t len)
{
	struct outbuf *b = outbuf__alloc(len);

	memcpy(b->data, bytes, len);
	b->len = (uint32_t)len;
	b->raw = 1;
	return b;
}

struct outbuf *
outbuf_frame(int opcode, const unsigned char *payload, size_t len)
{
	struct outbuf *b = outbuf__alloc(OUTBUF_HDR_MAX + len);

	b->len = (uint32_t)wsframe_header(b->data, opcode, len);
	memcpy(b->data + b->len, payload, len);
	b->len += (uint32_t)len;
	b->nframes = 1;
	return b;
}

struct outbuf *
outbuf_new(const char *payload, size_t len, int64_t seq)
{
	struct outbuf *b = outbuf__alloc(OUTBUF_HDR_MAX + len);

	outbuf__put(b, payload, len, seq);
	return b;
}

void
outbuf_append(struct outbuf **bp, const char *payload, size_t len, int64_t seq)
{
	struct outbuf *b = *bp;
	size_t need = OUTBUF_HDR_MAX + len;

	if (b == NULL) {
		b = outbuf__alloc(need > OUTBUF_BATCH_MIN ? need : OUTBUF_BATCH_MIN);
	} else if (b->cap - b->len < need) {
		size_t cap = (size_t)b->cap * 2;

		if (cap < (size_t)b->len + need)
			cap = (size_t)b->len + need;
		if (cap > UINT32_MAX)
			abort();
		b = xrealloc(b, sizeof(*b) + cap);
		b->cap = (uint32_t)cap;
	}
	outbuf__put(b, payload, len, seq);
	if (seq != 0 && b->ts_ms == 0)
		b->ts_ms = outbuf_scan_ts(payload, len);
	*bp = b;
}

struct outbuf *
outbuf_after(const struct outbuf *b, int64_t after_seq)
{
	struct outbuf *out = NULL;
	const unsigned char *p = b->data, *end = b->data + b->len;

	while (p < end) {
		uint64_t len;
		const unsigned char *payload = outbuf__frame(p, &len);
		int64_t seq = outbuf_scan_seq((const char *)payload, (size_t)len);

		if (seq == 0 || seq > after_seq) {
			if (out == NULL) {
				out = outbuf__alloc((size_t)(end - p));
				memcpy(out->room, b->room, sizeof(out->room));
			}
			outbuf__put(out, (const char *)payload, (size_t)len, seq);
		}
		p = payload + len;
	}
	return out;
}

void
outbuf_ref(struct outbuf *b)
{
	b->refs++;
}

void
outbuf_unref(struct outbuf *b)
{
	if (b != NULL && --b->refs == 0) {
		outbuf_unref(b->sse);
		outbuf_unref(b->sse1);
		for (uint32_t i = 0; b->parts != NULL && i < b->nframes; i++)
			outbuf_unref(b->parts[i]);
		free(b->parts);
		free(b);
	}
}

/* The "type" of an event JSON text, else "message"; *n its length. */
static const char *
outbuf__type(const unsigned char *p, size_t len, size_t *n)
{
	static const char key[] = "\"type\":";
	const char *end = (const char *)p + len, *t, *q;

	/* In a JSON string every quote is escaped, so the key is never found
	 * inside one; PostgreSQL's jsonb text puts it last, after a space. */
	t = memmem(p, len, key, sizeof(key) - 1);
	if (t != NULL) {
		for (t += sizeof(key) - 1; t < end && *t == ' '; t++)
			;
		if (t < end && *t == '"' && (q = memchr(t + 1, '"', (size_t)(end - t - 1))) != NULL &&
		    q > t + 1) {
			*n = (size_t)(q - t - 1);
			return t + 1;
		}
	}
	*n = 7;
	return "message";
}

struct outbuf *
outbuf_as_sse(struct outbuf *b)
{
	static const char ev[] = "event: ", da[] = "\ndata: ", end[] = "\n\n";
	const unsigned char *p, *stop = b->data + b->len;
	struct outbuf *s;
	size_t need = 0, tn;

	if (b->raw)
		return b;
	if (b->sse != NULL)
		return b->sse;
	for (p = b->data; p < stop;) {
		uint64_t len;
		const unsigned char *payload = outbuf__frame(p, &len);

		outbuf__type(payload, (size_t)len, &tn);
		need += sizeof(ev) + tn + sizeof(da) + (size_t)len + sizeof(end);
		p = payload + len;
	}
	s = outbuf__alloc(need);
	for (p = b->data; p < stop;) {
		uint64_t len;
		const unsigned char *payload = outbuf__frame(p, &len);
		const char *t = outbuf__type(payload, (size_t)len, &tn);

		memcpy(s->data + s->len, ev, sizeof(ev) - 1);
		s->len += sizeof(ev) - 1;
		memcpy(s->data + s->len, t, tn);
		s->len += (uint32_t)tn;
		memcpy(s->data + s->len, da, sizeof(da) - 1);
		s->len += sizeof(da) - 1;
		memcpy(s->data + s->len, payload, (size_t)len);
		s->len += (uint32_t)len;
		memcpy(s->data + s->len, end, sizeof(end) - 1);
		s->len += sizeof(end) - 1;
		p = payload + len;
	}
	s->raw = 1;
	s->nframes = b->nframes;
	s->seq = b->seq;
	s->last_seq = b->last_seq;
	s->ts_ms = b->ts_ms;
	memcpy(s->room, b->room, sizeof(s->room));
	b->sse = s;
	return s;
}

/* The first unsigned number after key. A body is a JSON string, whose
 * quotes are escaped: the key cannot occur inside it. */
static int64_t
outbuf__scan(const char *json, size_t len, const char *key, size_t klen)
{
	const char *end = json + len;
	const char *p = memmem(json, len, key, klen);
	int64_t v = 0;

	if (p == NULL)
		return 0;
	/* PostgreSQL's jsonb text has a space after the colon. */
	for (p += klen; p < end && *p == ' '; p++)
		;
	for (; p < end && *p >= '0' && *p <= '9' && v < INT64_MAX / 10 - 9; p++)
		v = v * 10 + (*p - '0');
	return v;
}

int64_t
outbuf_scan_seq(const char *json, size_t len)
{
	static const char key[] = "\"seq\":";

	return outbuf__scan(json, len, key, sizeof(key) - 1);
}

int64_t
outbuf_scan_ts(const char *json, size_t len)
{
	static const char key[] = "\"ts\":";

	return outbuf__scan(json, len, key, sizeof(key) - 1);
}

struct outbuf **
outbuf_sse_events(struct outbuf *b, uint32_t *n)
{
	static const char ev[] = "event: ", da[] = "\ndata: ";
	const unsigned char *p = b->data, *stop = b->data + b->len;
	uint32_t i = 0;

	*n = b->nframes;
	if (b->parts != NULL)
		return b->parts;
	b->parts = xcalloc(b->nframes ? b->nframes : 1, sizeof(*b->parts));
	for (; p < stop && i < b->nframes; i++) {
		uint64_t len;
		const unsigned char *payload = outbuf__frame(p, &len);
		size_t tn;
		const char *t = outbuf__type(payload, (size_t)len, &tn);
		struct outbuf *e = outbuf__alloc(sizeof(ev) + tn + sizeof(da) + (size_t)len + 1);

		memcpy(e->data, ev, sizeof(ev) - 1);
		e->len = sizeof(ev) - 1;
		memcpy(e->data + e->len, t, tn);
		e->len += (uint32_t)tn;
		memcpy(e->data + e->len, da, sizeof(da) - 1);
		e->len += sizeof(da) - 1;
		memcpy(e->data + e->len, payload, (size_t)len);
		e->len += (uint32_t)len;
		e->data[e->len++] = '\n';
		e->raw = 1;
		e->nframes = 1;
		e->seq = e->last_seq = outbuf_scan_seq((const char *)payload, (size_t)len);
		memcpy(e->room, b->room, sizeof(e->room));
		b->parts[i] = e;
		p = payload + len;
	}
	return b->parts;
}

struct outbuf *
outbuf_without_typing(const struct outbuf *b, const char *user)
{
	static const char typing[] = "{\"type\":\"typing:";
	char key[UTIL_ID_MAX + 12];
	const unsigned char *p = b->data, *end = b->data + b->len;
	struct outbuf *out = NULL;
	int klen = snprintf(key, sizeof(key), "\"user\":\"%s\"", user);

	while (p < end) {
		uint64_t len;
		const unsigned char *payload = outbuf__frame(p, &len);
		int64_t seq = outbuf_scan_seq((const char *)payload, (size_t)len);

		if (!(len > sizeof(typing) - 1 && memcmp(payload, typing, sizeof(typing) - 1) == 0 &&
		    klen > 0 && memmem(payload, (size_t)len, key, (size_t)klen) != NULL)) {
			if (out == NULL) {
				out = outbuf__alloc((size_t)(end - p));
				memcpy(out->room, b->room, sizeof(out->room));
			}
			outbuf__put(out, (const char *)payload, (size_t)len, seq);
		}
		p = payload + len;
	}
	return out;
}

struct outbuf *
outbuf_sse_one_room(struct outbuf *b)
{
	uint32_t n;
	struct outbuf **parts;
	size_t need = 0, rl = strlen(b->room);
	struct outbuf *s;

	if (b->sse1 != NULL)
		return b->sse1;
	parts = outbuf_sse_events(b, &n);
	for (uint32_t i = 0; i < n; i++)
		need += parts[i]->len + rl + 32;
	s = outbuf__alloc(need ? need : 1);
	for (uint32_t i = 0; i < n; i++) {
		memcpy(s->data + s->len, parts[i]->data, parts[i]->len);
		s->len += parts[i]->len;
		s->len += (uint32_t)snprintf((char *)s->data + s->len, need - s->len,
		    "id: %s=%lld\n\n", b->room, (long long)parts[i]->seq);
	}
	s->raw = 1;
	s->nframes = b->nframes;
	s->seq = b->seq;
	s->last_seq = b->last_seq;
	s->ts_ms = b->ts_ms;
	memcpy(s->room, b->room, sizeof(s->room));
	b->sse1 = s;
	return s;
}
