#ifndef CHATD_REST_H
#define CHATD_REST_H

#include <stddef.h>

struct conn;

/*
 * The REST API (docs/protocol.md section 9, docs/rest.md): each route is a
 * command of the command table (proto/commands.h) built from the path, the
 * query and the JSON body, and run by the command's own handler as a
 * WebSocket frame would be (proto/cmd.c): one implementation, every
 * transport. The transport describes the request (struct rest_request):
 * net/http.c from an HTTP/1.1 request on chatd's port, net/fcgi.c from a
 * FastCGI request of a web server (chatd-fcgi). Every answer, an ack, an
 * error or a refusal here, goes through conn_http_answer_json (proto/reply.c
 * and this file), which the transport implements; while a command waits for
 * Redis or PostgreSQL it holds the connection (reply_req).
 */

/* The largest request body a REST route takes. */
#define REST_MAX_BODY (64 * 1024)

/* One request as a transport hands it over. The strings are the
 * transport's, valid for the call to rest_run only (a command copies what
 * it keeps). */
struct rest_request {
	int method;		/* http-parser's enum http_method; -1: none of them */
	const char *path;	/* without the query; not NUL-ended */
	size_t path_len;
	const char *query;	/* without '?'; NULL or query_len 0: none */
	size_t query_len;
	const char *body;
	size_t body_len;
	int body_too_large;	/* over REST_MAX_BODY: not read, answered 413 */
	/* The value of the first header called name (any case), or NULL. */
	const char *(*header)(const void *arg, const char *name, size_t *n);
	const void *arg;	/* header's */
};

/* A path under /api/ that is a REST route's (any method): 1. */
int rest_path(const char *path, size_t n);

/* Runs the request on c (kind CONN_HTTP, its peer's address in c->ip): 0
 * when it was answered at once, 1 when the answer will come later (the
 * caller reads no further request on c until then). */
int rest_run(struct conn *c, const struct rest_request *q);

#endif
