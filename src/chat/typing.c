#include "chat/typing.h"
#include "chat/limit.h"
#include "chat/room.h"
#include "chat/standing.h"
#include "lib/hmap.h"
#include "lib/util.h"
#include "net/conn.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "proto/reply.h"
#include "store/redis.h"
#include "store/redis_link.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* typing:true goes out at most once per this while typing:start repeats. */
#define TYPING_REPEAT_MS 1000
/* How much longer than typing_timeout_ms after a typist's last typing:true
 * the other workers (and join acks) still count it as typing: its own
 * worker ends it typing_timeout_ms after the last typing:start, which may
 * be up to TYPING_REPEAT_MS after the last typing:true; then a tick and the
 * trip through Redis. */
#define TYPING_MARGIN_MS 1500
/* The expiry check, while anything is typing. */
#define TYPING_TICK_MS 250
#define TYPING_FRAME_MAX (80 + 2 * UTIL_ID_MAX)
/* "tenant/room/user": '/' is not an id character. */
#define TYPING_WKEY_MAX (3 * UTIL_ID_MAX + 3)

static uv_timer_t tick;
static int inited, ticking;
/* This worker's typing subscriptions (typing_until_ms != 0); borrowed:
 * a subscription leaves the list before it is freed (typing__detached). */
static struct sub **typists;
static int ntypists, captypists;
/* The typists announced on the channels of rooms with local subscribers,
 * by "tenant/room/user": the ms after which this worker ends them itself
 * (an owned int64_t), in case their own worker died. */
static struct hmap *watched;

static void typing__tick(uv_timer_t *t);

static void
typing__kick(void)
{
	if (!inited || ticking)
		return;
	uv_timer_start(&tick, typing__tick, TYPING_TICK_MS, TYPING_TICK_MS);
	ticking = 1;
}

static int
typing__frame(char *buf, size_t len, const char *room_id, const char *user, int on)
{
	return snprintf(buf, len, "{\"type\":\"typing:update\",\"room\":\"%s\",\"user\":\"%s\","
	    "\"typing\":%s}", room_id, user, on ? "true" : "false");
}

/* The room's hash first, then the event, both on the command link: a join
 * reads the hash once its room is subscribed, so an event published after
 * that read reaches it (held until its ack), and one published before is
 * in what it read. */
static void
typing__announce(const char *tenant, const char *room_id, const char *user, int on)
{
	char key[200], frame[TYPING_FRAME_MAX], until[24], ttl[16];
	int rc = 0;

	redis_typing_key(key, sizeof(key), tenant, room_id);
	if (on) {
		snprintf(until, sizeof(until), "%lld", (long long)(util_now_ms() +
		    srv.cfg->typing_timeout_ms + TYPING_MARGIN_MS));
		snprintf(ttl, sizeof(ttl), "%d", srv.cfg->typing_timeout_ms + TYPING_MARGIN_MS);
		rc = rlink_cmd(srv.rcmd, NULL, NULL, "HSET %s %s %s", key, user, until);
		if (rc == 0)
			rc = rlink_cmd(srv.rcmd, NULL, NULL, "PEXPIRE %s %s", key, ttl);
	} else {
		rc = rlink_cmd(srv.rcmd, NULL, NULL, "HDEL %s %s", key, user);
	}
	if (rc != 0)
		log_debug("typing: %s/%s's typists not written", tenant, room_id);
	typing__frame(frame, sizeof(frame), room_id, user, on);
	redis_publish_room(tenant, room_id, frame);
}

static void
typing__list_add(struct sub *s)
{
	if (ntypists == captypists) {
		captypists = captypists ? captypists * 2 : 16;
		typists = xrealloc(typists, (size_t)captypists * sizeof(*typists));
	}
	typists[ntypists++] = s;
}

/* typists[i] stops typing: out of the list (the last takes its place),
 * typing:false to the room. */
static void
typing__end_at(int i)
{
	struct sub *s = typists[i];

	typists[i] = typists[--ntypists];
	s->typing_until_ms = 0;
	s->typing_sent_ms = 0;
	typing__announce(s->c->id.tenant, room_sub_room_id(s), s->c->id.user, 0);
}

static void
typing__end(struct sub *s)
{
	if (s->typing_until_ms == 0)
		return;
	for (int i = 0; i < ntypists; i++) {
		if (typists[i] == s) {
			typing__end_at(i);
			return;
		}
	}
	log_fatal("typing: a typing subscription is not in the list");
}

static void
typing__start(struct sub *s)
{
	int64_t now = util_now_ms();

	if (s->typing_until_ms == 0)
		typing__list_add(s);
	s->typing_until_ms = now + srv.cfg->typing_timeout_ms;
	if (now - s->typing_sent_ms >= TYPING_REPEAT_MS) {
		s->typing_sent_ms = now;
		typing__announce(s->c->id.tenant, room_sub_room_id(s), s->c->id.user, 1);
	}
	typing__kick();
}

void
typing_sent(struct sub *s)
{
	typing__end(s);
}

/* room_on_detach: leave, re-join, close, removal. */
static void
typing__detached(struct sub *s)
{
	typing__end(s);
}

/* Watch tenant/room/user until `until` (a later time wins). */
static void
typing__watch(const char *wkey, int64_t until)
{
	int64_t *t = hmap_get(watched, wkey);

	if (t == NULL) {
		t = xmalloc(sizeof(*t));
		*t = until;
		hmap_put(watched, wkey, t);
	} else if (until > *t) {
		*t = until;
	}
	typing__kick();
}

/* room_on_typing: every typing:update of a room with local subscribers,
 * this worker's own included. key is "tenant/room". */
static void
typing__seen(const char *key, const char *payload, size_t len)
{
	const char *u = memmem(payload, len, "\"user\":\"", 8), *end;
	char wkey[TYPING_WKEY_MAX];

	if (watched == NULL || u == NULL)
		return;
	u += 8;
	end = memchr(u, '"', len - (size_t)(u - payload));
	if (end == NULL || end == u || end - u > UTIL_ID_MAX)
		return;
	snprintf(wkey, sizeof(wkey), "%s/%.*s", key, (int)(end - u), u);
	if (memmem(payload, len, "\"typing\":true", 13) != NULL)
		typing__watch(wkey, util_now_ms() + srv.cfg->typing_timeout_ms + TYPING_MARGIN_MS);
	else
		free(hmap_del(watched, wkey));
}

struct typing_due {
	int64_t now;
	char **keys;	/* owned copies */
	int n, cap;
};

static void
typing__collect(const char *key, void *value, void *arg)
{
	struct typing_due *d = arg;

	if (*(int64_t *)value > d->now)
		return;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->keys = xrealloc(d->keys, (size_t)d->cap * sizeof(*d->keys));
	}
	d->keys[d->n++] = xstrdup(key);
}

/* A watched typist neither renewed nor ended in time: its worker is gone.
 * This worker ends it for its own subscribers of the room. */
static void
typing__ghost(char *wkey)
{
	char frame[TYPING_FRAME_MAX];
	char *room_id = strchr(wkey, '/'), *user = strrchr(wkey, '/');
	int n;

	free(hmap_del(watched, wkey));
	if (room_id == NULL || user == room_id)
		return;
	*room_id++ = '\0';
	*user++ = '\0';
	n = typing__frame(frame, sizeof(frame), room_id, user, 0);
	room_typing_local(wkey, room_id, frame, (size_t)n);
}

static void
typing__tick(uv_timer_t *t)
{
	struct typing_due due = { util_now_ms(), NULL, 0, 0 };

	(void)t;
	for (int i = 0; i < ntypists;) {
		if (typists[i]->typing_until_ms <= due.now)
			typing__end_at(i);
		else
			i++;
	}
	/* The map cannot change while it is walked: collect, then end. */
	hmap_each(watched, typing__collect, &due);
	for (int i = 0; i < due.n; i++) {
		typing__ghost(due.keys[i]);
		free(due.keys[i]);
	}
	free(due.keys);
	if (ntypists == 0 && hmap_count(watched) == 0) {
		uv_timer_stop(&tick);
		ticking = 0;
	}
}

/* The commands. */

struct typing_req {
	struct reply_req req;
	char room[UTIL_ID_MAX + 1];
};

static void
typing__apply(struct conn *c, const char *idjson, const char *room_id, int start)
{
	struct sub *s = conn_find_sub(c, room_id);

	if (s == NULL) {
		standing_not_joined(c, idjson, room_id, "typing in it");
		return;
	}
	if (s->muted_until_ms > util_now_ms()) {
		reply_error(c, idjson, "forbidden", "you are muted in room \"%s\"", room_id);
		return;
	}
	if (start)
		typing__start(s);
	else
		typing__end(s);
	reply_ack(c, idjson, json_pack("{s:s}", "room", room_id));
}

static void
typing__limited(void *arg, long long retry_ms)
{
	struct typing_req *q = arg;
	struct conn *c = q->req.c;

	if (!limit_refused(c, q->req.idjson, retry_ms, "typing:start") && conn_open(c))
		typing__apply(c, q->req.idjson, q->room, 1);
	reply_req_done(&q->req);
	free(q);
}

/* typing:start costs a token of rate_typing (before the room is looked
 * at: docs/protocol.md section 7's order). */
void
typing_cmd_start(struct conn *c, const char *idjson, json_t *msg)
{
	struct typing_req *q = xcalloc(1, sizeof(*q));

	snprintf(q->room, sizeof(q->room), "%s", json_string_value(json_object_get(msg, "room")));
	reply_req_init(&q->req, c, idjson);
	limit_take(c->id.tenant, c->id.user, LIMIT_TYPING, typing__limited, q);
}

/* typing:stop costs none: it publishes only what a typing:start began. */
void
typing_cmd_stop(struct conn *c, const char *idjson, json_t *msg)
{
	typing__apply(c, idjson, json_string_value(json_object_get(msg, "room")), 0);
}

/* The join ack's `typing`. */

struct typing_read_op {
	typing_read_cb *cb;
	void *arg;
	char room_key[2 * UTIL_ID_MAX + 2];	/* tenant/room */
	char user[UTIL_ID_MAX + 1];
};

static void
typing__read_answer(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct typing_read_op *op = priv;
	json_t *users = json_array();
	int64_t now = util_now_ms();
	char wkey[TYPING_WKEY_MAX];

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i + 1 < r->elements; i += 2) {
			const redisReply *f = r->element[i], *v = r->element[i + 1];
			long long until;

			/* Past their time: typists whose worker died, or whose
			 * typing:false did not reach Redis. */
			if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
			    !util_valid_id(f->str) ||
			    util_parse_ll(v->str, 0, INT64_MAX, &until) != 0 || until <= now)
				continue;
			/* Its worker may be dead: this one ends it in time. */
			snprintf(wkey, sizeof(wkey), "%s/%s", op->room_key, f->str);
			if (watched != NULL)
				typing__watch(wkey, until);
			if (strcmp(f->str, op->user) != 0)
				json_array_append_new(users, json_string(f->str));
		}
	}
	op->cb(op->arg, users);
	free(op);
}

int
typing_read(const char *tenant, const char *room_id, const char *user, typing_read_cb *cb,
    void *arg)
{
	struct typing_read_op *op = xcalloc(1, sizeof(*op));
	char key[200];

	op->cb = cb;
	op->arg = arg;
	snprintf(op->room_key, sizeof(op->room_key), "%s/%s", tenant, room_id);
	snprintf(op->user, sizeof(op->user), "%s", user);
	redis_typing_key(key, sizeof(key), tenant, room_id);
	if (rlink_cmd(srv.rcmd, typing__read_answer, op, "HGETALL %s", key) != 0) {
		free(op);
		return -1;
	}
	return 0;
}

/* Worker start and stop. */

void
typing_init(void)
{
	uv_timer_init(srv.loop, &tick);
	watched = hmap_new();
	inited = 1;
	room_on_detach(typing__detached);
	room_on_typing(typing__seen);
}

static void
typing__free_value(const char *key, void *value, void *arg)
{
	(void)key;
	(void)arg;
	free(value);
}

/* After the connections are gone (their typing:false is queued). */
void
typing_shutdown(void)
{
	if (!inited)
		return;
	inited = ticking = 0;
	for (int i = 0; i < ntypists; i++)
		typists[i]->typing_until_ms = 0;
	uv_timer_stop(&tick);
	uv_close((uv_handle_t *)&tick, NULL);
	hmap_each(watched, typing__free_value, NULL);
	hmap_free(watched);
	watched = NULL;
	free(typists);
	typists = NULL;
	ntypists = captypists = 0;
}
