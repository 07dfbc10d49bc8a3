#ifndef CHATD_ROOMCMD_H
#define CHATD_ROOMCMD_H

#include <jansson.h>

struct conn;

/* room:create, room:join (membership, subscribe, history, merge), room:leave. */
void roomcmd_create(struct conn *c, const char *idjson, json_t *msg);
void roomcmd_join(struct conn *c, const char *idjson, json_t *msg);
void roomcmd_leave(struct conn *c, const char *idjson, json_t *msg);

#endif
