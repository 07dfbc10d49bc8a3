/* Unit tests of src/proto/proto.c: the frame decoder and its command table.
 * Every type passes with valid fields; every field kind fails with the
 * right code and a message naming the field; the envelope's rules (an
 * object, no duplicate keys, bounded nesting, the id) hold; and a frame too
 * deep to parse still yields its top-level id. */
#include "proto/proto.c"

#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>

#define STRLEN(s) (s), (sizeof(s) - 1)

static const struct proto_limits LIM = { 1000 };

/* Decodes text; 0 or -1 as proto_decode, with the error and idjson copied
 * out (NULL idjson: ""). */
struct result {
	int rc;
	const char *code;
	char message[160];
	char idjson[200];
	int has_id;
};

static struct result
decode(const char *text)
{
	struct proto_frame f;
	struct proto_error err = { NULL, "" };
	struct result res = { 0 };

	res.rc = proto_decode(text, strlen(text), &LIM, &f, &err);
	if (res.rc != 0) {
		res.code = err.code;
		snprintf(res.message, sizeof(res.message), "%s", err.message);
	} else {
		CHECK(f.msg != NULL && f.type != NULL);
		CHECK(json_is_object(f.msg));
	}
	res.has_id = f.idjson != NULL;
	if (f.idjson != NULL)
		snprintf(res.idjson, sizeof(res.idjson), "%s", f.idjson);
	proto_frame_free(&f);
	CHECK(f.msg == NULL && f.idjson == NULL && f.type == NULL);
	return res;
}

static void
expect_ok(const char *text)
{
	struct result r = decode(text);

	if (r.rc != 0) {
		fprintf(stderr, "  frame: %s\n  error: %s %s\n", text, r.code, r.message);
		CHECK_INT(r.rc, 0);
	}
}

/* Fails with code, and the message names field (or contains it). */
static void
expect_fail(const char *text, const char *code, const char *field)
{
	struct result r = decode(text);
	char quoted[80];

	if (r.rc == 0) {
		fprintf(stderr, "  frame: %s\n", text);
		CHECK_INT(r.rc, -1);
		return;
	}
	if (strcmp(r.code, code) != 0) {
		fprintf(stderr, "  frame: %s (%s)\n", text, r.message);
		CHECK_STR(r.code, code);
	}
	snprintf(quoted, sizeof(quoted), "\"%s\"", field);
	if (strstr(r.message, field[0] == '=' ? field + 1 : quoted) == NULL) {
		fprintf(stderr, "  frame: %s\n  message: %s\n  wanted: %s\n", text, r.message,
		    field);
		CHECK(0);
	}
}

/* A string of n copies of ch, as a JSON string. */
static char *
jstr(size_t n, char ch)
{
	char *s = xmalloc(n + 3);

	s[0] = '"';
	memset(s + 1, ch, n);
	s[n + 1] = '"';
	s[n + 2] = '\0';
	return s;
}

/* A JSON array of n copies of elem. */
static char *
jarray(size_t n, const char *elem)
{
	size_t el = strlen(elem), o = 0;
	char *s = xmalloc(n * (el + 1) + 3);

	s[o++] = '[';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			s[o++] = ',';
		memcpy(s + o, elem, el);
		o += el;
	}
	s[o++] = ']';
	s[o] = '\0';
	return s;
}

/* A frame put together with snprintf (large enough for the tests). */
static char frame_buf[1 << 17];

static const char *
frame(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *
frame(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(frame_buf, sizeof(frame_buf), fmt, ap);
	va_end(ap);
	CHECK(n > 0 && (size_t)n < sizeof(frame_buf));
	return frame_buf;
}

static void
test_every_type_passes(void)
{
	char *members = jarray(1000, "\"u1\"");
	char *mentions = jarray(50, "\"u.2:x-y_z\"");
	char *attachments = jarray(10, "{\"url\":\"x\"}");
	char *body = jstr(1000, 'b');
	char *name = jstr(200, 'n');
	char *desc = jstr(2000, 'd');
	char *token = jstr(8192, 't');
	char *q256 = jstr(256, 'q');

	expect_ok("{\"type\":\"ping\"}");
	expect_ok("{\"type\":\"ping\",\"id\":1,\"extra\":[1,2]}");
	expect_ok("{\"type\":\"room:create\",\"name\":\"General\"}");
	expect_ok(frame("{\"type\":\"room:create\",\"room\":\"r1\",\"name\":%s,\"kind\":\"channel\","
	    "\"private\":true,\"description\":%s,\"members\":%s}", name, desc, members));
	expect_ok("{\"type\":\"room:join\",\"room\":\"r1\"}");
	expect_ok("{\"type\":\"room:join\",\"room\":\"r1\",\"since\":0}");
	expect_ok("{\"type\":\"room:join\",\"room\":\"r1\",\"since\":9223372036854775807}");
	expect_ok("{\"type\":\"room:leave\",\"room\":\"r1\"}");
	expect_ok("{\"type\":\"session:resume\",\"rooms\":{}}");
	expect_ok("{\"type\":\"session:resume\",\"rooms\":{\"r1\":5,\"r2\":7}}");
	expect_ok("{\"type\":\"message:send\",\"room\":\"r1\",\"client_msg_id\":\"c1\",\"body\":\"hi\"}");
	expect_ok(frame("{\"type\":\"message:send\",\"room\":\"r1\",\"client_msg_id\":\"c1\","
	    "\"body\":%s,\"kind\":\"text\",\"reply_to\":\"m1\",\"mentions\":%s,"
	    "\"attachments\":%s}", body, mentions, attachments));
	expect_ok("{\"type\":\"message:edit\",\"room\":\"r1\",\"msg_id\":\"m1\",\"body\":\"\"}");
	expect_ok("{\"type\":\"message:history\",\"room\":\"r1\"}");
	expect_ok("{\"type\":\"message:history\",\"room\":\"r1\",\"before\":10,\"limit\":50}");
	expect_ok("{\"type\":\"message:history\",\"room\":\"r1\",\"after\":0}");
	expect_ok(frame("{\"type\":\"auth:refresh\",\"token\":%s}", token));
	expect_ok("{\"type\":\"room:list\"}");
	expect_ok("{\"type\":\"room:info\",\"room\":\"r1\"}");
	expect_ok("{\"type\":\"room:members\",\"room\":\"r1\",\"after\":\"u1\",\"limit\":200}");
	expect_ok("{\"type\":\"room:read\",\"room\":\"r1\",\"seq\":0}");
	expect_ok("{\"type\":\"receipt:delivered\",\"room\":\"r1\",\"seq\":0}");
	expect_ok("{\"type\":\"receipt:read\",\"room\":\"r1\",\"seq\":9223372036854775807}");
	expect_ok("{\"type\":\"message:seen\",\"room\":\"r1\",\"msg_id\":\"m1\"}");
	expect_ok("{\"type\":\"message:thread\",\"room\":\"r1\",\"msg_id\":\"m1\",\"before\":9,"
	    "\"limit\":100}");
	expect_ok("{\"type\":\"message:edits\",\"room\":\"r1\",\"msg_id\":\"m1\"}");
	expect_ok("{\"type\":\"mention:list\",\"before\":5,\"limit\":1}");
	expect_ok("{\"type\":\"message:search\",\"q\":\"x\"}");
	expect_ok(frame("{\"type\":\"message:search\",\"q\":%s,\"room\":\"r1\",\"before\":\"0.1:2:3:r:1\","
	    "\"limit\":50}", q256));
	expect_ok(frame("{\"type\":\"room:update\",\"room\":\"r1\",\"name\":%s,"
	    "\"description\":%s}", name, desc));
	expect_ok("{\"type\":\"room:update\",\"room\":\"r1\"}");
	expect_ok("{\"type\":\"member:add\",\"room\":\"r1\",\"user\":\"u1\"}");
	expect_ok("{\"type\":\"member:remove\",\"room\":\"r1\",\"user\":\"u1\"}");
	expect_ok("{\"type\":\"member:role\",\"room\":\"r1\",\"user\":\"u1\",\"role\":\"x\"}");
	expect_ok("{\"type\":\"member:mute\",\"room\":\"r1\",\"user\":\"u1\"}");
	expect_ok("{\"type\":\"member:mute\",\"room\":\"r1\",\"user\":\"u1\",\"until\":0}");
	expect_ok("{\"type\":\"member:unmute\",\"room\":\"r1\",\"user\":\"u1\"}");
	expect_ok("{\"type\":\"member:ban\",\"room\":\"r1\",\"user\":\"u1\",\"reason\":\"\"}");
	expect_ok("{\"type\":\"member:unban\",\"room\":\"r1\",\"user\":\"u1\"}");
	/* An optional field given as null counts as absent. */
	expect_ok("{\"type\":\"room:join\",\"room\":\"r1\",\"since\":null}");
	expect_ok("{\"type\":\"message:send\",\"room\":\"r1\",\"client_msg_id\":\"c1\",\"body\":\"x\","
	    "\"reply_to\":null,\"mentions\":null}");
	/* Body bytes are counted as UTF-8 bytes: 333 x 3 = 999. */
	{
		char big[333 * 3 + 1];

		for (int i = 0; i < 333; i++)
			memcpy(big + 3 * i, "\xe2\x82\xac", 3);
		big[999] = '\0';
		expect_ok(frame("{\"type\":\"message:edit\",\"room\":\"r\",\"msg_id\":\"m\",\"body\":\"%s\"}",
		    big));
	}
	free(members);
	free(mentions);
	free(attachments);
	free(body);
	free(name);
	free(desc);
	free(token);
	free(q256);
}

static void
test_missing_fields(void)
{
	expect_fail("{\"type\":\"room:join\"}", "bad_request", "room");
	expect_fail("{\"type\":\"room:join\",\"room\":null}", "bad_request", "room");
	expect_fail("{\"type\":\"room:create\"}", "bad_request", "name");
	expect_fail("{\"type\":\"session:resume\"}", "bad_request", "rooms");
	expect_fail("{\"type\":\"message:send\",\"room\":\"r\",\"body\":\"x\"}", "bad_request",
	    "client_msg_id");
	expect_fail("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\"}",
	    "bad_request", "body");
	expect_fail("{\"type\":\"message:edit\",\"room\":\"r\",\"body\":\"x\"}", "bad_request",
	    "msg_id");
	expect_fail("{\"type\":\"auth:refresh\"}", "bad_request", "token");
	expect_fail("{\"type\":\"member:add\",\"room\":\"r\"}", "bad_request", "user");
	expect_fail("{\"type\":\"member:ban\",\"user\":\"u\"}", "bad_request", "room");
	expect_fail("{\"type\":\"member:role\",\"room\":\"r\",\"user\":\"u\"}", "bad_request",
	    "role");
	expect_fail("{\"type\":\"receipt:read\",\"room\":\"r\"}", "bad_request", "seq");
	expect_fail("{\"type\":\"receipt:delivered\",\"seq\":1}", "bad_request", "room");
	expect_fail("{\"type\":\"receipt:delivered\",\"room\":\"r\",\"seq\":-1}", "bad_request",
	    "seq");
	expect_fail("{\"type\":\"message:seen\",\"room\":\"r\"}", "bad_request", "msg_id");
	expect_fail("{\"room\":\"r\"}", "bad_request", "type");
	expect_fail("{\"type\":null}", "bad_request", "type");
	expect_fail("{\"type\":5}", "bad_request", "type");
}

/* PK_ID: a string of [A-Za-z0-9._:-]{1,64}. */
static void
test_id_fields(void)
{
	char *id64 = jstr(64, 'a'), *id65 = jstr(65, 'a');

	expect_ok(frame("{\"type\":\"room:leave\",\"room\":%s}", id64));
	expect_ok("{\"type\":\"room:leave\",\"room\":\"aZ09._:-\"}");
	expect_fail(frame("{\"type\":\"room:leave\",\"room\":%s}", id65), "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":\"\"}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":\"a b\"}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":\"a/b\"}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":\"caf\\u00e9\"}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":\"a\\nb\"}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":\"{x}\"}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":17}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":[\"r\"]}", "bad_request", "room");
	expect_fail("{\"type\":\"room:leave\",\"room\":true}", "bad_request", "room");
	/* Optional ids are checked the same way when present. */
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"room\":\"a b\"}", "bad_request",
	    "room");
	expect_fail("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\",\"body\":\"x\","
	    "\"reply_to\":\"m m\"}", "bad_request", "reply_to");
	expect_fail("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c c\",\"body\":\"x\"}",
	    "bad_request", "client_msg_id");
	free(id64);
	free(id65);
}

/* PK_STRING: a string of at most max bytes. */
static void
test_string_fields(void)
{
	char *name200 = jstr(200, 'n'), *name201 = jstr(201, 'n'), *kind = jstr(17, 'k');
	char *token = jstr(8193, 't');

	expect_fail(frame("{\"type\":\"room:create\",\"name\":%s}", name201), "too_large", "name");
	expect_fail(frame("{\"type\":\"room:create\",\"name\":%s,\"kind\":%s}", name200, kind),
	    "too_large", "kind");
	expect_fail(frame("{\"type\":\"auth:refresh\",\"token\":%s}", token), "too_large", "token");
	expect_fail("{\"type\":\"room:create\",\"name\":42}", "bad_request", "name");
	expect_fail("{\"type\":\"room:create\",\"name\":{}}", "bad_request", "name");
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"description\":false}", "bad_request",
	    "description");
	/* The limit is in bytes, not characters: 67 x 3 bytes = 201. */
	{
		char s[67 * 3 + 1];

		for (int i = 0; i < 67; i++)
			memcpy(s + 3 * i, "\xe2\x82\xac", 3);
		s[201] = '\0';
		expect_fail(frame("{\"type\":\"room:create\",\"name\":\"%s\"}", s), "too_large", "name");
	}
	free(name200);
	free(name201);
	free(kind);
	free(token);
}

/* The moderation commands' texts (PK_STRING): over the limit is too_large. */
static void
test_text_fields(void)
{
	char *name201 = jstr(201, 'n'), *desc2001 = jstr(2001, 'd'), *reason500 = jstr(500, 'r');
	char *reason501 = jstr(501, 'r');

	expect_fail(frame("{\"type\":\"room:update\",\"room\":\"r\",\"name\":%s}", name201),
	    "too_large", "name");
	expect_fail(frame("{\"type\":\"room:update\",\"room\":\"r\",\"description\":%s}",
	    desc2001), "too_large", "description");
	expect_ok(frame("{\"type\":\"member:ban\",\"room\":\"r\",\"user\":\"u\",\"reason\":%s}",
	    reason500));
	expect_fail(frame("{\"type\":\"member:ban\",\"room\":\"r\",\"user\":\"u\",\"reason\":%s}",
	    reason501), "too_large", "reason");
	expect_fail("{\"type\":\"member:ban\",\"room\":\"r\",\"user\":\"u\",\"reason\":5}",
	    "bad_request", "reason");
	expect_fail("{\"type\":\"room:update\",\"room\":\"r\",\"name\":[]}", "bad_request", "name");
	/* Bytes, not characters: 67 x 3 = 201. */
	{
		char s[67 * 3 + 1];

		for (int i = 0; i < 67; i++)
			memcpy(s + 3 * i, "\xe2\x82\xac", 3);
		s[201] = '\0';
		expect_fail(frame("{\"type\":\"room:update\",\"room\":\"r\",\"name\":\"%s\"}", s),
		    "too_large", "name");
	}
	free(name201);
	free(desc2001);
	free(reason500);
	free(reason501);
}

/* PK_BODY: a string of at most lim->max_body_bytes; longer is too_large. */
static void
test_body_fields(void)
{
	char *b1001 = jstr(1001, 'b');

	expect_fail(frame("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\","
	    "\"body\":%s}", b1001), "too_large", "body");
	expect_fail(frame("{\"type\":\"message:edit\",\"room\":\"r\",\"msg_id\":\"m\",\"body\":%s}",
	    b1001), "too_large", "body");
	expect_fail("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\",\"body\":5}",
	    "bad_request", "body");
	expect_fail("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\","
	    "\"body\":[\"x\"]}", "bad_request", "body");
	/* The message gives the limit. */
	{
		struct result r = decode(frame("{\"type\":\"message:edit\",\"room\":\"r\",\"msg_id\":\"m\","
		    "\"body\":%s}", b1001));

		CHECK(strstr(r.message, "1000") != NULL);
	}
	free(b1001);
}

/* PK_SEQ: an integer, 0 or more. */
static void
test_seq_fields(void)
{
	expect_fail("{\"type\":\"room:join\",\"room\":\"r\",\"since\":-1}", "bad_request", "since");
	expect_fail("{\"type\":\"room:join\",\"room\":\"r\",\"since\":-9223372036854775808}",
	    "bad_request", "since");
	expect_fail("{\"type\":\"room:join\",\"room\":\"r\",\"since\":\"5\"}", "bad_request", "since");
	expect_fail("{\"type\":\"room:join\",\"room\":\"r\",\"since\":1.5}", "bad_request", "since");
	expect_fail("{\"type\":\"room:join\",\"room\":\"r\",\"since\":1e3}", "bad_request", "since");
	expect_fail("{\"type\":\"room:join\",\"room\":\"r\",\"since\":true}", "bad_request", "since");
	expect_fail("{\"type\":\"message:history\",\"room\":\"r\",\"before\":-2}", "bad_request",
	    "before");
	expect_fail("{\"type\":\"message:history\",\"room\":\"r\",\"after\":[]}", "bad_request",
	    "after");
	expect_fail("{\"type\":\"message:history\",\"room\":\"r\",\"limit\":-1}", "bad_request",
	    "limit");
	/* Past int64: not JSON jansson can hold. */
	expect_fail("{\"type\":\"room:join\",\"room\":\"r\",\"since\":9223372036854775808}",
	    "bad_request", "=not JSON");
}

/* PK_LIMIT: an integer 1..max. */
static void
test_limit_fields(void)
{
	expect_fail("{\"type\":\"room:members\",\"room\":\"r\",\"limit\":0}", "bad_request", "limit");
	expect_fail("{\"type\":\"room:members\",\"room\":\"r\",\"limit\":201}", "bad_request",
	    "limit");
	expect_fail("{\"type\":\"mention:list\",\"limit\":-1}", "bad_request", "limit");
	expect_fail("{\"type\":\"mention:list\",\"limit\":2.5}", "bad_request", "limit");
	expect_fail("{\"type\":\"message:search\",\"q\":\"x\",\"limit\":\"5\"}", "bad_request",
	    "limit");
	expect_fail("{\"type\":\"message:thread\",\"room\":\"r\",\"msg_id\":\"m\","
	    "\"limit\":9223372036854775807}", "bad_request", "limit");
	{
		struct result r = decode("{\"type\":\"message:search\",\"q\":\"x\",\"limit\":51}");

		CHECK(strstr(r.message, "1 to 50") != NULL);
	}
}

/* PK_TEXT: a string of 1..max bytes. */
static void
test_query_fields(void)
{
	char *q257 = jstr(257, 'q');

	expect_fail("{\"type\":\"message:search\",\"q\":\"\"}", "bad_request", "q");
	expect_fail(frame("{\"type\":\"message:search\",\"q\":%s}", q257), "too_large", "q");
	expect_fail("{\"type\":\"message:search\",\"q\":[\"x\"]}", "bad_request", "q");
	expect_fail("{\"type\":\"message:search\"}", "bad_request", "q");
	free(q257);
}

static void
test_bool_fields(void)
{
	expect_ok("{\"type\":\"room:create\",\"name\":\"n\",\"private\":false}");
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"private\":\"yes\"}", "bad_request",
	    "private");
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"private\":1}", "bad_request",
	    "private");
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"private\":[]}", "bad_request",
	    "private");
}

/* PK_IDS (arrays of ids), PK_ARRAY and PK_OBJECT: entry counts. */
static void
test_collection_fields(void)
{
	char *m1001 = jarray(1001, "\"u\""), *men51 = jarray(51, "\"u\"");
	char *att11 = jarray(11, "{}"), *att10 = jarray(10, "1");
	char rooms[4096];
	size_t o = 0;

	expect_fail(frame("{\"type\":\"room:create\",\"name\":\"n\",\"members\":%s}", m1001),
	    "too_large", "members");
	expect_fail(frame("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\","
	    "\"body\":\"x\",\"mentions\":%s}", men51), "too_large", "mentions");
	expect_fail(frame("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\","
	    "\"body\":\"x\",\"attachments\":%s}", att11), "too_large", "attachments");
	/* Attachments may hold anything; ids must be ids. */
	expect_ok(frame("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\","
	    "\"body\":\"x\",\"attachments\":%s}", att10));
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"members\":[\"a\",\"b\",\"c d\"]}",
	    "bad_request", "members");
	{
		struct result r = decode("{\"type\":\"room:create\",\"name\":\"n\","
		    "\"members\":[\"a\",\"b\",7]}");

		CHECK(strstr(r.message, "entry 2") != NULL);
	}
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"members\":[\"\"]}", "bad_request",
	    "members");
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"members\":\"a\"}", "bad_request",
	    "members");
	expect_fail("{\"type\":\"room:create\",\"name\":\"n\",\"members\":{}}", "bad_request",
	    "members");
	expect_fail("{\"type\":\"message:send\",\"room\":\"r\",\"client_msg_id\":\"c\",\"body\":\"x\","
	    "\"attachments\":{}}", "bad_request", "attachments");
	/* session:resume's rooms: an object of at most 100 entries. */
	o += (size_t)snprintf(rooms + o, sizeof(rooms) - o, "{");
	for (int i = 0; i < 101; i++)
		o += (size_t)snprintf(rooms + o, sizeof(rooms) - o, "%s\"r%d\":%d", i ? "," : "", i, i);
	snprintf(rooms + o, sizeof(rooms) - o, "}");
	expect_fail(frame("{\"type\":\"session:resume\",\"rooms\":%s}", rooms), "too_large", "rooms");
	strcpy(strrchr(rooms, ','), "}");
	expect_ok(frame("{\"type\":\"session:resume\",\"rooms\":%s}", rooms));
	expect_fail("{\"type\":\"session:resume\",\"rooms\":[]}", "bad_request", "rooms");
	expect_fail("{\"type\":\"session:resume\",\"rooms\":\"r1\"}", "bad_request", "rooms");
	free(m1001);
	free(men51);
	free(att11);
	free(att10);
}

static void
test_envelope(void)
{
	struct result r;

	/* Unknown type: named in the message. */
	expect_fail("{\"type\":\"room:destroy\",\"room\":\"r\"}", "bad_request", "room:destroy");
	expect_fail("{\"type\":\"\"}", "bad_request", "=unknown type");
	expect_fail("{\"type\":\"PING\"}", "bad_request", "PING");
	/* Not an object, not JSON. */
	expect_fail("[{\"type\":\"ping\"}]", "bad_request", "=JSON object");
	/* jansson refuses a text that is not an array or object itself. */
	expect_fail("\"ping\"", "bad_request", "=not JSON");
	expect_fail("42", "bad_request", "=not JSON");
	expect_fail("null", "bad_request", "=not JSON");
	expect_fail("", "bad_request", "=not JSON");
	expect_fail("{\"type\":\"ping\"", "bad_request", "=not JSON");
	expect_fail("{\"type\":\"ping\"} {}", "bad_request", "=not JSON");
	expect_fail("{'type':'ping'}", "bad_request", "=not JSON");
	expect_fail("{\"type\":\"ping\",}", "bad_request", "=not JSON");
	/* Duplicate keys are refused, not resolved either way. */
	expect_fail("{\"type\":\"ping\",\"type\":\"room:leave\"}", "bad_request", "=duplicate");
	expect_fail("{\"type\":\"room:leave\",\"room\":\"a\",\"room\":\"b\"}", "bad_request",
	    "=duplicate");
	/* An error after the id was read still carries it. */
	r = decode("{\"id\":\"q1\",\"type\":\"room:join\"}");
	CHECK_INT(r.rc, -1);
	CHECK_STR(r.idjson, "\"q1\"");
	r = decode("{\"type\":\"nope\",\"id\":7}");
	CHECK_INT(r.rc, -1);
	CHECK_STR(r.idjson, "7");
	r = decode("{\"id\":\"q1\",\"type\":\"ping\"}");
	CHECK_INT(r.rc, 0);
	CHECK_STR(r.idjson, "\"q1\"");
	/* Not an object: no id. */
	r = decode("[{\"id\":1}]");
	CHECK_INT(r.has_id, 0);
}

/* The id: a string of at most 64 characters, or an integer; null is no
 * id; anything else is refused (and not echoed). */
static void
test_id_rules(void)
{
	char *s64 = jstr(64, 'i'), *s65 = jstr(65, 'i');
	struct result r;

	r = decode(frame("{\"type\":\"ping\",\"id\":%s}", s64));
	CHECK_INT(r.rc, 0);
	CHECK_STR(r.idjson, s64);
	r = decode(frame("{\"type\":\"ping\",\"id\":%s}", s65));
	CHECK_INT(r.rc, -1);
	CHECK_STR(r.code, "bad_request");
	CHECK(strstr(r.message, "id") != NULL);
	CHECK_INT(r.has_id, 0);
	/* The bound is in bytes (json_string_length), although the message
	 * says characters: 21 euro signs (63 bytes) pass, 22 (66) do not. */
	{
		char s[22 * 3 + 1];

		for (int i = 0; i < 22; i++)
			memcpy(s + 3 * i, "\xe2\x82\xac", 3);
		s[63] = '\0';
		r = decode(frame("{\"type\":\"ping\",\"id\":\"%s\"}", s));
		CHECK_INT(r.rc, 0);
		memcpy(s + 63, "\xe2\x82\xac", 4);
		r = decode(frame("{\"type\":\"ping\",\"id\":\"%s\"}", s));
		CHECK_INT(r.rc, -1);
	}
	/* Any characters (escaped when echoed). */
	r = decode("{\"type\":\"ping\",\"id\":\"a \\\"b\\\" \\n\"}");
	CHECK_INT(r.rc, 0);
	CHECK_STR(r.idjson, "\"a \\\"b\\\" \\n\"");
	r = decode("{\"type\":\"ping\",\"id\":\"\"}");
	CHECK_INT(r.rc, 0);
	CHECK_STR(r.idjson, "\"\"");
	r = decode("{\"type\":\"ping\",\"id\":0}");
	CHECK_INT(r.rc, 0);
	CHECK_STR(r.idjson, "0");
	r = decode("{\"type\":\"ping\",\"id\":-12}");
	CHECK_INT(r.rc, 0);
	CHECK_STR(r.idjson, "-12");
	r = decode("{\"type\":\"ping\",\"id\":9223372036854775807}");
	CHECK_INT(r.rc, 0);
	CHECK_STR(r.idjson, "9223372036854775807");
	r = decode("{\"type\":\"ping\",\"id\":null}");
	CHECK_INT(r.rc, 0);
	CHECK_INT(r.has_id, 0);
	r = decode("{\"type\":\"ping\"}");
	CHECK_INT(r.rc, 0);
	CHECK_INT(r.has_id, 0);
	static const char *const bad[] = { "1.5", "1e2", "true", "false", "[1]", "{\"a\":1}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = decode(frame("{\"type\":\"ping\",\"id\":%s}", bad[i]));
		CHECK_INT(r.rc, -1);
		CHECK_INT(r.has_id, 0);
		CHECK_STR(r.code, "bad_request");
	}
	free(s64);
	free(s65);
}

/* n levels of arrays, "[[...]]" */
static void
nest(char *out, int n)
{
	for (int i = 0; i < n; i++)
		out[i] = '[';
	for (int i = 0; i < n; i++)
		out[n + i] = ']';
	out[2 * n] = '\0';
}

static void
test_depth(void)
{
	char deep[200], ok[200];
	struct result r;

	/* The frame object is level 1: 31 more levels are fine, 32 are not. */
	nest(ok, PROTO_MAX_DEPTH - 1);
	nest(deep, PROTO_MAX_DEPTH);
	expect_ok(frame("{\"type\":\"ping\",\"x\":%s}", ok));
	CHECK_INT(proto_depth(frame_buf, strlen(frame_buf)), PROTO_MAX_DEPTH);
	r = decode(frame("{\"type\":\"ping\",\"x\":%s}", deep));
	CHECK_INT(r.rc, -1);
	CHECK_STR(r.code, "bad_request");
	CHECK(strstr(r.message, "32") != NULL);
	CHECK_INT(r.has_id, 0);

	/* Too deep to parse, yet the top-level id is read: before the deep
	 * part or after it, a string or an integer, any spacing. */
	r = decode(frame("{\"id\":\"q-7\",\"type\":\"ping\",\"x\":%s}", deep));
	CHECK_INT(r.rc, -1);
	CHECK_STR(r.idjson, "\"q-7\"");
	r = decode(frame("{\"type\":\"ping\",\"x\":%s,\"id\":42}", deep));
	CHECK_STR(r.idjson, "42");
	r = decode(frame("{ \"x\" : %s ,\n\t\"id\" :\r\n -3 }", deep));
	CHECK_STR(r.idjson, "-3");
	r = decode(frame("{\"id\":\"a\\\"}b\",\"x\":%s}", deep));
	CHECK_STR(r.idjson, "\"a\\\"}b\"");
	/* Strings with brackets and "id" in them do not confuse it. */
	r = decode(frame("{\"s\":\"[[{\\\"id\\\":1\",\"t\":\"id\",\"x\":%s,\"id\":\"real\"}", deep));
	CHECK_STR(r.idjson, "\"real\"");
	/* A frame cut inside a last key '"id' (no closing quote): nothing is
	 * read past its end (fuzz_proto's crash of 2026-12-07; the text is
	 * copied to an exact-size buffer so that ASan sees any overread). */
	{
		const char *cut = frame("{\"x\":%s,\"id", deep);
		size_t n = strlen(cut);
		char *exact = xmalloc(n);
		struct proto_frame f;
		struct proto_error err = { NULL, "" };

		memcpy(exact, cut, n);
		CHECK_INT(proto_decode(exact, n, &LIM, &f, &err), -1);
		CHECK(f.idjson == NULL);
		proto_frame_free(&f);
		free(exact);
	}
	/* Nested ids are not the frame's: NULL. */
	r = decode(frame("{\"x\":{\"id\":\"inner\",\"y\":%s}}", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"x\":[{\"id\":5}],\"y\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("[{\"id\":5},%s]", deep));
	CHECK_INT(r.has_id, 0);
	/* Absent: NULL. An "id" that is a value, not a key: NULL. */
	r = decode(frame("{\"type\":\"ping\",\"x\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"type\":\"id\",\"x\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	/* Ids that would be refused when parsed are not echoed either. */
	{
		char *s65 = jstr(65, 'i');

		r = decode(frame("{\"id\":%s,\"x\":%s}", s65, deep));
		CHECK_INT(r.has_id, 0);
		free(s65);
	}
	r = decode(frame("{\"id\":true,\"x\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"id\":{\"a\":1},\"x\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"id\":[1],\"x\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"id\":1.5,\"x\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"id\":2e3,\"x\":%s}", deep));
	CHECK_INT(r.has_id, 0);
	/* Cut short. */
	r = decode("{\"id\":\"abc");
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"x\":%s,\"id\":\"unterminated", deep));
	CHECK_INT(r.has_id, 0);
	r = decode(frame("{\"x\":%s,\"id\"", deep));
	CHECK_INT(r.has_id, 0);
}

static void
test_proto_depth(void)
{
	CHECK_INT(proto_depth(STRLEN("")), 0);
	CHECK_INT(proto_depth(STRLEN("1")), 0);
	CHECK_INT(proto_depth(STRLEN("{}")), 1);
	CHECK_INT(proto_depth(STRLEN("{\"a\":[1,{\"b\":[]}]}")), 4);
	CHECK_INT(proto_depth(STRLEN("[[],[[]],[]]")), 3);
	/* Brackets in strings, escaped quotes, escaped backslashes. */
	CHECK_INT(proto_depth(STRLEN("{\"a\":\"[[[{{{\"}")), 1);
	CHECK_INT(proto_depth(STRLEN("{\"a\":\"\\\"[[[\"}")), 1);
	CHECK_INT(proto_depth(STRLEN("{\"a\":\"\\\\\",\"b\":[[]]}")), 3);
	/* Only len bytes. */
	CHECK_INT(proto_depth("[[[[", 2), 2);
}

int
main(void)
{
	UNIT_RUN(test_every_type_passes);
	UNIT_RUN(test_missing_fields);
	UNIT_RUN(test_id_fields);
	UNIT_RUN(test_string_fields);
	UNIT_RUN(test_text_fields);
	UNIT_RUN(test_body_fields);
	UNIT_RUN(test_seq_fields);
	UNIT_RUN(test_limit_fields);
	UNIT_RUN(test_query_fields);
	UNIT_RUN(test_bool_fields);
	UNIT_RUN(test_collection_fields);
	UNIT_RUN(test_envelope);
	UNIT_RUN(test_id_rules);
	UNIT_RUN(test_depth);
	UNIT_RUN(test_proto_depth);
	return UNIT_DONE();
}
