/* libFuzzer target: the RFC 6455 frame reader (src/net/ws_frame.c) and
 * the UTF-8 validator under it (src/lib/utf8.c).
 *
 * Input: byte 0 picks max_message (low 3 bits) and the event after which
 * the caller stops the reader (high 5 bits, 0: never); byte 1 picks how the
 * stream is cut (low 2 bits: whole pieces of 1 byte, 1-16, 1-512 or
 * 1-8192) and seeds the sizes; the rest is the stream from the client.
 *
 * Invariants checked on every input:
 *   - fed whole and fed in pieces, the stream gives the same events with
 *     the same data (a hash of them), the same result and, when the
 *     stream was read to its end, the same frame and message bytes held;
 *   - messages are text or binary, at most max_message bytes, text valid
 *     UTF-8; ping and pong at most 125 bytes; a close code valid on the
 *     wire (or 1005 with no reason) and a UTF-8 reason; a fail code 1002,
 *     1007 or 1009 with a reason;
 *   - no event after close or fail, or after an event returned -1, and
 *     wsframe_read returns -1 from then on;
 *   - the reader never holds more than a frame and a message;
 *   - utf8_valid agrees with a plain decoder, and utf8_step resumed at any
 *     point gives the state of the whole;
 *   - a close frame written by wsframe_close, masked, reads back as the
 *     same code and a prefix of the reason.
 * Every piece is copied into a buffer of its own size, so ASan sees a read
 * past it; the reader is freed each time, so leaks show up too. */
#include "lib/utf8.h"
#include "net/ws_frame.h"
#include "../unit/ref_utf8.h"
#include "fuzz_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz_ws_frame: invariant failed: %s (%s:%d)\n", \
		    #cond, __FILE__, __LINE__); \
		abort(); \
	} \
} while (0)

static const uint64_t max_messages[8] = {
	0, 1, 125, 126, 1000, 65535, 65536, 1u << 20
};

struct run {
	uint64_t max;
	uint64_t hash;		/* of every event and its data, in order */
	unsigned events;
	unsigned stop_at;	/* return -1 from this event (1-based); 0: never */
	int ended;		/* close or fail reported, or an event returned -1 */
	int close_code;		/* of the last close event */
	size_t close_len;
};

static void
mix(struct run *run, const void *p, size_t n)
{
	fuzz_mix(&run->hash, p, n);
}

static int
event(struct run *run, int tag, int code, const void *p, size_t n)
{
	CHECK(!run->ended);
	CHECK(n == 0 || p != NULL);
	mix(run, &tag, sizeof(tag));
	mix(run, &code, sizeof(code));
	mix(run, &n, sizeof(n));
	mix(run, p, n);
	run->events++;
	if (run->stop_at != 0 && run->events == run->stop_at) {
		run->ended = 1;
		return -1;
	}
	return 0;
}

static int
on_message(void *ctx, int op, unsigned char *data, size_t len)
{
	struct run *run = ctx;

	CHECK(op == WSFRAME_TEXT || op == WSFRAME_BINARY);
	CHECK(len <= run->max);
	if (op == WSFRAME_TEXT)
		CHECK(utf8_valid((const char *)data, len));
	return event(run, 'M', op, data, len);
}

static int
on_ping(void *ctx, const unsigned char *data, size_t len)
{
	CHECK(len <= WSFRAME_CONTROL_MAX);
	return event(ctx, 'P', 0, data, len);
}

static int
on_pong(void *ctx, const unsigned char *data, size_t len)
{
	CHECK(len <= WSFRAME_CONTROL_MAX);
	return event(ctx, 'O', 0, data, len);
}

static int
on_close(void *ctx, int code, const char *reason, size_t len)
{
	struct run *run = ctx;
	int rc;

	if (code == WSFRAME_CLOSE_NO_STATUS)
		CHECK(len == 0);
	else
		CHECK(wsframe_close_code_valid(code));
	CHECK(len <= WSFRAME_CONTROL_MAX - 2);
	CHECK(utf8_valid(reason, len));
	rc = event(run, 'C', code, reason, len);
	run->ended = 1;
	run->close_code = code;
	run->close_len = len;
	return rc;
}

static int
on_fail(void *ctx, int code, const char *why)
{
	struct run *run = ctx;
	int rc;

	CHECK(code == WSFRAME_CLOSE_PROTOCOL || code == WSFRAME_CLOSE_BAD_DATA ||
	    code == WSFRAME_CLOSE_TOO_BIG);
	CHECK(why != NULL && why[0] != '\0');
	rc = event(run, 'F', code, why, strlen(why));
	run->ended = 1;
	return rc;
}

static const struct wsframe_events events = { on_message, on_ping, on_pong, on_close, on_fail };

struct result {
	int rc;
	uint32_t len, msglen;
};

/* Feeds s[0..n) in pieces whose sizes come from seed (size_max 0: whole). */
static struct result
feed(struct run *run, const uint8_t *s, size_t n, size_t size_max, uint32_t seed)
{
	/* A frame (header, and payload up to the limit or 125) and a message. */
	uint64_t frame_max = run->max > WSFRAME_CONTROL_MAX ? run->max : WSFRAME_CONTROL_MAX;
	uint64_t held_max = WSFRAME_HEADER_MAX + frame_max + run->max;
	struct wsframe_reader r;
	struct result res = { 0, 0, 0 };
	size_t off = 0;

	wsframe_reader_init(&r, run->max);
	while (off < n) {
		size_t piece = n - off;
		unsigned char *copy;

		if (size_max > 0) {
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			if (piece > 1 + seed % size_max)
				piece = 1 + seed % size_max;
		}
		copy = malloc(piece);
		CHECK(copy != NULL);
		memcpy(copy, s + off, piece);
		res.rc = wsframe_read(&r, copy, piece, &events, run);
		free(copy);
		off += piece;
		CHECK(wsframe_reader_held(&r) <= held_max);
		CHECK(r.msglen <= run->max);
		if (res.rc < 0)
			break;
		CHECK(res.rc == 0);
		CHECK(!run->ended);
	}
	if (res.rc < 0) {
		unsigned char x = 0x81;
		unsigned before = run->events;

		CHECK(r.done);
		CHECK(run->ended);
		CHECK(wsframe_read(&r, &x, 1, &events, run) == -1);
		CHECK(run->events == before);
	}
	res.len = r.len;
	res.msglen = r.msglen;
	wsframe_reader_free(&r);
	CHECK(wsframe_reader_held(&r) == 0);
	return res;
}


static void
check_utf8(const uint8_t *s, size_t n, size_t cut)
{
	size_t bad = 0, bad2 = 0;
	uint32_t whole = utf8_step(UTF8_ACCEPT, s, n, &bad);
	uint32_t st;

	CHECK((whole == UTF8_ACCEPT) == ref_valid(s, n));
	CHECK(utf8_valid((const char *)s, n) == (whole == UTF8_ACCEPT));
	if (whole == UTF8_REJECT) {
		/* Stopped at the first bad byte: everything before it was fine. */
		CHECK(bad < n);
		CHECK(utf8_step(UTF8_ACCEPT, s, bad, NULL) != UTF8_REJECT);
	}
	cut = n > 0 ? cut % (n + 1) : 0;
	st = utf8_step(UTF8_ACCEPT, s, cut, &bad2);
	if (st == UTF8_REJECT) {
		CHECK(whole == UTF8_REJECT && bad2 == bad);
		return;
	}
	st = utf8_step(st, s + cut, n - cut, &bad2);
	CHECK(st == whole);
	if (st == UTF8_REJECT)
		CHECK(cut + bad2 == bad);
}

/* wsframe_close's frame, masked as a client would send it, reads back. */
static void
check_close_round_trip(const uint8_t *s, size_t n, uint8_t pick)
{
	static const int codes[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
	    1011, 1012, 1013, 1014, 3000, 4000, 4999, 0 };
	static const unsigned char key[4] = { 0xa5, 0x01, 0x7e, 0xc3 };
	int code = codes[pick % (sizeof(codes) / sizeof(codes[0]))];
	char reason[256];
	unsigned char out[2 + WSFRAME_CONTROL_MAX], client[4 + 2 + WSFRAME_CONTROL_MAX];
	size_t len = n < sizeof(reason) - 1 ? n : sizeof(reason) - 1, w, body;
	struct run run = { .max = 100 };

	memcpy(reason, s, len);
	reason[len] = '\0';
	len = strlen(reason);
	if (!utf8_valid(reason, len))
		return;
	w = wsframe_close(out, code, reason);
	CHECK(w >= 2 && w <= 2 + WSFRAME_CONTROL_MAX);
	CHECK(out[0] == 0x88 && out[1] == w - 2);
	body = w - 2;
	client[0] = out[0];
	client[1] = out[1] | 0x80;
	memcpy(client + 2, key, 4);
	for (size_t i = 0; i < body; i++)
		client[6 + i] = out[2 + i] ^ key[i & 3];
	CHECK(feed(&run, client, 6 + body, 0, 1).rc == -1);
	CHECK(run.events == 1);
	if (code == 0) {
		CHECK(run.close_code == WSFRAME_CLOSE_NO_STATUS);
		return;
	}
	CHECK(run.close_code == code);
	CHECK(run.close_len == body - 2);
	CHECK(memcmp(out + 4, reason, body - 2) == 0);
	CHECK(len <= WSFRAME_CONTROL_MAX - 2 ? run.close_len == len : run.close_len + 3 >= WSFRAME_CONTROL_MAX - 2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t size_maxes[4] = { 1, 16, 512, 8192 };
	struct run whole, cut;
	struct result a, b;
	const uint8_t *s;
	size_t n;

	if (size < 2)
		return 0;
	s = data + 2;
	n = size - 2;
	memset(&whole, 0, sizeof(whole));
	whole.max = max_messages[data[0] & 7];
	whole.stop_at = data[0] >> 3;
	cut = whole;

	a = feed(&whole, s, n, 0, 0);
	b = feed(&cut, s, n, size_maxes[data[1] & 3], 0x9e3779b9u ^ data[1]);
	CHECK(a.rc == b.rc);
	CHECK(whole.events == cut.events);
	CHECK(whole.hash == cut.hash);
	CHECK(whole.ended == cut.ended);
	/* What is left over after a failure depends on where the pieces
	 * ended; after a stream read to its end, it does not. */
	if (a.rc == 0)
		CHECK(a.len == b.len && a.msglen == b.msglen);

	check_utf8(s, n, (size_t)data[1] * 31 + data[0]);
	check_close_round_trip(s, n, data[0] ^ data[1]);
	return 0;
}
