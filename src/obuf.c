#include "obuf.h"
#include "util.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct obuf *
obuf_new(const char *payload, size_t len, int64_t seq)
{
	struct obuf *b = xmalloc(sizeof(*b) + LWS_PRE + len + 1);

	b->refs = 1;
	b->len = (uint32_t)len;
	b->seq = seq;
	b->room[0] = '\0';
	memcpy(b->data + LWS_PRE, payload, len);
	b->data[LWS_PRE + len] = '\0';
	return b;
}

struct obuf *
obuf_printf(const char *fmt, ...)
{
	va_list ap;
	int n;
	struct obuf *b;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	b = xmalloc(sizeof(*b) + LWS_PRE + (size_t)n + 1);
	b->refs = 1;
	b->len = (uint32_t)n;
	b->seq = 0;
	b->room[0] = '\0';
	va_start(ap, fmt);
	vsnprintf((char *)b->data + LWS_PRE, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return b;
}

void
obuf_ref(struct obuf *b)
{
	b->refs++;
}

void
obuf_unref(struct obuf *b)
{
	if (b != NULL && --b->refs == 0)
		free(b);
}

unsigned char *
obuf_payload(struct obuf *b)
{
	return b->data + LWS_PRE;
}

int64_t
obuf_scan_seq(const char *json, size_t len)
{
	static const char key[] = "\"seq\":";
	const char *end = json + len;
	const char *p = memmem(json, len, key, sizeof(key) - 1);
	int64_t v = 0;

	if (p == NULL)
		return 0;
	for (p += sizeof(key) - 1; p < end && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (*p - '0');
	return v;
}
