#ifndef CHATD_MSGACT_H
#define CHATD_MSGACT_H

#include <jansson.h>

struct conn;

/* message:edit, message:delete, message:react: a change to one message,
 * appended to the room log with the state it changes (store/room_log.h).
 * Rules: docs/protocol.md section 7. */
void msgact_edit(struct conn *c, const char *idjson, json_t *msg);
void msgact_delete(struct conn *c, const char *idjson, json_t *msg);
void msgact_react(struct conn *c, const char *idjson, json_t *msg);

#endif
