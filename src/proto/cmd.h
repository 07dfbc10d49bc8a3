#ifndef CHATD_CMD_H
#define CHATD_CMD_H

#include <stddef.h>

struct conn;

/* The dispatcher: one client frame is decoded once (proto.h, against the
 * command table in commands.h) and handed to its command's handler. Every
 * failure is answered with an error frame (reply.h); the connection stays. */
void cmd_dispatch(struct conn *c, const char *text, size_t len);

#endif
