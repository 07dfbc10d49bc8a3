/* Unit tests of src/net/outbuf.c: frames made once and shared, batches of a
 * room's events, the copy of a batch without what a subscriber already has.
 * The bytes are checked with a frame reader of the test's own; ASan (with
 * leak detection) checks that every reference is dropped exactly once. */
#include "net/outbuf.c"

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>

/* One frame read back from an outbuf's bytes. */
struct frame {
	int b0;			/* FIN, RSV and opcode */
	int masked;
	int lenbytes;		/* 0 (7-bit), 2 or 8 */
	uint64_t len;
	const unsigned char *payload;
};

/* Reads the frames of data[0..n) into f[0..max); their number, or -1 when
 * the bytes are not whole frames. */
static int
read_frames(const unsigned char *data, size_t n, struct frame *f, int max)
{
	size_t off = 0;
	int k = 0;

	while (off < n) {
		struct frame *fr = &f[k];
		size_t hl = 2;

		if (k == max || n - off < 2)
			return -1;
		fr->b0 = data[off];
		fr->masked = (data[off + 1] & 0x80) != 0;
		fr->len = data[off + 1] & 0x7f;
		fr->lenbytes = 0;
		if (fr->len >= 126) {
			fr->lenbytes = fr->len == 126 ? 2 : 8;
			if (n - off < 2 + (size_t)fr->lenbytes)
				return -1;
			fr->len = 0;
			for (int i = 0; i < fr->lenbytes; i++)
				fr->len = fr->len << 8 | data[off + 2 + (size_t)i];
			hl += (size_t)fr->lenbytes;
		}
		if (fr->len > n - off - hl)
			return -1;
		fr->payload = data + off + hl;
		off += hl + fr->len;
		k++;
	}
	return k;
}

/* An event as chatd writes it: type and room first, then seq. */
static int
event(char *buf, size_t size, int64_t seq, size_t pad)
{
	int n = snprintf(buf, size, "{\"type\":\"message\",\"room\":\"r1\",\"seq\":%lld,\"body\":\"",
	    (long long)seq);

	while (pad-- > 0 && (size_t)n < size - 3)
		buf[n++] = 'x';
	buf[n++] = '"';
	buf[n++] = '}';
	buf[n] = '\0';
	return n;
}

static char *
big(size_t n, char ch)
{
	char *p = xmalloc(n);

	memset(p, ch, n);
	return p;
}

static void
check_single(size_t len, int lenbytes)
{
	char *payload = big(len ? len : 1, 'p');
	struct outbuf *b = outbuf_new(payload, len, 0);
	struct frame f[2];

	CHECK_INT(b->refs, 1);
	CHECK_INT(b->nframes, 1);
	CHECK_INT(b->len, 2 + lenbytes + len);
	CHECK(b->len <= b->cap);
	CHECK_INT(b->seq, 0);
	CHECK_INT(b->last_seq, 0);
	CHECK_INT(read_frames(b->data, b->len, f, 2), 1);
	CHECK_INT(f[0].b0, 0x81);
	CHECK_INT(f[0].masked, 0);
	CHECK_INT(f[0].lenbytes, lenbytes);
	CHECK_INT(f[0].len, len);
	CHECK(len == 0 || memcmp(f[0].payload, payload, len) == 0);
	outbuf_unref(b);
	free(payload);
}

/* The shortest length encoding, at each boundary (RFC 6455 5.2). */
static void
test_new_framing(void)
{
	check_single(0, 0);
	check_single(1, 0);
	check_single(125, 0);
	check_single(126, 2);
	check_single(127, 2);
	check_single(0xffff, 2);
	check_single(0x10000, 8);
	check_single(100000, 8);
}

static void
test_new_seq(void)
{
	char ev[200];
	int n = event(ev, sizeof(ev), 42, 3);
	struct outbuf *b = outbuf_new(ev, (size_t)n, 42);

	CHECK_INT(b->seq, 42);
	CHECK_INT(b->last_seq, 42);
	CHECK_STR(b->room, "");
	outbuf_unref(b);
}

static void
test_raw(void)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	struct outbuf *b = outbuf_raw(resp, sizeof(resp) - 1);

	CHECK_INT(b->len, sizeof(resp) - 1);
	CHECK(memcmp(b->data, resp, sizeof(resp) - 1) == 0);
	CHECK_INT(b->nframes, 0);
	CHECK_INT(b->seq, 0);
	CHECK_INT(b->refs, 1);
	outbuf_unref(b);
	b = outbuf_raw("", 0);
	CHECK_INT(b->len, 0);
	outbuf_unref(b);
}

static void
test_control_frames(void)
{
	static const unsigned char close_body[] = { 0x03, 0xe8, 'b', 'y', 'e' };
	struct outbuf *b = outbuf_frame(WSFRAME_PING, (const unsigned char *)"hi", 2);
	struct frame f[2];

	CHECK_INT(b->nframes, 1);
	CHECK_INT(read_frames(b->data, b->len, f, 2), 1);
	CHECK_INT(f[0].b0, 0x89);
	CHECK_INT(f[0].len, 2);
	CHECK(memcmp(f[0].payload, "hi", 2) == 0);
	outbuf_unref(b);

	b = outbuf_frame(WSFRAME_CLOSE, close_body, sizeof(close_body));
	CHECK_INT(read_frames(b->data, b->len, f, 2), 1);
	CHECK_INT(f[0].b0, 0x88);
	CHECK_INT(f[0].len, sizeof(close_body));
	CHECK(memcmp(f[0].payload, close_body, sizeof(close_body)) == 0);
	outbuf_unref(b);

	/* An empty payload (a pointer into the read buffer, as ws.c passes;
	 * NULL with 0 would reach memcpy, which UBSan refuses). */
	b = outbuf_frame(WSFRAME_PONG, (const unsigned char *)"", 0);
	CHECK_INT(b->len, 2);
	CHECK_INT(b->data[0], 0x8a);
	CHECK_INT(b->data[1], 0);
	outbuf_unref(b);
}

/* A batch of n events with seqs first, first+1, ..., each padded so that
 * some need a 16-bit length. */
static struct outbuf *
batch_of(int64_t first, int n, size_t pad_every)
{
	struct outbuf *b = NULL;
	char ev[1024];

	for (int i = 0; i < n; i++) {
		int len = event(ev, sizeof(ev), first + i, pad_every ? (size_t)i * pad_every % 600 : 0);

		outbuf_append(&b, ev, (size_t)len, first + i);
	}
	return b;
}

static void
test_append(void)
{
	struct outbuf *b = NULL;
	struct frame f[8];
	char ev[3][200];
	int n[3];

	for (int i = 0; i < 3; i++) {
		n[i] = event(ev[i], sizeof(ev[i]), 10 + i, (size_t)i);
		outbuf_append(&b, ev[i], (size_t)n[i], 10 + i);
		CHECK(b != NULL);
		CHECK_INT(b->nframes, i + 1);
		CHECK_INT(b->seq, 10);
		CHECK_INT(b->last_seq, 10 + i);
		CHECK(b->len <= b->cap);
	}
	CHECK_INT(b->refs, 1);
	CHECK_INT(read_frames(b->data, b->len, f, 8), 3);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(f[i].b0, 0x81);
		CHECK_INT(f[i].len, n[i]);
		CHECK(memcmp(f[i].payload, ev[i], (size_t)n[i]) == 0);
	}
	outbuf_unref(b);

	/* Seqs out of order: seq is the lowest, last_seq the highest; seq 0
	 * frames (not room events) change neither. */
	b = NULL;
	outbuf_append(&b, "{\"type\":\"typing\"}", 17, 0);
	CHECK_INT(b->seq, 0);
	CHECK_INT(b->last_seq, 0);
	outbuf_append(&b, "{\"seq\":7}", 9, 7);
	outbuf_append(&b, "{\"seq\":5}", 9, 5);
	outbuf_append(&b, "{\"x\":1}", 7, 0);
	outbuf_append(&b, "{\"seq\":6}", 9, 6);
	CHECK_INT(b->seq, 5);
	CHECK_INT(b->last_seq, 7);
	CHECK_INT(b->nframes, 5);
	CHECK_INT(read_frames(b->data, b->len, f, 8), 5);
	outbuf_unref(b);
}

/* A batch grows past its first allocation (and moves) with every byte
 * kept, frames of every length encoding included. */
static void
test_append_growth(void)
{
	struct outbuf *b = NULL;
	struct frame *f = xmalloc(300 * sizeof(*f));
	char *large = big(70000, 'L');
	size_t total = 0;

	for (int i = 0; i < 200; i++) {
		char ev[1024];
		int n = event(ev, sizeof(ev), 1 + i, (size_t)(i * 7) % 300);

		outbuf_append(&b, ev, (size_t)n, 1 + i);
		total += (size_t)n + (n < 126 ? 2 : 4);
		if (i == 100) {
			outbuf_append(&b, large, 70000, 0);
			total += 70000 + 10;
		}
	}
	CHECK_INT(b->len, total);
	CHECK(b->len <= b->cap);
	CHECK_INT(b->nframes, 201);
	CHECK_INT(b->seq, 1);
	CHECK_INT(b->last_seq, 200);
	CHECK_INT(read_frames(b->data, b->len, f, 300), 201);
	CHECK_INT(f[101].len, 70000);
	CHECK_INT(f[101].lenbytes, 8);
	CHECK(f[101].payload[0] == 'L' && f[101].payload[69999] == 'L');
	CHECK_INT(outbuf_scan_seq((const char *)f[200].payload, f[200].len), 200);
	outbuf_unref(b);
	free(large);
	free(f);
}

/* The frames of b with seq above after (or 0), as "seq,seq,..." */
static void
seqs_of(const struct outbuf *b, char *out, size_t size)
{
	struct frame f[300];
	int n = read_frames(b->data, b->len, f, 300);
	size_t o = 0;

	out[0] = '\0';
	CHECK(n >= 0);
	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%lld", i ? "," : "",
		    (long long)outbuf_scan_seq((const char *)f[i].payload, f[i].len));
}

static void
test_after(void)
{
	struct outbuf *b = batch_of(5, 3, 0), *a;
	char s[4096];

	snprintf(b->room, sizeof(b->room), "%s", "r1");
	/* Keeps exactly the frames past after_seq. */
	a = outbuf_after(b, 5);
	CHECK(a != NULL && a != b);
	seqs_of(a, s, sizeof(s));
	CHECK_STR(s, "6,7");
	CHECK_INT(a->nframes, 2);
	CHECK_INT(a->seq, 6);
	CHECK_INT(a->last_seq, 7);
	CHECK_INT(a->refs, 1);
	CHECK_STR(a->room, "r1");
	CHECK(a->len <= a->cap);
	outbuf_unref(a);
	a = outbuf_after(b, 6);
	seqs_of(a, s, sizeof(s));
	CHECK_STR(s, "7");
	CHECK_INT(a->seq, 7);
	outbuf_unref(a);
	/* Nothing past: NULL. Everything past: a copy of every byte. */
	CHECK(outbuf_after(b, 7) == NULL);
	CHECK(outbuf_after(b, 100) == NULL);
	a = outbuf_after(b, 4);
	CHECK_INT(a->len, b->len);
	CHECK(memcmp(a->data, b->data, b->len) == 0);
	CHECK_INT(a->nframes, 3);
	outbuf_unref(a);
	a = outbuf_after(b, 0);
	CHECK_INT(a->len, b->len);
	outbuf_unref(a);
	/* The original is untouched. */
	CHECK_INT(b->nframes, 3);
	CHECK_INT(b->refs, 1);
	outbuf_unref(b);

	/* Frames without a seq (0) are always kept. */
	b = NULL;
	outbuf_append(&b, "{\"seq\":3}", 9, 3);
	outbuf_append(&b, "{\"type\":\"typing\"}", 17, 0);
	outbuf_append(&b, "{\"seq\":4}", 9, 4);
	a = outbuf_after(b, 3);
	seqs_of(a, s, sizeof(s));
	CHECK_STR(s, "0,4");
	CHECK_INT(a->seq, 4);
	CHECK_INT(a->last_seq, 4);
	outbuf_unref(a);
	a = outbuf_after(b, 4);
	CHECK(a != NULL);
	seqs_of(a, s, sizeof(s));
	CHECK_STR(s, "0");
	CHECK_INT(a->seq, 0);
	CHECK_INT(a->last_seq, 0);
	CHECK_INT(a->nframes, 1);
	outbuf_unref(a);
	outbuf_unref(b);
}

/* Every cut of a batch whose frames use 7-, 16- and 64-bit lengths. */
static void
test_after_every_cut(void)
{
	struct outbuf *b = batch_of(100, 40, 37), *a;
	char *large = big(70000, 'L');
	char want[4096], s[4096];
	struct frame f[64];

	memcpy(large, "{\"seq\":140,\"body\":\"", 19);
	outbuf_append(&b, large, 70000, 140);
	CHECK_INT(read_frames(b->data, b->len, f, 64), 41);
	for (int64_t after = 98; after <= 141; after++) {
		size_t o = 0;

		want[0] = '\0';
		for (int64_t q = after + 1; q <= 140; q++)
			if (q >= 100)
				o += (size_t)snprintf(want + o, sizeof(want) - o, "%s%lld", o ? "," : "",
				    (long long)q);
		a = outbuf_after(b, after);
		if (after >= 140) {
			CHECK(a == NULL);
			continue;
		}
		CHECK(a != NULL);
		if (a == NULL)
			continue;
		seqs_of(a, s, sizeof(s));
		CHECK_STR(s, want);
		CHECK_INT(a->seq, after < 100 ? 100 : after + 1);
		CHECK_INT(a->last_seq, 140);
		CHECK_INT(a->nframes, 140 - (after < 99 ? 99 : after));
		outbuf_unref(a);
	}
	outbuf_unref(b);
	free(large);
}

static void
test_scan_seq(void)
{
	static const struct {
		const char *json;
		int64_t seq;
	} cases[] = {
		{ "{\"type\":\"message\",\"room\":\"r\",\"seq\":42,\"body\":\"x\"}", 42 },
		{ "{\"seq\":1}", 1 },
		{ "{\"seq\":9007199254740993}", 9007199254740993LL },
		{ "{\"seq\":0}", 0 },
		{ "{\"type\":\"typing\",\"room\":\"r\"}", 0 },
		{ "", 0 },
		{ "\"seq\":", 0 },
		{ "{\"seq\":-5}", 0 },
		/* PostgreSQL's jsonb text: a space after the colon, keys by
		 * length (msg's "seq" first, the same number for message:new). */
		{ "{\"seq\": 5}", 5 },
		{ "{\"msg\": {\"id\": \"m\", \"seq\": 6}, \"seq\": 6, \"type\": \"x\"}", 6 },
		/* The first "seq" key wins (chatd puts it before any body). */
		{ "{\"seq\":3,\"reply\":{\"seq\":9}}", 3 },
		/* A "seq" inside a string is escaped, so never seen. */
		{ "{\"body\":\"\\\"seq\\\":7\",\"seq\":8}", 8 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t got = outbuf_scan_seq(cases[i].json, strlen(cases[i].json));

		if (got != cases[i].seq) {
			fprintf(stderr, "case %zu: %s\n", i, cases[i].json);
			CHECK_INT(got, cases[i].seq);
		}
	}
	/* Only the len bytes given are read. */
	CHECK_INT(outbuf_scan_seq("{\"seq\":123}", 9), 12);
	CHECK_INT(outbuf_scan_seq("{\"seq\":123}", 6), 0);
}

/* A live batch carries its oldest event's "ts" (the delivery latency is
 * measured from it); single frames and cuts carry none. */
static void
test_append_ts(void)
{
	static const char e1[] = "{\"type\":\"message:new\",\"room\":\"r\",\"seq\":1,"
	    "\"msg\":{\"body\":\"\\\"ts\\\":5\",\"ts\":1700000000123}}";
	static const char e2[] = "{\"type\":\"message:new\",\"room\":\"r\",\"seq\":2,"
	    "\"msg\":{\"ts\":1700000000999}}";
	static const char typing[] = "{\"type\":\"typing\",\"room\":\"r\"}";
	struct outbuf *b = NULL, *one = outbuf_new(e1, sizeof(e1) - 1, 1), *cut;

	CHECK_INT(outbuf_scan_ts(e1, sizeof(e1) - 1), 1700000000123LL);
	CHECK_INT(outbuf_scan_ts(typing, sizeof(typing) - 1), 0);
	CHECK_INT(one->ts_ms, 0);
	outbuf_append(&b, e1, sizeof(e1) - 1, 1);
	outbuf_append(&b, e2, sizeof(e2) - 1, 2);
	CHECK_INT(b->ts_ms, 1700000000123LL);
	cut = outbuf_after(b, 1);
	CHECK_INT(cut->ts_ms, 0);
	outbuf_unref(cut);
	outbuf_unref(b);
	outbuf_unref(one);
}

/* One reference per holder; the last unref frees (ASan reports a leak or
 * a double free otherwise). */
static void
test_refcount(void)
{
	struct outbuf *b = outbuf_new("x", 1, 0);
	struct outbuf *batch = batch_of(1, 2, 0);
	struct outbuf *cut;

	outbuf_ref(b);
	outbuf_ref(b);
	CHECK_INT(b->refs, 3);
	outbuf_unref(b);
	outbuf_unref(b);
	CHECK_INT(b->refs, 1);
	outbuf_unref(b);
	outbuf_unref(NULL);

	/* A cut is a buffer of its own: dropping the batch keeps it. */
	outbuf_ref(batch);
	cut = outbuf_after(batch, 1);
	outbuf_unref(batch);
	outbuf_unref(batch);
	CHECK_INT(cut->refs, 1);
	CHECK_INT(cut->nframes, 1);
	CHECK_INT(outbuf_scan_seq((const char *)cut->data + 2, cut->len - 2), 2);
	outbuf_unref(cut);
}

/* A typist's own connections get the batch without its typing events:
 * the other frames (its messages too, the others' typing) stay, in order. */
static void
test_without_typing(void)
{
	static const char *const evs[] = {
		"{\"type\":\"message:new\",\"room\":\"r\",\"seq\":7,\"msg\":{\"user\":\"ann\"}}",
		"{\"type\":\"typing:update\",\"room\":\"r\",\"user\":\"ann\",\"typing\":true}",
		"{\"type\":\"typing:update\",\"room\":\"r\",\"user\":\"annie\",\"typing\":true}",
		"{\"type\":\"typing:update\",\"room\":\"r\",\"user\":\"bob\",\"typing\":false}",
	};
	struct outbuf *b = NULL, *ann, *bob, *none;
	struct frame f[8];
	int n;

	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		outbuf_append(&b, evs[i], strlen(evs[i]), outbuf_scan_seq(evs[i], strlen(evs[i])));
	snprintf(b->room, sizeof(b->room), "r");
	ann = outbuf_without_typing(b, "ann");
	CHECK(ann != NULL);
	n = read_frames(ann->data, ann->len, f, 8);
	CHECK_INT(n, 3);
	CHECK(f[0].len == strlen(evs[0]) && memcmp(f[0].payload, evs[0], f[0].len) == 0);
	CHECK(f[1].len == strlen(evs[2]) && memcmp(f[1].payload, evs[2], f[1].len) == 0);
	CHECK(f[2].len == strlen(evs[3]) && memcmp(f[2].payload, evs[3], f[2].len) == 0);
	CHECK_INT(ann->seq, 7);
	CHECK(strcmp(ann->room, "r") == 0);
	bob = outbuf_without_typing(b, "bob");
	CHECK_INT(bob->nframes, 3);
	outbuf_unref(ann);
	outbuf_unref(bob);
	outbuf_unref(b);
	/* Only its own typing: nothing is left. */
	b = NULL;
	outbuf_append(&b, evs[1], strlen(evs[1]), 0);
	none = outbuf_without_typing(b, "ann");
	CHECK(none == NULL);
	outbuf_unref(b);
}

int
main(void)
{
	UNIT_RUN(test_new_framing);
	UNIT_RUN(test_new_seq);
	UNIT_RUN(test_raw);
	UNIT_RUN(test_control_frames);
	UNIT_RUN(test_append);
	UNIT_RUN(test_append_growth);
	UNIT_RUN(test_after);
	UNIT_RUN(test_after_every_cut);
	UNIT_RUN(test_scan_seq);
	UNIT_RUN(test_append_ts);
	UNIT_RUN(test_refcount);
	UNIT_RUN(test_without_typing);
	return UNIT_DONE();
}
