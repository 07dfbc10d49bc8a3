#ifndef CHATD_CURSOR_H
#define CHATD_CURSOR_H

#include <stddef.h>

#include "lib/util.h"

/*
 * A room event stream's arguments (GET /api/events, docs/protocol.md
 * section 9): its rooms, "a,b,c", and its cursor, "a=12,b=40", the
 * Last-Event-ID it gave the client: each room's last seq sent. Pure, so
 * the fuzzer drives exactly what the server parses.
 */

struct cursor_entry {
	char room[UTIL_ID_MAX + 1];
	long long seq;		/* -1: not in the cursor */
};

/* Room ids separated by commas (each valid, each once): their count, at
 * most max, into out; -1 when malformed, empty, or more than max. */
int cursor_rooms(const char *text, size_t len, struct cursor_entry *out, int max);
/* "room=seq" pairs separated by commas (a seq 0 or more, below 2^62): the
 * seq of each room of out[0..n) found there is set; rooms of the cursor
 * not in out are ignored (the client asked for fewer). 0 ok, -1 malformed. */
int cursor_parse(const char *text, size_t len, struct cursor_entry *out, int n);

#endif
