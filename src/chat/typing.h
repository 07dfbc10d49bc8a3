#ifndef CHATD_TYPING_H
#define CHATD_TYPING_H

#include <jansson.h>

struct conn;
struct sub;

/*
 * Typing indicators (docs/protocol.md section 8): typing:update events on
 * the room's channel, never in the room log. A typist's state is on its
 * subscription (struct sub: typing_until_ms, typing_sent_ms); this module
 * lists the typing subscriptions of its worker and ends them at their
 * expiry, and watches the typists other workers announced, to end those
 * whose worker died without saying so. A hash per room in Redis
 * (chatd:{T/R}:typing, user -> expiry ms) answers the join ack's `typing`.
 */

/* Worker start and stop: hooks into chat/room, the expiry timer. */
void typing_init(void);
void typing_shutdown(void);

/* typing:start {room} and typing:stop {room} (proto/commands.h). */
void typing_cmd_start(struct conn *c, const char *idjson, json_t *msg);
void typing_cmd_stop(struct conn *c, const char *idjson, json_t *msg);

/* s's user sent a message in the room: its typing ends now. */
void typing_sent(struct sub *s);

/* The users typing in tenant/room now but user, from the room's hash: cb
 * gets a JSON array of ids (a new reference; [] when Redis failed). 0: the
 * read is queued on the command link (cb runs later), -1: not (cb is not
 * called). The users found are watched as if their typing:true had come
 * (their worker may be dead). */
typedef void typing_read_cb(void *arg, json_t *users);
int typing_read(const char *tenant, const char *room_id, const char *user, typing_read_cb *cb,
    void *arg);

#endif
