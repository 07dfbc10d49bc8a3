#ifndef CHATD_PROTO_H
#define CHATD_PROTO_H

#include <jansson.h>
#include <stddef.h>

/* Decoding and validating one client frame, with no connection and no
 * I/O: JSON parsed once, nesting bounded, the envelope and every field of
 * a known type checked against the command table. Pure, so the fuzzer
 * drives exactly what the server runs. */

#define PROTO_MAX_DEPTH 32

struct proto_limits {
	size_t max_body_bytes;
};

struct proto_frame {
	json_t *msg;		/* owned; the whole frame object */
	const char *type;	/* borrowed from msg */
	char *idjson;		/* owned: the request id as JSON text, or NULL */
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

#endif
