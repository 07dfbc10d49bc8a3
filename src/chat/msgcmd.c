#include "chat/msgcmd.h"
#include "store/redis.h"
#include "proto/proto.h"
#include "proto/reply.h"
#include "net/conn.h"
#include "chat/history.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "store/pg_queue.h"
#include "chat/room.h"
#include "net/outbuf.h"
#include "store/send_batch.h"
#include "proc/srv.h"
#include "store/sync.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char *const msg_kinds[] = { "text", "image", "file", "system" };

struct send_req {
	struct sendbatch_item item;		/* first: the queue's callback casts back */
	struct reply_req req;
	char room[UTIL_ID_MAX + 1];
	char cmid[UTIL_ID_MAX + 1];
	char msg_id[UTIL_ID_MAX + 1];
	long long ts;
	uint64_t arrival_us;		/* monotonic, for the ack latency */
	int edit;			/* message:edit: no dedupe window, no count */
	char *head, *mid, *tail;	/* owned: the event around its seq */
	char *ack;			/* owned: durability = postgres waits */
};

/* The ack, and the time from the send's arrival to it. */
static void
msgcmd__ack(struct send_req *sr, const char *inner)
{
	metrics_latency(MH_ACK, (int64_t)(uv_hrtime() / 1000 - sr->arrival_us));
	reply_ack_raw(sr->req.c, sr->req.idjson, inner);
}

static void
msgcmd__free(struct send_req *sr)
{
	reply_req_done(&sr->req);
	free(sr->head);
	free(sr->mid);
	free(sr->tail);
	free(sr->ack);
	free(sr);
}

static void
msgcmd__persisted(const PGresult *res, void *arg)
{
	struct send_req *sr = arg;

	if (pgq_ok(res))
		msgcmd__ack(sr, sr->ack);
	else
		reply_error(sr->req.c, sr->req.idjson, "unavailable",
		    "stored in Redis but not yet in PostgreSQL; retry with the same client_msg_id");
	msgcmd__free(sr);
}

static const char persisted_sql[] =
"SELECT 1 FROM room_events WHERE tenant = $1 AND room_id = $2 AND seq = $3";

static void
msgcmd__persisted_check(const PGresult *res, void *arg)
{
	struct send_req *sr = arg;

	if (pgq_ok(res) && PQntuples(res) == 1)
		msgcmd__ack(sr, sr->ack);
	else
		reply_error(sr->req.c, sr->req.idjson, "unavailable",
		    "stored in Redis but not yet in PostgreSQL; retry with the same client_msg_id");
	msgcmd__free(sr);
}

/* A repeat under durability = postgres: the first attempt's write may have
 * failed, so ack only once the event is there (the sync consumer brings it). */
static int
msgcmd__check_persisted(struct send_req *sr)
{
	char seq[24];
	const char *params[3] = { sr->req.c->id.tenant, sr->room, seq };

	snprintf(seq, sizeof(seq), "%lld", (long long)outbuf_scan_seq(sr->ack, strlen(sr->ack)));
	return pgq_exec(srv.pg, persisted_sql, 3, params, msgcmd__persisted_check, sr);
}

/* durability = postgres: the ack waits for the event's own commit (the
 * sync consumer's later insert of the same event is a no-op). */
static int
msgcmd__persist(struct send_req *sr)
{
	long long seq = outbuf_scan_seq(sr->ack, strlen(sr->ack));
	char *ev, *batch;
	int rc;

	if (asprintf(&ev, "%s%lld%s%lld%s", sr->head, seq, sr->mid, seq, sr->tail) < 0)
		log_fatal("msgcmd: out of memory");
	batch = sync_batch_json(sr->req.c->id.tenant, sr->room, seq, ev);
	rc = sync_write(srv.pg, batch, msgcmd__persisted, sr);
	free(batch);
	free(ev);
	return rc;
}

/* The send script's answer for one request (sendq.c). */
static void
msgcmd__done(struct sendbatch_item *it, enum sendbatch_status st, const char *val)
{
	struct send_req *sr = (struct send_req *)it;
	struct conn *c = sr->req.c;

	switch (st) {
	case SENDBATCH_NEW:
	case SENDBATCH_REPEAT:
		if (st == SENDBATCH_NEW && !sr->edit)
			metrics_add(M_MSGS_SENT, 1);
		if (strcmp(srv.cfg->durability, "postgres") == 0) {
			sr->ack = xstrdup(val);
			if ((st == SENDBATCH_NEW ? msgcmd__persist(sr) : msgcmd__check_persisted(sr)) == 0)
				return;
			reply_error(c, sr->req.idjson, "unavailable",
			    "stored in Redis but not yet in PostgreSQL; retry with the same client_msg_id");
			break;
		}
		msgcmd__ack(sr, val);
		break;
	case SENDBATCH_LIMITED: {
		long long wait = strtoll(val, NULL, 10);

		metrics_add(M_RATE_LIMITED, 1);
		reply_error_retry(c, sr->req.idjson, wait, "too many messages; retry in %lld ms", wait);
		break;
	}
	case SENDBATCH_NO_SEED:
		reply_error(c, sr->req.idjson, "internal", "sequence not seeded");
		break;
	case SENDBATCH_NO_DB:
		reply_error(c, sr->req.idjson, "unavailable", "database unavailable; retry");
		break;
	case SENDBATCH_NO_BUS:
		reply_error(c, sr->req.idjson, "unavailable", "message bus unavailable; retry");
		break;
	}
	msgcmd__free(sr);
}

/* Into this turn's batch of the room: one script call for all of them. */
static void
msgcmd__queue(struct send_req *sr)
{
	struct sendbatch_item *it = &sr->item;

	it->tenant = sr->req.c->id.tenant;
	it->room = sr->room;
	it->user = sr->req.c->id.user;
	it->cmid = sr->cmid;
	it->head = sr->head;
	it->mid = sr->mid;
	it->tail = sr->tail;
	it->msg_id = sr->msg_id;
	it->ts = sr->ts;
	/* An edit's key only guards the script's own retry (the seed re-run). */
	it->idem_ttl_s = sr->edit ? 60 : srv.cfg->dedupe_ttl_s;
	it->done = msgcmd__done;
	sendbatch_add(it);
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
	const char *room_id = json_string_value(json_object_get(msg, "room"));
	const char *cmid = json_string_value(json_object_get(msg, "client_msg_id"));
	const char *body = json_string_value(json_object_get(msg, "body"));
	const char *kind = json_string_value(json_object_get(msg, "kind"));
	struct send_req *sr;
	struct sub *sub;
	int known = 0;

	/* The table checks kind's form; which kinds of message exist is this
	 * module's to say. */
	if (kind == NULL)
		kind = "text";
	for (size_t i = 0; i < sizeof(msg_kinds) / sizeof(msg_kinds[0]); i++)
		known |= strcmp(kind, msg_kinds[i]) == 0;
	if (!known) {
		reply_error(c, idjson, "bad_request", "kind must be text, image, file or system");
		return;
	}
	if (strcmp(kind, "system") == 0 && !c->id.admin) {
		reply_error(c, idjson, "forbidden", "only admins send system messages");
		return;
	}
	sub = conn_find_sub(c, room_id);
	if (sub == NULL) {
		reply_error(c, idjson, "forbidden", "join room \"%s\" before sending to it", room_id);
		return;
	}
	if (sub->broadcast && sub->role == SUB_MEMBER) {
		reply_error(c, idjson, "forbidden", "only admins and moderators post in a broadcast room");
		return;
	}
	if (sub->muted_until_ms > util_now_ms()) {
		reply_error(c, idjson, "forbidden", "you are muted in room \"%s\"", room_id);
		return;
	}
	sr = xcalloc(1, sizeof(*sr));
	snprintf(sr->room, sizeof(sr->room), "%s", room_id);
	snprintf(sr->cmid, sizeof(sr->cmid), "%s", cmid);
	util_random_id(sr->msg_id);
	sr->ts = util_now_ms();
	sr->arrival_us = uv_hrtime() / 1000;
	reply_req_init(&sr->req, c, idjson);
	msgcmd__build(sr, kind, body);
	msgcmd__queue(sr);
}

#define HISTORY_PAGE_MAX 100

/* Who reads: see docs/protocol.md section 7, "reader" (a tenant admin
 * reads every support room). */
static const char can_read_sql[] =
"SELECT r.private AND NOT (r.kind = 'support' AND $4::boolean), m.role,"
" coalesce(m.banned, false) FROM rooms r"
" LEFT JOIN room_members m ON m.tenant = r.tenant AND m.room_id = r.id AND m.user_id = $3"
" WHERE r.tenant = $1 AND r.id = $2";

struct page_req {
	struct reply_req req;
	char room[UTIL_ID_MAX + 1];
	struct history_query q;
	int after_mode;
};

static void
msgcmd__page_free(struct page_req *pr)
{
	reply_req_done(&pr->req);
	free(pr);
}

static void
msgcmd__page_done(const struct history_result *h, void *arg)
{
	struct page_req *pr = arg;
	json_t *events;
	int more;

	if (h == NULL) {
		reply_error(pr->req.c, pr->req.idjson, "unavailable", "history unavailable; retry");
		msgcmd__page_free(pr);
		return;
	}
	events = history_events_json(h);
	more = pr->after_mode ? h->n > 0 && h->to < h->last_seq : h->n > 0 && h->from > 1;
	reply_ack(pr->req.c, pr->req.idjson, json_pack("{s:s, s:o, s:b, s:I}", "room", pr->room,
	    "events", events, "has_more", more, "last_seq", (json_int_t)h->last_seq));
	msgcmd__page_free(pr);
}

static void
msgcmd__page_read(struct page_req *pr)
{
	if (history_read(pr->req.c->id.tenant, pr->room, &pr->q, msgcmd__page_done, pr) != 0) {
		reply_error(pr->req.c, pr->req.idjson, "unavailable", "history unavailable; retry");
		msgcmd__page_free(pr);
	}
}

static void
msgcmd__page_allowed(const PGresult *res, void *arg)
{
	struct page_req *pr = arg;

	if (!pgq_ok(res)) {
		reply_error(pr->req.c, pr->req.idjson, "unavailable", "database unavailable; retry");
	} else if (PQntuples(res) == 0) {
		reply_error(pr->req.c, pr->req.idjson, "not_found", "no room \"%s\"", pr->room);
	} else if ((PQgetvalue(res, 0, 0)[0] == 't' && PQgetisnull(res, 0, 1)) ||
	    PQgetvalue(res, 0, 2)[0] == 't') {
		reply_error(pr->req.c, pr->req.idjson, "forbidden", "not a member of room \"%s\"", pr->room);
	} else {
		msgcmd__page_read(pr);
		return;
	}
	msgcmd__page_free(pr);
}

void
msgcmd_history(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room_id = json_string_value(json_object_get(msg, "room"));
	long long before = proto_seq(json_object_get(msg, "before"));
	long long after = proto_seq(json_object_get(msg, "after"));
	long long limit = proto_seq(json_object_get(msg, "limit"));
	struct page_req *pr;
	const char *params[4];

	if (before >= 0 && after >= 0) {
		reply_error(c, idjson, "bad_request",
		    "before, after (not both) and limit must be whole numbers (0 or more)");
		return;
	}
	if (limit < 1)
		limit = 50;
	if (limit > HISTORY_PAGE_MAX)
		limit = HISTORY_PAGE_MAX;
	pr = xcalloc(1, sizeof(*pr));
	snprintf(pr->room, sizeof(pr->room), "%s", room_id);
	pr->q.count = (int)limit;
	pr->q.from = after >= 0 ? after + 1 : -1;
	pr->q.to = before >= 0 ? before - 1 : -1;
	pr->after_mode = after >= 0;
	reply_req_init(&pr->req, c, idjson);
	if (before == 0) {
		/* Nothing comes before seq 1. */
		reply_ack(c, idjson, json_pack("{s:s, s:[], s:b}", "room", room_id, "events", "has_more", 0));
		msgcmd__page_free(pr);
		return;
	}
	if (conn_find_sub(c, room_id) != NULL) {
		msgcmd__page_read(pr);
		return;
	}
	params[0] = c->id.tenant;
	params[1] = room_id;
	params[2] = c->id.user;
	params[3] = c->id.admin ? "true" : "false";
	if (pgq_exec(srv.pg, can_read_sql, 4, params, msgcmd__page_allowed, pr) != 0) {
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
		msgcmd__page_free(pr);
	}
}

static const char author_sql[] =
"SELECT user_id FROM messages WHERE tenant = $1 AND room_id = $2 AND id = $3 AND deleted_at IS NULL";

struct edit_req {
	struct send_req *sr;
	char *body;		/* owned */
};

static void
msgcmd__author_checked(const PGresult *res, void *arg)
{
	struct edit_req *er = arg;
	struct send_req *sr = er->sr;
	struct conn *c = sr->req.c;
	json_t *js;
	char *body_json;

	if (!pgq_ok(res)) {
		reply_error(c, sr->req.idjson, "unavailable", "database unavailable; retry");
		goto fail;
	}
	/* A message of another room (or tenant) is simply not there. */
	if (PQntuples(res) == 0) {
		reply_error(c, sr->req.idjson, "not_found", "no message \"%s\" in room \"%s\"",
		    sr->msg_id, sr->room);
		goto fail;
	}
	if (strcmp(PQgetvalue(res, 0, 0), c->id.user) != 0) {
		reply_error(c, sr->req.idjson, "forbidden", "only the author edits a message");
		goto fail;
	}
	js = json_string(er->body);
	body_json = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	json_decref(js);
	if (body_json == NULL)
		log_fatal("msgcmd: cannot encode a body jansson accepted");
	if (asprintf(&sr->head, "{\"type\":\"message:edited\",\"room\":\"%s\",\"seq\":", sr->room) < 0 ||
	    (sr->mid = xstrdup("")) == NULL ||
	    asprintf(&sr->tail, ",\"msg_id\":\"%s\",\"user\":\"%s\",\"body\":%s,\"edited_at\":%lld}",
	    sr->msg_id, c->id.user, body_json, sr->ts) < 0)
		log_fatal("msgcmd: out of memory");
	free(body_json);
	free(er->body);
	free(er);
	msgcmd__queue(sr);
	return;
fail:
	msgcmd__free(sr);
	free(er->body);
	free(er);
}

void
msgcmd_edit(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room_id = json_string_value(json_object_get(msg, "room"));
	const char *msg_id = json_string_value(json_object_get(msg, "msg_id"));
	const char *params[3];
	struct send_req *sr;
	struct edit_req *er;
	struct sub *sub = conn_find_sub(c, room_id);
	char rnd[23];

	if (sub == NULL) {
		reply_error(c, idjson, "forbidden", "join room \"%s\" before editing in it", room_id);
		return;
	}
	if (sub->muted_until_ms > util_now_ms()) {
		reply_error(c, idjson, "forbidden", "you are muted in room \"%s\"", room_id);
		return;
	}
	sr = xcalloc(1, sizeof(*sr));
	sr->edit = 1;
	snprintf(sr->room, sizeof(sr->room), "%s", room_id);
	snprintf(sr->msg_id, sizeof(sr->msg_id), "%s", msg_id);
	util_random_id(rnd);
	snprintf(sr->cmid, sizeof(sr->cmid), "edit.%s", rnd);
	sr->ts = util_now_ms();
	sr->arrival_us = uv_hrtime() / 1000;
	reply_req_init(&sr->req, c, idjson);
	er = xcalloc(1, sizeof(*er));
	er->sr = sr;
	er->body = xstrdup(json_string_value(json_object_get(msg, "body")));
	params[0] = c->id.tenant;
	params[1] = room_id;
	params[2] = msg_id;
	if (pgq_exec(srv.pg, author_sql, 3, params, msgcmd__author_checked, er) != 0) {
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
		msgcmd__free(sr);
		free(er->body);
		free(er);
	}
}
