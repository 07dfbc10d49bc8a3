#ifndef CHATD_REPLY_H
#define CHATD_REPLY_H

#include <jansson.h>

struct conn;

/* The answers to a client's request: one ack or one error per request,
 * carrying its id. idjson is the request's id as JSON text, or NULL. */

void reply_error(struct conn *c, const char *idjson, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* error{code:"rate_limited", retry_after_ms}. */
void reply_error_retry(struct conn *c, const char *idjson, long long retry_ms, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* {"type":"ack","id":..} plus the fields of obj (stolen). */
void reply_ack(struct conn *c, const char *idjson, json_t *obj);
/* {"type":"ack","id":..,<inner>} where inner is "key":value,... text. */
void reply_ack_raw(struct conn *c, const char *idjson, const char *inner);

/* A request waiting for Redis or PostgreSQL: holds a conn reference and
 * the reply id. */
struct reply_req {
	struct conn *c;
	char *idjson;		/* owned, or NULL */
};
void reply_req_init(struct reply_req *r, struct conn *c, const char *idjson);
void reply_req_done(struct reply_req *r);

#endif
