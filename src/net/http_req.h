#ifndef CHATD_HTTP_REQ_H
#define CHATD_HTTP_REQ_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Reading HTTP/1.1 requests from a byte stream with Debian's http-parser:
 * no socket, no loop, so unit tests and the fuzzer run exactly this. The
 * raw bytes are kept in one buffer (buf) until the request is answered;
 * the URL, header names and values and the body are spans of it. Pipelined
 * requests are read one at a time: the parser pauses at the end of each.
 *
 * Limits, each with its status: request line over HTTP_REQ_HEAD_MAX
 * bytes -> 414, request line and headers over HTTP_REQ_HEAD_MAX or more
 * than HTTP_REQ_HEADERS_MAX headers -> 431, a body over the limit that
 * body_limit gives for this request -> 413, anything malformed -> 400,
 * an HTTP version other than 1.x -> 505.
 */

#define HTTP_REQ_HEAD_MAX 8192
#define HTTP_REQ_HEADERS_MAX 64

enum http_req_result {
	HTTP_REQ_MORE = 0,	/* need more bytes */
	HTTP_REQ_READY = 1,	/* a whole request (or an upgrade's headers) is ready */
	HTTP_REQ_ERROR = -1	/* answer status (then close) */
};

struct http_span {
	uint32_t off, len;
};

struct http_req;

/* The largest body the request may carry, asked once its headers are read
 * (the route is known then). */
typedef uint64_t http_req_body_limit(const struct http_req *r);

struct http_req {
	http_parser parser;
	http_req_body_limit *body_limit;
	void *data;		/* the owner's */
	char *buf;		/* raw bytes from the request's first; owned */
	uint32_t len, cap;
	uint32_t fed;		/* bytes of buf given to the parser */
	uint32_t head;		/* bytes of the request line and headers so far */
	struct http_span url, body;
	struct http_span name[HTTP_REQ_HEADERS_MAX], value[HTTP_REQ_HEADERS_MAX];
	uint16_t nheaders;
	uint8_t last;		/* the last span written: 0 none, 1 url, 2 name, 3 value */
	uint8_t headers_done;
	uint8_t complete;	/* READY returned; http_req_next before reading on */
	uint8_t upgrade;	/* the request asks for a protocol upgrade */
	int status;		/* with HTTP_REQ_ERROR */
	const char *error;	/* with HTTP_REQ_ERROR: why, for the body and the log */
};

void http_req_init(struct http_req *r, http_req_body_limit *limit, void *data);
void http_req_free(struct http_req *r);

/* Append data (may be NULL with n 0: parse what is buffered) and parse. */
enum http_req_result http_req_feed(struct http_req *r, const char *data, size_t n);
/* The request was answered: drop its bytes, keep what followed it (the
 * next pipelined request), reset for the next. */
void http_req_next(struct http_req *r);
/* Bytes received after the request (an upgrade's first frames). */
const char *http_req_rest(const struct http_req *r, size_t *n);
/* Bytes of the next request received so far (1: some). */
int http_req_started(const struct http_req *r);

/* The method, as http-parser's enum http_method. */
int http_req_method(const struct http_req *r);
int http_req_keep_alive(const struct http_req *r);
/* The path without the query, and the query without '?' (n 0: none). */
const char *http_req_path(const struct http_req *r, size_t *n);
const char *http_req_query(const struct http_req *r, size_t *n);
/* The first header called name (any case), or NULL. */
const char *http_req_header(const struct http_req *r, const char *name, size_t *n);
/* The token of an "Authorization: Bearer <token>" header, or NULL. */
const char *http_req_bearer(const struct http_req *r, size_t *n);
/* 1 when header name's comma-separated value lists token (any case). */
int http_req_header_has(const struct http_req *r, const char *name, const char *token);
/* The query argument name, percent-decoded into out (NUL-ended).
 * 0 found, -1 absent or longer than outlen - 1. */
int http_req_arg(const struct http_req *r, const char *name, char *out, size_t outlen);
const char *http_req_body(const struct http_req *r, size_t *n);
/* The argument name of a query text q (qn bytes, name=value&...; any
 * transport's), percent-decoded; as http_req_arg. */
int http_req_query_arg(const char *q, size_t qn, const char *name, char *out, size_t outlen);
/* A field of an application/x-www-form-urlencoded body, decoded; as
 * http_req_arg. */
int http_req_form(const struct http_req *r, const char *name, char *out, size_t outlen);

#endif
