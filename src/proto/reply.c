#include "proto/reply.h"
#include "net/conn.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
reply__send_json(struct conn *c, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);

	if (text == NULL)
		log_fatal("reply: json_dumps failed");
	conn_send_text(c, text, strlen(text));
	free(text);
	json_decref(obj);
}

/* A command over HTTP (net/rest.c) is answered with an HTTP response: the
 * ack's fields, or the error as {"error","code","status"}. */
static int
reply__http(const struct conn *c)
{
	return c->kind == CONN_HTTP;
}

static int
reply__status(const char *code)
{
	static const struct { const char *code; int status; } map[] = {
		{ "bad_request", 400 }, { "unauthorized", 401 }, { "forbidden", 403 },
		{ "not_found", 404 }, { "conflict", 409 }, { "too_large", 413 },
		{ "rate_limited", 429 }, { "unavailable", 503 }, { "internal", 500 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 500;
}

static void
reply__http_ack(struct conn *c, const char *json, size_t len)
{
	conn_http_answer_json(c, c->rest_ok ? c->rest_ok : 200, json, len, NULL);
}

static void
reply__set_id(json_t *obj, const char *idjson)
{
	if (idjson != NULL)
		json_object_set_new(obj, "id", json_loads(idjson, JSON_DECODE_ANY, NULL));
}

/* A backend failure answered to a client: logged, at most once a second
 * with the number of others, so an outage shows without flooding the log. */
static void
reply__log_backend_error(const char *code, const char *msg)
{
	static uint64_t last_ms;
	static unsigned suppressed;
	uint64_t now = util_mono_ms();

	if (now - last_ms < 1000) {
		suppressed++;
		return;
	}
	log_warn("answered %s: %s (and %u more in the last second)", code, msg, suppressed);
	last_ms = now;
	suppressed = 0;
}

static void
reply__verror(struct conn *c, const char *idjson, const char *code, long long retry_ms,
    const char *fmt, va_list ap)
{
	char msg[256];
	json_t *o = json_object();

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (strcmp(code, "unavailable") == 0 || strcmp(code, "internal") == 0)
		reply__log_backend_error(code, msg);
	metrics_add(M_ERRORS_SENT, 1);
	metrics_error(code);
	if (reply__http(c)) {
		char headers[64] = "", *text;
		int status = reply__status(code);

		json_object_set_new(o, "error", json_string(msg));
		json_object_set_new(o, "code", json_string(code));
		json_object_set_new(o, "status", json_integer(status));
		if (retry_ms >= 0) {
			json_object_set_new(o, "retry_after_ms", json_integer(retry_ms));
			snprintf(headers, sizeof(headers), "Retry-After: %lld\r\n",
			    (retry_ms + 999) / 1000);
		}
		text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		if (text == NULL)
			log_fatal("reply: json_dumps failed");
		conn_http_answer_json(c, status, text, strlen(text), headers[0] ? headers : NULL);
		free(text);
		return;
	}
	json_object_set_new(o, "type", json_string("error"));
	reply__set_id(o, idjson);
	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", json_string(msg));
	if (retry_ms >= 0)
		json_object_set_new(o, "retry_after_ms", json_integer(retry_ms));
	reply__send_json(c, o);
}

void
reply_error(struct conn *c, const char *idjson, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply__verror(c, idjson, code, -1, fmt, ap);
	va_end(ap);
}

void
reply_error_retry(struct conn *c, const char *idjson, long long retry_ms, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply__verror(c, idjson, "rate_limited", retry_ms, fmt, ap);
	va_end(ap);
}

void
reply_ack(struct conn *c, const char *idjson, json_t *obj)
{
	json_t *o = json_object();
	char *text;

	if (reply__http(c)) {
		text = json_dumps(obj, JSON_COMPACT);
		json_decref(obj);
		json_decref(o);
		if (text == NULL)
			log_fatal("reply: json_dumps failed");
		reply__http_ack(c, text, strlen(text));
		free(text);
		return;
	}
	json_object_set_new(o, "type", json_string("ack"));
	reply__set_id(o, idjson);
	json_object_update(o, obj);
	json_decref(obj);
	reply__send_json(c, o);
}

void
reply_ack_raw(struct conn *c, const char *idjson, const char *inner)
{
	char *text;
	int n;

	if (reply__http(c)) {
		if ((n = asprintf(&text, "{%s}", inner)) < 0)
			log_fatal("reply: out of memory");
		reply__http_ack(c, text, (size_t)n);
		free(text);
		return;
	}
	n = idjson ? asprintf(&text, "{\"type\":\"ack\",\"id\":%s,%s}", idjson, inner)
	    : asprintf(&text, "{\"type\":\"ack\",%s}", inner);

	if (n < 0)
		log_fatal("reply: out of memory");
	conn_send_text(c, text, (size_t)n);
	free(text);
}

void
reply_req_init(struct reply_req *r, struct conn *c, const char *idjson)
{
	r->c = c;
	r->idjson = idjson ? xstrdup(idjson) : NULL;
	conn_ref(c);
}

void
reply_req_done(struct reply_req *r)
{
	free(r->idjson);
	conn_unref(r->c);
}
