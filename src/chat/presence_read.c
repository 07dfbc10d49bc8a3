#include "chat/presence.h"
#include "chat/presence_private.h"
#include "chat/limit.h"
#include "net/conn.h"
#include "proc/srv.h"
#include "proto/reply.h"
#include "store/redis.h"
#include "store/redis_link.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * What presence answers (presence.c keeps it): presence:set, presence:get,
 * room:members' and room:info's presence, a join ack's.
 */

static const char *const statuses[] = { "online", "away", "busy", "invisible" };

/* k's users from ids separated by commas, of tenant (k->tu allocated). */
static void
presence__users_csv(struct keyed_call *k, const char *tenant, const char *users)
{
	size_t n = 1;
	const char *p;

	for (p = users; p != NULL && *p; p++)
		n += *p == ',';
	k->n = 0;
	k->tu = xmalloc(n * sizeof(*k->tu));
	for (p = users; p != NULL && *p && k->n < (int)n;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len > 0 && len <= UTIL_ID_MAX)
			snprintf(k->tu[k->n++], PRESENCE_TU, "%s/%.*s", tenant, (int)len, p);
		p = comma ? comma + 1 : p + len;
	}
}

/* ------------------------------------------------------------ commands */

struct cmd_req {
	struct reply_req req;
	char status[16];
	struct keyed_call *k;		/* get: the users asked, in order */
};

static void
presence__cmd_free(struct cmd_req *q)
{
	reply_req_done(&q->req);
	if (q->k != NULL) {
		free(q->k->tu);
		free(q->k);
	}
	free(q);
}

static void
presence__set_done(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct cmd_req *q = priv;
	char tu[PRESENCE_TU];

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
		reply_error(q->req.c, q->req.idjson, "unavailable", "message bus unavailable; retry");
		presence__cmd_free(q);
		return;
	}
	if (r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1) {
		snprintf(tu, sizeof(tu), "%s/%s", q->req.c->id.tenant, q->req.c->id.user);
		presence__announce(tu, presence__str(r->element[1]),
		    strcmp(presence__str(r->element[1]), "offline") == 0 ?
		    presence__str(r->element[2]) : NULL);
	}
	reply_ack(q->req.c, q->req.idjson, json_pack("{s:s}", "status", q->status));
	presence__cmd_free(q);
}

static void
presence__set_limited(void *arg, long long retry_ms)
{
	struct cmd_req *q = arg;
	struct conn *c = q->req.c;
	char key[PRESENCE_KEY], now[24];

	if (limit_refused(c, q->req.idjson, retry_ms, "presence changes")) {
		presence__cmd_free(q);
		return;
	}
	redis_presence_key(key, sizeof(key), c->id.tenant, c->id.user);
	snprintf(now, sizeof(now), "%lld", (long long)util_now_ms());
	if (!redis_ready() || rlink_cmd(srv.rcmd, presence__set_done, q,
	    "EVALSHA %s 1 %s set %s %s", redis_presence_sha(), key, now, q->status) != 0) {
		reply_error(c, q->req.idjson, "unavailable", "message bus unavailable; retry");
		presence__cmd_free(q);
	}
}

void
presence_set(struct conn *c, const char *idjson, json_t *msg)
{
	const char *status = json_string_value(json_object_get(msg, "status"));
	struct cmd_req *q;
	int known = 0;

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		known |= strcmp(status, statuses[i]) == 0;
	if (!known) {
		reply_error(c, idjson, "bad_request",
		    "status must be online, away, busy or invisible");
		return;
	}
	q = xcalloc(1, sizeof(*q));
	snprintf(q->status, sizeof(q->status), "%s", status);
	reply_req_init(&q->req, c, idjson);
	limit_take(c->id.tenant, c->id.user, LIMIT_PRESENCE, presence__set_limited, q);
}

static void
presence__got(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct cmd_req *q = priv;
	json_t *list;

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)q->k->n) {
		reply_error(q->req.c, q->req.idjson, "unavailable", "message bus unavailable; retry");
		presence__cmd_free(q);
		return;
	}
	list = json_array();
	for (int i = 0; i < q->k->n; i++) {
		redisReply *e = r->element[i];
		const char *status = "offline", *seen = "";
		json_t *seen_json;

		if (e->type == REDIS_REPLY_ARRAY && e->elements == 2) {
			status = presence__str(e->element[0]);
			seen = presence__str(e->element[1]);
		}
		seen_json = seen[0] ? json_integer(strtoll(seen, NULL, 10)) : json_null();
		json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "user",
		    strchr(q->k->tu[i], '/') + 1, "status", status, "last_seen", seen_json));
	}
	reply_ack(q->req.c, q->req.idjson, json_pack("{s:o}", "presence", list));
	presence__cmd_free(q);
}

void
presence_get(struct conn *c, const char *idjson, json_t *msg)
{
	json_t *users = json_object_get(msg, "users"), *v;
	struct cmd_req *q;
	size_t i;

	if (json_array_size(users) == 0) {
		reply_ack(c, idjson, json_pack("{s:[]}", "presence"));
		return;
	}
	q = xcalloc(1, sizeof(*q));
	reply_req_init(&q->req, c, idjson);
	q->k = xcalloc(1, sizeof(*q->k));
	q->k->tu = xmalloc(json_array_size(users) * sizeof(*q->k->tu));
	json_array_foreach(users, i, v)
		snprintf(q->k->tu[q->k->n++], PRESENCE_TU, "%s/%s", c->id.tenant,
		    json_string_value(v));
	if (presence__call_users("get", q->k, presence__got, q) != 0) {
		reply_error(c, idjson, "unavailable", "message bus unavailable; retry");
		presence__cmd_free(q);
	}
}

/* ---------------------------------------------- room:members with presence */

struct members_req {
	struct reply_req req;
	json_t *obj;			/* owned: the ack's fields */
	struct keyed_call k;		/* the members, in order */
};

static void
presence__members_free(struct members_req *q)
{
	reply_req_done(&q->req);
	json_decref(q->obj);
	free(q->k.tu);
	free(q);
}

static void
presence__members_got(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct members_req *q = priv;
	json_t *members = json_object_get(q->obj, "members");

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)q->k.n) {
		for (int i = 0; i < q->k.n; i++) {
			redisReply *e = r->element[i];
			json_t *m = json_array_get(members, (size_t)i);
			const char *seen;

			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
				continue;
			seen = presence__str(e->element[1]);
			json_object_set_new(m, "status", json_string(presence__str(e->element[0])));
			json_object_set_new(m, "last_seen",
			    seen[0] ? json_integer(strtoll(seen, NULL, 10)) : json_null());
		}
	}
	/* Without Redis the members go without their presence. */
	reply_ack(q->req.c, q->req.idjson, json_incref(q->obj));
	presence__members_free(q);
}

void
presence_members_ack(struct conn *c, const char *idjson, const char *obj)
{
	struct members_req *q = xcalloc(1, sizeof(*q));
	json_t *members, *m;
	size_t i;

	reply_req_init(&q->req, c, idjson);
	q->obj = json_loads(obj, 0, NULL);
	members = json_object_get(q->obj, "members");
	if (!json_is_object(q->obj) || json_array_size(members) == 0) {
		if (q->obj != NULL)
			reply_ack(c, idjson, json_incref(q->obj));
		else
			reply_error(c, idjson, "internal", "a read built no answer");
		presence__members_free(q);
		return;
	}
	q->k.tu = xmalloc(json_array_size(members) * sizeof(*q->k.tu));
	json_array_foreach(members, i, m)
		snprintf(q->k.tu[q->k.n++], PRESENCE_TU, "%s/%s", c->id.tenant,
		    json_string_value(json_object_get(m, "user")) ?
		    json_string_value(json_object_get(m, "user")) : "");
	if (presence__call_users("get", &q->k, presence__members_got, q) != 0) {
		reply_ack(c, idjson, json_incref(q->obj));
		presence__members_free(q);
	}
}

/* ---------------------------------------------------- a join ack's presence */

struct read_req {
	struct keyed_call k;
	void (*cb)(void *arg, json_t *list);
	void *arg;
};

static void
presence__read_done(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct read_req *q = priv;
	json_t *list = json_array();

	(void)ac;
	if (!rlink_failed(r) && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)q->k.n) {
		for (int i = 0; i < q->k.n; i++) {
			redisReply *e = r->element[i];
			const char *status, *seen;

			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
				continue;
			status = presence__str(e->element[0]);
			seen = presence__str(e->element[1]);
			if (strcmp(status, "offline") == 0)
				continue;
			json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "user",
			    strchr(q->k.tu[i], '/') + 1, "status", status, "last_seen",
			    seen[0] ? json_integer(strtoll(seen, NULL, 10)) : json_null()));
		}
	}
	q->cb(q->arg, list);
	free(q->k.tu);
	free(q);
}

int
presence_read(const char *tenant, const char *users, void (*cb)(void *arg, json_t *list),
    void *arg)
{
	struct read_req *q = xcalloc(1, sizeof(*q));

	presence__users_csv(&q->k, tenant, users);
	q->cb = cb;
	q->arg = arg;
	if (q->k.n == 0 || presence__call_users("get", &q->k, presence__read_done, q) != 0) {
		free(q->k.tu);
		free(q);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------- room:info's online count */

struct info_req {
	struct reply_req req;
	json_t *obj;			/* owned: the ack's fields */
	struct keyed_call k;
};

static void
presence__info_free(struct info_req *q)
{
	reply_req_done(&q->req);
	json_decref(q->obj);
	free(q->k.tu);
	free(q);
}

static void
presence__counted_online(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct info_req *q = priv;

	(void)ac;
	/* Without Redis the room goes without its count. */
	if (!rlink_failed(r) && r->type == REDIS_REPLY_INTEGER)
		json_object_set_new(json_object_get(q->obj, "room"), "online",
		    json_integer(r->integer));
	reply_ack(q->req.c, q->req.idjson, json_incref(q->obj));
	presence__info_free(q);
}

void
presence_info_ack(struct conn *c, const char *idjson, const char *obj)
{
	struct info_req *q = xcalloc(1, sizeof(*q));

	reply_req_init(&q->req, c, idjson);
	q->obj = json_loads(obj, 0, NULL);
	if (!json_is_object(q->obj)) {
		reply_error(c, idjson, "internal", "a read built no answer");
		presence__info_free(q);
		return;
	}
	presence__users_csv(&q->k, c->id.tenant,
	    json_string_value(json_object_get(q->obj, "member_ids")));
	json_object_del(q->obj, "member_ids");
	if (q->k.n == 0 || presence__call_users("count", &q->k, presence__counted_online, q) != 0) {
		json_object_set_new(json_object_get(q->obj, "room"), "online", json_integer(0));
		reply_ack(c, idjson, json_incref(q->obj));
		presence__info_free(q);
	}
}
