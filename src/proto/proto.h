#ifndef CHATD_PROTO_H
#define CHATD_PROTO_H

#include <jansson.h>
#include <stddef.h>

/* Decoding and validating one client frame, with no connection and no
 * I/O: JSON parsed once, nesting bounded, the envelope and every field of
 * a known type checked against the command table. Pure, so the fuzzer
 * drives exactly what the server runs. */

#define PROTO_MAX_DEPTH 32

struct conn;

/* The command table's shape (the table itself: proto/commands.h). */
enum proto_kind {
	PK_ID,		/* a string matching [A-Za-z0-9._:-]{1,64} */
	PK_STRING,	/* a string of at most max bytes */
	PK_TEXT,	/* a string of 1..max bytes (too_large past max; a search query) */
	PK_BODY,	/* a string of at most max_body_bytes (too_large) */
	PK_SEQ,		/* an integer, 0 or more */
	PK_LIMIT,	/* an integer 1..max (a page size; the handler's default when absent) */
	PK_BOOL,
	PK_IDS,		/* an array of at most max ids (too_large) */
	PK_ARRAY,	/* an array of at most max entries of anything (too_large) */
	PK_SEQ_MAP,	/* an object of at most max entries (too_large), id -> seq or null */
};

struct proto_field {
	const char *name;
	enum proto_kind kind;
	int required;		/* absent and null are the same */
	size_t max;		/* string bytes, array or object entries, a limit's largest value */
};

/* Runs a decoded frame: every field of the command's table entry is there
 * (when required) and well-formed, so a handler reads them as they are and
 * checks only what the table cannot say (membership, existence, one field
 * against another, a limit of the configuration). idjson is the request's
 * id as JSON text, or NULL. */
typedef void proto_handler(struct conn *c, const char *idjson, json_t *msg);

struct proto_command {
	const char *type;
	proto_handler *handler;	/* NULL in the decoder's copy of the table */
	struct proto_field fields[8];
};

struct proto_limits {
	size_t max_body_bytes;
};

struct proto_frame {
	json_t *msg;		/* owned; the whole frame object */
	const char *type;	/* borrowed from msg */
	char *idjson;		/* owned: the request id as JSON text, or NULL */
	int command;		/* decoded: the type's index in the command table */
};

struct proto_error {
	const char *code;	/* bad_request, too_large */
	char message[160];
};

/* 0 ok, -1 with err filled (out->idjson set when the id was readable, so
 * the error can carry it). Call proto_frame_free(out) either way. */
int proto_decode(const char *text, size_t len, const struct proto_limits *lim,
    struct proto_frame *out, struct proto_error *err);
void proto_frame_free(struct proto_frame *f);

/* Nesting depth of a JSON text ({ and [ outside strings). */
int proto_depth(const char *text, size_t len);

/* A PK_SEQ value (a field, or an entry of a PK_SEQ_MAP) of a decoded
 * frame: -1 when absent or null. The largest integer comes back one less,
 * so that a caller's seq + 1 (since, after) stays defined: no seq gets
 * near it. */
long long proto_seq(json_t *v);

#endif
