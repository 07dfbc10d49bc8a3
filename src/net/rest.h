#ifndef CHATD_REST_H
#define CHATD_REST_H

#include <stddef.h>

struct conn;
struct http_req;

/*
 * The REST API (docs/protocol.md section 9, docs/rest.md): each route is a
 * command of the command table (proto/commands.h) built from the path, the
 * query and the JSON body, and run by the command's own handler as a
 * WebSocket frame would be (proto/cmd.c): one implementation, two
 * transports. The answer, an ack or an error, becomes the HTTP response
 * (proto/reply.c, net/http.c); while a command waits for Redis or
 * PostgreSQL the connection reads no further request.
 */

/* The largest request body a REST route takes. */
#define REST_MAX_BODY (64 * 1024)

/* A path under /api/ that is a REST route's (any method): 1. */
int rest_path(const char *path, size_t n);

/* Runs the request; 0 when it was answered at once, 1 when the answer will
 * come later (the caller reads no further request until then). */
int rest_handle(struct conn *c, struct http_req *r);

#endif
