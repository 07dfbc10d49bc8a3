#include "proto/proto.h"
#include "lib/util.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The decoder runs no handler: its copy of the table names none. */
#define PROTO_HANDLER(fn) NULL
#include "proto/commands.h"

int
proto_depth(const char *text, size_t len)
{
	int depth = 0, max = 0, in_str = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = text[i];

		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = 0;
			continue;
		}
		if (ch == '"')
			in_str = 1;
		else if (ch == '{' || ch == '[') {
			if (++depth > max)
				max = depth;
		} else if (ch == '}' || ch == ']')
			depth--;
	}
	return max;
}

static int proto__fail(struct proto_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
proto__fail(struct proto_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

static int
proto__check_field(const struct proto_field *f, json_t *v, const struct proto_limits *lim,
    struct proto_error *err)
{
	const char *key;
	size_t i;
	json_t *e;

	switch (f->kind) {
	case PK_ID:
		if (!json_is_string(v) || !util_valid_id(json_string_value(v)))
			return proto__fail(err, "bad_request",
			    "field \"%s\" must match [A-Za-z0-9._:-]{1,64}", f->name);
		return 0;
	case PK_STRING:
		if (!json_is_string(v))
			return proto__fail(err, "bad_request", "field \"%s\" must be a string",
			    f->name);
		if (json_string_length(v) > f->max)
			return proto__fail(err, "too_large",
			    "field \"%s\" is longer than %zu bytes", f->name, f->max);
		return 0;
	case PK_TEXT:
		if (!json_is_string(v))
			return proto__fail(err, "bad_request", "field \"%s\" must be a string",
			    f->name);
		if (json_string_length(v) < 1)
			return proto__fail(err, "bad_request", "field \"%s\" must not be empty",
			    f->name);
		if (json_string_length(v) > f->max)
			return proto__fail(err, "too_large",
			    "field \"%s\" is longer than %zu bytes", f->name, f->max);
		return 0;
	case PK_BODY:
		if (!json_is_string(v))
			return proto__fail(err, "bad_request", "field \"%s\" must be a string",
			    f->name);
		if (json_string_length(v) > lim->max_body_bytes)
			return proto__fail(err, "too_large", "field \"%s\" is longer than %zu bytes",
			    f->name, lim->max_body_bytes);
		return 0;
	case PK_SEQ:
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return proto__fail(err, "bad_request",
			    "field \"%s\" must be a whole number (0 or more)", f->name);
		return 0;
	case PK_LIMIT:
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    (json_int_t)f->max < json_integer_value(v))
			return proto__fail(err, "bad_request",
			    "field \"%s\" must be a whole number from 1 to %zu", f->name, f->max);
		return 0;
	case PK_BOOL:
		if (!json_is_boolean(v))
			return proto__fail(err, "bad_request", "field \"%s\" must be true or false",
			    f->name);
		return 0;
	case PK_IDS:
	case PK_ARRAY:
		if (!json_is_array(v))
			return proto__fail(err, "bad_request", "field \"%s\" must be an array",
			    f->name);
		if (json_array_size(v) > f->max)
			return proto__fail(err, "too_large", "field \"%s\" has more than %zu entries",
			    f->name, f->max);
		if (f->kind == PK_IDS) {
			json_array_foreach(v, i, e) {
				if (!json_is_string(e) || !util_valid_id(json_string_value(e)))
					return proto__fail(err, "bad_request",
					    "field \"%s\" must hold ids ([A-Za-z0-9._:-]{1,64}), "
					    "entry %zu does not", f->name, i);
			}
		}
		return 0;
	case PK_SEQ_MAP:
		if (!json_is_object(v))
			return proto__fail(err, "bad_request", "field \"%s\" must be an object",
			    f->name);
		if (json_object_size(v) > f->max)
			return proto__fail(err, "too_large", "field \"%s\" has more than %zu entries",
			    f->name, f->max);
		json_object_foreach(v, key, e) {
			if (!util_valid_id(key) ||
			    !(json_is_null(e) || (json_is_integer(e) && json_integer_value(e) >= 0)))
				return proto__fail(err, "bad_request", "field \"%s\": each key a room id, "
				    "each value a seq number (0 or more)", f->name);
		}
		return 0;
	}
	return proto__fail(err, "internal", "field \"%s\" has no rule", f->name);
}

static int
proto__validate(struct proto_frame *f, const struct proto_limits *lim,
    struct proto_error *err)
{
	for (int i = 0; i < PROTO_NCOMMANDS; i++) {
		const struct proto_command *c = &proto_commands[i];

		if (strcmp(c->type, f->type) != 0)
			continue;
		f->command = i;
		for (const struct proto_field *fd = c->fields; fd->name != NULL; fd++) {
			json_t *v = json_object_get(f->msg, fd->name);

			if (v == NULL || json_is_null(v)) {
				if (fd->required)
					return proto__fail(err, "bad_request", "missing field \"%s\"",
					    fd->name);
				continue;
			}
			if (proto__check_field(fd, v, lim, err) != 0)
				return -1;
		}
		return 0;
	}
	return proto__fail(err, "bad_request", "unknown type \"%.64s\"", f->type);
}

/* The end of the JSON string token starting at text[i] (a quote): the index
 * of its closing quote, or len. */
static size_t
proto__string_end(const char *text, size_t len, size_t i)
{
	for (i++; i < len && text[i] != '"'; i++)
		if (text[i] == '\\')
			i++;
	return i < len ? i : len;
}

/* A frame too deep to parse still gets its error with its id (one reply
 * per request, carrying the id): the top-level "id" read without parsing
 * the rest, as JSON text, when it is a string or an integer; else NULL. */
static char *
proto__shallow_id(const char *text, size_t len)
{
	int depth = 0, want_key = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = text[i];

		if (ch == '"') {
			size_t end = proto__string_end(text, len, i), v, ve;
			json_t *id;
			char *out = NULL;

			/* end == len: the string is not closed (and "id" would
			 * be read past the text). */
			if (depth != 1 || !want_key || end >= len || end - i != 3 ||
			    memcmp(text + i, "\"id\"", 4) != 0) {
				want_key = 0;
				i = end;
				continue;
			}
			for (v = end + 1; v < len && text[v] != '\0' && strchr(" \t\r\n:", text[v]) != NULL; v++)
				;
			if (v >= len)
				return NULL;
			if (text[v] == '"')
				ve = proto__string_end(text, len, v) + 1;
			else
				for (ve = v; ve < len && text[ve] != '\0' && strchr("-0123456789", text[ve]) != NULL; ve++)
					;
			/* 1.5 or 2e3 is no integer: not "1" or "2" either. */
			if (ve > len || ve == v ||
			    (ve < len && text[ve] != '\0' && strchr(".eE", text[ve]) != NULL))
				return NULL;
			id = json_loadb(text + v, ve - v, JSON_DECODE_ANY, NULL);
			if ((json_is_string(id) && json_string_length(id) <= 64) || json_is_integer(id))
				out = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
			json_decref(id);
			return out;
		}
		if (ch == '{' || ch == '[') {
			depth++;
			want_key = depth == 1 && ch == '{';
		} else if (ch == '}' || ch == ']') {
			depth--;
		} else if (ch == ',' && depth == 1) {
			want_key = 1;
		}
	}
	return NULL;
}

int
proto_decode(const char *text, size_t len, const struct proto_limits *lim,
    struct proto_frame *out, struct proto_error *err)
{
	json_error_t jerr;
	json_t *id, *type;

	memset(out, 0, sizeof(*out));
	if (proto_depth(text, len) > PROTO_MAX_DEPTH) {
		out->idjson = proto__shallow_id(text, len);
		return proto__fail(err, "bad_request", "JSON nested deeper than %d levels",
		    PROTO_MAX_DEPTH);
	}
	out->msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (out->msg == NULL)
		return proto__fail(err, "bad_request", "not JSON: %.100s", jerr.text);
	if (!json_is_object(out->msg)) {
		proto_frame_free(out);
		return proto__fail(err, "bad_request", "a frame must be a JSON object");
	}
	id = json_object_get(out->msg, "id");
	if (id != NULL && !json_is_null(id)) {
		if (!(json_is_string(id) && json_string_length(id) <= 64) && !json_is_integer(id)) {
			proto_frame_free(out);
			return proto__fail(err, "bad_request",
			    "id must be a string of at most 64 characters or an integer");
		}
		out->idjson = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
	}
	type = json_object_get(out->msg, "type");
	if (!json_is_string(type))
		return proto__fail(err, "bad_request", "missing field \"%s\"", "type");
	out->type = json_string_value(type);
	return proto__validate(out, lim, err);
}

void
proto_frame_free(struct proto_frame *f)
{
	json_decref(f->msg);
	free(f->idjson);
	f->msg = NULL;
	f->idjson = NULL;
	f->type = NULL;
}

long long
proto_seq(json_t *v)
{
	if (!json_is_integer(v))
		return -1;
	return json_integer_value(v) < LLONG_MAX ? (long long)json_integer_value(v) : LLONG_MAX - 1;
}
