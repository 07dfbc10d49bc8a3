#ifndef CHATD_MSGEXTRA_H
#define CHATD_MSGEXTRA_H

#include <jansson.h>

#include "lib/util.h"

/*
 * What message:send carries beyond its body: reply_to (a thread), mentions
 * and attachments. Checked here and written into the event as JSON text,
 * once per message (the fan-out copies the event, never these).
 * Rules: docs/protocol.md section 7.
 */

struct msgextra {
	char reply_to[UTIL_ID_MAX + 1];	/* "" none; after the check: the thread's root */
	char *mentions_json;		/* owned: "[..]", duplicates dropped */
	char *notify_csv;		/* owned: mentioned users but the sender, or NULL */
	char *attachments_json;		/* owned: "[..]" */
	int nmentions;
};

/* The fields' contents (no I/O). 0 ok; -1 with *code and why set (the
 * message names the field). x is to be freed either way. */
int msgextra_parse(struct msgextra *x, json_t *msg, const char *sender, const char **code,
    char *why, size_t whylen);
/* reply_to or mentions need a look at the room (PostgreSQL, or the room
 * stream for a message sent moments ago). */
int msgextra_needs_check(const struct msgextra *x);

/* code NULL: ok (x->reply_to is now the root); else the error. */
typedef void msgextra_cb(void *arg, const char *code, const char *why);
/* cb runs once, later (or at once when a backend is down). */
void msgextra_check(struct msgextra *x, const char *tenant, const char *room,
    msgextra_cb *cb, void *arg);
void msgextra_free(struct msgextra *x);

#endif
