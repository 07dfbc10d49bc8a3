#include "cmd.h"
#include "conn.h"
#include "join.h"
#include "log.h"
#include "metrics.h"
#include "msgcmd.h"
#include "roomcmd.h"
#include "srv.h"
#include "util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef void cmd_handler(struct conn *c, const char *idjson, json_t *msg);

static void cmd__ping(struct conn *c, const char *idjson, json_t *msg);

static const struct {
	const char *type;
	cmd_handler *fn;
} cmd_table[] = {
	{ "ping", cmd__ping },
	{ "room:create", roomcmd_create },
	{ "room:join", join_room_join },
	{ "session:resume", join_session_resume },
	{ "room:leave", roomcmd_leave },
	{ "message:send", msgcmd_send },
	{ "message:history", msgcmd_history },
};

static void
cmd__send_json(struct conn *c, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);

	if (text == NULL)
		log_fatal("cmd: json_dumps failed");
	conn_send_text(c, text, strlen(text));
	free(text);
	json_decref(obj);
}

static void
cmd__set_id(json_t *obj, const char *idjson)
{
	if (idjson != NULL)
		json_object_set_new(obj, "id", json_loads(idjson, JSON_DECODE_ANY, NULL));
}

void
cmd_error(struct conn *c, const char *idjson, const char *code, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	json_t *o = json_object();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_set_new(o, "type", json_string("error"));
	cmd__set_id(o, idjson);
	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", json_string(msg));
	metrics_add(M_ERRORS_SENT, 1);
	cmd__send_json(c, o);
}

void
cmd_ack(struct conn *c, const char *idjson, json_t *obj)
{
	json_t *o = json_object();

	json_object_set_new(o, "type", json_string("ack"));
	cmd__set_id(o, idjson);
	json_object_update(o, obj);
	json_decref(obj);
	cmd__send_json(c, o);
}

void
cmd_ack_raw(struct conn *c, const char *idjson, const char *inner)
{
	char *text;
	int n = idjson ? asprintf(&text, "{\"type\":\"ack\",\"id\":%s,%s}", idjson, inner)
	    : asprintf(&text, "{\"type\":\"ack\",%s}", inner);

	if (n < 0)
		log_fatal("cmd: out of memory");
	conn_send_text(c, text, (size_t)n);
	free(text);
}

int
cmd_get_string(struct conn *c, const char *idjson, json_t *msg, const char *field,
    int required, size_t maxlen, const char **out)
{
	json_t *v = json_object_get(msg, field);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		cmd_error(c, idjson, "bad_request", "missing field \"%s\"", field);
		return -1;
	}
	if (!json_is_string(v)) {
		cmd_error(c, idjson, "bad_request", "field \"%s\" must be a string", field);
		return -1;
	}
	if (json_string_length(v) > maxlen) {
		cmd_error(c, idjson, "bad_request", "field \"%s\" is longer than %zu bytes",
		    field, maxlen);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int
cmd_get_id(struct conn *c, const char *idjson, json_t *msg, const char *field,
    int required, const char **out)
{
	if (cmd_get_string(c, idjson, msg, field, required, 4096, out) != 0)
		return -1;
	if (*out != NULL && !util_valid_id(*out)) {
		cmd_error(c, idjson, "bad_request",
		    "field \"%s\" must match [A-Za-z0-9._:-]{1,64}", field);
		return -1;
	}
	return 0;
}

void
cmd_req_init(struct cmd_req *r, struct conn *c, const char *idjson)
{
	r->c = c;
	r->idjson = idjson ? xstrdup(idjson) : NULL;
	conn_ref(c);
}

void
cmd_req_done(struct cmd_req *r)
{
	free(r->idjson);
	conn_unref(r->c);
}

static void
cmd__ping(struct conn *c, const char *idjson, json_t *msg)
{
	char text[160];
	int n;

	(void)msg;
	n = snprintf(text, sizeof(text), "{\"type\":\"pong\"%s%s,\"ts\":%lld}",
	    idjson ? ",\"id\":" : "", idjson ? idjson : "", (long long)util_now_ms());
	conn_send_text(c, text, (size_t)n);
}

/* The request id, as JSON text: a string of at most 64 characters or an
 * integer. 0 ok (*out NULL when absent), -1 invalid. */
static int
cmd__request_id(json_t *msg, char **out)
{
	json_t *id = json_object_get(msg, "id");

	*out = NULL;
	if (id == NULL || json_is_null(id))
		return 0;
	if (!(json_is_string(id) && json_string_length(id) <= 64) && !json_is_integer(id))
		return -1;
	*out = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
	return *out ? 0 : -1;
}

void
cmd_dispatch(struct conn *c, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *type;
	char *idjson = NULL;
	const char *t;

	metrics_add(M_FRAMES_IN, 1);
	if (msg == NULL) {
		cmd_error(c, NULL, "bad_request", "not JSON: %s", jerr.text);
		return;
	}
	if (!json_is_object(msg)) {
		cmd_error(c, NULL, "bad_request", "a frame must be a JSON object");
		goto done;
	}
	if (cmd__request_id(msg, &idjson) != 0) {
		cmd_error(c, NULL, "bad_request", "id must be a string of at most 64 characters or an integer");
		goto done;
	}
	type = json_object_get(msg, "type");
	if (!json_is_string(type)) {
		cmd_error(c, idjson, "bad_request", "missing field \"type\"");
		goto done;
	}
	t = json_string_value(type);
	if (srv.draining) {
		cmd_error(c, idjson, "unavailable", "server draining; reconnect");
		goto done;
	}
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
		if (strcmp(cmd_table[i].type, t) == 0) {
			cmd_table[i].fn(c, idjson, msg);
			goto done;
		}
	}
	cmd_error(c, idjson, "bad_request", "unknown type \"%.64s\"", t);
done:
	free(idjson);
	json_decref(msg);
}
