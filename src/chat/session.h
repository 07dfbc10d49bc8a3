#ifndef CHATD_SESSION_H
#define CHATD_SESSION_H

#include <jansson.h>

struct conn;

/* The commands about the connection itself rather than a room. */

/* ping: pong with the server's time. */
void session_ping(struct conn *c, const char *idjson, json_t *msg);
/* auth:refresh {token}: a new token for the same user and tenant moves
 * the connection's expiry; without one it is closed with 4001 at exp. */
void session_refresh(struct conn *c, const char *idjson, json_t *msg);

#endif
