#include "chat/personal.h"
#include "net/conn.h"
#include "net/outbuf.h"
#include "lib/hmap.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "store/redis.h"
#include "store/redis_link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* This worker's WebSockets by "tenant/user": a personal event costs the
 * connections of its users, not a scan of every connection. */
struct personal_conns {
	struct conn **v;	/* owned array; the conns are net/conn's */
	int n, cap;
};
static struct hmap *by_user;

static void
personal__key(char *buf, size_t len, const char *tenant, size_t tl, const char *user, size_t ul)
{
	snprintf(buf, len, "%.*s/%.*s", (int)tl, tenant, (int)ul, user);
}

/* A user's WebSocket or event stream (not an HTTP request's user): its
 * index key into key. 0: not indexed. */
static int
personal__conn_key(const struct conn *c, char *key, size_t len)
{
	if (c->idnames == NULL || c->kind == CONN_HTTP)
		return 0;
	personal__key(key, len, c->id.tenant, strlen(c->id.tenant), c->id.user,
	    strlen(c->id.user));
	return 1;
}

static void
personal__opened(struct conn *c)
{
	char key[2 * UTIL_ID_MAX + 2];
	struct personal_conns *pc;

	if (!personal__conn_key(c, key, sizeof(key)))
		return;
	pc = hmap_get(by_user, key);
	if (pc == NULL) {
		pc = xcalloc(1, sizeof(*pc));
		hmap_put(by_user, key, pc);
	}
	if (pc->n == pc->cap) {
		pc->cap = pc->cap ? pc->cap * 2 : 2;
		pc->v = xrealloc(pc->v, (size_t)pc->cap * sizeof(*pc->v));
	}
	pc->v[pc->n++] = c;
}

static void
personal__closed(struct conn *c)
{
	char key[2 * UTIL_ID_MAX + 2];
	struct personal_conns *pc;

	if (!personal__conn_key(c, key, sizeof(key)))
		return;
	pc = hmap_get(by_user, key);
	if (pc == NULL)
		return;
	for (int i = 0; i < pc->n; i++) {
		if (pc->v[i] == c) {
			pc->v[i] = pc->v[--pc->n];
			break;
		}
	}
	if (pc->n == 0) {
		hmap_del(by_user, key);
		free(pc->v);
		free(pc);
	}
}

static void
personal__deliver(const char *msg, size_t len)
{
	const char *end = msg + len, *nl1, *nl2, *p, *frame;
	struct outbuf *b;
	size_t tl;

	nl1 = memchr(msg, '\n', len);
	nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
	if (nl2 == NULL || by_user == NULL)
		return;
	tl = (size_t)(nl1 - msg);
	frame = nl2 + 1;
	b = outbuf_new(frame, (size_t)(end - frame), 0);
	for (p = nl1 + 1; p < nl2;) {
		const char *comma = memchr(p, ',', (size_t)(nl2 - p));
		const char *stop = comma ? comma : nl2;
		char key[2 * UTIL_ID_MAX + 2];
		struct personal_conns *pc;

		if (tl <= UTIL_ID_MAX && (size_t)(stop - p) <= UTIL_ID_MAX) {
			personal__key(key, sizeof(key), msg, tl, p, (size_t)(stop - p));
			pc = hmap_get(by_user, key);
			for (int i = 0; pc != NULL && i < pc->n; i++)
				if (conn_open(pc->v[i]))
					conn_send(pc->v[i], b);
		}
		p = stop + 1;
	}
	outbuf_unref(b);
}

static void
personal__on_pubsub(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	(void)priv;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	personal__deliver(r->element[2]->str, r->element[2]->len);
}

static void
personal__link_up(void)
{
	if (rlink_cmd(srv.rsub, personal__on_pubsub, NULL, "SUBSCRIBE %s",
	    REDIS_PERSONAL_CHANNEL) != 0)
		log_warn("personal: SUBSCRIBE not sent");
}

void
personal_start(void)
{
	by_user = hmap_new();
	conn_on_open(personal__opened);
	conn_on_close(personal__closed);
	redis_on_link(REDIS_LINK_SUBSCRIBER, personal__link_up, NULL);
}

void
personal_publish(const char *tenant, const char *users, const char *frame)
{
	char *msg;

	if (asprintf(&msg, "%s\n%s\n%s", tenant, users, frame) < 0)
		log_fatal("personal: out of memory");
	if (!rlink_up(srv.rcmd) ||
	    rlink_cmd(srv.rcmd, NULL, NULL, "PUBLISH %s %s", REDIS_PERSONAL_CHANNEL, msg) != 0)
		log_warn("personal: an event for %s/%s not published", tenant, users);
	free(msg);
}
