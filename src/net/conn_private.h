#ifndef CHATD_CONN_PRIVATE_H
#define CHATD_CONN_PRIVATE_H

#include "net/conn.h"

/*
 * net/conn.c (a connection's life: accept, read, close, the sweep) and
 * net/conn_queue.c (its outbound queue and its one write per turn) are one
 * module in two files; these are what each calls of the other. Nothing
 * outside net/conn*.c includes this.
 */

/* conn_queue.c */
void conn__want_write(struct conn *c);
void conn__drop_queue(struct conn *c);
void conn__push(struct conn *c, struct outbuf *b);
int conn__write_step(void);
void conn__write_shutdown(void);

/* conn.c */
void conn__shutdown(struct conn *c);
void conn__read_buffered(struct conn *c);
void conn__mark_gapped(struct sub *s);

#endif
