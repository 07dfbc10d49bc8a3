#ifndef CHATD_WS_H
#define CHATD_WS_H

#include <libwebsockets.h>

/* The one lws protocol: WebSocket /ws and, as protocols[0], plain HTTP. */
extern const struct lws_protocols ws_protocols[];

/* End of the loop turn: read on from clients that have more waiting
 * than lws read this turn (called by flush.c before the writes). */
void ws_read_more(void);
void ws_shutdown(void);

/* WebSocket sockets not yet freed (a drain waits for their close frames). */
int ws_open_sockets(void);

#endif
