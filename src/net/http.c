#include "net/http.h"
#include "net/assets.h"
#include "net/auth.h"
#include "net/conn.h"
#include "net/devtoken.h"
#include "net/http_req.h"
#include "net/sse.h"
#include "net/ws.h"
#include "net/rest.h"
#include "net/admit.h"
#include "chat/join.h"
#include "proto/cursor.h"
#include "lib/cidr.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "proc/srv.h"
#include "store/pg_queue.h"
#include "store/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* A set of http-parser methods (HTTP_DELETE 0 ... HTTP_SOURCE 33): 64 bits. */
#define HTTP_M(m) (UINT64_C(1) << (m))
/* Every method: the handler answers 404 or 405 itself. */
#define HTTP_ANY UINT64_MAX
#define HTTP_GET_HEAD (HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD))
/* Responses waiting to be written past which pipelined requests wait. */
#define HTTP_QUEUE_MAX (256 * 1024)

/* The largest admin token the login form turns into a cookie (the
 * response head is bounded). */
#define HTTP_COOKIE_TOKEN_MAX 700

typedef void http_handler(struct conn *c, struct http_req *r);

static http_handler http__ws, http__health, http__ready, http__monitoring_json,
    http__monitoring_stream, http__metrics, http__login, http__asset, http__events;

/* The routes: an exact path, the methods it answers, the largest body it
 * takes, and whether it is for admins (http__admitted, checked in
 * http__handle only). A path no route names is an asset (net/assets.c) or
 * 404: the chat client at "/" and "/chat/..." for anyone, the monitoring
 * page's files for admins (http__admin_asset). */
static const struct http_route {
	const char *path;
	uint64_t methods;
	uint32_t max_body;
	const char *allow;	/* the Allow header of a 405 */
	int admin;
	http_handler *fn;
} http_routes[] = {
	{ "/ws", HTTP_M(HTTP_GET), 0, "GET", 0, http__ws },
	{ "/api/events", HTTP_M(HTTP_GET), 0, "GET", 0, http__events },
	{ "/health", HTTP_GET_HEAD, 0, "GET, HEAD", 0, http__health },
	{ "/ready", HTTP_GET_HEAD, 0, "GET, HEAD", 0, http__ready },
	{ "/api/monitoring/websocket", HTTP_GET_HEAD, 0, "GET, HEAD", 1, http__monitoring_json },
	{ "/api/monitoring/stream", HTTP_M(HTTP_GET), 0, "GET", 1, http__monitoring_stream },
	{ "/metrics", HTTP_GET_HEAD, 0, "GET, HEAD", 1, http__metrics },
	{ "/monitoring/login", HTTP_M(HTTP_POST), 8192, "POST", 0, http__login },
	/* Off (404) unless dev_tokens = 1, then for monitoring_trusted peers only. */
	{ "/dev/token", HTTP_ANY, 4096, "GET, HEAD, POST", 0, devtoken_handle },
};
static const struct http_route http_asset_route = {
	NULL, HTTP_GET_HEAD, 0, "GET, HEAD", 0, http__asset
};

static const struct http_route *
http__route(const struct http_req *r)
{
	size_t n;
	const char *path = http_req_path(r, &n);

	for (size_t i = 0; i < sizeof(http_routes) / sizeof(http_routes[0]); i++)
		if (strlen(http_routes[i].path) == n && memcmp(http_routes[i].path, path, n) == 0)
			return &http_routes[i];
	return &http_asset_route;
}

static uint64_t
http__body_limit(const struct http_req *r)
{
	size_t n;
	const char *path = http_req_path(r, &n);

	if (http__route(r) == &http_asset_route && rest_path(path, n))
		return REST_MAX_BODY;
	return http__route(r)->max_body;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* The Date header's value, made once a second. */
static const char *
http__date(void)
{
	static char buf[64];
	static time_t made;
	time_t now = time(NULL);
	struct tm tm;

	if (now != made) {
		gmtime_r(&now, &tm);
		strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		made = now;
	}
	return buf;
}

void
http_respond(struct conn *c, const struct http_req *r, int status, const char *ctype,
    const char *body, size_t len, const char *headers)
{
	char head[1024];
	int keep = r != NULL && r->status == 0 && http_req_keep_alive(r) && !srv.draining;
	int hn, no_body = (r != NULL && r->status == 0 && r->headers_done &&
	    http_req_method(r) == HTTP_HEAD) || status == 304;
	hn = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: chatd\r\n%s%s%sContent-Length: %zu\r\n%s%s\r\n",
	    status, http_reason(status), http__date(),
	    ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", len,
	    keep ? "" : "Connection: close\r\n", headers ? headers : "");
	if (hn < 0 || (size_t)hn >= sizeof(head))
		log_fatal("http: response head too long");
	if (no_body || len == 0) {
		conn_send_raw(c, head, (size_t)hn);
	} else {
		char *all = xmalloc((size_t)hn + len);

		memcpy(all, head, (size_t)hn);
		memcpy(all + hn, body, len);
		conn_send_raw(c, all, (size_t)hn + len);
		free(all);
	}
	if (!keep)
		conn_end_after_write(c);
}

void
http_respond_error(struct conn *c, const struct http_req *r, int status, const char *why,
    const char *headers)
{
	char body[320];
	int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}", why, status);

	http_respond(c, r, status, "application/json", body, (size_t)n, headers);
}

static void
http__json(struct conn *c, struct http_req *r, int status, const char *body)
{
	http_respond(c, r, status, "application/json", body, strlen(body),
	    "Cache-Control: no-store\r\n");
}

/* ---------------------------------------------------------------- routes */

static void
http__ws(struct conn *c, struct http_req *r)
{
	struct ws_refusal no;

	if (ws_upgrade(c, r, &no) != 0)
		http_respond_error(c, r, no.status, no.why, no.header);
}

/* GET /api/events?rooms=a,b: a user's room event stream (docs/protocol.md
 * section 9). The arguments are read before the door, the door is the
 * WebSocket's; then the head, and each room is joined (chat/join.c). */
static void
http__events(struct conn *c, struct http_req *r)
{
	int max = srv.cfg->max_rooms_per_conn;
	struct cursor_entry *rooms = xcalloc((size_t)max, sizeof(*rooms));
	size_t arglen = (size_t)max * (UTIL_ID_MAX + 24) + 1, n;
	char *arg = xmalloc(arglen);
	const char *last, *ua;
	struct auth_identity id;
	struct ws_refusal no;
	int nrooms = -1;

	if (http_req_arg(r, "rooms", arg, arglen) == 0)
		nrooms = cursor_rooms(arg, strlen(arg), rooms, max);
	if (nrooms < 0) {
		http_respond_error(c, r, 400, "rooms: room ids separated by commas, each once, "
		    "at most max_rooms_per_conn", NULL);
		goto done;
	}
	last = http_req_header(r, "Last-Event-ID", &n);
	if (last == NULL && http_req_arg(r, "last_event_id", arg, arglen) == 0) {
		last = arg;
		n = strlen(arg);
	}
	if (last != NULL && (n >= arglen || cursor_parse(last, n, rooms, nrooms) != 0)) {
		http_respond_error(c, r, 400, "Last-Event-ID: room=seq pairs separated by commas",
		    NULL);
		goto done;
	}
	if (ws_admit(c, r, &id, &no) != 0) {
		metrics_refused(c->ip, no.status, no.why);
		http_respond_error(c, r, no.status, no.why, no.header);
		goto done;
	}
	conn_set_identity(c, &id);
	admit_conn_opened(c->ip, id.tenant, id.user);
	ua = http_req_header(r, "User-Agent", &n);
	metrics_conn_opened(c->ip, id.tenant, id.user, ua, ua ? n : 0);
	sse_open(c, SSE_ROOMS);		/* r is gone */
	for (int i = 0; i < nrooms; i++)
		join_stream(c, rooms[i].room, rooms[i].seq);
done:
	free(arg);
	free(rooms);
}

static void
http__health(struct conn *c, struct http_req *r)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"status\":\"ok\",\"worker\":%d,\"draining\":%s}",
	    srv.index, srv.draining ? "true" : "false");
	http__json(c, r, 200, body);
}

static void
http__ready(struct conn *c, struct http_req *r)
{
	char body[256];
	int redis = redis_ready(), pg = pgq_up(srv.pg);
	int ok = redis && pg && !srv.draining;

	snprintf(body, sizeof(body), "{\"ready\":%s,\"redis\":%s,\"postgres\":%s,\"draining\":%s}",
	    ok ? "true" : "false", redis ? "true" : "false", pg ? "true" : "false",
	    srv.draining ? "true" : "false");
	http__json(c, r, ok ? 200 : 503, body);
}

/* token (len bytes) is an admin's JWT. */
static int
http__admin_token(const char *token, size_t len)
{
	char buf[4200];
	struct auth_identity id;
	const char *reason;

	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, token, len);
	buf[len] = '\0';
	return auth_verify(srv.cfg, buf, &id, &reason) == 0 && id.admin;
}

/* The value of the chatd_admin cookie, or NULL. */
static const char *
http__admin_cookie(const struct http_req *r, size_t *len)
{
	static const char name[] = "chatd_admin=";
	size_t n = 0;
	const char *h = http_req_header(r, "Cookie", &n), *end;

	if (h == NULL)
		return NULL;
	end = h + n;
	while (h < end) {
		const char *semi = memchr(h, ';', (size_t)(end - h));
		const char *e = semi ? semi : end;

		while (h < e && *h == ' ')
			h++;
		if ((size_t)(e - h) > sizeof(name) - 1 && memcmp(h, name, sizeof(name) - 1) == 0) {
			*len = (size_t)(e - h) - (sizeof(name) - 1);
			return h + sizeof(name) - 1;
		}
		h = semi ? semi + 1 : end;
	}
	return NULL;
}

/* Monitoring is for peers in monitoring_trusted, or a request with an
 * admin token: Authorization: Bearer, or the login form's cookie. */
static int
http__admitted(struct conn *c, const struct http_req *r)
{
	size_t n;
	const char *v;

	if (cidr_match(srv.cfg->trusted, srv.cfg->ntrusted, c->ip))
		return 1;
	v = http_req_bearer(r, &n);
	if (v != NULL && http__admin_token(v, n))
		return 1;
	v = http__admin_cookie(r, &n);
	return v != NULL && http__admin_token(v, n);
}

/* The dashboard and its files: "/monitoring", "/monitoring/..." ("/" is
 * the chat client, for anyone). */
static int
http__admin_asset(const char *path, size_t n)
{
	return (n == 11 && memcmp(path, "/monitoring", 11) == 0) ||
	    (n >= 12 && memcmp(path, "/monitoring/", 12) == 0);
}

/* A page a person opens, rather than a file the page loads. */
static int
http__page(const char *path, size_t n)
{
	return n == 0 || path[n - 1] == '/' || (n == 11 && memcmp(path, "/monitoring", 11) == 0) ||
	    (n > 5 && memcmp(path + n - 5, ".html", 5) == 0);
}

/* A person opens the dashboard in a browser: a page that asks for the
 * token; anything else gets the JSON error. */
static void
http__unauthorized(struct conn *c, const struct http_req *r, int page, const char *why)
{
	char body[1024];
	int n;

	if (!page) {
		http_respond_error(c, r, 401, "admin token required", NULL);
		return;
	}
	n = snprintf(body, sizeof(body),
	    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	    "<title>chatd monitoring: sign in</title></head><body>"
	    "<h1>chatd monitoring</h1><p>%s</p>"
	    "<form method=\"post\" action=\"/monitoring/login\">"
	    "<label>Admin token <input name=\"token\" type=\"password\" autocomplete=\"off\" "
	    "required></label> <button type=\"submit\">Sign in</button></form></body></html>\n",
	    why);
	http_respond(c, r, 401, "text/html; charset=utf-8", body, (size_t)n,
	    "Cache-Control: no-store\r\n");
}

static void
http__monitoring_json(struct conn *c, struct http_req *r)
{
	char *json = metrics_json();

	http__json(c, r, 200, json);
	free(json);
}

static void
http__monitoring_stream(struct conn *c, struct http_req *r)
{
	(void)r;
	sse_open(c, SSE_MONITORING);
}

static void
http__metrics(struct conn *c, struct http_req *r)
{
	size_t len;
	char *text = metrics_prometheus(&len);

	http_respond(c, r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
	    "Cache-Control: no-store\r\n");
	free(text);
}

/* POST /monitoring/login, form field token: an admin token becomes the
 * chatd_admin cookie (HttpOnly, SameSite=Strict) and the browser goes to
 * the dashboard; anything else gets the form again, 401. */
static void
http__login(struct conn *c, struct http_req *r)
{
	char token[HTTP_COOKIE_TOKEN_MAX + 1], headers[HTTP_COOKIE_TOKEN_MAX + 128];
	size_t len;

	if (http_req_form(r, "token", token, sizeof(token)) != 0 ||
	    (len = strlen(token)) == 0 || strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_.") != len || !http__admin_token(token, len)) {
		log_info("http from %s: monitoring login refused", c->ip);
		http__unauthorized(c, r, 1, "That is not an admin token.");
		return;
	}
	snprintf(headers, sizeof(headers), "Location: /monitoring\r\nSet-Cookie: chatd_admin=%s; "
	    "HttpOnly; SameSite=Strict; Path=/\r\nCache-Control: no-store\r\n", token);
	http_respond(c, r, 303, NULL, NULL, 0, headers);
}

static void
http__asset(struct conn *c, struct http_req *r)
{
	size_t n, inm_n;
	const char *path = http_req_path(r, &n);
	const char *inm = http_req_header(r, "If-None-Match", &inm_n);
	const struct asset *a;
	char headers[256];
	int status = assets_get(path, n, &a);

	if (status != 200) {
		http_respond_error(c, r, status, status == 400 ? "bad path" : "not found", NULL);
		return;
	}
	if (http_req_method(r) != HTTP_GET && http_req_method(r) != HTTP_HEAD) {
		http_respond_error(c, r, 405, "method not allowed", "Allow: GET, HEAD\r\n");
		return;
	}
	snprintf(headers, sizeof(headers), "ETag: %s\r\nCache-Control: %s\r\n", a->etag,
	    a->cache_control);
	if (inm != NULL && strlen(a->etag) == inm_n && memcmp(inm, a->etag, inm_n) == 0)
		http_respond(c, r, 304, NULL, NULL, 0, headers);
	else
		http_respond(c, r, 200, a->type, a->data, a->len, headers);
}

/* ---------------------------------------------------------------- REST */

static const char *
http__rest_header(const void *arg, const char *name, size_t *n)
{
	return http_req_header(arg, name, n);
}

/* A REST route (net/rest.c): the request described for it. Its answer
 * comes through http__answer, at once or later. */
static void
http__rest(struct conn *c, struct http_req *r)
{
	struct rest_request q = { .method = http_req_method(r), .header = http__rest_header,
	    .arg = r };

	q.path = http_req_path(r, &q.path_len);
	q.query = http_req_query(r, &q.query_len);
	q.body = http_req_body(r, &q.body_len);
	rest_run(c, &q);
}

/* ---------------------------------------------------------------- reading */

static void
http__handle(struct conn *c, struct http_req *r)
{
	const struct http_route *route = http__route(r);
	size_t n;
	const char *path = http_req_path(r, &n);
	char allow[64];

	if (route->fn != http__asset && !(route->methods & HTTP_M(http_req_method(r)))) {
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", route->allow);
		http_respond_error(c, r, 405, "method not allowed", allow);
		return;
	}
	if (route == &http_asset_route && rest_path(path, n)) {
		http__rest(c, r);
		return;
	}
	if (route->admin || (route->fn == http__asset && http__admin_asset(path, n))) {
		if (!http__admitted(c, r)) {
			http__unauthorized(c, r, route->fn == http__asset && http__page(path, n),
			    "An admin token is required.");
			return;
		}
	}
	route->fn(c, r);
}

/* No complete request within handshake_timeout_s: 408 if it began, else
 * the idle connection just closes. */
static void
http__timeout(struct conn *c)
{
	if (http_req_started(c->req)) {
		log_info("http from %s: request not complete in %d s, 408", c->ip,
		    srv.cfg->handshake_timeout_s);
		c->req->status = 408;
		http_respond_error(c, c->req, 408, "request timeout", NULL);
	} else {
		conn_end_after_write(c);
	}
}

/* Bytes of an HTTP connection (NULL: the sweep's deadline check, or
 * reading resumed). Requests are answered one at a time, in order. */
static void
http__read(struct conn *c, char *data, size_t n)
{
	struct http_req *r = c->req;
	enum http_req_result res;

	if (c->end_after_write)
		return;		/* the last response is queued: the rest is ignored */
	if (data == NULL && r != NULL && !r->complete &&
	    uv_now(srv.loop) - c->start_ms >= (uint64_t)srv.cfg->handshake_timeout_s * 1000) {
		http__timeout(c);
		return;
	}
	res = http_req_feed(r, data, n);
	while (res != HTTP_REQ_MORE) {
		if (res == HTTP_REQ_ERROR) {
			log_info("http from %s: %d %s", c->ip, r->status, r->error);
			http_respond_error(c, r, r->status, r->error, NULL);
			return;
		}
		http__handle(c, r);
		if (c->kind != CONN_HTTP || c->end_after_write || c->killing)
			return;		/* upgraded, streaming, or ending */
		if (c->rest == CONN_REST_DEFERRED) {
			/* A command waits for its answer (http__answer). */
			conn_pause_reading(c, 1);
			return;
		}
		http_req_next(r);
		c->start_ms = uv_now(srv.loop);
		if (c->qbytes > HTTP_QUEUE_MAX) {
			conn_pause_reading(c, 1);
			return;
		}
		res = http_req_feed(r, NULL, 0);
	}
}

/* A command's answer on an HTTP connection (proto/reply.c, through
 * net/conn): the response, then, if the command had to wait, the next
 * request (reading resumes once the response is written). */
static void
http__answer(struct conn *c, int status, const char *json, size_t len, const char *headers)
{
	char all[256];

	if (c->rest == CONN_REST_NONE || c->req == NULL || c->phase != CONN_OPEN || c->killing)
		return;
	snprintf(all, sizeof(all), "Cache-Control: no-store\r\n%s", headers ? headers : "");
	http_respond(c, c->req, status, "application/json", json, len, all);
	if (c->rest == CONN_REST_WAITING) {
		c->rest = CONN_REST_ANSWERED;
		return;
	}
	c->rest = CONN_REST_NONE;
	if (!c->end_after_write) {
		http_req_next(c->req);
		c->start_ms = uv_now(srv.loop);
	}
}

void
http_start(void)
{
	conn_set_reader(CONN_HTTP, http__read);
	conn_set_http_answer(http__answer);
	assets_scan();
}

void
http_accept(uv_loop_t *loop, int fd)
{
	struct conn *c = conn_accept(loop, fd);

	if (c == NULL)
		return;
	c->req = xmalloc(sizeof(*c->req));
	http_req_init(c->req, http__body_limit, c);
}

void
http_tick(void)
{
	assets_scan();
	sse_tick();
}
