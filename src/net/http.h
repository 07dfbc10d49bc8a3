#ifndef CHATD_HTTP_H
#define CHATD_HTTP_H

#include <stddef.h>
#include <uv.h>

struct conn;
struct http_req;

/*
 * HTTP/1.1 on chatd's port: every accepted socket starts here. Requests are
 * read by net/http_req.c, answered in order one at a time (keep-alive and
 * pipelining), and routed by one table: /ws (the WebSocket upgrade,
 * net/ws.c), /health, /ready, the monitoring JSON and its event stream
 * (net/sse.c), the dev sign-in (net/devtoken.c), and the static assets
 * (net/assets.c) for any other path.
 */

/* Worker start: register the HTTP reader, read the assets. */
void http_start(void);
/* A socket accept4()ed by the worker. */
void http_accept(uv_loop_t *loop, int fd);
/* Once a second (the worker's tick): changed assets, the event streams. */
void http_tick(void);

/* A response to r (NULL: no request could be read): status line, Date,
 * Content-Type when ctype, Content-Length, headers (whole lines), body
 * (not for HEAD or 304). The connection ends after it unless the request
 * keeps it alive. */
void http_respond(struct conn *c, const struct http_req *r, int status, const char *ctype,
    const char *body, size_t len, const char *headers);
/* The reason phrase of a status chatd answers ("Not Found"). */
const char *http_reason(int status);
/* A JSON error body {"error": why, "status": status}. */
void http_respond_error(struct conn *c, const struct http_req *r, int status, const char *why,
    const char *headers);

#endif
