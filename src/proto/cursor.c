#include "proto/cursor.h"

#include <string.h>

#define CURSOR_SEQ_MAX (1LL << 62)

/* text[0..len) as an id into buf: 0 ok. */
static int
cursor__id(const char *text, size_t len, char *buf)
{
	if (len == 0 || len > UTIL_ID_MAX)
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	return util_valid_id(buf) ? 0 : -1;
}

int
cursor_rooms(const char *text, size_t len, struct cursor_entry *out, int max)
{
	const char *p = text, *end = text + len;
	int n = 0;

	if (len == 0)
		return -1;
	while (p <= end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;

		if (n == max || cursor__id(p, (size_t)(stop - p), out[n].room) != 0)
			return -1;
		for (int i = 0; i < n; i++)
			if (strcmp(out[i].room, out[n].room) == 0)
				return -1;
		out[n++].seq = -1;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return n;
}

int
cursor_parse(const char *text, size_t len, struct cursor_entry *out, int n)
{
	const char *p = text, *end = text + len;
	char room[UTIL_ID_MAX + 1];

	if (len == 0)
		return 0;
	while (p <= end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		long long seq = 0;

		if (eq == NULL || cursor__id(p, (size_t)(eq - p), room) != 0 || eq + 1 == stop)
			return -1;
		for (const char *d = eq + 1; d < stop; d++) {
			if (*d < '0' || *d > '9' || seq > CURSOR_SEQ_MAX / 10)
				return -1;
			seq = seq * 10 + (*d - '0');
		}
		if (seq > CURSOR_SEQ_MAX)
			return -1;
		for (int i = 0; i < n; i++)
			if (strcmp(out[i].room, room) == 0)
				out[i].seq = seq;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}
