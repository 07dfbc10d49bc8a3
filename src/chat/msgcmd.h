#ifndef CHATD_MSGCMD_H
#define CHATD_MSGCMD_H

#include <jansson.h>

struct conn;

/* message:send: validate, one Redis script call (dedupe, seq, streams,
 * publish), ack once the event is in Redis. */
void msgcmd_send(struct conn *c, const char *idjson, json_t *msg);
/* message:history {room, before?, after?, limit}: a page of room events. */
void msgcmd_history(struct conn *c, const char *idjson, json_t *msg);

#endif
