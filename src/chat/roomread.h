#ifndef CHATD_ROOMREAD_H
#define CHATD_ROOMREAD_H

#include <jansson.h>

struct conn;

/* The rooms' read commands, answered from PostgreSQL (docs/protocol.md
 * section 7, "Rooms and members"). */

/* room:list {}: the user's rooms with last_seq, read_seq, unread, mentions. */
void roomread_list(struct conn *c, const char *idjson, json_t *msg);
/* room:info {room}: a reader's view of the room and its role in it. */
void roomread_info(struct conn *c, const char *idjson, json_t *msg);
/* room:members {room, after?, limit?}: a page of members by user id. */
void roomread_members(struct conn *c, const char *idjson, json_t *msg);
/* room:read {room, seq}: a member's read position, only ever forward. */
void roomread_read(struct conn *c, const char *idjson, json_t *msg);

#endif
