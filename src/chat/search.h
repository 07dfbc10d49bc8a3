#ifndef CHATD_SEARCH_H
#define CHATD_SEARCH_H

#include <jansson.h>

struct conn;

/* message:search {q, room?, before?, limit?}: PostgreSQL's full-text search
 * over the messages of the rooms the user reads, best match first, with
 * highlighted headlines (search.c says how; docs/protocol.md section 7). */
void search_messages(struct conn *c, const char *idjson, json_t *msg);

#endif
