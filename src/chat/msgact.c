#include "chat/msgact.h"
#include "chat/limit.h"
#include "chat/standing.h"
#include "net/conn.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "proto/reply.h"
#include "store/room_log.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

enum msgact_op { ACT_EDIT, ACT_DELETE, ACT_REACT };

static const enum limit_op act_limits[] = { LIMIT_EDIT, LIMIT_DELETE, LIMIT_REACT };

/* Emoji: 1..MSGACT_EMOJI_MAX bytes (the command table), no space, no
 * control character, no quote or backslash. */
#define MSGACT_EMOJI_MAX 32

struct act_req {
	struct reply_req req;
	enum msgact_op op;
	char room[UTIL_ID_MAX + 1];
	char msg_id[UTIL_ID_MAX + 1];
	char emoji[MSGACT_EMOJI_MAX + 1];
	int add;
	char *body_json;	/* edit: owned */
};

static void
msgact__free(struct act_req *q)
{
	reply_req_done(&q->req);
	free(q->body_json);
	free(q);
}

static void
msgact__appended(void *arg, const struct rlog_result *r)
{
	struct act_req *q = arg;
	struct conn *c = q->req.c;
	const char *id = q->req.idjson;

	switch (r->st) {
	case RLOG_OK:
	case RLOG_UNCHANGED:
		if (q->op == ACT_EDIT)
			reply_ack(c, id, json_pack("{s:s, s:I, s:I, s:I}", "msg_id", q->msg_id,
			    "seq", (json_int_t)r->seq, "ts", (json_int_t)r->ts,
			    "edits", (json_int_t)r->edits));
		else if (q->op == ACT_DELETE)
			reply_ack(c, id, json_pack("{s:s, s:I, s:I}", "msg_id", q->msg_id,
			    "seq", (json_int_t)r->seq, "ts", (json_int_t)r->ts));
		else if (r->st == RLOG_OK)
			reply_ack(c, id, json_pack("{s:s, s:s, s:I, s:b, s:I}", "msg_id", q->msg_id,
			    "emoji", q->emoji, "count", (json_int_t)r->count, "changed", 1,
			    "seq", (json_int_t)r->seq));
		else
			reply_ack(c, id, json_pack("{s:s, s:s, s:I, s:b, s:n}", "msg_id", q->msg_id,
			    "emoji", q->emoji, "count", (json_int_t)r->count, "changed", 0, "seq"));
		break;
	case RLOG_NOT_FOUND:
		reply_error(c, id, "not_found", "no message \"%s\" in room \"%s\"", q->msg_id, q->room);
		break;
	case RLOG_FORBIDDEN:
		reply_error(c, id, "forbidden", q->op == ACT_EDIT ? "only the author edits a message" :
		    "only the author, a moderator or an admin deletes a message");
		break;
	case RLOG_TOO_MANY:
		reply_error(c, id, "too_large", "emoji: at most 20 distinct emoji on a message");
		break;
	case RLOG_NO_DB:
		reply_error(c, id, "unavailable", "database unavailable; retry");
		break;
	case RLOG_NO_BUS:
		reply_error(c, id, "unavailable", "message bus unavailable; retry");
		break;
	}
	msgact__free(q);
}

static void
msgact__standing(void *arg, const struct standing *st)
{
	struct act_req *q = arg;
	struct conn *c = q->req.c;
	const char *id = q->req.idjson, *tenant = c->id.tenant, *user = c->id.user;

	if (st == NULL) {
		reply_error(c, id, "unavailable", "database unavailable; retry");
	} else if (!st->exists) {
		reply_error(c, id, "not_found", "no room \"%s\"", q->room);
	} else if (!standing_member(st)) {
		reply_error(c, id, "forbidden", "not a member of room \"%s\"", q->room);
	} else if (q->op != ACT_DELETE && standing_muted(st)) {
		reply_error(c, id, "forbidden", "you are muted in room \"%s\"", q->room);
	} else {
		if (q->op == ACT_EDIT)
			rlog_edit(tenant, q->room, q->msg_id, user, q->body_json, msgact__appended, q);
		else if (q->op == ACT_DELETE)
			rlog_delete(tenant, q->room, q->msg_id, user, st->rank >= RANK_MODERATOR,
			    msgact__appended, q);
		else
			rlog_react(tenant, q->room, q->msg_id, user, q->emoji, q->add,
			    msgact__appended, q);
		return;
	}
	msgact__free(q);
}

static void
msgact__limited(void *arg, long long retry_ms)
{
	struct act_req *q = arg;
	struct conn *c = q->req.c;

	if (limit_refused(c, q->req.idjson, retry_ms, "changes"))
		msgact__free(q);
	else
		standing_get(c->id.tenant, q->room, c->id.user, msgact__standing, q);
}

static struct act_req *
msgact__new(struct conn *c, const char *idjson, json_t *msg, enum msgact_op op)
{
	struct act_req *q = xcalloc(1, sizeof(*q));

	q->op = op;
	snprintf(q->room, sizeof(q->room), "%s", json_string_value(json_object_get(msg, "room")));
	snprintf(q->msg_id, sizeof(q->msg_id), "%s",
	    json_string_value(json_object_get(msg, "msg_id")));
	reply_req_init(&q->req, c, idjson);
	return q;
}

static void
msgact__start(struct act_req *q)
{
	struct conn *c = q->req.c;

	limit_take(c->id.tenant, c->id.user, act_limits[q->op], msgact__limited, q);
}

void
msgact_edit(struct conn *c, const char *idjson, json_t *msg)
{
	struct act_req *q = msgact__new(c, idjson, msg, ACT_EDIT);

	q->body_json = json_dumps(json_object_get(msg, "body"), JSON_ENCODE_ANY | JSON_COMPACT);
	if (q->body_json == NULL)
		log_fatal("msgact: cannot encode a body jansson accepted");
	msgact__start(q);
}

void
msgact_delete(struct conn *c, const char *idjson, json_t *msg)
{
	msgact__start(msgact__new(c, idjson, msg, ACT_DELETE));
}

void
msgact_react(struct conn *c, const char *idjson, json_t *msg)
{
	const char *emoji = json_string_value(json_object_get(msg, "emoji"));
	struct act_req *q;

	if (emoji[0] == '\0' || strpbrk(emoji, " \"\\\x7f") != NULL) {
		reply_error(c, idjson, "bad_request", "emoji: 1 to %d bytes, no space, quote or backslash",
		    MSGACT_EMOJI_MAX);
		return;
	}
	for (const unsigned char *p = (const unsigned char *)emoji; *p; p++) {
		if (*p < 0x20) {
			reply_error(c, idjson, "bad_request", "emoji: no control character");
			return;
		}
	}
	q = msgact__new(c, idjson, msg, ACT_REACT);
	snprintf(q->emoji, sizeof(q->emoji), "%s", emoji);
	q->add = json_is_true(json_object_get(msg, "add"));
	msgact__start(q);
}
