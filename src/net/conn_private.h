#ifndef CHATD_CONN_PRIVATE_H
#define CHATD_CONN_PRIVATE_H

#include "net/conn.h"

/*
 * net/conn.c (a connection's life: accept, read, close), net/conn_queue.c
 * (its outbound queue and its one write per turn) and net/conn_sweep.c
 * (the once-a-second sweep) are one module in three files; these are what
 * each calls of the others. Nothing outside net/conn*.c includes this.
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
void conn__close_handle(struct conn *c);
conn_reader *conn__reader(enum conn_kind kind);

#endif
