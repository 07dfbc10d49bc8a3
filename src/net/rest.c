#include "net/rest.h"
#include "net/admit.h"
#include "net/auth.h"
#include "net/conn.h"
#include "net/http_req.h"
#include "proto/cmd.h"
#include "proc/srv.h"
#include "lib/util.h"
#include "proc/log.h"

#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REST_SEGS 8

/* A route: the method, the path ("{name}" segments become the command's
 * fields of that name), the command, the status of its success, whether
 * it takes a JSON body, and the query arguments it copies as fields. */
struct rest_route {
	int method;
	const char *path;
	const char *type;
	int ok;
	int body;
	const char *query[5];
};

static const struct rest_route rest_routes[] = {
	{ HTTP_GET, "/api/rooms", "room:list", 200, 0, { NULL } },
	{ HTTP_POST, "/api/rooms", "room:create", 201, 1, { NULL } },
	{ HTTP_GET, "/api/rooms/{room}", "room:info", 200, 0, { NULL } },
	{ HTTP_GET, "/api/rooms/{room}/members", "room:members", 200, 0, { "after", "limit", NULL } },
	{ HTTP_GET, "/api/rooms/{room}/messages", "message:history", 200, 0,
	    { "before", "after", "limit", NULL } },
	{ HTTP_POST, "/api/rooms/{room}/messages", "message:send", 201, 1, { NULL } },
	{ HTTP_PATCH, "/api/rooms/{room}/messages/{msg_id}", "message:edit", 200, 1, { NULL } },
	{ HTTP_DELETE, "/api/rooms/{room}/messages/{msg_id}", "message:delete", 200, 0, { NULL } },
	{ HTTP_POST, "/api/rooms/{room}/messages/{msg_id}/reactions", "message:react", 200, 1,
	    { NULL } },
	{ HTTP_GET, "/api/search", "message:search", 200, 0, { "q", "room", "before", "limit", NULL } },
	{ HTTP_GET, "/api/users/{user}/presence", "presence:get", 200, 0, { NULL } },
};

#define REST_NROUTES (sizeof(rest_routes) / sizeof(rest_routes[0]))

/* Query arguments that are numbers on the WebSocket (PK_SEQ): sent as
 * numbers when they read as one, else as the text (the command table
 * then says what is wrong with it). */
static const char *const numeric[] = { "before", "after", "limit" };

struct rest_seg {
	const char *p;
	size_t n;
};

static int
rest__split(const char *path, size_t n, struct rest_seg *segs)
{
	int k = 0;
	const char *p = path, *end = path + n;

	while (p < end) {
		const char *slash;

		if (*p != '/' || k == REST_SEGS)
			return -1;
		p++;
		slash = memchr(p, '/', (size_t)(end - p));
		segs[k].p = p;
		segs[k].n = (size_t)((slash ? slash : end) - p);
		if (segs[k].n == 0)
			return -1;
		k++;
		p = slash ? slash : end;
	}
	return k;
}

/* The route's path against the request's segments; params (when not NULL)
 * gets the "{name}" segments as fields. */
static int
rest__match(const struct rest_route *rt, const struct rest_seg *segs, int n, json_t *params)
{
	struct rest_seg pat[REST_SEGS];
	int k = rest__split(rt->path, strlen(rt->path), pat);

	if (k != n)
		return 0;
	for (int i = 0; i < n; i++) {
		if (pat[i].p[0] == '{') {
			if (params != NULL) {
				char name[32];

				snprintf(name, sizeof(name), "%.*s", (int)pat[i].n - 2, pat[i].p + 1);
				json_object_set_new(params, name, json_stringn(segs[i].p, segs[i].n));
			}
		} else if (pat[i].n != segs[i].n || memcmp(pat[i].p, segs[i].p, segs[i].n) != 0) {
			return 0;
		}
	}
	return 1;
}

int
rest_path(const char *path, size_t n)
{
	struct rest_seg segs[REST_SEGS];
	int k = rest__split(path, n, segs);

	for (size_t i = 0; k > 0 && i < REST_NROUTES; i++)
		if (rest__match(&rest_routes[i], segs, k, NULL))
			return 1;
	return 0;
}

/* An answer made here (a refusal before the command runs): through the
 * transport like the command's own, with the command's error format. */
static void
rest__error(struct conn *c, int status, const char *code, const char *why, const char *headers)
{
	json_t *o = json_pack("{s:s, s:s, s:i}", "error", why, "code", code, "status", status);
	char *text = json_dumps(o, JSON_COMPACT);

	if (text == NULL)
		log_fatal("rest: json_dumps failed");
	conn_http_answer_json(c, status, text, strlen(text), headers);
	free(text);
	json_decref(o);
}

/* The token of "Authorization: Bearer <token>", or NULL. */
static const char *
rest__bearer(const struct rest_request *q, size_t *n)
{
	const char *v = q->header(q->arg, "Authorization", n);

	if (v == NULL || *n <= 7 || strncasecmp(v, "Bearer ", 7) != 0)
		return NULL;
	*n -= 7;
	return v + 7;
}

/* The token of Authorization: Bearer, checked. 0 ok, else answered. */
static int
rest__auth(struct conn *c, const struct rest_request *q, struct auth_identity *id)
{
	char token[4200];
	const char *t, *reason = NULL;
	size_t n;

	if (admit_auth_blocked(c->ip) != 0) {
		rest__error(c, 429, "rate_limited", "too many failed authentications", NULL);
		return -1;
	}
	t = rest__bearer(q, &n);
	if (t == NULL || n >= sizeof(token)) {
		rest__error(c, 401, "unauthorized", "Authorization: Bearer <token> required",
		    "WWW-Authenticate: Bearer\r\n");
		return -1;
	}
	memcpy(token, t, n);
	token[n] = '\0';
	if (auth_verify(srv.cfg, token, id, &reason) != 0) {
		admit_auth_failed(c->ip);
		rest__error(c, 401, "unauthorized", reason ? reason : "bad token",
		    "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
		return -1;
	}
	return 0;
}

/* The command's frame: the body's fields, the query's, the path's. NULL
 * when answered (a bad body). */
static json_t *
rest__frame(struct conn *c, const struct rest_request *q, const struct rest_route *rt,
    const struct rest_seg *segs, int n)
{
	json_t *msg = NULL, *params = json_object();
	const char *query = q->query != NULL ? q->query : "";
	char arg[2048];

	if (rt->body) {
		json_error_t jerr;

		msg = q->body_len > 0 ? json_loadb(q->body, q->body_len, 0, &jerr) : NULL;
		if (!json_is_object(msg)) {
			json_decref(msg);
			json_decref(params);
			rest__error(c, 400, "bad_request", "the body must be a JSON object", NULL);
			return NULL;
		}
	} else {
		msg = json_object();
	}
	json_object_del(msg, "type");
	json_object_del(msg, "id");
	for (int i = 0; i < 5 && rt->query[i] != NULL; i++) {
		long long v;
		int num = 0;

		if (http_req_query_arg(query, q->query != NULL ? q->query_len : 0, rt->query[i], arg,
		    sizeof(arg)) != 0)
			continue;
		for (size_t k = 0; k < sizeof(numeric) / sizeof(numeric[0]); k++)
			num |= strcmp(numeric[k], rt->query[i]) == 0;
		if (num && arg[0] != '\0' && util_parse_ll(arg, 0, INT64_MAX, &v) == 0)
			json_object_set_new(msg, rt->query[i], json_integer(v));
		else
			json_object_set_new(msg, rt->query[i], json_string(arg));
	}
	rest__match(rt, segs, n, params);
	if (json_object_get(params, "user") != NULL) {
		/* /api/users/{user}/presence: presence:get of one user. */
		json_object_set_new(msg, "users", json_pack("[O]", json_object_get(params, "user")));
		json_object_del(params, "user");
	}
	json_object_update(msg, params);
	json_decref(params);
	json_object_set_new(msg, "type", json_string(rt->type));
	return msg;
}

/* The route of the request's path and method; NULL when answered (no
 * route: 404; another method's: 405 with Allow). */
static const struct rest_route *
rest__route(struct conn *c, const struct rest_request *q, struct rest_seg *segs, int *k)
{
	char allow[128] = "Allow: ";
	int any = 0;

	*k = rest__split(q->path, q->path_len, segs);
	for (size_t i = 0; *k > 0 && i < REST_NROUTES; i++) {
		if (!rest__match(&rest_routes[i], segs, *k, NULL))
			continue;
		if (rest_routes[i].method == q->method)
			return &rest_routes[i];
		snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
		    any++ ? ", " : "", http_method_str(rest_routes[i].method));
	}
	if (!any) {
		rest__error(c, 404, "not_found", "no such API route", NULL);
		return NULL;
	}
	strncat(allow, "\r\n", sizeof(allow) - strlen(allow) - 1);
	rest__error(c, 405, "bad_request", "method not allowed", allow);
	return NULL;
}

/* message:send's client_msg_id: the Idempotency-Key (the same key twice
 * is one message), or a new one for each request without it. 0, or -1
 * when answered (a bad key). */
static int
rest__idempotency(struct conn *c, const struct rest_request *q, json_t *msg)
{
	char cmid[UTIL_ID_MAX + 1];
	size_t kn;
	const char *key = q->header(q->arg, "Idempotency-Key", &kn);

	if (key != NULL && kn <= UTIL_ID_MAX) {
		snprintf(cmid, sizeof(cmid), "%.*s", (int)kn, key);
	} else if (key != NULL) {
		rest__error(c, 400, "bad_request", "Idempotency-Key must match [A-Za-z0-9._:-]{1,64}",
		    NULL);
		return -1;
	} else {
		util_random_id(cmid);
	}
	json_object_set_new(msg, "client_msg_id", json_string(cmid));
	return 0;
}

/* The request up to the command's dispatch; every refusal answered. */
static void
rest__run(struct conn *c, const struct rest_request *q)
{
	struct rest_seg segs[REST_SEGS];
	const struct rest_route *rt;
	struct auth_identity id;
	json_t *msg;
	char *text;
	int k;

	if ((rt = rest__route(c, q, segs, &k)) == NULL)
		return;
	if (q->body_too_large) {
		rest__error(c, 413, "too_large", "the body is over 64 KiB", NULL);
		return;
	}
	if (srv.draining) {
		rest__error(c, 503, "unavailable", "server draining", "Retry-After: 1\r\n");
		return;
	}
	if (rest__auth(c, q, &id) != 0 || (msg = rest__frame(c, q, rt, segs, k)) == NULL)
		return;
	if (strcmp(rt->type, "message:send") == 0 && rest__idempotency(c, q, msg) != 0) {
		json_decref(msg);
		return;
	}
	text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (text == NULL)
		log_fatal("rest: json_dumps failed");
	conn_set_request_identity(c, &id);
	c->rest_ok = (uint16_t)rt->ok;
	cmd_dispatch(c, text, strlen(text));
	free(text);
}

int
rest_run(struct conn *c, const struct rest_request *q)
{
	c->rest = CONN_REST_WAITING;
	c->rest_ok = 200;
	rest__run(c, q);
	if (c->rest == CONN_REST_WAITING) {
		c->rest = CONN_REST_DEFERRED;
		return 1;
	}
	c->rest = CONN_REST_NONE;
	return 0;
}
