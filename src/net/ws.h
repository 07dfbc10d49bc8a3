#ifndef CHATD_WS_H
#define CHATD_WS_H

#include <libwebsockets.h>

/* The one lws protocol: WebSocket /ws and, as protocols[0], plain HTTP. */
extern const struct lws_protocols ws_protocols[];

/* End of the loop turn: read on from clients that have more waiting
 * than lws read this turn (called by flush.c before the writes). */
void ws_read_more(void);
void ws_shutdown(void);
/* Before lws_create_context: lws allocates through ws.c, which counts what
 * it holds (monitoring's process.lws_heap_kb, set by ws_report_heap). */
void ws_count_lib_heap(void);
void ws_report_heap(void);

/* WebSocket sockets not yet freed (a drain waits for their close frames). */
int ws_open_sockets(void);

#endif
