/* Unit tests of src/lib/utf8.c: the strict, resumable UTF-8 validator. */
#include "lib/utf8.c"
#include "lib/util.h"

#include "unit.h"
#include "ref_utf8.h"


/* cp in exactly len bytes (overlong when len is more than needed). */
static size_t
encode(unsigned char *out, uint32_t cp, size_t len)
{
	static const unsigned char lead[5] = { 0, 0x00, 0xc0, 0xe0, 0xf0 };

	for (size_t i = len - 1; i > 0; i--) {
		out[i] = 0x80 | (cp & 0x3f);
		cp >>= 6;
	}
	out[0] = lead[len] | (unsigned char)cp;
	return len;
}

static size_t
min_len(uint32_t cp)
{
	return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static int
valid_bytes(const char *s, size_t n)
{
	return utf8_valid(s, n);
}

static void
test_ascii_and_empty(void)
{
	char s[300];
	size_t bad = 99;

	CHECK(utf8_valid("", 0));
	CHECK(utf8_valid(NULL, 0));
	CHECK_INT(utf8_step(UTF8_ACCEPT, NULL, 0, &bad), UTF8_ACCEPT);
	CHECK_INT(bad, 99);
	for (int i = 0; i < 256; i++)
		s[i] = (char)(i & 0x7f);
	CHECK(utf8_valid(s, 256));
	CHECK(utf8_valid("hello, world", 12));
}

static void
test_boundaries(void)
{
	static const struct {
		const char *s;
		int ok;
	} cases[] = {
		{ "\x00", 1 }, { "\x7f", 1 },
		{ "\xc2\x80", 1 }, { "\xdf\xbf", 1 },			/* U+0080, U+07FF */
		{ "\xe0\xa0\x80", 1 }, { "\xef\xbf\xbf", 1 },		/* U+0800, U+FFFF */
		{ "\xed\x9f\xbf", 1 }, { "\xee\x80\x80", 1 },		/* U+D7FF, U+E000 */
		{ "\xf0\x90\x80\x80", 1 }, { "\xf4\x8f\xbf\xbf", 1 },	/* U+10000, U+10FFFF */
		{ "\xc0\x80", 0 }, { "\xc1\xbf", 0 },			/* overlong 2 */
		{ "\xe0\x80\x80", 0 }, { "\xe0\x9f\xbf", 0 },		/* overlong 3 */
		{ "\xf0\x80\x80\x80", 0 }, { "\xf0\x8f\xbf\xbf", 0 },	/* overlong 4 */
		{ "\xed\xa0\x80", 0 }, { "\xed\xbf\xbf", 0 },		/* surrogates */
		{ "\xed\xa0\x80\xed\xb0\x80", 0 },			/* a CESU-8 pair */
		{ "\xf4\x90\x80\x80", 0 }, { "\xf7\xbf\xbf\xbf", 0 },	/* past U+10FFFF */
		{ "\xf5\x80\x80\x80", 0 }, { "\xf8\x88\x80\x80\x80", 0 },
		{ "\xfe", 0 }, { "\xff", 0 },
		{ "\x80", 0 }, { "\xbf", 0 }, { "a\x80", 0 },		/* lone continuation */
		{ "\xc3", 0 }, { "\xe2\x82", 0 }, { "\xf0\x9f\x98", 0 },	/* truncated */
		{ "\xc3\x28", 0 }, { "\xe2\x28\xa1", 0 }, { "\xe2\x82\x28", 0 },
		{ "\xc3\xa9t\xc3\xa9", 1 }, { "\xf0\x9f\x98\x80", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = cases[i].s[0] == '\0' ? 1 : strlen(cases[i].s);

		if (valid_bytes(cases[i].s, n) != cases[i].ok)
			fprintf(stderr, "case %zu\n", i);
		CHECK_INT(valid_bytes(cases[i].s, n), cases[i].ok);
	}
}

/* Every code point in its shortest form is valid unless a surrogate; in
 * any longer form it is not; 0x110000..0x1FFFFF never is. */
static void
test_every_code_point(void)
{
	unsigned char b[4];
	int wrong = 0;

	for (uint32_t cp = 0; cp < 0x200000; cp++) {
		int surrogate = cp >= 0xd800 && cp <= 0xdfff;
		size_t m = min_len(cp);

		if (cp <= 0x10ffff &&
		    utf8_valid((char *)b, encode(b, cp, m)) != !surrogate)
			wrong++;
		if (cp > 0x10ffff && utf8_valid((char *)b, encode(b, cp, 4)))
			wrong++;
		for (size_t len = m + 1; len <= 4; len++)
			if (utf8_valid((char *)b, encode(b, cp, len)))
				wrong++;
	}
	CHECK_INT(wrong, 0);
}

/* All sequences of one to three bytes, against the reference. */
static void
test_exhaustive_short(void)
{
	unsigned char b[3];
	long wrong = 0;

	for (uint32_t v = 0; v < 0x1000000; v++) {
		b[0] = (unsigned char)(v >> 16);
		b[1] = (unsigned char)(v >> 8);
		b[2] = (unsigned char)v;
		if (v < 0x100 && utf8_valid((char *)b + 2, 1) != ref_valid(b + 2, 1))
			wrong++;
		if (v < 0x10000 && utf8_valid((char *)b + 1, 2) != ref_valid(b + 1, 2))
			wrong++;
		if (utf8_valid((char *)b, 3) != ref_valid(b, 3))
			wrong++;
	}
	CHECK_INT(wrong, 0);
}

/* Four-byte sequences whose lead is F0..F7 or an ASCII/C2/E0 mix and
 * whose other bytes are drawn from the edges of every byte class. */
static void
test_four_byte_edges(void)
{
	static const unsigned char edge[] = {
		0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
		0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3,
		0xf4, 0xf5, 0xf7, 0xf8, 0xff,
	};
	size_t ne = sizeof(edge);
	unsigned char b[4];
	long wrong = 0;

	for (size_t i = 0; i < ne; i++)
		for (size_t j = 0; j < ne; j++)
			for (size_t k = 0; k < ne; k++)
				for (size_t l = 0; l < ne; l++) {
					b[0] = edge[i], b[1] = edge[j], b[2] = edge[k], b[3] = edge[l];
					if (utf8_valid((char *)b, 4) != ref_valid(b, 4))
						wrong++;
				}
	CHECK_INT(wrong, 0);
}

/* The index of the first bad byte, wherever the 8-byte fast path stops. */
static void
test_bad_index(void)
{
	unsigned char s[64];
	size_t bad;

	for (size_t pre = 0; pre < 40; pre++) {
		memset(s, 'a', sizeof(s));
		s[pre] = 0xff;
		bad = 999;
		CHECK_INT(utf8_step(UTF8_ACCEPT, s, sizeof(s), &bad), UTF8_REJECT);
		CHECK_INT(bad, pre);
		/* A good character, then a bad continuation. */
		memset(s, 'a', sizeof(s));
		memcpy(s + pre, "\xe2\x82\x41", 3);
		CHECK_INT(utf8_step(UTF8_ACCEPT, s, sizeof(s), &bad), UTF8_REJECT);
		CHECK_INT(bad, pre + 2);
		/* Non-ASCII but valid at every offset: no false alarm. */
		memset(s, 'a', sizeof(s));
		memcpy(s + pre, "\xf0\x9f\x98\x80", 4);
		CHECK_INT(utf8_step(UTF8_ACCEPT, s, sizeof(s), &bad), UTF8_ACCEPT);
	}
	/* The bad byte is counted in the piece it arrives in. */
	CHECK_INT(utf8_step(utf8_step(UTF8_ACCEPT, (const unsigned char *)"ab\xe2", 3, NULL),
	    (const unsigned char *)"\x82x", 2, &bad), UTF8_REJECT);
	CHECK_INT(bad, 1);
}

/* Rejected stays rejected, whatever follows; an unknown state is rejected. */
static void
test_reject_sticky(void)
{
	size_t bad = 99;

	CHECK_INT(utf8_step(UTF8_REJECT, (const unsigned char *)"abc", 3, &bad), UTF8_REJECT);
	CHECK_INT(bad, 0);
	CHECK_INT(utf8_step(UTF8_REJECT, NULL, 0, NULL), UTF8_REJECT);
	CHECK_INT(utf8_step(42, (const unsigned char *)"a", 1, NULL), UTF8_REJECT);
}

/* Incomplete is neither accepted nor rejected: the next piece decides. */
static void
test_incomplete_states(void)
{
	static const char *prefixes[] = { "\xc3", "\xe2", "\xe2\x82", "\xe0", "\xe0\xa0",
	    "\xed", "\xf0", "\xf0\x9f", "\xf0\x9f\x98", "\xf4", "\xf1\x80\x80" };

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		uint32_t st = utf8_step(UTF8_ACCEPT, (const unsigned char *)prefixes[i],
		    strlen(prefixes[i]), NULL);

		CHECK(st != UTF8_ACCEPT && st != UTF8_REJECT);
		CHECK(!utf8_valid(prefixes[i], strlen(prefixes[i])));
	}
}

/* Any split of any string gives the state of the whole. */
static void
test_resume_every_split(void)
{
	static const char *texts[] = {
		"plain ascii text, longer than eight bytes",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe0\xa0\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf end",
		"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
		"ok so far \xed\xa0\x80 then a surrogate",
		"\xe0\x9f\xbf overlong at the start",
		"truncated at the end \xf0\x9f\x98",
	};
	unsigned char rnd[512];
	uint32_t seed = 12345;

	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		const unsigned char *s = (const unsigned char *)texts[t];
		size_t n = strlen(texts[t]), bad_whole = 0, bad;
		uint32_t whole = utf8_step(UTF8_ACCEPT, s, n, &bad_whole);

		for (size_t cut = 0; cut <= n; cut++) {
			uint32_t st = utf8_step(UTF8_ACCEPT, s, cut, &bad);

			if (st == UTF8_REJECT) {
				CHECK_INT(whole, UTF8_REJECT);
				CHECK_INT(bad, bad_whole);
				continue;
			}
			st = utf8_step(st, s + cut, n - cut, &bad);
			CHECK_INT(st, whole);
			if (st == UTF8_REJECT)
				CHECK_INT(cut + bad, bad_whole);
		}
	}
	/* Random bytes biased to UTF-8 leads, one byte at a time. */
	for (int round = 0; round < 2000; round++) {
		size_t n = 1 + round % sizeof(rnd), bad;
		uint32_t st = UTF8_ACCEPT;

		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245 + 12345;
			rnd[i] = (seed >> 16) & 1 ? 'a' + (seed >> 20) % 26 : (unsigned char)(0x80 + (seed >> 20) % 0x78);
		}
		for (size_t i = 0; i < n && st != UTF8_REJECT; i++)
			st = utf8_step(st, rnd + i, 1, &bad);
		CHECK_INT(st, utf8_step(UTF8_ACCEPT, rnd, n, NULL));
		CHECK_INT(st == UTF8_ACCEPT, ref_valid(rnd, n));
	}
}

/* util_valid_utf8 is the same check, kept for its callers. */
static void
test_util_agrees(void)
{
	CHECK(util_valid_utf8("caf\xc3\xa9", 5));
	CHECK(!util_valid_utf8("\xed\xa0\x80", 3));
	CHECK(!util_valid_utf8("\xc3", 1));
	CHECK(util_valid_utf8("", 0));
}

int
main(void)
{
	UNIT_RUN(test_ascii_and_empty);
	UNIT_RUN(test_boundaries);
	UNIT_RUN(test_every_code_point);
	UNIT_RUN(test_exhaustive_short);
	UNIT_RUN(test_four_byte_edges);
	UNIT_RUN(test_bad_index);
	UNIT_RUN(test_reject_sticky);
	UNIT_RUN(test_incomplete_states);
	UNIT_RUN(test_resume_every_split);
	UNIT_RUN(test_util_agrees);
	return UNIT_DONE();
}
