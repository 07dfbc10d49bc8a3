#include "chat/room.h"
#include "net/conn.h"
#include "proc/turn.h"
#include "lib/hmap.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "net/outbuf.h"
#include "store/redis.h"
#include "store/redis_link.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum room_state { RS_NONE, RS_SUBSCRIBING, RS_ACTIVE, RS_UNSUBSCRIBING };

struct room_waiter {
	struct room_waiter *next;
	void (*cb)(void *arg, int ok);
	void *arg;
};

struct room {
	char key[2 * UTIL_ID_MAX + 2];		/* tenant/room */
	char id[UTIL_ID_MAX + 1];
	char channel[2 * UTIL_ID_MAX + 16];
	enum room_state state;
	struct sub **subs;			/* owned array; subs owned by conns */
	int nsubs, cap;
	struct room_waiter *waiters;		/* owned */
	int pinned;				/* waiters are running */
	int resync;				/* events may have been missed */
	struct outbuf *batch;			/* this turn's events; owned */
	int batch_idx;				/* in open_rooms, or -1 */
	char (*typists)[UTIL_ID_MAX + 1];	/* users with typing events in batch; owned */
	int ntypists, captypists;
};

static struct hmap *room_by_channel;
/* Rooms with a batch of events published during this loop turn, sealed
 * (queued to their subscribers) at the end of the turn, before the write. */
static struct room **open_rooms;
static int nopen, capopen;
static int registered;	/* room_seal_batches is a turn step */
static int hooked;	/* close hook and link callbacks are set */
static void (*catch_up)(struct sub *s);	/* room_on_catch_up */
static void (*detaching)(struct sub *s);	/* room_on_detach */
static void (*typing_seen)(const char *key, const char *payload, size_t len);	/* room_on_typing */

void
room_channel(char *buf, size_t len, const char *tenant, const char *room_id)
{
	redis_channel(buf, len, tenant, room_id);
}

static void room__on_pubsub(redisAsyncContext *ac, void *reply, void *priv);
static void room__conn_closed(struct conn *c);
static void room__gapped(struct sub *s);
static int64_t room__sub_seq(const struct sub *s);
static void room__link_up(void);
static void room__link_down(void);

void
room_on_catch_up(void (*fn)(struct sub *s))
{
	catch_up = fn;
}

static void
room__subscribe(struct room *r)
{
	if (rlink_cmd(srv.rsub, room__on_pubsub, NULL, "SUBSCRIBE %s", r->channel) == 0)
		r->state = RS_SUBSCRIBING;
}

static void
room__fire_waiters(struct room *r, int ok)
{
	struct room_waiter *w = r->waiters;

	r->waiters = NULL;
	r->pinned++;
	while (w != NULL) {
		struct room_waiter *next = w->next;

		w->cb(w->arg, ok);
		free(w);
		w = next;
	}
	r->pinned--;
}

static void
room__close_batch(struct room *r)
{
	if (r->batch_idx < 0)
		return;
	open_rooms[r->batch_idx] = open_rooms[--nopen];
	open_rooms[r->batch_idx]->batch_idx = r->batch_idx;
	r->batch_idx = -1;
	outbuf_unref(r->batch);
	r->batch = NULL;
	r->ntypists = 0;
}

static void
room__maybe_free(struct room *r)
{
	if (r->nsubs > 0 || r->waiters != NULL || r->pinned || r->state != RS_NONE)
		return;
	room__close_batch(r);
	hmap_del(room_by_channel, r->channel);
	metrics_set(M_ROOMS_LOCAL, (int64_t)hmap_count(room_by_channel));
	free(r->subs);
	free(r->typists);
	free(r);
}

static void room__seal(struct room *r);
static void room__append(struct room *r, const char *payload, size_t len);

static uint8_t
room__role(const char *role)
{
	return strcmp(role, "admin") == 0 ? SUB_ADMIN :
	    strcmp(role, "moderator") == 0 ? SUB_MODERATOR : SUB_MEMBER;
}

/* A member:* event takes effect on this worker's subscriptions of its user
 * at once: a user who left, was removed or banned gets nothing after it
 * (its connections get room:removed from chat/personal); a new role or
 * mute applies to the next command. Rare: parsed whole. */
static void
room__member_event(struct room *r, const char *payload, size_t len)
{
	json_t *ev = json_loadb(payload, len, 0, NULL);
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *user = json_string_value(json_object_get(ev, "user"));
	json_t *role, *muted;

	if (type == NULL || user == NULL)
		goto done;
	role = json_object_get(ev, "role");
	muted = json_object_get(ev, "muted_until");
	if (strcmp(type, "member:left") == 0) {
		/* What came before the event (and the event) still goes out. */
		if (r->batch != NULL) {
			room__seal(r);
			room__close_batch(r);
		}
		/* The room stays: it is subscribed (a detach only unsubscribes). */
		r->pinned++;
		for (int i = r->nsubs - 1; i >= 0; i--)
			if (i < r->nsubs && strcmp(r->subs[i]->c->id.user, user) == 0)
				room_detach(r->subs[i]);
		r->pinned--;
	} else if (strcmp(type, "member:updated") == 0) {
		for (int i = 0; i < r->nsubs; i++) {
			struct sub *s = r->subs[i];

			if (strcmp(s->c->id.user, user) != 0)
				continue;
			if (json_is_string(role))
				s->role = room__role(json_string_value(role));
			if (json_is_null(muted))
				s->muted_until_ms = 0;
			else if (json_is_integer(muted))
				s->muted_until_ms = json_integer_value(muted);
		}
	}
done:
	json_decref(ev);
}

static void room__hold(struct sub *s, struct outbuf *b);

/* typing:update goes into the room's batch of this turn like a log event
 * (one reference per subscriber per turn, whatever the events), and its
 * typist is noted: at the seal the typist's own connections get the batch
 * without their own typing events (room__seal). A joining subscription
 * holds it like a log event: its ack's `typing` was read before, so the
 * held frames bring it up to date. chat/typing sees each one first (its
 * ghost check). */
static void
room__typing(struct room *r, const char *payload, size_t len)
{
	const char *u = memmem(payload, len, "\"user\":\"", 8), *end;
	size_t ul;

	if (u == NULL)
		return;
	u += 8;
	end = memchr(u, '"', len - (size_t)(u - payload));
	if (end == NULL || (size_t)(end - u) > UTIL_ID_MAX)
		return;
	if (typing_seen != NULL)
		typing_seen(r->key, payload, len);
	ul = (size_t)(end - u);
	room__append(r, payload, len);
	for (int i = 0; i < r->ntypists; i++)
		if (strlen(r->typists[i]) == ul && memcmp(r->typists[i], u, ul) == 0)
			return;
	if (r->ntypists == r->captypists) {
		r->captypists = r->captypists ? r->captypists * 2 : 4;
		r->typists = xrealloc(r->typists, (size_t)r->captypists * sizeof(*r->typists));
	}
	memcpy(r->typists[r->ntypists], u, ul);
	r->typists[r->ntypists++][ul] = '\0';
}

void
room_on_typing(void (*fn)(const char *key, const char *payload, size_t len))
{
	typing_seen = fn;
}

void
room_typing_local(const char *tenant, const char *room_id, const char *payload, size_t len)
{
	char channel[sizeof(((struct room *)0)->channel)];
	struct room *r;

	room_channel(channel, sizeof(channel), tenant, room_id);
	r = room_by_channel != NULL ? hmap_get(room_by_channel, channel) : NULL;
	if (r == NULL || r->nsubs == 0)
		return;
	/* A slow consumer closed on the way detaches: the room stays until
	 * the loop is over. */
	r->pinned++;
	room__typing(r, payload, len);
	r->pinned--;
	room__maybe_free(r);
}

/* One event into the room's batch of this loop turn (framed once). */
static void
room__append(struct room *r, const char *payload, size_t len)
{
	if (r->batch == NULL) {
		if (nopen == capopen) {
			capopen = capopen ? capopen * 2 : 64;
			open_rooms = xrealloc(open_rooms, (size_t)capopen * sizeof(*open_rooms));
		}
		r->batch_idx = nopen;
		open_rooms[nopen++] = r;
		if (!registered) {
			turn_register(TURN_ROOMS, room_seal_batches);
			registered = 1;
		}
		turn_kick();
	}
	outbuf_append(&r->batch, payload, len, outbuf_scan_seq(payload, len));
}

/* A live event: framed once into the room's batch of this loop turn. */
static void
room__fanout(struct room *r, const char *payload, size_t len)
{
	if (r->nsubs == 0)
		return;
	if (len > 16 && memcmp(payload, "{\"type\":\"typing:", 16) == 0) {
		room__typing(r, payload, len);
		return;
	}
	room__append(r, payload, len);
	if (len > 16 && memcmp(payload, "{\"type\":\"member:", 16) == 0)
		room__member_event(r, payload, len);
}

/* Hold b for a joining subscriber; 1013 past the frame bound. */
static void
room__hold(struct sub *s, struct outbuf *b)
{
	if (s->pend_frames + (int64_t)b->nframes > srv.cfg->outbound_max_frames) {
		if (!s->c->killing)
			metrics_add(M_SLOW_CLOSES, 1);
		conn_kill(s->c, CONN_CLOSE_SLOW, "slow consumer");
		return;
	}
	if (s->npend == s->pendcap) {
		s->pendcap = s->pendcap ? s->pendcap * 2 : 8;
		s->pend = xrealloc(s->pend, (size_t)s->pendcap * sizeof(*s->pend));
	}
	outbuf_ref(b);
	s->pend[s->npend++] = b;
	s->pend_frames += (int)b->nframes;
}

/* Queue b to a live subscriber, without what it already has (seq up to
 * delivered_seq, sent with its history or a catch-up); *cut caches the
 * copy made for one delivered_seq, as every subscriber that joined in the
 * same batch needs the same one. */
static void
room__deliver(struct sub *s, struct outbuf *b, struct outbuf **cut, int64_t *cut_seq)
{
	struct outbuf *out = b;

	if (b->seq != 0 && b->seq <= s->delivered_seq) {
		if (*cut == NULL || *cut_seq != s->delivered_seq) {
			outbuf_unref(*cut);
			*cut = outbuf_after(b, s->delivered_seq);
			*cut_seq = s->delivered_seq;
		}
		out = *cut;
		if (out == NULL)
			return;
	}
	if (out->last_seq > s->delivered_seq)
		s->delivered_seq = out->last_seq;
	if (conn_send(s->c, out))
		metrics_add(M_DELIVERIES, out->nframes);
}

/* One room's batch: one reference per subscriber, whatever its size. */
static void
room__seal(struct room *r)
{
	struct outbuf *b = r->batch, *cut = NULL;
	int64_t cut_seq = 0;

	struct outbuf **own = NULL;	/* per typist: the batch without its typing */
	int ntyp = r->ntypists;

	snprintf(b->room, sizeof(b->room), "%s", r->id);
	if (ntyp > 0)
		own = xcalloc((size_t)ntyp, sizeof(*own));
	for (int i = 0; i < r->nsubs; i++) {
		struct sub *s = r->subs[i];
		struct outbuf *sb = b;
		int t = 0;

		if (s->gapped)
			continue;	/* it resumes from its room:gap */
		for (; t < ntyp && strcmp(r->typists[t], s->c->id.user) != 0; t++)
			;
		if (t < ntyp) {
			/* A typist's own connection: not its own typing. */
			if (own[t] == NULL && (own[t] = outbuf_without_typing(b, s->c->id.user)) == NULL)
				continue;
			sb = own[t];
		}
		if (s->state == SUB_JOINING) {
			room__hold(s, sb);
		} else if (sb == b) {
			room__deliver(s, b, &cut, &cut_seq);
		} else {
			struct outbuf *ocut = NULL;
			int64_t ocut_seq = 0;

			room__deliver(s, sb, &ocut, &ocut_seq);
			outbuf_unref(ocut);
		}
	}
	outbuf_unref(cut);
	for (int t = 0; t < ntyp; t++)
		outbuf_unref(own[t]);
	free(own);
	r->ntypists = 0;
}

int
room_seal_batches(void)
{
	while (nopen > 0) {
		struct room *r = open_rooms[0];

		/* Queuing never frees a room: sealing detaches nobody. */
		room__seal(r);
		room__close_batch(r);
	}
	return 0;
}

static void
room__on_pubsub(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rep = reply;
	struct room *r;
	const char *kind;

	(void)ac;
	(void)priv;
	/* NULL: the link dropped; room__link_down() has reset every room. */
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING ||
	    rep->element[1]->type != REDIS_REPLY_STRING)
		return;
	kind = rep->element[0]->str;
	r = hmap_get(room_by_channel, rep->element[1]->str);
	if (r == NULL)
		return;
	if (strcmp(kind, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
		/* One send script call publishes its events joined by '\n'. */
		const char *p = rep->element[2]->str, *end = p + rep->element[2]->len;

		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *stop = nl ? nl : end;

			if (stop > p)
				room__fanout(r, p, (size_t)(stop - p));
			p = stop + 1;
		}
	} else if (strcmp(kind, "subscribe") == 0) {
		r->state = RS_ACTIVE;
		if (r->resync) {
			/* Back after an outage: fetch what live subscribers missed. */
			r->resync = 0;
			for (int i = 0; i < r->nsubs; i++)
				if (r->subs[i]->state == SUB_LIVE && !r->subs[i]->gapped)
					catch_up(r->subs[i]);
		}
		room__fire_waiters(r, 1);
		if (r->nsubs == 0 &&
		    rlink_cmd(srv.rsub, room__on_pubsub, NULL, "UNSUBSCRIBE %s", r->channel) == 0)
			r->state = RS_UNSUBSCRIBING;
	} else if (strcmp(kind, "unsubscribe") == 0) {
		/* Only now may the channel be subscribed again: hiredis drops
		 * the channel's callback when this reply arrives. */
		r->state = RS_NONE;
		if (r->nsubs > 0)
			room__subscribe(r);
		room__maybe_free(r);
	}
}

struct sub *
room_attach(struct conn *c, const char *tenant, const char *room_id, const char *role)
{
	char channel[sizeof(((struct room *)0)->channel)];
	struct room *r;
	struct sub *s;

	if (room_by_channel == NULL)
		room_by_channel = hmap_new();
	room_channel(channel, sizeof(channel), tenant, room_id);
	r = hmap_get(room_by_channel, channel);
	if (r == NULL) {
		r = xcalloc(1, sizeof(*r));
		r->batch_idx = -1;
		snprintf(r->key, sizeof(r->key), "%s/%s", tenant, room_id);
		snprintf(r->id, sizeof(r->id), "%s", room_id);
		memcpy(r->channel, channel, sizeof(channel));
		hmap_put(room_by_channel, r->channel, r);
		metrics_set(M_ROOMS_LOCAL, (int64_t)hmap_count(room_by_channel));
	}
	static uint32_t gen;

	if (!hooked) {
		conn_on_close(room__conn_closed);
		conn_set_sub_ops(room_sub_room_id, room__gapped, room__sub_seq);
		redis_on_link(REDIS_LINK_SUBSCRIBER, room__link_up, room__link_down);
		hooked = 1;
	}
	s = xcalloc(1, sizeof(*s));
	s->gen = ++gen;
	s->c = c;
	s->room = r;
	s->state = SUB_JOINING;
	s->role = room__role(role);
	if (r->nsubs == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 4;
		r->subs = xrealloc(r->subs, (size_t)r->cap * sizeof(*r->subs));
	}
	s->ridx = r->nsubs;
	r->subs[r->nsubs++] = s;
	if (r->nsubs == 1)
		metrics_room_add(r->key);
	metrics_add(M_SUBSCRIPTIONS, 1);
	conn_add_sub(c, s);
	if (r->state == RS_NONE)
		room__subscribe(r);
	return s;
}

void
room_on_detach(void (*fn)(struct sub *s))
{
	detaching = fn;
}

void
room_detach(struct sub *s)
{
	struct room *r = s->room;

	if (detaching != NULL)
		detaching(s);
	r->subs[s->ridx] = r->subs[--r->nsubs];
	r->subs[s->ridx]->ridx = s->ridx;
	conn_remove_sub(s->c, s);
	for (int i = 0; i < s->npend; i++)
		outbuf_unref(s->pend[i]);
	free(s->pend);
	free(s);
	metrics_add(M_SUBSCRIPTIONS, -1);
	if (r->nsubs > 0)
		return;
	metrics_room_remove(r->key);
	if (r->state == RS_ACTIVE &&
	    rlink_cmd(srv.rsub, room__on_pubsub, NULL, "UNSUBSCRIBE %s", r->channel) == 0)
		r->state = RS_UNSUBSCRIBING;
	room__maybe_free(r);
}

static int64_t
room__sub_seq(const struct sub *s)
{
	return s->delivered_seq;
}

static void
room__gapped(struct sub *s)
{
	s->gapped = 1;
}

/* A connection closes: it leaves every room. */
static void
room__conn_closed(struct conn *c)
{
	while (c->nsubs > 0)
		room_detach(c->subs[c->nsubs - 1]);
}

const char *
room_sub_room_id(const struct sub *s)
{
	return s->room->id;
}

void
room_when_active(struct sub *s, void (*cb)(void *arg, int ok), void *arg)
{
	struct room *r = s->room;
	struct room_waiter *w;

	if (r->state == RS_ACTIVE) {
		cb(arg, 1);
		return;
	}
	if (r->state == RS_NONE && !rlink_up(srv.rsub)) {
		cb(arg, 0);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->cb = cb;
	w->arg = arg;
	w->next = r->waiters;
	r->waiters = w;
}

void
room_sub_live(struct sub *s, int64_t after_seq)
{
	if (after_seq > s->delivered_seq)
		s->delivered_seq = after_seq;
	s->state = SUB_LIVE;
	if (s->missed) {
		/* The subscriber link dropped while this join was reading:
		 * what was published meanwhile comes by a catch-up read. */
		s->missed = 0;
		for (int i = 0; i < s->npend; i++)
			outbuf_unref(s->pend[i]);
		s->npend = s->pend_frames = 0;
		catch_up(s);
		return;
	}
	for (int i = 0; i < s->npend; i++) {
		struct outbuf *cut = NULL;
		int64_t cut_seq = 0;

		room__deliver(s, s->pend[i], &cut, &cut_seq);
		outbuf_unref(cut);
		outbuf_unref(s->pend[i]);
	}
	free(s->pend);
	s->pend = NULL;
	s->npend = s->pendcap = s->pend_frames = 0;
}

static void
room__each_up(const char *key, void *value, void *arg)
{
	struct room *r = value;

	(void)key;
	(void)arg;
	if (r->nsubs > 0 && r->state == RS_NONE)
		room__subscribe(r);
}

/* The subscriber link came up: subscribe the rooms that have subscribers
 * again. */
static void
room__link_up(void)
{
	if (room_by_channel != NULL)
		hmap_each(room_by_channel, room__each_up, NULL);
}

static void
room__collect(const char *key, void *value, void *arg)
{
	struct room ***end = arg;

	(void)key;
	*(*end)++ = value;
}

/* The subscriber link dropped: every subscription is gone with it. */
static void
room__link_down(void)
{
	struct room **all, **end;

	if (room_by_channel == NULL)
		return;
	all = end = xcalloc(hmap_count(room_by_channel) + 1, sizeof(*all));
	hmap_each(room_by_channel, room__collect, &end);
	/* A waiter may detach subscriptions of its own room only, so the
	 * other rooms in the list stay valid. */
	for (struct room **p = all; p < end; p++) {
		for (int i = 0; i < (*p)->nsubs; i++)
			if ((*p)->subs[i]->state == SUB_JOINING)
				(*p)->subs[i]->missed = 1;
		(*p)->resync = 1;
		(*p)->state = RS_NONE;
		room__fire_waiters(*p, 0);
		room__maybe_free(*p);
	}
	free(all);
}
