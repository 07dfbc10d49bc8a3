/* libFuzzer target: the room event stream's arguments (src/proto/cursor.c),
 * cursor_rooms() and cursor_parse(), on the input split at its first NUL
 * (rooms before, cursor after; no NUL: both are the input).
 *
 * Invariants: cursor_rooms() gives -1 or 1..max entries, each a valid id,
 * no two the same, every seq -1; when cursor_parse() accepts, it changed
 * only seqs, each -1 or 0..2^62, and a cursor written back from the result
 * ("room=seq,...") parses again to the same seqs. */
#include "proto/cursor.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz_cursor: invariant failed: %s (%s:%d)\n", \
		    #cond, __FILE__, __LINE__); \
		abort(); \
	} \
} while (0)

#define MAX 8

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data, *nul = memchr(data, '\0', size);
	size_t rl = nul ? (size_t)(nul - text) : size;
	const char *cur = nul ? nul + 1 : text;
	size_t cl = nul ? size - rl - 1 : size;
	struct cursor_entry e[MAX], again[MAX];
	char back[MAX * (UTIL_ID_MAX + 24) + 1];
	size_t bl = 0;
	int n;

	n = cursor_rooms(text, rl, e, MAX);
	CHECK(n == -1 || (n >= 1 && n <= MAX));
	if (n < 1)
		return 0;
	for (int i = 0; i < n; i++) {
		CHECK(util_valid_id(e[i].room) && e[i].seq == -1);
		for (int k = 0; k < i; k++)
			CHECK(strcmp(e[i].room, e[k].room) != 0);
	}
	memcpy(again, e, sizeof(e));
	/* A malformed cursor is refused whole (the request gets 400). */
	if (cursor_parse(cur, cl, e, n) != 0)
		return 0;
	for (int i = 0; i < n; i++) {
		CHECK(strcmp(again[i].room, e[i].room) == 0);
		CHECK(e[i].seq == -1 || (e[i].seq >= 0 && e[i].seq <= (1LL << 62)));
		if (e[i].seq >= 0)
			bl += (size_t)snprintf(back + bl, sizeof(back) - bl, "%s%s=%lld",
			    bl ? "," : "", e[i].room, e[i].seq);
	}
	CHECK(cursor_parse(back, bl, again, n) == 0);
	for (int i = 0; i < n; i++)
		CHECK(again[i].seq == e[i].seq);
	return 0;
}
