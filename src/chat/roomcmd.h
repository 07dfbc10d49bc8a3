#ifndef CHATD_ROOMCMD_H
#define CHATD_ROOMCMD_H

#include <jansson.h>

struct conn;

/* room:create and room:leave (room:join lives in join.c). */
void roomcmd_create(struct conn *c, const char *idjson, json_t *msg);
void roomcmd_leave(struct conn *c, const char *idjson, json_t *msg);

#endif
