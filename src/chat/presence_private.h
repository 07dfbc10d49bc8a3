#ifndef CHATD_PRESENCE_PRIVATE_H
#define CHATD_PRESENCE_PRIVATE_H

#include <hiredis/async.h>

#include "lib/util.h"

/*
 * chat/presence.c (who is online: connections counted, the grace, the
 * heartbeat and reaper, announcements) and chat/presence_read.c (what it
 * answers: the commands, room:members', room:info's and a join ack's
 * presence) are one module in two files; these are what the second calls
 * of the first. Nothing outside chat/presence*.c includes this.
 */

#define PRESENCE_TU (2 * UTIL_ID_MAX + 2)	/* "tenant/user" */
#define PRESENCE_KEY 300

/* Users for one presence-script call. */
struct keyed_call {
	int n;
	char (*tu)[PRESENCE_TU];
};

/* A reply's string, or "". */
const char *presence__str(const redisReply *r);
/* EVALSHA presence with k's users' keys, then op and now: fn(priv) gets
 * the reply. 0 sent. */
int presence__call_users(const char *op, struct keyed_call *k, redisCallbackFn *fn, void *priv);
/* presence:update of tu ("tenant/user") to those who share a small room
 * with it, batched (seen: its last_seen, or NULL). */
void presence__announce(const char *tu, const char *status, const char *seen);

#endif
