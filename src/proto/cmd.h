#ifndef CHATD_CMD_H
#define CHATD_CMD_H

#include <jansson.h>
#include <stddef.h>

struct conn;

/* One client frame: parse once, validate the envelope, dispatch by type.
 * Every failure is answered with an error frame; the connection stays. */
void cmd_dispatch(struct conn *c, const char *text, size_t len);

/* Replies. idjson is the request's id as JSON text, or NULL. */
void cmd_error(struct conn *c, const char *idjson, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* error{code:"rate_limited", retry_after_ms}. */
void cmd_error_retry(struct conn *c, const char *idjson, long long retry_ms, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* {"type":"ack","id":..} plus the fields of obj (stolen). */
void cmd_ack(struct conn *c, const char *idjson, json_t *obj);
/* {"type":"ack","id":..,<inner>} where inner is "key":value,... text. */
void cmd_ack_raw(struct conn *c, const char *idjson, const char *inner);

/* Field helpers: 0 ok (absent optional fields too), -1 answered with
 * bad_request naming the field. */
int cmd_get_id(struct conn *c, const char *idjson, json_t *msg, const char *field,
    int required, const char **out);
int cmd_get_string(struct conn *c, const char *idjson, json_t *msg, const char *field,
    int required, size_t maxlen, const char **out);

/* An optional seq field's value: absent or null -> -1; else a whole number
 * of 0 or more. 0 ok, -1 ill-formed. */
int cmd_seq_value(json_t *v, long long *out);

/* A request waiting for Redis or PostgreSQL: holds a conn reference and
 * the reply id. */
struct cmd_req {
	struct conn *c;
	char *idjson;		/* owned, or NULL */
};
void cmd_req_init(struct cmd_req *r, struct conn *c, const char *idjson);
void cmd_req_done(struct cmd_req *r);

#endif
