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
/* room:read is receipt:read (chat/receipt.h). */

/* The room's newest seq as Redis' counter has it: cb(arg, counter) runs
 * once, later, or at once with 0 when Redis is down or has no counter
 * (flushed). Statements take the larger of it and PostgreSQL's
 * (READVIEW_PG_LAST, readview.h). */
typedef void roomread_counter_cb(void *arg, long long counter);
void roomread_counter(const char *tenant, const char *room, roomread_counter_cb *cb, void *arg);

#endif
