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

/* A room of an event stream (GET /api/events): joined as room:join {since}
 * would (no join rate limit: a stream's rooms are bounded by
 * max_rooms_per_conn), its answer written as events: room:joined (the
 * ack's fields but events), then the events as one batch (the stream's
 * cursor after them), or {type:"error", room, code, message}. */
void join_stream(struct conn *c, const char *room, long long since);

#endif
