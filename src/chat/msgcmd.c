#include "chat/msgcmd.h"
#include "store/redis.h"
#include "proto/proto.h"
#include "proto/reply.h"
#include "net/conn.h"
#include "chat/history.h"
#include "chat/msgextra.h"
#include "chat/personal.h"
#include "chat/readview.h"
#include "chat/standing.h"
#include "chat/typing.h"
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
	char *head, *mid, *tail;	/* owned: the event around its seq */
	char *ack;			/* owned: durability = postgres waits */
	char kind[16];
	char *body_json;		/* owned, until the event is built */
	struct msgextra extra;		/* owned */
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
	free(sr->body_json);
	msgextra_free(&sr->extra);
	free(sr);
}

/* mention:new to the mentioned users' connections, wherever they are: the
 * message:new event under another type. */
static void
msgcmd__notify(struct send_req *sr, const char *ack)
{
	static const char newtype[] = "{\"type\":\"message:new\"";
	long long seq = outbuf_scan_seq(ack, strlen(ack));
	char *frame;

	if (sr->extra.notify_csv == NULL || strncmp(sr->head, newtype, sizeof(newtype) - 1) != 0)
		return;
	if (asprintf(&frame, "{\"type\":\"mention:new\"%s%lld%s%lld%s",
	    sr->head + sizeof(newtype) - 1, seq, sr->mid, seq, sr->tail) < 0)
		log_fatal("msgcmd: out of memory");
	personal_publish(sr->req.c->id.tenant, sr->extra.notify_csv, frame);
	free(frame);
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
		if (st == SENDBATCH_NEW) {
			metrics_add(M_MSGS_SENT, 1);
			msgcmd__notify(sr, val);
		}
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
	it->idem_ttl_s = srv.cfg->dedupe_ttl_s;
	it->done = msgcmd__done;
	sendbatch_add(it);
}

/* The event text around its two seq numbers, so the script only splices;
 * then into the send batch. */
static void
msgcmd__build_queue(struct send_req *sr)
{
	const struct msgextra *x = &sr->extra;
	char reply_to[UTIL_ID_MAX + 3];

	if (x->reply_to[0] != '\0')
		snprintf(reply_to, sizeof(reply_to), "\"%s\"", x->reply_to);
	else
		snprintf(reply_to, sizeof(reply_to), "null");
	if (asprintf(&sr->head, "{\"type\":\"message:new\",\"room\":\"%s\",\"seq\":", sr->room) < 0 ||
	    asprintf(&sr->mid, ",\"msg\":{\"id\":\"%s\",\"seq\":", sr->msg_id) < 0 ||
	    asprintf(&sr->tail, ",\"user\":\"%s\",\"kind\":\"%s\",\"body\":%s,\"ts\":%lld,"
	    "\"client_msg_id\":\"%s\",\"reply_to\":%s,\"mentions\":%s,\"attachments\":%s}}",
	    sr->req.c->id.user, sr->kind, sr->body_json, sr->ts, sr->cmid, reply_to,
	    x->mentions_json, x->attachments_json) < 0)
		log_fatal("msgcmd: out of memory");
	free(sr->body_json);
	sr->body_json = NULL;
	msgcmd__queue(sr);
}

static void
msgcmd__checked(void *arg, const char *code, const char *why)
{
	struct send_req *sr = arg;

	if (code != NULL) {
		reply_error(sr->req.c, sr->req.idjson, code, "%s", why);
		msgcmd__free(sr);
		return;
	}
	msgcmd__build_queue(sr);
}

/* The checks passed: what needs the room is checked, then the send queued. */
static void
msgcmd__go(struct send_req *sr)
{
	if (msgextra_needs_check(&sr->extra))
		msgextra_check(&sr->extra, sr->req.c->id.tenant, sr->room, msgcmd__checked, sr);
	else
		msgcmd__build_queue(sr);
}

/* A send over HTTP: the checks a subscription would have made. */
static void
msgcmd__http_standing(void *arg, const struct standing *st)
{
	struct send_req *sr = arg;
	struct conn *c = sr->req.c;
	const char *id = sr->req.idjson;

	if (st == NULL)
		reply_error(c, id, "unavailable", "database unavailable; retry");
	else if (!st->exists)
		reply_error(c, id, "not_found", "no room \"%s\"", sr->room);
	else if (!standing_member(st))
		reply_error(c, id, "forbidden", "not a member of room \"%s\"", sr->room);
	else if (strcmp(st->kind, "broadcast") == 0 && st->rank < RANK_MODERATOR)
		reply_error(c, id, "forbidden", "only admins and moderators post in a broadcast room");
	else if (standing_muted(st))
		reply_error(c, id, "forbidden", "you are muted in room \"%s\"", sr->room);
	else {
		msgcmd__go(sr);
		return;
	}
	msgcmd__free(sr);
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
	struct msgextra extra;
	const char *code;
	char why[200];
	json_t *js;
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
	if (msgextra_parse(&extra, msg, c->id.user, &code, why, sizeof(why)) != 0) {
		reply_error(c, idjson, code, "%s", why);
		msgextra_free(&extra);
		return;
	}
	if (strcmp(kind, "system") == 0 && !c->id.admin) {
		reply_error(c, idjson, "forbidden", "only admins send system messages");
		msgextra_free(&extra);
		return;
	}
	sub = conn_find_sub(c, room_id);
	if (sub == NULL && c->kind != CONN_HTTP) {
		msgextra_free(&extra);
		standing_not_joined(c, idjson, room_id, "sending to it");
		return;
	}
	if (sub != NULL && sub->broadcast && sub->role == SUB_MEMBER) {
		reply_error(c, idjson, "forbidden", "only admins and moderators post in a broadcast room");
		msgextra_free(&extra);
		return;
	}
	if (sub != NULL && sub->muted_until_ms > util_now_ms()) {
		reply_error(c, idjson, "forbidden", "you are muted in room \"%s\"", room_id);
		msgextra_free(&extra);
		return;
	}
	sr = xcalloc(1, sizeof(*sr));
	snprintf(sr->room, sizeof(sr->room), "%s", room_id);
	snprintf(sr->cmid, sizeof(sr->cmid), "%s", cmid);
	util_random_id(sr->msg_id);
	sr->ts = util_now_ms();
	sr->arrival_us = uv_hrtime() / 1000;
	reply_req_init(&sr->req, c, idjson);
	snprintf(sr->kind, sizeof(sr->kind), "%s", kind);
	js = json_string(body);
	sr->body_json = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	json_decref(js);
	if (sr->body_json == NULL)
		log_fatal("msgcmd: cannot encode a body jansson accepted");
	sr->extra = extra;
	if (sub == NULL) {
		/* Over HTTP there is no subscription: the standing is read. */
		standing_get(c->id.tenant, room_id, c->id.user, msgcmd__http_standing, sr);
		return;
	}
	/* The message is on its way: its author no longer types. */
	typing_sent(sub);
	msgcmd__go(sr);
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
	json_t *ack;		/* owned, while the current state is read */
};

static void
msgcmd__page_free(struct page_req *pr)
{
	json_decref(pr->ack);
	reply_req_done(&pr->req);
	free(pr);
}

/* The page's messages as they are now (edits, reactions, replies,
 * deleted), by id: PostgreSQL's projection (chat/readview.h). */
static const char current_sql[] =
"SELECT coalesce(jsonb_object_agg(a.id, " READVIEW_MSG("a") "), '{}')::text"
" FROM messages a WHERE a.tenant = $1 AND a.room_id = $2 AND a.id = ANY($3::text[])";

static void
msgcmd__page_answer(struct page_req *pr)
{
	reply_ack(pr->req.c, pr->req.idjson, pr->ack);
	pr->ack = NULL;
	msgcmd__page_free(pr);
}

static void
msgcmd__page_current_read(const PGresult *res, void *arg)
{
	struct page_req *pr = arg;
	json_t *cur;

	/* Without PostgreSQL the page still goes, without "current". */
	if (pgq_ok(res) && PQntuples(res) == 1 &&
	    (cur = json_loads(PQgetvalue(res, 0, 0), 0, NULL)) != NULL)
		json_object_set_new(pr->ack, "current", cur);
	msgcmd__page_answer(pr);
}

static void
msgcmd__page_current(struct page_req *pr, json_t *events)
{
	size_t i, len = 1, cap = json_array_size(events) * (UTIL_ID_MAX + 1) + 3;
	char *ids = xmalloc(cap);
	const char *params[3];
	json_t *ev;
	int n = 0;

	ids[0] = '{';
	json_array_foreach(events, i, ev) {
		const char *id = json_string_value(json_object_get(json_object_get(ev, "msg"), "id"));

		if (id == NULL || !util_valid_id(id))
			continue;
		len += (size_t)snprintf(ids + len, cap - len, "%s%s", n++ ? "," : "", id);
	}
	snprintf(ids + len, cap - len, "}");
	params[0] = pr->req.c->id.tenant;
	params[1] = pr->room;
	params[2] = ids;
	if (n == 0 || pgq_exec(srv.pg, current_sql, 3, params, msgcmd__page_current_read, pr) != 0) {
		if (n > 0)
			log_debug("message:history: the page's current state not read");
		msgcmd__page_answer(pr);
	}
	free(ids);
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
	pr->ack = json_pack("{s:s, s:o, s:b, s:I}", "room", pr->room,
	    "events", events, "has_more", more, "last_seq", (json_int_t)h->last_seq);
	msgcmd__page_current(pr, events);
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
