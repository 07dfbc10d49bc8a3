#include "chat/personal.h"
#include "net/conn.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "store/redis.h"
#include "store/redis_link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* users (comma-separated) has c's user. */
static int
personal__names(const char *users, size_t n, const char *user)
{
	size_t ul = strlen(user);
	const char *p = users, *end = users + n;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;

		if ((size_t)(stop - p) == ul && memcmp(p, user, ul) == 0)
			return 1;
		p = stop + 1;
	}
	return 0;
}

static void
personal__deliver(const char *msg, size_t len)
{
	const char *end = msg + len, *nl1, *nl2, *users, *frame;
	size_t tl, un;

	nl1 = memchr(msg, '\n', len);
	nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
	if (nl2 == NULL)
		return;
	tl = (size_t)(nl1 - msg);
	users = nl1 + 1;
	un = (size_t)(nl2 - users);
	frame = nl2 + 1;
	for (struct conn *c = conn_first(); c != NULL; c = c->next) {
		if (!conn_open(c) || c->id.tenant == NULL || strlen(c->id.tenant) != tl ||
		    memcmp(c->id.tenant, msg, tl) != 0 || !personal__names(users, un, c->id.user))
			continue;
		conn_send_text(c, frame, (size_t)(end - frame));
	}
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
