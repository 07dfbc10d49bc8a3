#include "chat/session.h"
#include "net/auth.h"
#include "net/conn.h"
#include "proto/reply.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdio.h>
#include <string.h>

void
session_ping(struct conn *c, const char *idjson, json_t *msg)
{
	char text[160];
	int n;

	(void)msg;
	n = snprintf(text, sizeof(text), "{\"type\":\"pong\"%s%s,\"ts\":%lld}",
	    idjson ? ",\"id\":" : "", idjson ? idjson : "", (long long)util_now_ms());
	conn_send_text(c, text, (size_t)n);
}

void
session_refresh(struct conn *c, const char *idjson, json_t *msg)
{
	struct auth_identity id;
	const char *reason;

	if (auth_verify(srv.cfg, json_string_value(json_object_get(msg, "token")), &id, &reason) != 0) {
		reply_error(c, idjson, "unauthorized", "%s", reason);
		return;
	}
	if (strcmp(id.user, c->id.user) != 0 || strcmp(id.tenant, c->id.tenant) != 0) {
		reply_error(c, idjson, "forbidden", "the token is for another user or tenant");
		return;
	}
	c->id.exp = id.exp;
	c->id.admin = id.admin;
	reply_ack(c, idjson, json_pack("{s:I}", "exp", (json_int_t)id.exp));
}
