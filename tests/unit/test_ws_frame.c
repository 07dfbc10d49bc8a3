/* Unit tests of src/net/ws_frame.c: the RFC 6455 frame reader, case by
 * case, and every stream fed whole, a byte at a time, split at every point
 * and in random pieces, which must all give the same events. */
#include "net/ws_frame.c"

#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10
#define STR(s) (s), (sizeof(s) - 1)

static const unsigned char KEY[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* A byte stream put together by the tests. */
struct bytes {
	unsigned char *p;
	size_t n;
};

static void
add(struct bytes *b, const void *p, size_t n)
{
	b->p = xrealloc(b->p, b->n + n + 1);
	if (n > 0)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void
bytes_free(struct bytes *b)
{
	free(b->p);
	b->p = NULL;
	b->n = 0;
}

/*
 * A client frame: first byte b0 (FIN, RSV, opcode), the length announced
 * in lenbytes extra bytes (0: the shortest form; 2 or 8: forced), masked
 * with KEY unless unmasked. Only the n bytes at payload follow, so a test
 * can announce more than it sends.
 */
static void
frame_x(struct bytes *b, int b0, int masked, int lenbytes, uint64_t announced,
    const void *payload, size_t n)
{
	unsigned char h[14];
	size_t hl = 2;
	unsigned char *p;

	if (lenbytes == 0)
		lenbytes = announced <= 125 ? 0 : announced <= 0xffff ? 2 : 8;
	h[0] = (unsigned char)b0;
	h[1] = masked ? 0x80 : 0;
	if (lenbytes == 0) {
		h[1] |= (unsigned char)announced;
	} else {
		h[1] |= lenbytes == 2 ? 126 : 127;
		for (int i = lenbytes - 1; i >= 0; i--)
			h[hl++] = (unsigned char)(announced >> (8 * i));
	}
	if (masked) {
		memcpy(h + hl, KEY, 4);
		hl += 4;
	}
	add(b, h, hl);
	add(b, payload, n);
	p = b->p + b->n - n;
	for (size_t i = 0; masked && i < n; i++)
		p[i] ^= KEY[i & 3];
}

static void
frame(struct bytes *b, int b0, const void *payload, size_t n)
{
	frame_x(b, b0, 1, 0, n, payload, n);
}

/* A close frame from a client: code (no body when -1) and reason. */
static void
close_frame(struct bytes *b, int code, const void *reason, size_t n)
{
	unsigned char body[200];

	if (code < 0) {
		frame(b, FIN | WSFRAME_CLOSE, NULL, 0);
		return;
	}
	body[0] = (unsigned char)(code >> 8);
	body[1] = (unsigned char)code;
	if (n > 0)
		memcpy(body + 2, reason, n);
	frame(b, FIN | WSFRAME_CLOSE, body, n + 2);
}

/* What the events said, as text: T5:hello; B2:0102; P0:; O1:41; C1000:bye;
 * F1002; and at the end "!" when wsframe_read returned -1, or ~len/msglen
 * when the reader holds part of a frame or message. */
struct rec {
	char log[2048];
	size_t n;
	uint64_t max;
	int events;
	int stop_at;		/* return -1 from this event (1-based); 0: never */
	int ended;		/* close or fail seen */
	unsigned char *data;	/* of the last message */
	size_t len;
	const unsigned char *lo, *hi;	/* the caller's buffer, when set */
	int inside;		/* the last message's data was in it */
};

static void
say(struct rec *rec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(struct rec *rec, const char *fmt, ...)
{
	va_list ap;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(rec->log + rec->n, sizeof(rec->log) - rec->n, fmt, ap);
	va_end(ap);
	if (w > 0)
		rec->n += (size_t)w < sizeof(rec->log) - rec->n ? (size_t)w : sizeof(rec->log) - 1 - rec->n;
}

static uint32_t
fnv(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void
say_bytes(struct rec *rec, const unsigned char *p, size_t n, int text)
{
	if (n > 40) {
		say(rec, "#%08x", fnv(p, n));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (text && p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			say(rec, "%c", p[i]);
		else
			say(rec, text ? "\\x%02x" : "%02x", p[i]);
	}
}

static int
rec_event(struct rec *rec)
{
	CHECK(!rec->ended);
	rec->events++;
	return rec->stop_at != 0 && rec->events == rec->stop_at ? -1 : 0;
}

static int
on_message(void *ctx, int op, unsigned char *data, size_t len)
{
	struct rec *rec = ctx;

	CHECK(op == WSFRAME_TEXT || op == WSFRAME_BINARY);
	CHECK(len <= rec->max);
	CHECK(data != NULL);
	if (op == WSFRAME_TEXT)
		CHECK(utf8_valid((const char *)data, len));
	rec->data = data;
	rec->len = len;
	rec->inside = (uintptr_t)data >= (uintptr_t)rec->lo && (uintptr_t)data < (uintptr_t)rec->hi;
	say(rec, "%c%zu:", op == WSFRAME_TEXT ? 'T' : 'B', len);
	say_bytes(rec, data, len, op == WSFRAME_TEXT);
	say(rec, ";");
	return rec_event(rec);
}

static int
on_control(struct rec *rec, char c, const unsigned char *data, size_t len)
{
	CHECK(len <= WSFRAME_CONTROL_MAX);
	say(rec, "%c%zu:", c, len);
	say_bytes(rec, data, len, 0);
	say(rec, ";");
	return rec_event(rec);
}

static int
on_ping(void *ctx, const unsigned char *data, size_t len)
{
	return on_control(ctx, 'P', data, len);
}

static int
on_pong(void *ctx, const unsigned char *data, size_t len)
{
	return on_control(ctx, 'O', data, len);
}

static int
on_close(void *ctx, int code, const char *reason, size_t len)
{
	struct rec *rec = ctx;
	int rc;

	CHECK(code == WSFRAME_CLOSE_NO_STATUS ? len == 0 : wsframe_close_code_valid(code));
	CHECK(utf8_valid(reason, len));
	say(rec, "C%d:", code);
	say_bytes(rec, (const unsigned char *)reason, len, 1);
	say(rec, ";");
	rc = rec_event(rec);
	rec->ended = 1;
	return rc;
}

static int
on_fail(void *ctx, int code, const char *why)
{
	struct rec *rec = ctx;
	int rc;

	CHECK(code == 1002 || code == 1007 || code == 1009);
	CHECK(why != NULL && why[0] != '\0');
	say(rec, "F%d;", code);
	rc = rec_event(rec);
	rec->ended = 1;
	return rc;
}

static const struct wsframe_events events = { on_message, on_ping, on_pong, on_close, on_fail };

/*
 * Feeds s[0..n) to a new reader in pieces of sizes[0], sizes[1]... (the
 * last size repeats; NULL: all at once), each piece in a buffer of its own
 * exact size so that ASan sees any read past it. Leaves the log in rec.
 */
static void
run(struct rec *rec, uint64_t max, const unsigned char *s, size_t n,
    const size_t *sizes, size_t nsizes)
{
	struct wsframe_reader r;
	size_t off = 0, k = 0;
	int rc = 0;

	rec->n = 0;
	rec->log[0] = '\0';
	rec->events = rec->ended = 0;
	rec->max = max;
	wsframe_reader_init(&r, max);
	while (off < n && rc == 0) {
		size_t piece = sizes == NULL ? n : sizes[k < nsizes ? k : nsizes - 1];
		unsigned char *copy;

		k++;
		if (piece > n - off)
			piece = n - off;
		copy = xmalloc(piece);
		memcpy(copy, s + off, piece);
		rc = wsframe_read(&r, copy, piece, &events, rec);
		free(copy);
		off += piece;
	}
	if (rc < 0) {
		unsigned char x = 0x81;

		CHECK(r.done);
		/* Nothing more is read. */
		CHECK_INT(wsframe_read(&r, &x, 1, &events, rec), -1);
		say(rec, "!");
	} else if (r.len != 0 || r.msglen != 0 || r.msgop != 0) {
		say(rec, "~%u/%u", r.len, r.msglen);
	} else {
		CHECK_INT(wsframe_reader_held(&r), 0);
	}
	if (r.len == 0)
		CHECK(r.buf == NULL && r.cap == 0);
	if (r.msgop == 0)
		CHECK(r.msg == NULL && r.msgcap == 0);
	wsframe_reader_free(&r);
}

static uint32_t rng_state = 2463534242u;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/*
 * The stream must give want fed whole, a byte at a time, split in two at
 * every point (in three too when short), and in random pieces.
 */
static void
expect_at(int line, uint64_t max, const struct bytes *s, const char *want)
{
	struct rec rec = { .stop_at = 0 };
	size_t sizes[64];
	int before = unit_checks_failed;

	run(&rec, max, s->p, s->n, NULL, 0);
	CHECK_STR(rec.log, want);
	sizes[0] = 1;
	run(&rec, max, s->p, s->n, sizes, 1);
	CHECK_STR(rec.log, want);
	for (size_t cut = 1; cut < s->n && s->n <= 4096; cut++) {
		sizes[0] = cut;
		sizes[1] = s->n - cut;
		run(&rec, max, s->p, s->n, sizes, 2);
		if (strcmp(rec.log, want) != 0) {
			fprintf(stderr, "split at %zu: ", cut);
			CHECK_STR(rec.log, want);
			break;
		}
		for (size_t cut2 = 1; s->n <= 64 && cut + cut2 < s->n; cut2++) {
			sizes[1] = cut2;
			sizes[2] = s->n;
			run(&rec, max, s->p, s->n, sizes, 3);
			if (strcmp(rec.log, want) != 0) {
				fprintf(stderr, "split at %zu, %zu: ", cut, cut + cut2);
				CHECK_STR(rec.log, want);
				break;
			}
		}
	}
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < 64; i++)
			sizes[i] = 1 + rng() % (round < 10 ? 16 : 4096);
		run(&rec, max, s->p, s->n, sizes, 64);
		if (strcmp(rec.log, want) != 0) {
			fprintf(stderr, "random pieces, round %d: ", round);
			CHECK_STR(rec.log, want);
			break;
		}
	}
	if (unit_checks_failed != before)
		fprintf(stderr, "  (expected at line %d)\n", line);
}

#define EXPECT(max, s, want) expect_at(__LINE__, (max), (s), (want))

/* ---- the rules, one by one ---- */

static void
test_masked_and_unmasked(void)
{
	struct bytes s = { 0 };

	frame(&s, FIN | WSFRAME_TEXT, STR("hello"));
	EXPECT(1000, &s, "T5:hello;");
	bytes_free(&s);

	frame_x(&s, FIN | WSFRAME_TEXT, 0, 0, 5, STR("hello"));
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);

	frame_x(&s, FIN | WSFRAME_PING, 0, 0, 0, NULL, 0);
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);

	frame(&s, FIN | WSFRAME_BINARY, STR("\x00\x01\xff"));
	frame(&s, FIN | WSFRAME_TEXT, NULL, 0);
	EXPECT(1000, &s, "B3:0001ff;T0:;");
	bytes_free(&s);
}

static void
test_rsv_bits(void)
{
	static const int rsv[] = { RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3 };
	struct bytes s = { 0 };

	for (size_t i = 0; i < sizeof(rsv) / sizeof(rsv[0]); i++) {
		frame(&s, FIN | rsv[i] | WSFRAME_TEXT, STR("x"));
		EXPECT(1000, &s, "F1002;!");
		bytes_free(&s);
		frame(&s, FIN | rsv[i] | WSFRAME_PING, NULL, 0);
		EXPECT(1000, &s, "F1002;!");
		bytes_free(&s);
	}
}

static void
test_reserved_opcodes(void)
{
	static const int ops[] = { 3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf };
	struct bytes s = { 0 };

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		frame(&s, FIN | ops[i], STR("x"));
		EXPECT(1000, &s, "F1002;!");
		bytes_free(&s);
		/* Also refused without FIN, and in the middle of a message. */
		frame(&s, WSFRAME_TEXT, STR("a"));
		frame(&s, ops[i], NULL, 0);
		EXPECT(1000, &s, "F1002;!");
		bytes_free(&s);
	}
}

static void
test_control_length(void)
{
	unsigned char big[126];
	struct bytes s = { 0 };
	char want[64];

	memset(big, 'p', sizeof(big));
	frame(&s, FIN | WSFRAME_PING, big, 125);
	frame(&s, FIN | WSFRAME_PONG, big, 125);
	snprintf(want, sizeof(want), "P125:#%08x;O125:#%08x;", fnv(big, 125), fnv(big, 125));
	EXPECT(10, &s, want);
	bytes_free(&s);

	frame(&s, FIN | WSFRAME_PING, big, 126);
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
	/* A control frame's length must fit the 7-bit field: 125 bytes in the
	 * 16-bit form is refused from the first two bytes. */
	frame_x(&s, FIN | WSFRAME_PONG, 1, 2, 125, big, 125);
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
	/* A close over 125 bytes, 64-bit form: refused from the first 2 bytes. */
	frame_x(&s, FIN | WSFRAME_CLOSE, 1, 8, 1000, NULL, 0);
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
}

static void
test_fragmented_control(void)
{
	static const int ops[] = { WSFRAME_PING, WSFRAME_PONG, WSFRAME_CLOSE };
	struct bytes s = { 0 };

	for (size_t i = 0; i < 3; i++) {
		frame(&s, ops[i], NULL, 0);
		EXPECT(1000, &s, "F1002;!");
		bytes_free(&s);
	}
}

static void
test_control_between_fragments(void)
{
	struct bytes s = { 0 };

	frame(&s, WSFRAME_TEXT, STR("Hel"));
	frame(&s, FIN | WSFRAME_PING, STR("1"));
	frame(&s, WSFRAME_CONT, STR("lo, "));
	frame(&s, FIN | WSFRAME_PONG, STR("2"));
	frame(&s, FIN | WSFRAME_PING, NULL, 0);
	frame(&s, FIN | WSFRAME_CONT, STR("world"));
	frame(&s, FIN | WSFRAME_BINARY, STR("\x01"));
	EXPECT(1000, &s, "P1:31;O1:32;P0:;T12:Hello, world;B1:01;");
	/* A close in the middle ends everything: the message is never given. */
	frame(&s, WSFRAME_BINARY, STR("ab"));
	close_frame(&s, 1000, NULL, 0);
	frame(&s, FIN | WSFRAME_CONT, STR("cd"));
	EXPECT(1000, &s, "P1:31;O1:32;P0:;T12:Hello, world;B1:01;C1000:;!");
	bytes_free(&s);
}

static void
test_fragment_order(void)
{
	struct bytes s = { 0 };

	frame(&s, FIN | WSFRAME_CONT, STR("x"));
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
	frame(&s, WSFRAME_CONT, STR("x"));
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
	/* A message ended: a continuation after it has nothing to continue. */
	frame(&s, WSFRAME_TEXT, STR("a"));
	frame(&s, FIN | WSFRAME_CONT, STR("b"));
	frame(&s, FIN | WSFRAME_CONT, STR("c"));
	EXPECT(1000, &s, "T2:ab;F1002;!");
	bytes_free(&s);

	frame(&s, WSFRAME_TEXT, STR("a"));
	frame(&s, FIN | WSFRAME_TEXT, STR("b"));
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
	frame(&s, WSFRAME_BINARY, STR("a"));
	frame(&s, WSFRAME_BINARY, STR("b"));
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
	frame(&s, WSFRAME_TEXT, STR("a"));
	frame(&s, FIN | WSFRAME_BINARY, STR("b"));
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);
}

static void
test_empty_fragments(void)
{
	struct bytes s = { 0 };

	frame(&s, WSFRAME_TEXT, NULL, 0);
	frame(&s, WSFRAME_CONT, NULL, 0);
	frame(&s, FIN | WSFRAME_CONT, NULL, 0);
	frame(&s, WSFRAME_BINARY, NULL, 0);
	frame(&s, FIN | WSFRAME_CONT, STR("z"));
	EXPECT(1000, &s, "T0:;B1:7a;");
	bytes_free(&s);
	/* A message in progress is held at the end of the stream. */
	frame(&s, WSFRAME_BINARY, STR("abc"));
	EXPECT(1000, &s, "~0/3");
	bytes_free(&s);
}

/* ---- close frames ---- */

static void
test_close_bodies(void)
{
	struct bytes s = { 0 };

	close_frame(&s, -1, NULL, 0);
	EXPECT(1000, &s, "C1005:;!");
	bytes_free(&s);

	frame(&s, FIN | WSFRAME_CLOSE, STR("\x03"));
	EXPECT(1000, &s, "F1002;!");
	bytes_free(&s);

	close_frame(&s, 1000, STR("bye"));
	EXPECT(1000, &s, "C1000:bye;!");
	bytes_free(&s);

	close_frame(&s, 1001, STR("caf\xc3\xa9"));
	EXPECT(1000, &s, "C1001:caf\\xc3\\xa9;!");
	bytes_free(&s);

	close_frame(&s, 1000, STR("caf\xc3"));
	EXPECT(1000, &s, "F1007;!");
	bytes_free(&s);
	close_frame(&s, 1000, STR("\xed\xa0\x80"));
	EXPECT(1000, &s, "F1007;!");
	bytes_free(&s);
}

static void
test_close_codes(void)
{
	static const int bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
	    2999, 5000, 65535 };
	static const int good[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
	    1012, 1013, 1014, 3000, 4000, 4999 };
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };
	char want[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!wsframe_close_code_valid(bad[i]));
		close_frame(&s, bad[i], STR("r"));
		EXPECT(1000, &s, "F1002;!");
		bytes_free(&s);
		/* A bad code fails before its reason is looked at. */
		close_frame(&s, bad[i], STR("\xff"));
		run(&rec, 1000, s.p, s.n, NULL, 0);
		CHECK_STR(rec.log, "F1002;!");
		bytes_free(&s);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK(wsframe_close_code_valid(good[i]));
		close_frame(&s, good[i], STR("why"));
		snprintf(want, sizeof(want), "C%d:why;!", good[i]);
		EXPECT(1000, &s, want);
		bytes_free(&s);
	}
}

/* The server answers a close with the same code: what the reader gives is
 * what wsframe_close writes. */
static void
test_close_echo(void)
{
	static const int codes[] = { 1000, 1001, 1012, 1013, 3000, 4999 };
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };
	unsigned char out[2 + 125];
	char want[32];
	size_t n;

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		close_frame(&s, codes[i], STR("going"));
		run(&rec, 1000, s.p, s.n, NULL, 0);
		snprintf(want, sizeof(want), "C%d:going;!", codes[i]);
		CHECK_STR(rec.log, want);
		n = wsframe_close(out, codes[i], "going");
		CHECK_INT(n, 2 + 2 + 5);
		CHECK_INT(out[0], 0x88);
		CHECK_INT(out[1], 7);
		CHECK_INT(out[2] << 8 | out[3], codes[i]);
		CHECK(memcmp(out + 4, "going", 5) == 0);
		/* Unmasked, the reply's body is the request's. */
		CHECK(s.n == n + 4);
		bytes_free(&s);
	}
}

/* ---- UTF-8 of text ---- */

static void
test_utf8_messages(void)
{
	static const struct {
		const char *s;
		size_t n;
		int ok;
	} cases[] = {
		{ STR("caf\xc3\xa9"), 1 },
		{ STR("\xf0\x9f\x98\x80"), 1 },
		{ STR("\xf4\x8f\xbf\xbf"), 1 },
		{ STR("\xc0\xaf"), 0 },			/* overlong '/' */
		{ STR("\xe0\x80\xaf"), 0 },
		{ STR("\xf0\x80\x80\xaf"), 0 },
		{ STR("\xed\xa0\x80"), 0 },		/* surrogates */
		{ STR("\xed\xbf\xbf"), 0 },
		{ STR("\xf4\x90\x80\x80"), 0 },		/* past U+10FFFF */
		{ STR("\xf5\x80\x80\x80"), 0 },
		{ STR("\xff"), 0 },
		{ STR("ab\xe2\x82"), 0 },		/* ends inside a character */
	};
	struct bytes s = { 0 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		frame(&s, FIN | WSFRAME_TEXT, cases[i].s, cases[i].n);
		if (cases[i].ok) {
			struct rec rec = { .stop_at = 0 };

			run(&rec, 1000, s.p, s.n, NULL, 0);
			CHECK(rec.log[0] == 'T');
		} else {
			EXPECT(1000, &s, "F1007;!");
		}
		bytes_free(&s);
		/* Binary is not looked at. */
		frame(&s, FIN | WSFRAME_BINARY, cases[i].s, cases[i].n);
		{
			struct rec rec = { .stop_at = 0 };

			run(&rec, 1000, s.p, s.n, NULL, 0);
			CHECK(rec.log[0] == 'B');
		}
		bytes_free(&s);
	}
}

/* A character split between fragments is fine; a message that ends inside
 * one is not; a bad byte in a later fragment fails before the end. */
static void
test_utf8_across_fragments(void)
{
	struct bytes s = { 0 };

	frame(&s, WSFRAME_TEXT, STR("caf\xc3"));
	frame(&s, WSFRAME_CONT, STR("\xa9 \xe2\x82"));
	frame(&s, FIN | WSFRAME_PING, STR("p"));
	frame(&s, FIN | WSFRAME_CONT, STR("\xac!"));
	EXPECT(1000, &s, "P1:70;T10:caf\\xc3\\xa9 \\xe2\\x82\\xac!;");
	bytes_free(&s);

	frame(&s, WSFRAME_TEXT, STR("a\xe2"));
	frame(&s, FIN | WSFRAME_CONT, NULL, 0);
	EXPECT(1000, &s, "F1007;!");
	bytes_free(&s);

	/* Mid-fragment: the failure comes with the bad fragment, not at the
	 * end of the message (which never arrives here). */
	frame(&s, WSFRAME_TEXT, STR("ok"));
	frame(&s, FIN | WSFRAME_PING, NULL, 0);
	frame(&s, WSFRAME_CONT, STR("a\xc0" "b"));
	EXPECT(1000, &s, "P0:;F1007;!");
	bytes_free(&s);
}

/* Fed a byte at a time, the failure comes with the bad byte, while the
 * frame is still incomplete. */
static void
test_utf8_fails_mid_frame(void)
{
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };
	struct wsframe_reader r;
	size_t at = 0;

	frame(&s, WSFRAME_TEXT, STR("good"));
	frame(&s, FIN | WSFRAME_CONT, STR("abc\xed\xa0xyz and more to come"));
	rec.max = 1000;
	wsframe_reader_init(&r, 1000);
	for (size_t i = 0; i < s.n; i++) {
		unsigned char b = s.p[i];

		if (wsframe_read(&r, &b, 1, &events, &rec) < 0) {
			at = i;
			break;
		}
		CHECK_INT(rec.events, 0);
	}
	/* frame 1: 6 + 4 bytes; frame 2: 6 header bytes, then "abc\xed\xa0". */
	CHECK_INT(at, 10 + 6 + 4);
	CHECK_STR(rec.log, "F1007;");
	CHECK(r.done);
	wsframe_reader_free(&r);

	/* The same frame delivered in two reads, the first ending just after
	 * the bad byte. */
	wsframe_reader_init(&r, 1000);
	memset(&rec, 0, sizeof(rec));
	rec.max = 1000;
	CHECK_INT(wsframe_read(&r, s.p, 10 + 6 + 5, &events, &rec), -1);
	CHECK_STR(rec.log, "F1007;");
	wsframe_reader_free(&r);
	bytes_free(&s);
}

/* ---- sizes ---- */

static void
test_max_message(void)
{
	unsigned char *big = xmalloc(70001);
	struct bytes s = { 0 };
	char want[64];

	memset(big, 'm', 70001);
	frame(&s, FIN | WSFRAME_TEXT, big, 100);
	snprintf(want, sizeof(want), "T100:#%08x;", fnv(big, 100));
	EXPECT(100, &s, want);
	bytes_free(&s);
	frame(&s, FIN | WSFRAME_TEXT, big, 101);
	EXPECT(100, &s, "F1009;!");
	bytes_free(&s);
	/* Decided from the header: the payload need not come. */
	frame_x(&s, FIN | WSFRAME_BINARY, 1, 0, 101, NULL, 0);
	EXPECT(100, &s, "F1009;!");
	bytes_free(&s);

	/* Fragments count together. */
	frame(&s, WSFRAME_BINARY, big, 60);
	frame(&s, FIN | WSFRAME_CONT, big, 40);
	want[0] = 'B';
	EXPECT(100, &s, want);
	bytes_free(&s);
	frame(&s, WSFRAME_BINARY, big, 60);
	frame_x(&s, FIN | WSFRAME_CONT, 1, 0, 41, NULL, 0);
	EXPECT(100, &s, "F1009;!");
	bytes_free(&s);
	/* Control frames are not messages. */
	frame(&s, FIN | WSFRAME_PING, big, 20);
	EXPECT(10, &s, "P20:6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d;");
	bytes_free(&s);

	/* 64-bit lengths, exactly at the limit and one past it. */
	frame(&s, FIN | WSFRAME_BINARY, big, 70000);
	snprintf(want, sizeof(want), "B70000:#%08x;", fnv(big, 70000));
	EXPECT(70000, &s, want);
	bytes_free(&s);
	frame(&s, FIN | WSFRAME_BINARY, big, 70001);
	EXPECT(70000, &s, "F1009;!");
	bytes_free(&s);
	free(big);

	frame_x(&s, FIN | WSFRAME_BINARY, 1, 8, 0, NULL, 0);
	EXPECT(0, &s, "B0:;");
	bytes_free(&s);
	frame(&s, FIN | WSFRAME_BINARY, STR("x"));
	EXPECT(0, &s, "F1009;!");
	bytes_free(&s);
}

static void
test_huge_lengths(void)
{
	struct bytes s = { 0 };

	/* The top bit of a 64-bit length is reserved (1002), whatever the limit. */
	frame_x(&s, FIN | WSFRAME_BINARY, 1, 8, 1ull << 63, NULL, 0);
	EXPECT(UINT64_MAX, &s, "F1002;!");
	bytes_free(&s);
	frame_x(&s, FIN | WSFRAME_TEXT, 1, 8, UINT64_MAX, NULL, 0);
	EXPECT(100, &s, "F1002;!");
	bytes_free(&s);
	/* Past what the reader can count: too big, even with no limit set. */
	frame_x(&s, FIN | WSFRAME_BINARY, 1, 8, 1ull << 32, NULL, 0);
	EXPECT(UINT64_MAX, &s, "F1009;!");
	bytes_free(&s);
	frame_x(&s, FIN | WSFRAME_BINARY, 1, 8, (1ull << 62) + 5, NULL, 0);
	EXPECT(UINT64_MAX, &s, "F1009;!");
	bytes_free(&s);
	/* A large announced length holds only what arrived. */
	frame_x(&s, FIN | WSFRAME_BINARY, 1, 8, 1u << 30, STR("abcd"));
	EXPECT(UINT64_MAX, &s, "~18/0");
	bytes_free(&s);
}

/* ---- the stream ---- */

static void
test_nothing_after_close_or_fail(void)
{
	struct bytes s = { 0 };

	frame(&s, FIN | WSFRAME_TEXT, STR("one"));
	close_frame(&s, 1000, STR("bye"));
	frame(&s, FIN | WSFRAME_TEXT, STR("two"));
	frame(&s, FIN | WSFRAME_PING, NULL, 0);
	EXPECT(1000, &s, "T3:one;C1000:bye;!");
	bytes_free(&s);

	frame(&s, FIN | WSFRAME_TEXT, STR("one"));
	frame_x(&s, FIN | WSFRAME_TEXT, 0, 0, 3, STR("two"));
	frame(&s, FIN | WSFRAME_TEXT, STR("three"));
	EXPECT(1000, &s, "T3:one;F1002;!");
	bytes_free(&s);

	/* Garbage after a close is not even parsed. */
	close_frame(&s, -1, NULL, 0);
	add(&s, STR("GET / HTTP/1.1\r\n"));
	EXPECT(1000, &s, "C1005:;!");
	bytes_free(&s);
}

/* An event that returns -1 stops the reader at once. */
static void
test_event_stops(void)
{
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };
	const char *want[] = { "P1:31;!", "P1:31;T2:ab;!", "P1:31;T2:ab;O0:;!", "P1:31;T2:ab;O0:;B1:63;!" };

	frame(&s, FIN | WSFRAME_PING, STR("1"));
	frame(&s, WSFRAME_TEXT, STR("a"));
	frame(&s, FIN | WSFRAME_CONT, STR("b"));
	frame(&s, FIN | WSFRAME_PONG, NULL, 0);
	frame(&s, FIN | WSFRAME_BINARY, STR("c"));
	frame(&s, FIN | WSFRAME_TEXT, STR("d"));
	for (int k = 1; k <= 4; k++) {
		size_t one = 1;

		rec.stop_at = k;
		run(&rec, 1000, s.p, s.n, NULL, 0);
		CHECK_STR(rec.log, want[k - 1]);
		run(&rec, 1000, s.p, s.n, &one, 1);
		CHECK_STR(rec.log, want[k - 1]);
	}
	bytes_free(&s);
}

/* NULL events are skipped; close and fail still stop. */
static void
test_null_events(void)
{
	const struct wsframe_events none = { NULL, NULL, NULL, NULL, NULL };
	struct wsframe_reader r;
	struct bytes s = { 0 };

	frame(&s, WSFRAME_TEXT, STR("a"));
	frame(&s, FIN | WSFRAME_PING, STR("1"));
	frame(&s, FIN | WSFRAME_CONT, STR("b"));
	close_frame(&s, 1000, NULL, 0);
	wsframe_reader_init(&r, 100);
	CHECK_INT(wsframe_read(&r, s.p, s.n, &none, NULL), -1);
	CHECK(r.done);
	wsframe_reader_free(&r);
	bytes_free(&s);
	frame_x(&s, FIN | WSFRAME_PING, 0, 0, 0, NULL, 0);
	wsframe_reader_init(&r, 100);
	CHECK_INT(wsframe_read(&r, s.p, s.n, &none, NULL), -1);
	CHECK(r.done);
	wsframe_reader_free(&r);
	bytes_free(&s);
}

/* A whole frame in the caller's buffer is unmasked there and handed over
 * without a copy; nothing is held afterwards. */
static void
test_in_place(void)
{
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };
	struct wsframe_reader r;

	frame(&s, FIN | WSFRAME_TEXT, STR("in place"));
	frame(&s, FIN | WSFRAME_BINARY, STR("second"));
	rec.max = 100;
	rec.lo = s.p;
	rec.hi = s.p + s.n;
	wsframe_reader_init(&r, 100);
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), 0);
	CHECK_STR(rec.log, "T8:in place;B6:7365636f6e64;");
	CHECK(rec.inside);
	CHECK(rec.data == s.p + 14 + 6);
	CHECK(memcmp(s.p + 6, "in place", 8) == 0);	/* unmasked in the buffer */
	CHECK_INT(wsframe_reader_held(&r), 0);
	CHECK(r.buf == NULL && r.msg == NULL);

	/* Incomplete: copied into the reader, then freed when complete. */
	memset(&rec, 0, sizeof(rec));
	rec.max = 100;
	bytes_free(&s);
	frame(&s, FIN | WSFRAME_TEXT, STR("split frame"));
	rec.lo = s.p;
	rec.hi = s.p + s.n;
	CHECK_INT(wsframe_read(&r, s.p, 9, &events, &rec), 0);
	CHECK_INT(rec.events, 0);
	CHECK_INT(r.len, 9);
	CHECK_INT(r.checked, 3);
	CHECK(wsframe_reader_held(&r) >= 9);
	CHECK_INT(wsframe_read(&r, s.p + 9, s.n - 9, &events, &rec), 0);
	CHECK_STR(rec.log, "T11:split frame;");
	CHECK(!rec.inside);
	CHECK_INT(wsframe_reader_held(&r), 0);

	/* Fragments are put together in msg, freed after delivery. */
	bytes_free(&s);
	frame(&s, WSFRAME_BINARY, STR("ab"));
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), 0);
	CHECK(r.msg != NULL && r.msglen == 2 && r.msgop == WSFRAME_BINARY);
	CHECK(wsframe_reader_held(&r) >= 2);
	bytes_free(&s);
	frame(&s, FIN | WSFRAME_CONT, STR("cd"));
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), 0);
	CHECK_STR(rec.log, "T11:split frame;B4:61626364;");
	CHECK_INT(wsframe_reader_held(&r), 0);
	CHECK(r.msg == NULL && r.msgop == 0);
	wsframe_reader_free(&r);
	bytes_free(&s);

	/* The reader can be used again after free and init. */
	wsframe_reader_init(&r, 10);
	frame(&s, FIN | WSFRAME_TEXT, STR("again"));
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), 0);
	CHECK_INT(rec.len, 5);
	wsframe_reader_free(&r);
	bytes_free(&s);
}

/* wsframe_reader_idle: true only between messages with nothing held, so
 * net/ws.c may free the reader after each read and make it again. */
static void
test_idle(void)
{
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };
	struct wsframe_reader r;

	rec.max = 100;
	wsframe_reader_init(&r, 100);
	CHECK(wsframe_reader_idle(&r));
	frame(&s, FIN | WSFRAME_TEXT, STR("whole"));
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), 0);
	CHECK(wsframe_reader_idle(&r));			/* a whole frame: nothing held */
	bytes_free(&s);
	frame(&s, FIN | WSFRAME_TEXT, STR("split"));
	CHECK_INT(wsframe_read(&r, s.p, 4, &events, &rec), 0);
	CHECK(!wsframe_reader_idle(&r));		/* an incomplete frame */
	CHECK_INT(wsframe_read(&r, s.p + 4, s.n - 4, &events, &rec), 0);
	CHECK(wsframe_reader_idle(&r));
	bytes_free(&s);
	frame(&s, WSFRAME_TEXT, STR("first"));
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), 0);
	CHECK(!wsframe_reader_idle(&r));		/* a fragmented message under way */
	bytes_free(&s);
	frame(&s, FIN | WSFRAME_CONT, STR(" last"));
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), 0);
	CHECK(wsframe_reader_idle(&r));
	bytes_free(&s);
	close_frame(&s, 1000, NULL, 0);
	CHECK_INT(wsframe_read(&r, s.p, s.n, &events, &rec), -1);
	CHECK(!wsframe_reader_idle(&r));		/* closed: kept, to read nothing more */
	CHECK_STR(rec.log, "T5:whole;T5:split;T10:first last;C1000:;");
	wsframe_reader_free(&r);
	bytes_free(&s);
}

/* One stream of everything, every way of cutting it. */
static void
test_every_split(void)
{
	unsigned char mid[200], *big = xmalloc(70000);
	struct bytes s = { 0 };
	char want[256];

	for (size_t i = 0; i < sizeof(mid); i++)
		mid[i] = (unsigned char)('a' + i % 26);
	for (size_t i = 0; i < 70000; i++)
		big[i] = (unsigned char)(i * 7);
	frame(&s, FIN | WSFRAME_TEXT, STR("hello"));
	frame(&s, WSFRAME_BINARY, STR("\x01\x02\x03"));
	frame(&s, FIN | WSFRAME_PING, STR("p1"));
	frame(&s, WSFRAME_CONT, NULL, 0);
	frame(&s, FIN | WSFRAME_PONG, NULL, 0);
	frame(&s, FIN | WSFRAME_CONT, STR("\x04\x05\x06\x07"));
	frame(&s, WSFRAME_TEXT, STR("caf\xc3"));
	frame(&s, WSFRAME_CONT, STR("\xa9 \xe2\x82"));
	frame(&s, FIN | WSFRAME_CONT, STR("\xac!"));
	frame(&s, FIN | WSFRAME_TEXT, mid, sizeof(mid));
	frame(&s, FIN | WSFRAME_PING, mid, 125);
	close_frame(&s, 1000, STR("bye"));
	frame(&s, FIN | WSFRAME_TEXT, STR("after"));
	snprintf(want, sizeof(want), "T5:hello;P2:7031;O0:;B7:01020304050607;"
	    "T10:caf\\xc3\\xa9 \\xe2\\x82\\xac!;T200:#%08x;P125:#%08x;C1000:bye;!",
	    fnv(mid, 200), fnv(mid, 125));
	EXPECT(70000, &s, want);
	bytes_free(&s);

	/* With a 64-bit frame in it: a byte at a time and random pieces. */
	frame(&s, FIN | WSFRAME_TEXT, STR("x"));
	frame(&s, WSFRAME_BINARY, big, 1000);
	frame(&s, FIN | WSFRAME_PING, NULL, 0);
	frame(&s, FIN | WSFRAME_CONT, big + 1000, 69000);
	frame(&s, FIN | WSFRAME_BINARY, big, 70000);
	frame(&s, FIN | WSFRAME_TEXT, STR("y"));
	snprintf(want, sizeof(want), "T1:x;P0:;B70000:#%08x;B70000:#%08x;T1:y;",
	    fnv(big, 70000), fnv(big, 70000));
	EXPECT(70000, &s, want);
	bytes_free(&s);
	free(big);
}

/* ---- writing ---- */

static void
test_header(void)
{
	static const struct {
		uint64_t len;
		size_t n;
		const char *bytes;
	} cases[] = {
		{ 0, 2, "\x81\x00" },
		{ 125, 2, "\x81\x7d" },
		{ 126, 4, "\x81\x7e\x00\x7e" },
		{ 65535, 4, "\x81\x7e\xff\xff" },
		{ 65536, 10, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00" },
		{ 1ull << 32, 10, "\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x00" },
	};
	unsigned char h[WSFRAME_HEADER_MAX];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_INT(wsframe_header(h, WSFRAME_TEXT, cases[i].len), cases[i].n);
		CHECK(memcmp(h, cases[i].bytes, cases[i].n) == 0);
	}
	CHECK_INT(wsframe_header(h, WSFRAME_PONG, 3), 2);
	CHECK_INT(h[0], 0x8a);
	CHECK_INT(wsframe_header(h, WSFRAME_BINARY, 300), 4);
	CHECK_INT(h[0], 0x82);
}

/* What the server writes, masked as a client would, read back. */
static void
test_header_round_trip(void)
{
	static const uint64_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536, 70000 };
	unsigned char *payload = xmalloc(70000);
	unsigned char h[WSFRAME_HEADER_MAX];
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };

	memset(payload, 'r', 70000);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t hl = wsframe_header(h, WSFRAME_TEXT, lens[i]);

		/* Turn it into a client frame: mask bit and key. */
		h[1] |= 0x80;
		add(&s, h, hl);
		add(&s, KEY, 4);
		add(&s, payload, lens[i]);
		for (size_t k = 0; k < lens[i]; k++)
			s.p[hl + 4 + k] ^= KEY[k & 3];
		run(&rec, 70000, s.p, s.n, NULL, 0);
		CHECK_INT(rec.events, 1);
		CHECK_INT(rec.len, lens[i]);
		bytes_free(&s);
	}
	free(payload);
}

static void
test_close_writer(void)
{
	unsigned char out[2 + 125];
	char reason[300];
	struct bytes s = { 0 };
	struct rec rec = { .stop_at = 0 };
	size_t n;

	n = wsframe_close(out, 0, "ignored");
	CHECK_INT(n, 2);
	CHECK(memcmp(out, "\x88\x00", 2) == 0);
	n = wsframe_close(out, 1000, NULL);
	CHECK_INT(n, 4);
	CHECK(memcmp(out, "\x88\x02\x03\xe8", 4) == 0);
	n = wsframe_close(out, 1001, "");
	CHECK_INT(n, 4);

	/* Long ASCII: cut to 123 bytes of reason. */
	memset(reason, 'x', 299);
	reason[299] = '\0';
	n = wsframe_close(out, 1008, reason);
	CHECK_INT(n, 127);
	CHECK_INT(out[1], 125);

	/* A 2-, 3- and 4-byte character across the cut stays whole. */
	for (size_t w = 2; w <= 4; w++) {
		static const char *ch[5] = { NULL, NULL, "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };

		for (size_t shift = 0; shift < w; shift++) {
			size_t len = 0;

			memset(reason, 0, sizeof(reason));
			for (size_t k = 0; k < shift; k++)
				reason[len++] = 'a';
			while (len + w < 200) {
				memcpy(reason + len, ch[w], w);
				len += w;
			}
			n = wsframe_close(out, 1011, reason);
			CHECK(n <= 127 && n >= 127 - (w - 1));
			CHECK_INT(out[1], n - 2);
			CHECK(utf8_valid((const char *)out + 4, n - 4));
			/* and the reader takes it (once masked) */
			out[1] |= 0x80;
			add(&s, out, 2);
			add(&s, KEY, 4);
			add(&s, out + 2, n - 2);
			for (size_t k = 0; k < n - 2; k++)
				s.p[6 + k] ^= KEY[k & 3];
			run(&rec, 100, s.p, s.n, NULL, 0);
			CHECK(strncmp(rec.log, "C1011:", 6) == 0);
			bytes_free(&s);
		}
	}
}

int
main(void)
{
	UNIT_RUN(test_masked_and_unmasked);
	UNIT_RUN(test_rsv_bits);
	UNIT_RUN(test_reserved_opcodes);
	UNIT_RUN(test_control_length);
	UNIT_RUN(test_fragmented_control);
	UNIT_RUN(test_control_between_fragments);
	UNIT_RUN(test_fragment_order);
	UNIT_RUN(test_empty_fragments);
	UNIT_RUN(test_close_bodies);
	UNIT_RUN(test_close_codes);
	UNIT_RUN(test_close_echo);
	UNIT_RUN(test_utf8_messages);
	UNIT_RUN(test_utf8_across_fragments);
	UNIT_RUN(test_utf8_fails_mid_frame);
	UNIT_RUN(test_max_message);
	UNIT_RUN(test_huge_lengths);
	UNIT_RUN(test_nothing_after_close_or_fail);
	UNIT_RUN(test_event_stops);
	UNIT_RUN(test_null_events);
	UNIT_RUN(test_in_place);
	UNIT_RUN(test_idle);
	UNIT_RUN(test_every_split);
	UNIT_RUN(test_header);
	UNIT_RUN(test_header_round_trip);
	UNIT_RUN(test_close_writer);
	return UNIT_DONE();
}
