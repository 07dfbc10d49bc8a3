#ifndef CHATD_MSGREAD_H
#define CHATD_MSGREAD_H

#include <jansson.h>

struct conn;

/* The messages' read commands, answered from PostgreSQL in the messages'
 * current state (readview.h; docs/protocol.md section 7, "Messages"). */

/* message:thread {room, msg_id, before?, limit?}: a root and a page of its replies. */
void msgread_thread(struct conn *c, const char *idjson, json_t *msg);
/* message:edits {room, msg_id}: every version of a message's body. */
void msgread_edits(struct conn *c, const char *idjson, json_t *msg);
/* mention:list {before?, limit?}: the user's mentions, newest first. */
void msgread_mentions(struct conn *c, const char *idjson, json_t *msg);

#endif
