#ifndef CHATD_PERSONAL_H
#define CHATD_PERSONAL_H

/*
 * Events for users rather than rooms (mention:new, room:removed): they
 * reach every connection of the user, on every worker and instance,
 * whatever rooms it has joined. They travel on one Redis channel
 * (REDIS_PERSONAL_CHANNEL) as "tenant\nuser[,user...]\n<frame>"; every
 * worker subscribes to it and hands the frame (one shared outbuf) to its
 * connections of those users, found by an index of its WebSockets by
 * tenant and user.
 */

/* Worker start: subscribes whenever the subscriber link is up. */
void personal_start(void);

/* Publishes frame to the users (ids, comma-separated) of tenant. Best
 * effort: a user who misses it finds it again (mention:list, room:list). */
void personal_publish(const char *tenant, const char *users, const char *frame);

#endif
