#ifndef CHATD_FLUSH_H
#define CHATD_FLUSH_H

struct conn;

/*
 * Writing to clients, corked per loop turn: frames queued to a connection
 * during one turn of the loop (a burst of published events, a reply) leave
 * together at the end of the turn, in as few socket writes as possible,
 * straight from a uv_check handle when the socket can take them, and
 * through LWS_CALLBACK_SERVER_WRITEABLE only when it could not. A turn
 * writes at most FLUSH_CHUNK connections, in the order they asked; the
 * rest wait for the next turn (the loop then polls without blocking), so
 * reading goes on during a large room's fan-out.
 */

/* c has something new queued: write it at the end of this loop turn. */
void flush_want(struct conn *c);
/* Run the end of this loop turn even if no connection asked yet: read on
 * from fast senders (ws_read_more), send their messages to Redis
 * (sendbatch_flush), queue the rooms' batches
 * (room_seal_batches), then write. */
void flush_kick(void);
/* Write what c has queued while the socket takes it, then uncork a new
 * connection (its 101 waited for this first write). -1: the write failed. */
int flush_write(struct conn *c);
void flush_shutdown(void);

#endif
