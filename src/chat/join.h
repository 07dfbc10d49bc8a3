#ifndef CHATD_JOIN_H
#define CHATD_JOIN_H

#include <jansson.h>

struct conn;

/* Joining a room, the way that loses nothing: check membership, subscribe
 * (live events are held), wait for Redis to confirm the subscription, read
 * the history, answer, then release the held events newer than the
 * history. Also session:resume (several rooms, one answer) and the
 * catch-up of a subscription after the subscriber link came back. */

/* The handlers of room:join and session:resume (proto/commands.h). */
void join_room_join(struct conn *c, const char *idjson, json_t *msg);
void join_session_resume(struct conn *c, const char *idjson, json_t *msg);

#endif
