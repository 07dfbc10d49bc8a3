#include "net/http_req.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What one connection may hold unread: a request's head and body plus one
 * read's worth of what follows it (pipelined requests, a WebSocket's first
 * frames). Past it the client is told 431 (or 413 in a body). */
#define HTTP_REQ_READ_MAX (64 * 1024)

static struct http_req *
http_req__of(http_parser *p)
{
	return p->data;
}

/* Record a piece of the URL, a header name or a value. Pieces of one item
 * are adjacent in buf (it holds the raw bytes in order), so a piece that
 * continues the last span extends it. */
static int
http_req__span(http_parser *p, const char *at, size_t n, uint8_t what)
{
	struct http_req *r = http_req__of(p);
	uint32_t off = (uint32_t)(at - r->buf);
	struct http_span *s;

	if (r->error != NULL)
		return 0;	/* too many header fields: answered 431 at the end */
	if (what == 2 && r->last != 2) {
		if (r->nheaders == HTTP_REQ_HEADERS_MAX) {
			/* Not failed here but where the head (or the trailer)
			 * ends: callbacks come wherever a read ended, and a bad
			 * byte after this one must be a 400 however it came. */
			r->error = "too many header fields";
			return 0;
		}
		r->nheaders++;
		r->name[r->nheaders - 1] = (struct http_span){ off, 0 };
		r->value[r->nheaders - 1] = (struct http_span){ off, 0 };
	}
	if (what == 1)
		s = &r->url;
	else if (what == 2)
		s = &r->name[r->nheaders - 1];
	else
		s = &r->value[r->nheaders - 1];
	if (r->last != what || s->len == 0)
		s->off = off;
	else if (what == 3 && off != s->off + s->len) {
		/* A folded value (obs-fold): RFC 9112 5.2 allows a 400. */
		r->status = 400;
		r->error = "folded header field value";
		return -1;
	}
	s->len = off + (uint32_t)n - s->off;
	r->last = what;
	return 0;
}

static int
http_req__url(http_parser *p, const char *at, size_t n)
{
	return http_req__span(p, at, n, 1);
}

static int
http_req__field(http_parser *p, const char *at, size_t n)
{
	struct http_req *r = http_req__of(p);

	/* Debian's http-parser is built lax (HTTP_PARSER_STRICT=0) and takes
	 * spaces in a name ("Host : x"), which RFC 9112 5.1 says to refuse. */
	if (memchr(at, ' ', n) != NULL) {
		r->status = 400;
		r->error = "whitespace in a header field name";
		return -1;
	}
	return http_req__span(p, at, n, 2);
}

static int
http_req__value(http_parser *p, const char *at, size_t n)
{
	struct http_req *r = http_req__of(p);

	if (r->nheaders == 0)
		return -1;
	return http_req__span(p, at, n, 3);
}

static int
http_req__headers_complete(http_parser *p)
{
	struct http_req *r = http_req__of(p);
	uint64_t limit = r->body_limit ? r->body_limit(r) : 0;

	r->headers_done = 1;
	r->upgrade = (p->flags & F_UPGRADE) != 0;
	if (r->error != NULL) {
		r->status = 431;
		return -1;
	}
	if (p->http_major != 1) {
		r->status = 505;
		r->error = "HTTP/1.x only";
		return -1;
	}
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > limit) {
		r->status = 413;
		r->error = "request body too large";
		return -1;
	}
	return 0;
}

static int
http_req__body(http_parser *p, const char *at, size_t n)
{
	struct http_req *r = http_req__of(p);
	uint32_t off = (uint32_t)(at - r->buf);
	uint64_t limit = r->body_limit ? r->body_limit(r) : 0;

	/* Chunked bodies arrive in pieces with chunk headers between them:
	 * move each piece down so that the body stays contiguous. */
	if (r->body.len == 0)
		r->body.off = off;
	else if (off != r->body.off + r->body.len)
		memmove(r->buf + r->body.off + r->body.len, at, n);
	r->body.len += (uint32_t)n;
	if (r->body.len > limit) {
		r->status = 413;
		r->error = "request body too large";
		return -1;
	}
	return 0;
}

static int
http_req__complete(http_parser *p)
{
	struct http_req *r = http_req__of(p);

	if (r->error != NULL) {
		r->status = 431;	/* too many trailer fields */
		return -1;
	}
	r->complete = 1;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings http_req_settings = {
	.on_url = http_req__url,
	.on_header_field = http_req__field,
	.on_header_value = http_req__value,
	.on_headers_complete = http_req__headers_complete,
	.on_body = http_req__body,
	.on_message_complete = http_req__complete,
};

static void
http_req__reset(struct http_req *r)
{
	void *data = r->data;

	http_parser_init(&r->parser, HTTP_REQUEST);
	r->parser.data = r;
	r->data = data;
	r->head = 0;
	r->url = r->body = (struct http_span){ 0, 0 };
	r->nheaders = 0;
	r->last = r->headers_done = r->complete = r->upgrade = 0;
	r->status = 0;
	r->error = NULL;
}

void
http_req_init(struct http_req *r, http_req_body_limit *limit, void *data)
{
	static int once;

	if (!once) {
		/* Ours is checked first; the parser's own is a backstop. */
		http_parser_set_max_header_size(2 * HTTP_REQ_HEAD_MAX);
		once = 1;
	}
	memset(r, 0, sizeof(*r));
	r->body_limit = limit;
	r->data = data;
	http_req__reset(r);
}

void
http_req_free(struct http_req *r)
{
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = r->fed = 0;
}

static enum http_req_result
http_req__fail(struct http_req *r, int status, const char *why)
{
	if (r->status == 0) {
		r->status = status;
		r->error = why;
	}
	return HTTP_REQ_ERROR;
}

static enum http_req_result
http_req__errno(struct http_req *r)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);

	if (r->status != 0)
		return HTTP_REQ_ERROR;
	if (e == HPE_HEADER_OVERFLOW)
		return http_req__fail(r, r->nheaders == 0 ? 414 : 431, "request head too large");
	return http_req__fail(r, 400, http_errno_description(e));
}

enum http_req_result
http_req_feed(struct http_req *r, const char *data, size_t n)
{
	size_t done, avail;

	if (r->status != 0)
		return HTTP_REQ_ERROR;
	if (n > 0) {
		if ((size_t)r->len + n > HTTP_REQ_HEAD_MAX + HTTP_REQ_READ_MAX +
		    (r->headers_done && r->body_limit ? r->body_limit(r) : 0))
			return http_req__fail(r, r->headers_done ? 413 : 431, "request too large");
		if (r->len + n > r->cap) {
			r->cap = (uint32_t)(r->len + n < 1024 ? 1024 : (r->len + n) * 2);
			r->buf = xrealloc(r->buf, r->cap);
		}
		memcpy(r->buf + r->len, data, n);
		r->len += (uint32_t)n;
	}
	if (r->complete)
		return HTTP_REQ_READY;
	/* The parser gets no more of a head than its limit, so that the limit
	 * holds to the byte however the bytes arrive (whole or in pieces);
	 * what follows the head is parsed in a second round. */
	while ((avail = r->len - r->fed) > 0) {
		if (!r->headers_done && avail > HTTP_REQ_HEAD_MAX - r->head)
			avail = HTTP_REQ_HEAD_MAX - r->head;
		done = http_parser_execute(&r->parser, &http_req_settings, r->buf + r->fed, avail);
		if (!r->headers_done) {
			r->head += (uint32_t)done;
			if (r->head >= HTTP_REQ_HEAD_MAX)
				return http_req__fail(r, r->nheaders == 0 && r->last <= 1 ? 414 : 431,
				    r->nheaders == 0 && r->last <= 1 ? "request line too long" :
				    "request header fields too large");
		}
		r->fed += (uint32_t)done;
		if (r->complete)
			return HTTP_REQ_READY;
		if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK)
			return http_req__errno(r);
		/* An upgrade needs no case of its own: http-parser calls
		 * on_message_complete at the end of its headers (or of its body
		 * when it has one), so it was READY above, the rest unparsed. */
		if (done < avail)
			break;
	}
	return HTTP_REQ_MORE;
}

void
http_req_next(struct http_req *r)
{
	uint32_t rest = r->len - r->fed;

	if (rest > 0)
		memmove(r->buf, r->buf + r->fed, rest);
	r->len = rest;
	r->fed = 0;
	if (rest == 0 && r->cap > 4096) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
	http_req__reset(r);
}

const char *
http_req_rest(const struct http_req *r, size_t *n)
{
	*n = r->len - r->fed;
	return r->buf + r->fed;
}

int
http_req_started(const struct http_req *r)
{
	return r->complete ? r->len > r->fed : r->len > 0;
}

int
http_req_method(const struct http_req *r)
{
	return (int)r->parser.method;
}

int
http_req_keep_alive(const struct http_req *r)
{
	return http_should_keep_alive(&r->parser);
}

const char *
http_req_path(const struct http_req *r, size_t *n)
{
	const char *u = r->buf + r->url.off;
	const char *q = memchr(u, '?', r->url.len);

	*n = q ? (size_t)(q - u) : r->url.len;
	return u;
}

const char *
http_req_query(const struct http_req *r, size_t *n)
{
	const char *u = r->buf + r->url.off;
	const char *q = memchr(u, '?', r->url.len);
	const char *end = u + r->url.len, *hash;

	if (q == NULL) {
		*n = 0;
		return u + r->url.len;
	}
	q++;
	hash = memchr(q, '#', (size_t)(end - q));
	*n = (size_t)((hash ? hash : end) - q);
	return q;
}

const char *
http_req_header(const struct http_req *r, const char *name, size_t *n)
{
	size_t len = strlen(name);

	for (int i = 0; i < r->nheaders; i++) {
		if (r->name[i].len == len && strncasecmp(r->buf + r->name[i].off, name, len) == 0) {
			*n = r->value[i].len;
			return r->buf + r->value[i].off;
		}
	}
	*n = 0;
	return NULL;
}

const char *
http_req_bearer(const struct http_req *r, size_t *n)
{
	const char *v = http_req_header(r, "Authorization", n);

	if (v == NULL || *n <= 7 || strncasecmp(v, "Bearer ", 7) != 0) {
		*n = 0;
		return NULL;
	}
	*n -= 7;
	return v + 7;
}

int
http_req_header_has(const struct http_req *r, const char *name, const char *token)
{
	size_t n, tlen = strlen(token);
	const char *v = http_req_header(r, name, &n);
	const char *end = v != NULL ? v + n : NULL;	/* NULL + 0 is undefined */

	while (v != NULL && v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *e = comma ? comma : end;

		while (v < e && (*v == ' ' || *v == '\t'))
			v++;
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - v) == tlen && strncasecmp(v, token, tlen) == 0)
			return 1;
		v = comma ? comma + 1 : end;
	}
	return 0;
}

static int
http_req__hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode p[0..n) into out; -1 when it does not fit. */
static int
http_req__decode(const char *p, size_t n, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = p[i];

		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%' && i + 2 < n && http_req__hex(p[i + 1]) >= 0 &&
		    http_req__hex(p[i + 2]) >= 0) {
			ch = (char)(http_req__hex(p[i + 1]) * 16 + http_req__hex(p[i + 2]));
			i += 2;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = ch;
	}
	out[o] = '\0';
	return 0;
}

/* The value of name in a name=value&... text (a query, a form body). */
static int
http_req__pair(const char *q, size_t qn, const char *name, char *out, size_t outlen)
{
	size_t len = strlen(name);
	const char *end = q + qn;

	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *e = amp ? amp : end;

		if ((size_t)(e - q) > len && q[len] == '=' && strncmp(q, name, len) == 0)
			return http_req__decode(q + len + 1, (size_t)(e - q - (ptrdiff_t)len - 1), out,
			    outlen);
		q = amp ? amp + 1 : end;
	}
	if (outlen > 0)
		out[0] = '\0';
	return -1;
}

int
http_req_query_arg(const char *q, size_t qn, const char *name, char *out, size_t outlen)
{
	return http_req__pair(q, qn, name, out, outlen);
}

int
http_req_arg(const struct http_req *r, const char *name, char *out, size_t outlen)
{
	size_t qn;
	const char *q = http_req_query(r, &qn);

	return http_req__pair(q, qn, name, out, outlen);
}

int
http_req_form(const struct http_req *r, const char *name, char *out, size_t outlen)
{
	size_t n;
	const char *body = http_req_body(r, &n);

	return http_req__pair(body, n, name, out, outlen);
}

const char *
http_req_body(const struct http_req *r, size_t *n)
{
	*n = r->body.len;
	return r->buf + r->body.off;
}
