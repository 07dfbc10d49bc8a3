#include "net/ws_frame.h"
#include "lib/utf8.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

/* buf and msg count in uint32_t: the largest frame buf can hold. The
 * configured limit (max_frame_bytes, at most 64 MiB) is far below it. */
#define WSFRAME__LIMIT (UINT32_MAX - WSFRAME_HEADER_MAX)

#define WSFRAME__FIN 0x80
#define WSFRAME__RSV 0x70
#define WSFRAME__MASK 0x80

/* A parsed client frame header. */
struct wsframe__hdr {
	uint8_t fin;
	uint8_t op;
	unsigned char mask[4];
	uint32_t hlen;		/* header bytes (or those needed so far) */
	uint32_t plen;		/* payload bytes */
};

void
wsframe_reader_init(struct wsframe_reader *r, uint64_t max_message)
{
	memset(r, 0, sizeof(*r));
	r->max_message = max_message < UINT32_MAX ? (uint32_t)max_message : UINT32_MAX;
	r->utf8 = UTF8_ACCEPT;
}

void
wsframe_reader_free(struct wsframe_reader *r)
{
	free(r->buf);
	free(r->msg);
	memset(r, 0, sizeof(*r));
}

int
wsframe_reader_idle(const struct wsframe_reader *r)
{
	return !r->done && r->len == 0 && r->msgop == 0 && r->buf == NULL && r->msg == NULL;
}

size_t
wsframe_reader_held(const struct wsframe_reader *r)
{
	return (size_t)r->cap + r->msgcap;
}

/* Every failure goes through here so that nothing is read after it, even
 * when the caller's fail event is missing or carries on regardless. */
static int
wsframe__fail(struct wsframe_reader *r, int code, const char *why,
    const struct wsframe_events *ev, void *ctx)
{
	r->done = 1;
	if (ev->fail != NULL)
		(void)ev->fail(ctx, code, why);
	return -1;
}

static int
wsframe__is_control(int op)
{
	return (op & 0x8) != 0;
}

/* Rules decided by the first two bytes: the frame is refused before its
 * length or mask are even read. */
static int
wsframe__check_start(struct wsframe_reader *r, unsigned char b0, unsigned char b1,
    const struct wsframe_events *ev, void *ctx)
{
	int op = b0 & 0x0f;

	if (b0 & WSFRAME__RSV)
		return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "reserved bits set", ev, ctx);
	if (op != WSFRAME_CONT && op != WSFRAME_TEXT && op != WSFRAME_BINARY &&
	    op != WSFRAME_CLOSE && op != WSFRAME_PING && op != WSFRAME_PONG)
		return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "reserved opcode", ev, ctx);
	if (!(b1 & WSFRAME__MASK))
		return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "unmasked client frame", ev, ctx);
	if (wsframe__is_control(op)) {
		if (!(b0 & WSFRAME__FIN))
			return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "fragmented control frame", ev, ctx);
		if ((b1 & 0x7f) > WSFRAME_CONTROL_MAX)
			return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "control frame over 125 bytes", ev, ctx);
		return 0;
	}
	if (op == WSFRAME_CONT && r->msgop == 0)
		return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "continuation without a message", ev, ctx);
	if (op != WSFRAME_CONT && r->msgop != 0)
		return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "new message inside a fragmented one", ev, ctx);
	return 0;
}

/* The message size is refused from the header, before the payload is
 * read or any memory is set aside for it. */
static int
wsframe__check_length(struct wsframe_reader *r, int op, uint64_t plen,
    const struct wsframe_events *ev, void *ctx)
{
	uint64_t limit = r->max_message < WSFRAME__LIMIT ? r->max_message : WSFRAME__LIMIT;
	uint64_t before = op == WSFRAME_CONT ? r->msglen : 0;

	if (plen >> 63)
		return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "64-bit length with the top bit set", ev, ctx);
	if (wsframe__is_control(op))
		return 0;
	if (plen > limit - before)
		return wsframe__fail(r, WSFRAME_CLOSE_TOO_BIG, "message too big", ev, ctx);
	return 0;
}

/*
 * Parses and checks the header at p[0..n). 0: complete and valid, h filled;
 * 1: more bytes are needed, at least h->hlen in all; -1: failure reported.
 * Checking again a header that passed gives the same answer, as nothing it
 * depends on (msgop, msglen) changes while a frame is incomplete.
 */
static int
wsframe__parse(struct wsframe_reader *r, const unsigned char *p, size_t n,
    struct wsframe__hdr *h, const struct wsframe_events *ev, void *ctx)
{
	uint64_t plen;
	uint32_t ext;

	h->hlen = 2;
	if (n < 2)
		return 1;
	if (wsframe__check_start(r, p[0], p[1], ev, ctx) < 0)
		return -1;
	h->fin = (p[0] & WSFRAME__FIN) != 0;
	h->op = p[0] & 0x0f;
	plen = p[1] & 0x7f;
	ext = plen == 126 ? 2 : plen == 127 ? 8 : 0;
	h->hlen = 2 + ext + 4;
	if (n < h->hlen)
		return 1;
	if (ext > 0) {
		plen = 0;
		for (uint32_t i = 0; i < ext; i++)
			plen = (plen << 8) | p[2 + i];
	}
	if (wsframe__check_length(r, h->op, plen, ev, ctx) < 0)
		return -1;
	h->plen = (uint32_t)plen;
	memcpy(h->mask, p + 2 + ext, 4);
	return 0;
}

/* XOR p[0..n) with the mask, p[0] being payload byte off of the frame;
 * 8 bytes at a time, as 8 is a multiple of the key's 4. */
static void
wsframe__unmask(unsigned char *p, size_t n, const unsigned char mask[4], size_t off)
{
	unsigned char key[8];
	uint64_t k, w;
	size_t i = 0;

	for (int j = 0; j < 8; j++)
		key[j] = mask[(off + j) & 3];
	memcpy(&k, key, 8);
	for (; n - i >= 8; i += 8) {
		memcpy(&w, p + i, 8);
		w ^= k;
		memcpy(p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] ^= key[i & 7];
}

static int
wsframe__is_text(const struct wsframe_reader *r, const struct wsframe__hdr *h)
{
	return h->op == WSFRAME_TEXT || (h->op == WSFRAME_CONT && r->msgop == WSFRAME_TEXT);
}

/* Unmasks payload bytes p[0..n) (payload offset off) and checks their
 * UTF-8 when the message is text, so that bad text fails at once. */
static int
wsframe__payload(struct wsframe_reader *r, const struct wsframe__hdr *h,
    unsigned char *p, size_t n, size_t off, const struct wsframe_events *ev, void *ctx)
{
	wsframe__unmask(p, n, h->mask, off);
	if (!wsframe__is_text(r, h))
		return 0;
	r->utf8 = utf8_step(r->utf8, p, n, NULL);
	if (r->utf8 == UTF8_REJECT)
		return wsframe__fail(r, WSFRAME_CLOSE_BAD_DATA, "invalid UTF-8 in a text message", ev, ctx);
	return 0;
}

/* Grows *p (of *cap bytes) to hold need, doubling but never past most:
 * memory follows the bytes that arrived, not the lengths announced. */
static void
wsframe__grow(unsigned char **p, uint32_t *cap, uint32_t need, uint32_t most)
{
	uint64_t c = *cap ? (uint64_t)*cap * 2 : 64;

	if (need <= *cap)
		return;
	if (c > most)
		c = most;
	if (c < need)
		c = need;
	*p = xrealloc(*p, c);
	*cap = (uint32_t)c;
}

static void
wsframe__drop_buf(struct wsframe_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = r->checked = 0;
}

static void
wsframe__drop_msg(struct wsframe_reader *r)
{
	free(r->msg);
	r->msg = NULL;
	r->msglen = r->msgcap = 0;
	r->msgop = 0;
	r->utf8 = UTF8_ACCEPT;
}

static int
wsframe__on_close(struct wsframe_reader *r, const unsigned char *p, uint32_t n,
    const struct wsframe_events *ev, void *ctx)
{
	int code;

	if (n == 1)
		return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "close frame of 1 byte", ev, ctx);
	if (n == 0) {
		code = WSFRAME_CLOSE_NO_STATUS;
		p = (const unsigned char *)"";
	} else {
		code = p[0] << 8 | p[1];
		if (!wsframe_close_code_valid(code))
			return wsframe__fail(r, WSFRAME_CLOSE_PROTOCOL, "invalid close code", ev, ctx);
		if (!utf8_valid((const char *)p + 2, n - 2))
			return wsframe__fail(r, WSFRAME_CLOSE_BAD_DATA, "close reason not UTF-8", ev, ctx);
		p += 2;
		n -= 2;
	}
	r->done = 1;
	if (ev->close != NULL)
		(void)ev->close(ctx, code, (const char *)p, n);
	return -1;
}

/* The last fragment: the message is complete once its text ends between
 * characters. */
static int
wsframe__on_message(struct wsframe_reader *r, int op, unsigned char *p, uint32_t n,
    const struct wsframe_events *ev, void *ctx)
{
	if (op == WSFRAME_TEXT && r->utf8 != UTF8_ACCEPT)
		return wsframe__fail(r, WSFRAME_CLOSE_BAD_DATA, "text ends inside a UTF-8 character", ev, ctx);
	r->utf8 = UTF8_ACCEPT;
	if (ev->message != NULL && ev->message(ctx, op, p, n) < 0) {
		r->done = 1;
		return -1;
	}
	return 0;
}

/* A data frame of a fragmented message: its payload joins msg; the last
 * one hands msg over and frees it. */
static int
wsframe__on_fragment(struct wsframe_reader *r, const struct wsframe__hdr *h,
    const unsigned char *p, uint32_t n, const struct wsframe_events *ev, void *ctx)
{
	unsigned char empty = 0;
	int rc;

	if (h->op != WSFRAME_CONT)
		r->msgop = h->op;
	if (n > 0) {
		wsframe__grow(&r->msg, &r->msgcap, r->msglen + n,
		    r->max_message < WSFRAME__LIMIT ? (uint32_t)r->max_message : WSFRAME__LIMIT);
		memcpy(r->msg + r->msglen, p, n);
		r->msglen += n;
	}
	if (!h->fin)
		return 0;
	rc = wsframe__on_message(r, r->msgop, r->msg != NULL ? r->msg : &empty, r->msglen, ev, ctx);
	wsframe__drop_msg(r);
	return rc;
}

/* A complete frame, payload unmasked and its text checked so far. */
static int
wsframe__on_frame(struct wsframe_reader *r, const struct wsframe__hdr *h,
    unsigned char *p, const struct wsframe_events *ev, void *ctx)
{
	switch (h->op) {
	case WSFRAME_PING:
		if (ev->ping != NULL && ev->ping(ctx, p, h->plen) < 0)
			goto stop;
		return 0;
	case WSFRAME_PONG:
		if (ev->pong != NULL && ev->pong(ctx, p, h->plen) < 0)
			goto stop;
		return 0;
	case WSFRAME_CLOSE:
		return wsframe__on_close(r, p, h->plen, ev, ctx);
	default:
		if (h->fin && h->op != WSFRAME_CONT)
			return wsframe__on_message(r, h->op, p, h->plen, ev, ctx);
		return wsframe__on_fragment(r, h, p, h->plen, ev, ctx);
	}

stop:
	r->done = 1;
	return -1;
}

/*
 * Adds p[0..n) to the incomplete frame in buf, taking only what this frame
 * needs (*used), and unmasks and checks its payload as it arrives.
 * 1: the frame in buf is complete, h describes it; 0: all of p was taken
 * and the frame is still incomplete; -1: failure reported.
 */
static int
wsframe__fill(struct wsframe_reader *r, const unsigned char *p, size_t n, size_t *used,
    struct wsframe__hdr *h, const struct wsframe_events *ev, void *ctx)
{
	uint32_t want, take, have;
	int rc;

	*used = 0;
	for (;;) {
		rc = wsframe__parse(r, r->buf, r->len, h, ev, ctx);
		if (rc < 0)
			return -1;
		want = h->hlen;
		if (rc == 0) {
			want += h->plen;
			have = r->len - h->hlen;
			if (have > r->checked &&
			    wsframe__payload(r, h, r->buf + h->hlen + r->checked,
			    have - r->checked, r->checked, ev, ctx) < 0)
				return -1;
			r->checked = have;
			if (r->len == want)
				return 1;
		}
		if (*used == n)
			return 0;
		take = n - *used < want - r->len ? (uint32_t)(n - *used) : want - r->len;
		wsframe__grow(&r->buf, &r->cap, r->len + take, want);
		memcpy(r->buf + r->len, p + *used, take);
		r->len += take;
		*used += take;
	}
}

int
wsframe_read(struct wsframe_reader *r, unsigned char *data, size_t len,
    const struct wsframe_events *ev, void *ctx)
{
	struct wsframe__hdr h;
	size_t off = 0, used;
	int rc;

	if (r->done)
		return -1;
	while (off < len) {
		/* The common case: a whole frame in this read, used in place. */
		if (r->len == 0) {
			rc = wsframe__parse(r, data + off, len - off, &h, ev, ctx);
			if (rc < 0)
				return -1;
			if (rc == 0 && (uint64_t)h.hlen + h.plen <= len - off) {
				unsigned char *p = data + off + h.hlen;

				off += h.hlen + h.plen;
				if (wsframe__payload(r, &h, p, h.plen, 0, ev, ctx) < 0 ||
				    wsframe__on_frame(r, &h, p, ev, ctx) < 0)
					return -1;
				continue;
			}
		}
		rc = wsframe__fill(r, data + off, len - off, &used, &h, ev, ctx);
		off += used;
		if (rc < 0)
			return -1;
		if (rc == 1) {
			rc = wsframe__on_frame(r, &h, r->buf + h.hlen, ev, ctx);
			wsframe__drop_buf(r);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

size_t
wsframe_header(unsigned char *h, int opcode, uint64_t len)
{
	h[0] = WSFRAME__FIN | (opcode & 0x0f);
	if (len <= WSFRAME_CONTROL_MAX) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

size_t
wsframe_close(unsigned char *out, int code, const char *reason)
{
	size_t n = reason != NULL ? strlen(reason) : 0;
	size_t hlen;

	if (code == 0)
		return wsframe_header(out, WSFRAME_CLOSE, 0);
	/* Cut before a continuation byte, so the reason stays whole characters. */
	if (n > WSFRAME_CONTROL_MAX - 2) {
		n = WSFRAME_CONTROL_MAX - 2;
		while (n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80)
			n--;
	}
	hlen = wsframe_header(out, WSFRAME_CLOSE, 2 + n);
	out[hlen] = (unsigned char)(code >> 8);
	out[hlen + 1] = (unsigned char)code;
	if (n > 0)
		memcpy(out + hlen + 2, reason, n);
	return hlen + 2 + n;
}

int
wsframe_close_code_valid(int code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	    (code >= 3000 && code <= 4999);
}
