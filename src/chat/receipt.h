#ifndef CHATD_RECEIPT_H
#define CHATD_RECEIPT_H

#include <jansson.h>

struct conn;

/*
 * Read receipts (docs/protocol.md section 8): how far each member of a
 * room has had its events delivered and has read them. The positions are
 * kept in PostgreSQL (room_members.delivered_seq, read_seq), only move
 * forward, and reading implies delivery. The positions of a loop turn go
 * to PostgreSQL as one statement, and each request is answered after its
 * commit. A position that moved is told to the room's subscribers as
 * receipt:update, at most one per user and room per receipt_coalesce_ms
 * from this worker.
 */

/* receipt:delivered {room, seq}. */
void receipt_delivered(struct conn *c, const char *idjson, json_t *msg);
/* receipt:read {room, seq}, and room:read (its older name): the one way a
 * read position moves. */
void receipt_read(struct conn *c, const char *idjson, json_t *msg);
/* message:seen {room, msg_id}: the members who have read the message. */
void receipt_seen(struct conn *c, const char *idjson, json_t *msg);

/* The end-of-turn step (proc/turn.h): sends the waiting positions. */
int receipt_flush(void);
/* Worker exit, after the requests connection closed: answers what waits
 * and drops the receipt:updates not yet due (they are ephemeral). */
void receipt_shutdown(void);

#endif
