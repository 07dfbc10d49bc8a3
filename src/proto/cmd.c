#include "proto/cmd.h"
#include "net/auth.h"
#include "net/conn.h"
#include "chat/join.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "chat/msgcmd.h"
#include "proto/proto.h"
#include "chat/roomcmd.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef void cmd_handler(struct conn *c, const char *idjson, json_t *msg);

static void cmd__ping(struct conn *c, const char *idjson, json_t *msg);
static void cmd__refresh(struct conn *c, const char *idjson, json_t *msg);

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
	{ "message:edit", msgcmd_edit },
	{ "auth:refresh", cmd__refresh },
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

/* A backend failure answered to a client: logged, at most once a second
 * with the number of others, so an outage shows without flooding the log. */
static void
cmd__log_backend_error(const char *code, const char *msg)
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
cmd__verror(struct conn *c, const char *idjson, const char *code, long long retry_ms,
    const char *fmt, va_list ap)
{
	char msg[256];
	json_t *o = json_object();

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (strcmp(code, "unavailable") == 0 || strcmp(code, "internal") == 0)
		cmd__log_backend_error(code, msg);
	json_object_set_new(o, "type", json_string("error"));
	cmd__set_id(o, idjson);
	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", json_string(msg));
	if (retry_ms >= 0)
		json_object_set_new(o, "retry_after_ms", json_integer(retry_ms));
	metrics_add(M_ERRORS_SENT, 1);
	cmd__send_json(c, o);
}

void
cmd_error(struct conn *c, const char *idjson, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmd__verror(c, idjson, code, -1, fmt, ap);
	va_end(ap);
}

void
cmd_error_retry(struct conn *c, const char *idjson, long long retry_ms, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmd__verror(c, idjson, "rate_limited", retry_ms, fmt, ap);
	va_end(ap);
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

int
cmd_seq_value(json_t *v, long long *out)
{
	*out = -1;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (long long)json_integer_value(v);
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

/* auth:refresh {token}: a new token for the same user and tenant moves
 * the connection's expiry; without one it is closed with 4001 at exp. */
static void
cmd__refresh(struct conn *c, const char *idjson, json_t *msg)
{
	struct auth_identity id;
	const char *reason;

	if (auth_verify(srv.cfg, json_string_value(json_object_get(msg, "token")), &id, &reason) != 0) {
		cmd_error(c, idjson, "unauthorized", "%s", reason);
		return;
	}
	if (strcmp(id.user, c->id.user) != 0 || strcmp(id.tenant, c->id.tenant) != 0) {
		cmd_error(c, idjson, "forbidden", "the token is for another user or tenant");
		return;
	}
	c->id.exp = id.exp;
	c->id.admin = id.admin;
	cmd_ack(c, idjson, json_pack("{s:I}", "exp", (json_int_t)id.exp));
}

void
cmd_dispatch(struct conn *c, const char *text, size_t len)
{
	struct proto_limits lim = { (size_t)srv.cfg->max_body_bytes };
	struct proto_frame f;
	struct proto_error err;

	metrics_add(M_FRAMES_IN, 1);
	if (proto_decode(text, len, &lim, &f, &err) != 0) {
		cmd_error(c, f.idjson, err.code, "%s", err.message);
		goto done;
	}
	if (srv.draining) {
		cmd_error(c, f.idjson, "unavailable", "server draining; reconnect");
		goto done;
	}
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
		if (strcmp(cmd_table[i].type, f.type) == 0) {
			cmd_table[i].fn(c, f.idjson, f.msg);
			goto done;
		}
	}
	cmd_error(c, f.idjson, "bad_request", "type \"%.64s\" is not supported yet", f.type);
done:
	proto_frame_free(&f);
}
