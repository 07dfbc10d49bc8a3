/* libFuzzer target: proto_decode(), the decoder and validator every client
 * frame goes through (src/proto/proto.c, against the table in
 * src/proto/commands.h), plus proto_depth() and proto_seq().
 *
 * Invariants checked on every input:
 *   - success: out.type != NULL, out.msg is an object whose "type" is
 *     out.type, the real nesting of out.msg is at most proto_depth() of the
 *     text (and so at most PROTO_MAX_DEPTH); out.command is the type's
 *     entry in the command table (what cmd.c runs); every PK_SEQ field and
 *     PK_SEQ_MAP entry reads back through proto_seq() as 0 or more;
 *   - failure: err.code is "bad_request" or "too_large", err.message is
 *     NUL-terminated;
 *   - either way, out.idjson (when set) is JSON that reply.c can load back.
 *   - a decoded message:send goes on through msgextra_parse() (the reading
 *     of attachments, mentions and reply_to that its handler does): on
 *     success the JSON it made loads back as arrays (mentions without
 *     duplicates, attachments as given); on failure the code is one of the
 *     two and the message names the field.
 * proto_frame_free() is always called, so leaks show up too. */
#include "proto/proto.h"
#include "chat/msgextra.h"

/* The table as the decoder sees it: no handlers (nothing here runs one). */
#define PROTO_HANDLER(fn) NULL
#include "proto/commands.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz_proto: invariant failed: %s (%s:%d)\n", \
		    #cond, __FILE__, __LINE__); \
		abort(); \
	} \
} while (0)

static volatile size_t sink;

static int
json_depth(const json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;
	int max = 0, d;

	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, e) {
			sink += strlen(key);
			if ((d = json_depth(e)) > max)
				max = d;
		}
		return max + 1;
	}
	if (json_is_array(v)) {
		json_array_foreach(v, i, e) {
			if ((d = json_depth(e)) > max)
				max = d;
		}
		return max + 1;
	}
	return 0;
}

/* message:send's extras, as msgcmd_send reads them. */
static void
check_extra(json_t *msg)
{
	struct msgextra x;
	const char *code = NULL;
	char why[200];
	json_t *men, *att;

	why[0] = '\0';
	if (msgextra_parse(&x, msg, "sender", &code, why, sizeof(why)) == 0) {
		men = json_loads(x.mentions_json, 0, NULL);
		att = json_loads(x.attachments_json, 0, NULL);
		CHECK(json_is_array(men) && json_is_array(att));
		CHECK(json_array_size(men) == (size_t)x.nmentions);
		for (size_t i = 0; i < json_array_size(men); i++)
			for (size_t k = i + 1; k < json_array_size(men); k++)
				CHECK(!json_equal(json_array_get(men, i), json_array_get(men, k)));
		CHECK(json_equal(att, json_object_get(msg, "attachments")) ||
		    json_object_get(msg, "attachments") == NULL ||
		    json_is_null(json_object_get(msg, "attachments")));
		json_decref(men);
		json_decref(att);
	} else {
		CHECK(code != NULL);
		CHECK(strcmp(code, "bad_request") == 0 || strcmp(code, "too_large") == 0);
		CHECK(strstr(why, "attachments") != NULL);
	}
	msgextra_free(&x);
}

/* The accessor the handlers use, on every seq the decoder let through. */
static void
check_seqs(const struct proto_command *cmd, json_t *msg)
{
	const char *key;
	json_t *v, *e;

	for (const struct proto_field *f = cmd->fields; f->name != NULL; f++) {
		v = json_object_get(msg, f->name);
		if (v == NULL || json_is_null(v))
			continue;
		if (f->kind == PK_SEQ)
			CHECK(proto_seq(v) >= 0 && proto_seq(v) < INT64_MAX);
		if (f->kind == PK_SEQ_MAP) {
			json_object_foreach(v, key, e)
				CHECK(json_is_null(e) ? proto_seq(e) == -1 :
				    proto_seq(e) >= 0 && proto_seq(e) < INT64_MAX);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The server's default max_body_bytes. */
	const struct proto_limits lim = { 16384 };
	const char *text = (const char *)data;
	struct proto_frame out;
	struct proto_error err;
	int depth, rc;

	depth = proto_depth(text, size);
	CHECK(depth >= 0);

	memset(&err, 0, sizeof(err));
	rc = proto_decode(text, size, &lim, &out, &err);
	if (out.idjson != NULL) {
		json_t *id = json_loads(out.idjson, JSON_DECODE_ANY, NULL);

		CHECK(id != NULL);
		CHECK(json_is_string(id) || json_is_integer(id));
		sink += strlen(out.idjson);
		json_decref(id);
	}
	if (rc == 0) {
		json_t *t;
		char *dump;

		CHECK(out.type != NULL);
		CHECK(json_is_object(out.msg));
		t = json_object_get(out.msg, "type");
		CHECK(json_is_string(t) && json_string_value(t) == out.type);
		CHECK(depth <= PROTO_MAX_DEPTH);
		CHECK(json_depth(out.msg) <= depth);
		sink += strlen(out.type);
		CHECK(out.command >= 0 && out.command < PROTO_NCOMMANDS);
		CHECK(strcmp(proto_commands[out.command].type, out.type) == 0);
		check_seqs(&proto_commands[out.command], out.msg);
		if (strcmp(out.type, "message:send") == 0)
			check_extra(out.msg);
		/* What a relay or an echo would do with the frame. */
		dump = json_dumps(out.msg, JSON_COMPACT);
		CHECK(dump != NULL);
		sink += strlen(dump);
		free(dump);
	} else {
		CHECK(rc == -1);
		CHECK(err.code != NULL);
		CHECK(strcmp(err.code, "bad_request") == 0 || strcmp(err.code, "too_large") == 0);
		CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
		sink += strlen(err.message);
	}
	proto_frame_free(&out);
	CHECK(out.msg == NULL && out.idjson == NULL && out.type == NULL);
	return 0;
}
