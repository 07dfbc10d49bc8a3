#include "chat/join.h"
#include "store/redis.h"
#include "proto/proto.h"
#include "proto/reply.h"
#include "net/conn.h"
#include "chat/history.h"
#include "chat/limit.h"
#include "chat/member.h"
#include "proc/metrics.h"
#include "net/outbuf.h"
#include "chat/room.h"
#include "chat/presence.h"
#include "chat/typing.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

struct resume_op;

/* One room being joined. On success `result` holds the ack fields and the
 * subscription is still held (SUB_JOINING) until the owner releases it
 * with join__release(), after its answer is queued. */
struct join_op {
	struct conn *c;			/* reference held */
	char room[UTIL_ID_MAX + 1];
	long long since;		/* -1: the latest events */
	struct sub *sub;
	uint32_t gen;			/* of sub */
	char role[16];
	json_t *result;			/* owned */
	json_t *typing;			/* owned: the typists read, for the ack */
	json_t *receipts;		/* owned: the members' positions (member.c) */
	json_t *presence;		/* owned: the members not offline (presence.c) */
	char *members;			/* owned: the room's members when few (member.c) */
	int reads;			/* history and typists not yet answered */
	int64_t last_seq;
	const char *err_code;
	char err_msg[160];
	long long retry_ms;		/* rate_limited: when to retry */
	void (*done)(struct join_op *op);
	char *idjson;			/* room:join's id; owned */
	struct resume_op *parent;
};

struct resume_op {
	struct conn *c;			/* reference held */
	char *idjson;			/* owned */
	int pending;
	int n;
	struct join_op **ops;		/* owned */
};

static void join__start(struct join_op *op);
static void join__resync(struct sub *s);

/* The subscription this op made is still the connection's one. */
static int
join__current(const struct join_op *op)
{
	struct sub *s;

	if (op->sub == NULL || !conn_open(op->c))
		return 0;
	s = conn_find_sub(op->c, op->room);
	return s == op->sub && s->gen == op->gen;
}

/* The first error is the answer. */
static void
join__error(struct join_op *op, const char *code, const char *msg)
{
	if (op->err_code != NULL)
		return;
	op->err_code = code;
	snprintf(op->err_msg, sizeof(op->err_msg), "%s", msg);
}

static void
join__failed(struct join_op *op)
{
	if (join__current(op))
		room_detach(op->sub);
	op->sub = NULL;
	json_decref(op->result);
	op->result = NULL;
	op->done(op);
}

static void
join__fail(struct join_op *op, const char *code, const char *msg)
{
	join__error(op, code, msg);
	join__failed(op);
}

static void
join__release(struct join_op *op)
{
	if (join__current(op))
		room_sub_live(op->sub, op->last_seq);
}

static void
join__free(struct join_op *op)
{
	json_decref(op->result);
	json_decref(op->typing);
	json_decref(op->receipts);
	json_decref(op->presence);
	free(op->members);
	free(op->idjson);
	conn_unref(op->c);
	free(op);
}

/* The history and the typists are read at once (one round trip): the
 * ack goes when both are in. */
static void
join__read_done(struct join_op *op)
{
	if (--op->reads > 0)
		return;
	if (op->err_code == NULL && !join__current(op))
		join__error(op, "conflict", "room:join overtaken by a later join or leave of the room");
	if (op->err_code != NULL) {
		join__failed(op);
		return;
	}
	if (op->typing != NULL)
		json_object_set(op->result, "typing", op->typing);
	if (op->presence != NULL)
		json_object_set(op->result, "presence", op->presence);
	op->done(op);
}

static void
join__history_done(const struct history_result *h, void *arg)
{
	struct join_op *op = arg;
	json_t *events;

	if (!join__current(op)) {
		join__error(op, "conflict", "room:join overtaken by a later join or leave of the room");
	} else if (h == NULL) {
		join__error(op, "unavailable", "history unavailable; retry");
	} else {
		events = history_events_json(h);
		op->last_seq = h->last_seq;
		op->result = json_pack("{s:s, s:s, s:I, s:b, s:o, s:[], s:[], s:O}",
		    "room", op->room, "role", op->role, "last_seq", (json_int_t)h->last_seq,
		    "recovered", h->recovered, "events", events, "presence", "typing",
		    "receipts", op->receipts);
	}
	join__read_done(op);
}

static void
join__typing_read(void *arg, json_t *users)
{
	struct join_op *op = arg;

	op->typing = users;
	join__read_done(op);
}

static void
join__presence_read(void *arg, json_t *list)
{
	struct join_op *op = arg;

	op->presence = list;
	join__read_done(op);
}

static void
join__subscribed(void *arg, int ok)
{
	struct join_op *op = arg;
	struct history_query q = { -1, -1, srv.cfg->history_on_join, 0 };

	if (!join__current(op)) {
		join__fail(op, "conflict", "room:join overtaken by a later join or leave of the room");
		return;
	}
	if (!ok) {
		join__fail(op, "unavailable", "message bus unavailable; retry");
		return;
	}
	if (op->since >= 0) {
		q.from = op->since + 1;
		q.count = srv.cfg->max_resume_gap;
		q.max_gap = srv.cfg->max_resume_gap;
	}
	op->reads = 1;
	if (history_read(op->c->id.tenant, op->room, &q, join__history_done, op) != 0) {
		join__fail(op, "unavailable", "history unavailable; retry");
		return;
	}
	/* Behind the history script on the command link: the same round trip.
	 * Without it the ack says nobody types. */
	if (typing_read(op->c->id.tenant, op->room, op->c->id.user, join__typing_read, op) == 0)
		op->reads++;
	/* A room of at most presence_room_max members: who is online, in the
	 * same round trip too. */
	if (op->members != NULL &&
	    presence_read(op->c->id.tenant, op->members, join__presence_read, op) == 0)
		op->reads++;
}

/* The member check's answer (member.c). */
static void
join__member_checked(void *arg, enum member_status st, const struct member_info *info,
    const char *why)
{
	struct join_op *op = arg;
	struct conn *c = op->c;
	struct sub *old;
	char msg[160];

	if (st == MEMBER_UNAVAILABLE) {
		join__fail(op, "unavailable", why);
		return;
	}
	if (!conn_open(c)) {
		join__fail(op, "unavailable", "connection closed");
		return;
	}
	if (st == MEMBER_NO_ROOM) {
		snprintf(msg, sizeof(msg), "no room \"%s\"", op->room);
		join__fail(op, "not_found", msg);
		return;
	}
	if (info->role == NULL || info->banned) {
		snprintf(msg, sizeof(msg), "not a member of room \"%s\"", op->room);
		join__fail(op, "forbidden", msg);
		return;
	}
	snprintf(op->role, sizeof(op->role), "%s", info->role);
	json_decref(op->receipts);
	op->receipts = info->receipts ? json_loads(info->receipts, 0, NULL) : NULL;
	free(op->members);
	op->members = info->members ? xstrdup(info->members) : NULL;
	if (!json_is_array(op->receipts)) {
		json_decref(op->receipts);
		op->receipts = json_array();
	}
	/* Joining again (say with a new since) replaces the subscription. */
	old = conn_find_sub(c, op->room);
	if (old != NULL)
		room_detach(old);
	if (c->nsubs >= srv.cfg->max_rooms_per_conn) {
		snprintf(msg, sizeof(msg), "at most %d rooms per connection",
		    srv.cfg->max_rooms_per_conn);
		join__fail(op, "rate_limited", msg);
		return;
	}
	/* Every subscription is made here, so its catch-ups are this module's. */
	room_on_catch_up(join__resync);
	op->sub = room_attach(c, c->id.tenant, op->room, op->role);
	op->gen = op->sub->gen;
	op->sub->broadcast = strcmp(info->kind, "broadcast") == 0;
	op->sub->muted_until_ms = info->muted_until_ms;
	room_when_active(op->sub, join__subscribed, op);
}

static void
join__start(struct join_op *op)
{
	member_check(op->c->id.tenant, op->room, op->c->id.user, op->c->id.admin,
	    join__member_checked, op);
}

static void
join__rate_checked(void *arg, long long retry_ms)
{
	struct join_op *op = arg;

	if (retry_ms < 0) {
		join__fail(op, "unavailable", "message bus unavailable; retry");
		return;
	}
	if (retry_ms > 0) {
		op->retry_ms = retry_ms;
		join__fail(op, "rate_limited", "too many joins; retry later");
		return;
	}
	join__start(op);
}

/* room:join is limited per user (session:resume is bounded by its size). */
static void
join__start_limited(struct join_op *op)
{
	limit_take_rate(op->c->id.tenant, op->c->id.user, RATE_JOIN, join__rate_checked, op);
}

static struct join_op *
join__new(struct conn *c, const char *room, long long since, void (*done)(struct join_op *))
{
	struct join_op *op = xcalloc(1, sizeof(*op));

	op->c = c;
	conn_ref(c);
	snprintf(op->room, sizeof(op->room), "%s", room);
	op->since = since;
	op->done = done;
	return op;
}

static void
join__reply(struct join_op *op)
{
	if (op->result != NULL) {
		reply_ack(op->c, op->idjson, json_incref(op->result));
		join__release(op);
	} else if (conn_open(op->c) && strcmp(op->err_code, "rate_limited") == 0 && op->retry_ms > 0) {
		reply_error_retry(op->c, op->idjson, op->retry_ms, "%s", op->err_msg);
	} else if (conn_open(op->c)) {
		reply_error(op->c, op->idjson, op->err_code, "%s", op->err_msg);
	}
	join__free(op);
}

void
join_room_join(struct conn *c, const char *idjson, json_t *msg)
{
	struct join_op *op = join__new(c, json_string_value(json_object_get(msg, "room")),
	    proto_seq(json_object_get(msg, "since")), join__reply);

	op->idjson = idjson ? xstrdup(idjson) : NULL;
	join__start_limited(op);
}

/* An event stream's room answered: room:joined (the ack but its events),
 * then the events as one batch, or an error event. */
static void
join__stream_done(struct join_op *op)
{
	struct conn *c = op->c;
	json_t *events, *ev, *head;
	struct outbuf *batch = NULL;
	size_t i;
	char *text;

	if (!conn_open(c)) {
		join__free(op);
		return;
	}
	if (op->result == NULL) {
		head = json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "room", op->room,
		    "code", op->err_code, "message", op->err_msg);
		text = head ? json_dumps(head, JSON_COMPACT) : NULL;
		json_decref(head);
		if (text != NULL)
			conn_send_text(c, text, strlen(text));
		free(text);
		join__free(op);
		return;
	}
	/* "type" first: the stream's "event:" line is read from it. */
	head = json_pack("{s:s}", "type", "room:joined");
	json_object_update(head, op->result);
	json_object_del(head, "events");
	text = json_dumps(head, JSON_COMPACT);
	json_decref(head);
	if (text != NULL)
		conn_send_text(c, text, strlen(text));
	free(text);
	events = json_object_get(op->result, "events");
	json_array_foreach(events, i, ev) {
		char *e = json_dumps(ev, JSON_COMPACT);

		if (e != NULL)
			outbuf_append(&batch, e, strlen(e), outbuf_scan_seq(e, strlen(e)));
		free(e);
	}
	/* The cursor after the batch says it all was given. */
	if (join__current(op) && op->last_seq > op->sub->delivered_seq)
		op->sub->delivered_seq = op->last_seq;
	if (batch != NULL) {
		snprintf(batch->room, sizeof(batch->room), "%s", op->room);
		batch->bounded = 1;
		conn_send(c, batch);
		outbuf_unref(batch);
	}
	join__release(op);
	join__free(op);
}

void
join_stream(struct conn *c, const char *room, long long since)
{
	join__start(join__new(c, room, since, join__stream_done));
}

/* All rooms answered: one ack with a result or an error per room, and
 * only then the held live events. */
static void
join__resume_dec(struct resume_op *r)
{
	json_t *rooms;

	if (--r->pending > 0)
		return;
	rooms = json_object();
	for (int i = 0; i < r->n; i++) {
		struct join_op *o = r->ops[i];

		if (o->result != NULL)
			json_object_set(rooms, o->room, o->result);
		else
			json_object_set_new(rooms, o->room, json_pack("{s:{s:s, s:s}}", "error",
			    "code", o->err_code, "message", o->err_msg));
	}
	if (conn_open(r->c))
		reply_ack(r->c, r->idjson, json_pack("{s:o}", "rooms", rooms));
	else
		json_decref(rooms);
	for (int i = 0; i < r->n; i++) {
		join__release(r->ops[i]);
		join__free(r->ops[i]);
	}
	free(r->ops);
	free(r->idjson);
	conn_unref(r->c);
	free(r);
}

static void
join__resume_child_done(struct join_op *op)
{
	join__resume_dec(op->parent);
}

void
join_session_resume(struct conn *c, const char *idjson, json_t *msg)
{
	json_t *rooms = json_object_get(msg, "rooms"), *v;
	const char *room;
	struct resume_op *r;

	/* The table checks rooms' form (ids to seqs, at most 100 of them): an
	 * empty one is well-formed, but there is nothing to resume. */
	if (json_object_size(rooms) == 0) {
		reply_error(c, idjson, "bad_request", "rooms must be an object {room: last_seq}");
		return;
	}
	if (json_object_size(rooms) > (size_t)srv.cfg->max_rooms_per_conn) {
		reply_error(c, idjson, "too_large", "at most %d rooms in one resume",
		    srv.cfg->max_rooms_per_conn);
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->c = c;
	conn_ref(c);
	r->idjson = idjson ? xstrdup(idjson) : NULL;
	r->ops = xcalloc(json_object_size(rooms), sizeof(*r->ops));
	json_object_foreach(rooms, room, v) {
		r->ops[r->n] = join__new(c, room, proto_seq(v), join__resume_child_done);
		r->ops[r->n]->parent = r;
		r->n++;
	}
	/* One extra count while starting: a child may finish at once. */
	r->pending = r->n + 1;
	for (int i = 0; i < r->n; i++)
		join__start(r->ops[i]);
	join__resume_dec(r);
}

/* Catch-up after the subscriber link came back. */
#define JOIN_RESYNC_TRIES 100	/* x 100 ms: Redis may still be loading its AOF */

struct resync_op {
	struct conn *c;		/* reference held */
	struct sub *sub;
	uint32_t gen;
	int tries;
	uv_timer_t timer;
	char room[UTIL_ID_MAX + 1];
	int64_t after;
};

static void
join__resync_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
join__resync_done(const struct history_result *h, void *arg)
{
	struct resync_op *op = arg;
	struct conn *c = op->c;

	if (!conn_open(c) || conn_find_sub(c, op->room) != op->sub || op->sub->gen != op->gen)
		goto done;
	if (h == NULL || !h->recovered) {
		/* The client resumes itself with room:join {since}. */
		char gap[160];
		int n = snprintf(gap, sizeof(gap), "{\"type\":\"room:gap\",\"room\":\"%s\",\"after_seq\":%lld}",
		    op->room, (long long)op->after);

		conn_send_text(c, gap, (size_t)n);
		metrics_add(M_GAPS, 1);
		/* As after an overflow: quiet until the client joins again. */
		op->sub->gapped = 1;
		room_sub_live(op->sub, h ? h->last_seq : op->after);
		goto done;
	}
	for (int i = 0; i < h->n; i++) {
		struct outbuf *b = outbuf_new(h->events[i], strlen(h->events[i]),
		    outbuf_scan_seq(h->events[i], strlen(h->events[i])));

		snprintf(b->room, sizeof(b->room), "%s", op->room);
		if (b->seq > op->after)
			conn_send(c, b);
		outbuf_unref(b);
	}
	metrics_add(M_DELIVERIES, h->n);
	room_sub_live(op->sub, h->last_seq);
done:
	conn_unref(c);
	uv_close((uv_handle_t *)&op->timer, join__resync_closed);
}

static void
join__resync_try(uv_timer_t *t)
{
	struct resync_op *op = t->data;
	struct history_query q = { op->after + 1, -1, srv.cfg->max_resume_gap,
	    srv.cfg->max_resume_gap };

	if (!conn_open(op->c) || conn_find_sub(op->c, op->room) != op->sub ||
	    op->sub->gen != op->gen) {
		join__resync_done(NULL, op);
		return;
	}
	/* After an outage the subscriber link may be back before the
	 * command link and its scripts: wait for them a while. */
	if (!redis_ready() && ++op->tries < JOIN_RESYNC_TRIES) {
		uv_timer_start(&op->timer, join__resync_try, 100, 0);
		return;
	}
	if (history_read(op->c->id.tenant, op->room, &q, join__resync_done, op) != 0)
		join__resync_done(NULL, op);
}

/* The subscriber link came back (room.c): send s the events it missed,
 * then go live again. */
static void
join__resync(struct sub *s)
{
	struct resync_op *op = xcalloc(1, sizeof(*op));

	op->c = s->c;
	conn_ref(op->c);
	op->sub = s;
	op->gen = s->gen;
	op->after = s->delivered_seq;
	snprintf(op->room, sizeof(op->room), "%s", room_sub_room_id(s));
	uv_timer_init(srv.loop, &op->timer);
	op->timer.data = op;
	s->state = SUB_JOINING;
	join__resync_try(&op->timer);
}
