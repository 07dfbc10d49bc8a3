#ifndef CHATD_MODERATE_H
#define CHATD_MODERATE_H

#include <jansson.h>

struct conn;

/*
 * Membership and moderation: member:add, member:remove, member:role,
 * member:mute, member:unmute, member:ban, member:unban and room:update
 * (docs/protocol.md section 7). Each runs the user's LIMIT_MEMBER bucket,
 * then one PostgreSQL statement that checks the room, the actor's rank and
 * the target and makes the change in the same transaction, then appends
 * the change's event to the room's log (store/room_log.h) and acks with
 * its seq. A change that changes nothing is acked with seq null and writes
 * no event.
 */

void moderate_member_add(struct conn *c, const char *idjson, json_t *msg);
void moderate_member_remove(struct conn *c, const char *idjson, json_t *msg);
void moderate_member_role(struct conn *c, const char *idjson, json_t *msg);
void moderate_member_mute(struct conn *c, const char *idjson, json_t *msg);
void moderate_member_unmute(struct conn *c, const char *idjson, json_t *msg);
void moderate_member_ban(struct conn *c, const char *idjson, json_t *msg);
void moderate_member_unban(struct conn *c, const char *idjson, json_t *msg);
void moderate_room_update(struct conn *c, const char *idjson, json_t *msg);

/* member:mute without until: muted until member:unmute, stored and sent
 * as 9999-12-31T23:59:59.999Z, so that "muted_until > now" is the one
 * rule a reader needs. A later until is refused. */
#define MODERATE_MUTE_FOREVER_MS 253402300799999LL

#endif
