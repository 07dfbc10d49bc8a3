#include "net/devtoken.h"
#include "net/auth.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/http_req.h"
#include "lib/cidr.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/srv.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* A dev token lasts a working day: the client has no refresh of its own. */
#define DEVTOKEN_TTL_S (12 * 3600)

static void
devtoken__json(struct conn *c, struct http_req *r, const char *body)
{
	http_respond(c, r, 200, "application/json", body, strlen(body),
	    "Cache-Control: no-store\r\n");
}

/* The request's Content-Type is type (parameters such as charset aside). */
static int
devtoken__is_type(const struct http_req *r, const char *type)
{
	size_t n, len = strlen(type);
	const char *v = http_req_header(r, "Content-Type", &n);

	return v != NULL && n >= len && strncasecmp(v, type, len) == 0 &&
	    (n == len || v[len] == ';' || v[len] == ' ');
}

/* One string field of a JSON object into out: 0 found, 1 absent, -1 not a
 * string or too long. */
static int
devtoken__json_field(json_t *o, const char *name, char *out, size_t outlen)
{
	json_t *v = json_object_get(o, name);

	if (v == NULL || json_is_null(v))
		return 1;
	if (!json_is_string(v) || json_string_length(v) >= outlen)
		return -1;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* user and tenant from a JSON object or a form; tenant stays as given
 * when absent. 0 ok, -1 bad (why set). */
static int
devtoken__fields(const struct http_req *r, char *user, char *tenant, size_t size,
    const char **why)
{
	size_t n;
	const char *body = http_req_body(r, &n);
	json_t *o;
	int rc = -1;

	if (devtoken__is_type(r, "application/x-www-form-urlencoded")) {
		if (http_req_form(r, "user", user, size) != 0) {
			*why = "user missing or longer than 64 characters";
			return -1;
		}
		/* Absent or empty: the default tenant. */
		if (http_req_form(r, "tenant", tenant, size) != 0 || tenant[0] == '\0')
			snprintf(tenant, size, "%s", srv.cfg->default_tenant);
		return 0;
	}
	if (!devtoken__is_type(r, "application/json")) {
		*why = "the body must be JSON or a form";
		return -1;
	}
	o = json_loadb(body, n, 0, NULL);
	if (!json_is_object(o)) {
		*why = "the body must be a JSON object";
		goto fail;
	}
	if (devtoken__json_field(o, "user", user, size) != 0) {
		*why = "user missing or not a string of at most 64 characters";
		goto fail;
	}
	if (devtoken__json_field(o, "tenant", tenant, size) < 0) {
		*why = "tenant not a string of at most 64 characters";
		goto fail;
	}
	if (tenant[0] == '\0')
		snprintf(tenant, size, "%s", srv.cfg->default_tenant);
	rc = 0;
fail:
	json_decref(o);
	return rc;
}

static void
devtoken__issue(struct conn *c, struct http_req *r)
{
	char user[UTIL_ID_MAX + 1] = "", tenant[UTIL_ID_MAX + 1], body[1024];
	const char *why = NULL;
	char *token;

	snprintf(tenant, sizeof(tenant), "%s", srv.cfg->default_tenant);
	if (devtoken__fields(r, user, tenant, sizeof(user), &why) == 0 &&
	    (!util_valid_id(user) || !util_valid_id(tenant)))
		why = "user and tenant must match [A-Za-z0-9._:-]{1,64}";
	if (why != NULL) {
		http_respond_error(c, r, 400, why, "Cache-Control: no-store\r\n");
		return;
	}
	token = auth_issue(srv.cfg, user, tenant, NULL, DEVTOKEN_TTL_S);
	if (token == NULL) {
		log_warn("http from %s: dev token for %s@%s could not be signed", c->ip, user, tenant);
		http_respond_error(c, r, 500, "token not signed", NULL);
		return;
	}
	if (snprintf(body, sizeof(body), "{\"token\":\"%s\",\"user\":\"%s\",\"tenant\":\"%s\","
	    "\"exp\":%lld}", token, user, tenant, (long long)time(NULL) + DEVTOKEN_TTL_S) >=
	    (int)sizeof(body)) {
		http_respond_error(c, r, 500, "token too long", NULL);
	} else {
		log_info("http from %s: dev token for %s@%s", c->ip, user, tenant);
		devtoken__json(c, r, body);
	}
	free(token);
}

void
devtoken_handle(struct conn *c, struct http_req *r)
{
	char body[160];
	int m = http_req_method(r);

	if (!srv.cfg->dev_tokens || !cidr_match(srv.cfg->trusted, srv.cfg->ntrusted, c->ip)) {
		http_respond_error(c, r, 404, "not found", NULL);
		return;
	}
	if (m == HTTP_POST) {
		devtoken__issue(c, r);
	} else if (m == HTTP_GET || m == HTTP_HEAD) {
		snprintf(body, sizeof(body), "{\"dev_tokens\":true,\"tenant\":\"%s\"}",
		    srv.cfg->default_tenant);
		devtoken__json(c, r, body);
	} else {
		http_respond_error(c, r, 405, "method not allowed", "Allow: GET, HEAD, POST\r\n");
	}
}
