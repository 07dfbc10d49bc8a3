#include "msgcmd.h"
#include "bus.h"
#include "cmd.h"
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "pgq.h"
#include "rlink.h"
#include "room.h"
#include "srv.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char max_seq_sql[] =
"SELECT coalesce(max(seq), 0) FROM room_events WHERE tenant = $1 AND room_id = $2";

static const char *const msg_kinds[] = { "text", "image", "file", "system" };

struct send_req {
	struct cmd_req req;
	char room[UTIL_ID_MAX + 1];
	char cmid[UTIL_ID_MAX + 1];
	char msg_id[23];
	long long ts;
	char *head, *mid, *tail;	/* owned: the event around its seq */
	int seeded;
};

static void
msgcmd__free(struct send_req *sr)
{
	cmd_req_done(&sr->req);
	free(sr->head);
	free(sr->mid);
	free(sr->tail);
	free(sr);
}

static int msgcmd__eval(struct send_req *sr, const char *floor);

static void
msgcmd__seeded(const PGresult *res, void *arg)
{
	struct send_req *sr = arg;

	if (!pgq_ok(res) || PQntuples(res) != 1 || msgcmd__eval(sr, PQgetvalue(res, 0, 0)) != 0) {
		cmd_error(sr->req.c, sr->req.idjson, "unavailable", "storage unavailable; retry");
		msgcmd__free(sr);
	}
}

static void
msgcmd__done(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct send_req *sr = priv;
	const char *params[2];
	long long status;

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_STRING) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_warn("send script failed: %s", r->str);
		cmd_error(sr->req.c, sr->req.idjson, "unavailable", "message bus unavailable; retry");
		goto done;
	}
	status = r->element[0]->integer;
	if (status == -1 && !sr->seeded) {
		/* Redis lost the room's counter: continue after PostgreSQL's max. */
		sr->seeded = 1;
		params[0] = sr->req.c->id.tenant;
		params[1] = sr->room;
		if (pgq_exec(srv.pg, max_seq_sql, 2, params, msgcmd__seeded, sr) == 0)
			return;
		cmd_error(sr->req.c, sr->req.idjson, "unavailable", "database unavailable; retry");
		goto done;
	}
	if (status < 0) {
		cmd_error(sr->req.c, sr->req.idjson, "internal", "sequence not seeded");
		goto done;
	}
	if (status == 1)
		metrics_add(M_MSGS_SENT, 1);
	cmd_ack_raw(sr->req.c, sr->req.idjson, r->element[1]->str);
done:
	msgcmd__free(sr);
}

static int
msgcmd__eval(struct send_req *sr, const char *floor)
{
	const struct cfg *cfg = srv.cfg;
	const char *tenant = sr->req.c->id.tenant;
	const char *user = sr->req.c->id.user;
	char kseq[200], kstream[200], kidem[400], channel[200];
	char maxlen[16], ttl[16], idem_ttl[16], ts[24];
	const char *argv[19];
	int i = 0;

	bus_key(kseq, sizeof(kseq), tenant, sr->room, "seq");
	bus_key(kstream, sizeof(kstream), tenant, sr->room, "stream");
	snprintf(kidem, sizeof(kidem), "chatd:{%s/%s}:idem:%s/%s", tenant, sr->room, user, sr->cmid);
	room_channel(channel, sizeof(channel), tenant, sr->room);
	snprintf(maxlen, sizeof(maxlen), "%d", cfg->stream_maxlen);
	snprintf(ttl, sizeof(ttl), "%d", cfg->stream_ttl_s);
	snprintf(idem_ttl, sizeof(idem_ttl), "%d", cfg->dedupe_ttl_s);
	snprintf(ts, sizeof(ts), "%lld", sr->ts);
	argv[i++] = "EVALSHA";
	argv[i++] = bus_send_sha();
	argv[i++] = "4";
	argv[i++] = kseq;
	argv[i++] = kstream;
	argv[i++] = BUS_SYNC_STREAM;
	argv[i++] = kidem;
	argv[i++] = sr->head;
	argv[i++] = sr->mid;
	argv[i++] = sr->tail;
	argv[i++] = channel;
	argv[i++] = maxlen;
	argv[i++] = ttl;
	argv[i++] = idem_ttl;
	argv[i++] = sr->msg_id;
	argv[i++] = ts;
	argv[i++] = floor;
	argv[i++] = tenant;
	argv[i++] = sr->room;
	if (!bus_ready())
		return -1;
	return rlink_cmdargv(srv.rcmd, msgcmd__done, sr, i, argv, NULL);
}

/* The event text around its two seq numbers, so the script only splices. */
static void
msgcmd__build(struct send_req *sr, const char *kind, const char *body)
{
	json_t *js = json_string(body);
	char *body_json = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;

	json_decref(js);
	if (body_json == NULL)
		log_fatal("msgcmd: cannot encode a body jansson accepted");
	if (asprintf(&sr->head, "{\"type\":\"message:new\",\"room\":\"%s\",\"seq\":", sr->room) < 0 ||
	    asprintf(&sr->mid, ",\"msg\":{\"id\":\"%s\",\"seq\":", sr->msg_id) < 0 ||
	    asprintf(&sr->tail, ",\"user\":\"%s\",\"kind\":\"%s\",\"body\":%s,\"ts\":%lld,"
	    "\"client_msg_id\":\"%s\"}}", sr->req.c->id.user, kind, body_json, sr->ts,
	    sr->cmid) < 0)
		log_fatal("msgcmd: out of memory");
	free(body_json);
}

void
msgcmd_send(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room_id, *cmid, *body, *kind;
	struct send_req *sr;
	int known = 0;

	if (cmd_get_id(c, idjson, msg, "room", 1, &room_id) != 0 ||
	    cmd_get_id(c, idjson, msg, "client_msg_id", 1, &cmid) != 0 ||
	    cmd_get_string(c, idjson, msg, "kind", 0, 16, &kind) != 0)
		return;
	if (!json_is_string(json_object_get(msg, "body"))) {
		cmd_error(c, idjson, "bad_request", "missing field \"body\" (a string)");
		return;
	}
	body = json_string_value(json_object_get(msg, "body"));
	if (json_string_length(json_object_get(msg, "body")) > (size_t)srv.cfg->max_body_bytes) {
		cmd_error(c, idjson, "too_large", "body is longer than %d bytes", srv.cfg->max_body_bytes);
		return;
	}
	if (kind == NULL)
		kind = "text";
	for (size_t i = 0; i < sizeof(msg_kinds) / sizeof(msg_kinds[0]); i++)
		known |= strcmp(kind, msg_kinds[i]) == 0;
	if (!known) {
		cmd_error(c, idjson, "bad_request", "kind must be text, image, file or system");
		return;
	}
	if (strcmp(kind, "system") == 0 && !c->id.admin) {
		cmd_error(c, idjson, "forbidden", "only admins send system messages");
		return;
	}
	if (conn_find_sub(c, room_id) == NULL) {
		cmd_error(c, idjson, "forbidden", "join room \"%s\" before sending to it", room_id);
		return;
	}
	sr = xcalloc(1, sizeof(*sr));
	snprintf(sr->room, sizeof(sr->room), "%s", room_id);
	snprintf(sr->cmid, sizeof(sr->cmid), "%s", cmid);
	util_random_id(sr->msg_id);
	sr->ts = util_now_ms();
	cmd_req_init(&sr->req, c, idjson);
	msgcmd__build(sr, kind, body);
	if (msgcmd__eval(sr, "") != 0) {
		cmd_error(c, idjson, "unavailable", "message bus unavailable; retry");
		msgcmd__free(sr);
	}
}
