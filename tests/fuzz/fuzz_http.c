/* libFuzzer target: reading HTTP/1.1 requests (src/net/http_req.c, over
 * Debian's http-parser), as chatd's http.c drives it: feed, and on READY
 * answer the request, http_req_next and parse what is buffered (pipelined
 * requests) until MORE or ERROR; after an upgrade the rest is the new
 * protocol's.
 *
 * Input: byte 0 picks how the stream is cut (low 2 bits: pieces of 1 byte,
 * 1-16, 1-512 or 1-8192) and seeds the sizes; byte 1 picks the body limit
 * (low 3 bits) and seeds them too; the rest is the stream from the client.
 *
 * Invariants checked on every input:
 *   - fed whole and fed in pieces, the stream reads the same: the same
 *     sequence of results, statuses, methods, paths, queries, headers,
 *     bodies, keep-alive and upgrade flags, and the same rest after an
 *     upgrade (a hash of them);
 *   - on READY every span (URL, names, values, body, rest) and every
 *     pointer the lookups return lies inside the bytes received; the
 *     request line and headers fit HTTP_REQ_HEAD_MAX and
 *     HTTP_REQ_HEADERS_MAX, the body the limit; http_req_header finds the
 *     first header of a name in any case; http_req_header_has only says
 *     yes for a token the value holds; http_req_arg's output is
 *     NUL-ended, fits its buffer and is no longer than the raw value;
 *   - on ERROR the status is 400, 413, 414, 431 or 505, with a reason,
 *     and the request stays failed.
 * Every piece is copied into a buffer of its own size, so ASan sees a read
 * past it; the reader is freed each time, so leaks show up too. */
#include "net/http_req.h"
#include "fuzz_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz_http: invariant failed: %s (%s:%d)\n", \
		    #cond, __FILE__, __LINE__); \
		abort(); \
	} \
} while (0)

static const uint64_t body_limits[8] = { 0, 1, 5, 100, 1000, 8192, 65536, 1u << 20 };
static const size_t piece_max[4] = { 1, 16, 512, 8192 };

/* Whole and in pieces compare only while what a connection may hold
 * unread (HTTP_REQ_HEAD_MAX plus 64 KiB, see http_req.c) takes the whole
 * stream: past that a whole read fails where small reads, answered one at
 * a time, do not. */
#define COMPARE_MAX (HTTP_REQ_HEAD_MAX + 64 * 1024)

struct run {
	uint64_t hash;
	uint64_t limit;
};

static void
mix(struct run *run, const void *p, size_t n)
{
	fuzz_mix(&run->hash, p, n);
}

static void
mix_int(struct run *run, long long v)
{
	mix(run, &v, sizeof(v));
}

static void
mix_span(struct run *run, const char *p, size_t n)
{
	mix_int(run, (long long)n);
	mix(run, p, n);
}

static uint64_t
limit_cb(const struct http_req *r)
{
	return ((const struct run *)r->data)->limit;
}

static void
check_inside(const struct http_req *r, const char *p, size_t n)
{
	if (n == 0)
		return;
	CHECK(p != NULL && r->buf != NULL);
	CHECK(p >= r->buf && p + n <= r->buf + r->len);
}

static void
check_span(const struct http_req *r, struct http_span s)
{
	CHECK((uint64_t)s.off + s.len <= r->len);
}

/* The value's comma-separated list holds token (any case), by a plain
 * reading: a cross-check of http_req_header_has. */
static int
list_has(const char *v, size_t n, const char *token)
{
	size_t tlen = strlen(token), i = 0;

	while (i <= n) {
		size_t start = i, end;

		while (i < n && v[i] != ',')
			i++;
		end = i;
		while (start < end && (v[start] == ' ' || v[start] == '\t'))
			start++;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0)
			return 1;
		i++;
	}
	return 0;
}

static void
check_header(struct run *run, const struct http_req *r, const char *name)
{
	size_t n, len = strlen(name);
	const char *v = http_req_header(r, name, &n);
	int first = -1;

	for (int i = 0; i < r->nheaders && first < 0; i++)
		if (r->name[i].len == len && strncasecmp(r->buf + r->name[i].off, name, len) == 0)
			first = i;
	if (first < 0) {
		CHECK(v == NULL && n == 0);
	} else {
		CHECK(v == r->buf + r->value[first].off && n == r->value[first].len);
		check_inside(r, v, n);
	}
	mix_int(run, first);
}

static void
check_has(struct run *run, const struct http_req *r, const char *name, const char *token)
{
	size_t n;
	const char *v = http_req_header(r, name, &n);
	int has = http_req_header_has(r, name, token);

	CHECK(has == 0 || has == 1);
	CHECK(has == (v != NULL && list_has(v, n, token)));
	mix_int(run, has);
}

static void
check_arg(struct run *run, const struct http_req *r, const char *name, size_t namelen)
{
	static const size_t sizes[] = { 1, 8, 300 };
	char arg[64], out[300];
	size_t qn;
	int prev = -1;

	if (namelen >= sizeof(arg))
		return;
	memcpy(arg, name, namelen);
	arg[namelen] = '\0';
	http_req_query(r, &qn);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int rc;

		memset(out, 'Z', sizeof(out));
		rc = http_req_arg(r, arg, out, sizes[i]);
		CHECK(rc == 0 || rc == -1);
		if (rc == 0) {
			size_t olen = strnlen(out, sizes[i]);

			CHECK(olen < sizes[i]);
			CHECK(olen <= qn);
			/* A larger buffer finds it too. */
			mix_int(run, (long long)olen);
			mix(run, out, olen);
		} else {
			CHECK(prev != 0);
		}
		prev = rc;
	}
}

/* A READY request: every lookup, checked and mixed into the hash. */
static void
read_request(struct run *run, const struct http_req *r)
{
	size_t n;
	const char *p;

	CHECK(r->complete && r->headers_done && r->status == 0);
	CHECK(r->fed <= r->len);
	check_span(r, r->url);
	check_span(r, r->body);
	CHECK(r->url.off + r->url.len <= HTTP_REQ_HEAD_MAX);
	CHECK(r->nheaders <= HTTP_REQ_HEADERS_MAX);
	CHECK(r->body.len <= run->limit);
	for (int i = 0; i < r->nheaders; i++) {
		check_span(r, r->name[i]);
		check_span(r, r->value[i]);
		mix_span(run, r->buf + r->name[i].off, r->name[i].len);
		mix_span(run, r->buf + r->value[i].off, r->value[i].len);
	}
	mix_int(run, http_req_method(r));
	mix_int(run, http_req_keep_alive(r));
	mix_int(run, r->upgrade);
	p = http_req_path(r, &n);
	check_inside(r, p, n);
	CHECK(n <= r->url.len);
	mix_span(run, p, n);
	p = http_req_query(r, &n);
	check_inside(r, p, n);
	CHECK(n <= r->url.len);
	mix_span(run, p, n);
	if (n > 0) {
		const char *eq = memchr(p, '=', n);

		if (eq != NULL)
			check_arg(run, r, p, (size_t)(eq - p));
	}
	check_arg(run, r, "token", 5);
	check_arg(run, r, "a", 1);
	p = http_req_body(r, &n);
	check_inside(r, p, n);
	mix_span(run, p, n);
	p = http_req_rest(r, &n);
	check_inside(r, p, n);
	CHECK(p == r->buf + r->fed || n == 0);
	check_header(run, r, "Host");
	check_header(run, r, "content-length");
	check_header(run, r, "SEC-WEBSOCKET-KEY");
	if (r->nheaders > 0) {
		char name[64];
		size_t len = r->name[0].len < sizeof(name) - 1 ? r->name[0].len : sizeof(name) - 1;

		memcpy(name, r->buf + r->name[0].off, len);
		name[len] = '\0';
		if (strlen(name) == len)
			check_header(run, r, name);
	}
	check_has(run, r, "Connection", "upgrade");
	check_has(run, r, "Connection", "close");
	check_has(run, r, "connection", "Keep-Alive");
	check_has(run, r, "Upgrade", "websocket");
	check_has(run, r, "Transfer-Encoding", "chunked");
}

/* Feeds s[0..n) in pieces whose sizes come from seed (size_max 0: whole);
 * the hash of what was read. */
static uint64_t
feed(const uint8_t *s, size_t n, uint64_t limit, size_t size_max, uint32_t seed)
{
	struct run run = { 14695981039346656037ull, limit };
	struct http_req r;
	size_t off = 0;
	int upgraded = 0;

	http_req_init(&r, limit_cb, &run);
	CHECK(!http_req_started(&r));
	while (off < n) {
		size_t piece = n - off;
		enum http_req_result res;
		char *copy;

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
		res = http_req_feed(&r, copy, piece);
		free(copy);
		off += piece;
		while (!upgraded && res != HTTP_REQ_MORE) {
			mix_int(&run, res);
			if (res == HTTP_REQ_ERROR) {
				CHECK(r.status == 400 || r.status == 413 || r.status == 414 ||
				    r.status == 431 || r.status == 505);
				CHECK(r.error != NULL && r.error[0] != '\0');
				mix_int(&run, r.status);
				CHECK(http_req_feed(&r, NULL, 0) == HTTP_REQ_ERROR);
				CHECK(http_req_feed(&r, "GET / HTTP/1.1\r\n\r\n", 18) == HTTP_REQ_ERROR);
				goto done;
			}
			CHECK(res == HTTP_REQ_READY);
			read_request(&run, &r);
			/* Ready until it is answered. */
			CHECK(http_req_feed(&r, NULL, 0) == HTTP_REQ_READY);
			if (r.upgrade && r.parser.upgrade) {
				upgraded = 1;
				break;
			}
			http_req_next(&r);
			CHECK(r.fed == 0 && r.nheaders == 0 && !r.complete);
			res = http_req_feed(&r, NULL, 0);
		}
		CHECK(r.fed <= r.len);
	}
	if (upgraded) {
		size_t rn;
		const char *rest = http_req_rest(&r, &rn);

		check_inside(&r, rest, rn);
		mix_int(&run, 'U');
		mix_span(&run, rest, rn);
	} else {
		mix_int(&run, http_req_started(&r));
	}
done:
	http_req_free(&r);
	CHECK(r.buf == NULL && r.len == 0);
	return run.hash;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t limit, whole, pieces;
	uint32_t seed;
	size_t size_max;

	if (size < 2)
		return 0;
	size_max = piece_max[data[0] & 3];
	limit = body_limits[data[1] & 7];
	seed = ((uint32_t)data[0] << 8 | data[1]) * 2654435761u | 1;
	whole = feed(data + 2, size - 2, limit, 0, seed);
	pieces = feed(data + 2, size - 2, limit, size_max, seed);
	if (size - 2 <= COMPARE_MAX)
		CHECK(whole == pieces);
	return 0;
}
