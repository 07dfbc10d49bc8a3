#ifndef CHATD_WS_H
#define CHATD_WS_H

#include <libwebsockets.h>

/* The one lws protocol: WebSocket /ws and, as protocols[0], plain HTTP. */
extern const struct lws_protocols ws_protocols[];

/* WebSocket sockets not yet freed (a drain waits for their close frames). */
int ws_open_sockets(void);

#endif
