#include "chat/msgextra.h"
#include "store/pg_queue.h"
#include "store/room_log.h"
#include "proc/log.h"
#include "proc/srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTACH_URL_MAX 2048
#define ATTACH_NAME_MAX 255
#define ATTACH_MIME_MAX 255
#define ATTACH_SIZE_MAX (1LL << 40)

static const char *const attach_keys[] = { "kind", "url", "name", "size", "mime" };

/* A thread's root and whether it is deleted; no row: not (yet) in
 * PostgreSQL. */
static const char reply_sql[] =
"SELECT coalesce(reply_to, id), deleted_at IS NOT NULL FROM messages"
" WHERE tenant = $1 AND room_id = $2 AND id = $3";

/* The first mentioned user who may not read the room (a public room: the
 * banned; a private one: the banned and those not members). */
static const char mentions_sql[] =
"SELECT u.u FROM unnest($3::text[]) AS u(u)"
" JOIN rooms r ON r.tenant = $1 AND r.id = $2"
" LEFT JOIN room_members m ON m.tenant = $1 AND m.room_id = $2 AND m.user_id = u.u"
" WHERE coalesce(m.banned, false) OR (r.private AND m.user_id IS NULL) LIMIT 1";

static int
msgextra__mime_ok(const char *m)
{
	const char *slash = strchr(m, '/');

	if (slash == NULL || slash == m || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
		return 0;
	for (const char *p = m; *p; p++)
		if (*p != '/' && !(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && strchr("!#$&^_.+-", *p) == NULL)
			return 0;
	return 1;
}

static int
msgextra__url_ok(const char *u)
{
	if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
		return 0;
	if (strlen(u) <= (u[4] == 's' ? 8u : 7u))
		return 0;
	for (const unsigned char *p = (const unsigned char *)u; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

static int
msgextra__fail(const char **code, char *why, size_t whylen, const char *c, const char *fmt,
    size_t i, const char *field)
{
	*code = c;
	snprintf(why, whylen, fmt, i, field);
	return -1;
}

/* One attachment: exactly {kind, url, name, size, mime}. */
static int
msgextra__attachment(json_t *a, size_t i, const char **code, char *why, size_t whylen)
{
	const char *kind, *url, *name, *mime;
	json_t *size;
	const char *key;
	json_t *v;
	int known;

	if (!json_is_object(a))
		return msgextra__fail(code, why, whylen, "bad_request",
		    "attachments[%zu]%s must be an object {kind, url, name, size, mime}", i, "");
	json_object_foreach(a, key, v) {
		known = 0;
		for (size_t k = 0; k < sizeof(attach_keys) / sizeof(attach_keys[0]); k++)
			known |= strcmp(key, attach_keys[k]) == 0;
		if (!known)
			return msgextra__fail(code, why, whylen, "bad_request",
			    "attachments[%zu]: unknown field \"%.64s\"", i, key);
	}
	kind = json_string_value(json_object_get(a, "kind"));
	url = json_string_value(json_object_get(a, "url"));
	name = json_string_value(json_object_get(a, "name"));
	mime = json_string_value(json_object_get(a, "mime"));
	size = json_object_get(a, "size");
	if (kind == NULL || (strcmp(kind, "image") != 0 && strcmp(kind, "file") != 0))
		return msgextra__fail(code, why, whylen, "bad_request",
		    "attachments[%zu].%s must be \"image\" or \"file\"", i, "kind");
	if (url == NULL)
		return msgextra__fail(code, why, whylen, "bad_request",
		    "attachments[%zu].%s must be an http or https URL", i, "url");
	if (strlen(url) > ATTACH_URL_MAX)
		return msgextra__fail(code, why, whylen, "too_large",
		    "attachments[%zu].%s is longer than 2048 bytes", i, "url");
	if (!msgextra__url_ok(url))
		return msgextra__fail(code, why, whylen, "bad_request",
		    "attachments[%zu].%s must be an http or https URL", i, "url");
	if (name == NULL || name[0] == '\0')
		return msgextra__fail(code, why, whylen, "bad_request",
		    "attachments[%zu].%s must be a non-empty string", i, "name");
	if (strlen(name) > ATTACH_NAME_MAX)
		return msgextra__fail(code, why, whylen, "too_large",
		    "attachments[%zu].%s is longer than 255 bytes", i, "name");
	if (!json_is_integer(size) || json_integer_value(size) < 0 ||
	    json_integer_value(size) > ATTACH_SIZE_MAX)
		return msgextra__fail(code, why, whylen, "bad_request",
		    "attachments[%zu].%s must be a whole number of bytes, at most 2^40", i, "size");
	if (mime == NULL || strlen(mime) > ATTACH_MIME_MAX || !msgextra__mime_ok(mime))
		return msgextra__fail(code, why, whylen, mime && strlen(mime) > ATTACH_MIME_MAX ?
		    "too_large" : "bad_request",
		    "attachments[%zu].%s must be a media type \"type/subtype\" of at most 255 bytes",
		    i, "mime");
	return 0;
}

int
msgextra_parse(struct msgextra *x, json_t *msg, const char *sender, const char **code,
    char *why, size_t whylen)
{
	json_t *att = json_object_get(msg, "attachments");
	json_t *men = json_object_get(msg, "mentions");
	json_t *uniq = json_array(), *v;
	const char *reply_to = json_string_value(json_object_get(msg, "reply_to"));
	size_t i, k, cap, len = 0;

	memset(x, 0, sizeof(*x));
	snprintf(x->reply_to, sizeof(x->reply_to), "%s", reply_to ? reply_to : "");
	if (json_is_array(att)) {
		json_array_foreach(att, i, v) {
			if (msgextra__attachment(v, i, code, why, whylen) != 0) {
				json_decref(uniq);
				return -1;
			}
		}
	}
	x->attachments_json = json_is_array(att) ?
	    json_dumps(att, JSON_COMPACT | JSON_ENCODE_ANY) : xstrdup("[]");
	/* Mentions in their order, each once; the sender is not notified. */
	cap = (json_is_array(men) ? json_array_size(men) : 0) * (UTIL_ID_MAX + 1) + 1;
	x->notify_csv = xmalloc(cap);
	x->notify_csv[0] = '\0';
	if (json_is_array(men)) {
		json_array_foreach(men, i, v) {
			int dup = 0;

			for (k = 0; k < json_array_size(uniq); k++)
				dup |= json_equal(json_array_get(uniq, k), v);
			if (dup)
				continue;
			json_array_append(uniq, v);
			if (strcmp(json_string_value(v), sender) != 0)
				len += (size_t)snprintf(x->notify_csv + len, cap - len, "%s%s",
				    len ? "," : "", json_string_value(v));
		}
	}
	x->nmentions = (int)json_array_size(uniq);
	x->mentions_json = json_dumps(uniq, JSON_COMPACT);
	json_decref(uniq);
	if (x->attachments_json == NULL || x->mentions_json == NULL)
		log_fatal("msgextra: out of memory");
	if (len == 0) {
		free(x->notify_csv);
		x->notify_csv = NULL;
	}
	return 0;
}

int
msgextra_needs_check(const struct msgextra *x)
{
	return x->reply_to[0] != '\0' || x->nmentions > 0;
}

struct check_req {
	struct msgextra *x;
	char root[UTIL_ID_MAX + 1];	/* PostgreSQL's answer: the thread's root */
	char tenant[UTIL_ID_MAX + 1];
	char room[UTIL_ID_MAX + 1];
	msgextra_cb *cb;
	void *arg;
};

static void
msgextra__end(struct check_req *q, const char *code, const char *why)
{
	q->cb(q->arg, code, why);
	free(q);
}

static void
msgextra__mentions_checked(const PGresult *res, void *arg)
{
	struct check_req *q = arg;
	char why[160];

	if (!pgq_ok(res)) {
		msgextra__end(q, "unavailable", "database unavailable; retry");
	} else if (PQntuples(res) > 0) {
		snprintf(why, sizeof(why), "mentions: user \"%s\" cannot read room \"%s\"",
		    PQgetvalue(res, 0, 0), q->room);
		msgextra__end(q, "bad_request", why);
	} else {
		msgextra__end(q, NULL, NULL);
	}
}

static void
msgextra__mentions(struct check_req *q)
{
	char *arr;
	const char *params[3];
	json_t *men;
	size_t i, len = 1, cap;
	json_t *v;

	if (q->x->nmentions == 0) {
		msgextra__end(q, NULL, NULL);
		return;
	}
	/* A text[] literal: ids need no quoting. */
	men = json_loads(q->x->mentions_json, 0, NULL);
	cap = json_array_size(men) * (UTIL_ID_MAX + 1) + 3;
	arr = xmalloc(cap);
	arr[0] = '{';
	json_array_foreach(men, i, v)
		len += (size_t)snprintf(arr + len, cap - len, "%s%s", i ? "," : "", json_string_value(v));
	snprintf(arr + len, cap - len, "}");
	json_decref(men);
	params[0] = q->tenant;
	params[1] = q->room;
	params[2] = arr;
	if (pgq_exec(srv.pg, mentions_sql, 3, params, msgextra__mentions_checked, q) != 0)
		msgextra__end(q, "unavailable", "database unavailable; retry");
	free(arr);
}

static void
msgextra__not_found(struct check_req *q)
{
	char why[200];

	snprintf(why, sizeof(why), "reply_to: no message \"%s\" in room \"%s\"", q->x->reply_to,
	    q->room);
	msgextra__end(q, "not_found", why);
}

static void
msgextra__peeked(void *arg, const struct rlog_result *r)
{
	struct check_req *q = arg;

	if (r->st == RLOG_NOT_FOUND) {
		msgextra__not_found(q);
		return;
	}
	if (r->st != RLOG_OK) {
		msgextra__end(q, "unavailable", "message bus unavailable; retry");
		return;
	}
	if (r->reply_to != NULL && r->reply_to[0] != '\0')
		snprintf(q->x->reply_to, sizeof(q->x->reply_to), "%s", r->reply_to);
	else if (q->root[0] != '\0')
		snprintf(q->x->reply_to, sizeof(q->x->reply_to), "%s", q->root);
	msgextra__mentions(q);
}

static void
msgextra__reply_checked(const PGresult *res, void *arg)
{
	struct check_req *q = arg;

	if (!pgq_ok(res)) {
		msgextra__end(q, "unavailable", "database unavailable; retry");
	} else if (PQntuples(res) == 0) {
		/* Sent moments ago: only in the room stream yet. */
		rlog_peek(q->tenant, q->room, q->x->reply_to, 1, msgextra__peeked, q);
	} else if (PQgetvalue(res, 0, 1)[0] == 't') {
		msgextra__not_found(q);
	} else {
		/* Its delete may not have reached PostgreSQL yet. */
		snprintf(q->root, sizeof(q->root), "%s", PQgetvalue(res, 0, 0));
		rlog_peek(q->tenant, q->room, q->x->reply_to, 0, msgextra__peeked, q);
	}
}

void
msgextra_check(struct msgextra *x, const char *tenant, const char *room,
    msgextra_cb *cb, void *arg)
{
	struct check_req *q = xcalloc(1, sizeof(*q));
	const char *params[3] = { tenant, room, x->reply_to };

	q->x = x;
	snprintf(q->tenant, sizeof(q->tenant), "%s", tenant);
	snprintf(q->room, sizeof(q->room), "%s", room);
	q->cb = cb;
	q->arg = arg;
	if (x->reply_to[0] == '\0')
		msgextra__mentions(q);
	else if (pgq_exec(srv.pg, reply_sql, 3, params, msgextra__reply_checked, q) != 0)
		msgextra__end(q, "unavailable", "database unavailable; retry");
}

void
msgextra_free(struct msgextra *x)
{
	free(x->mentions_json);
	free(x->notify_csv);
	free(x->attachments_json);
	memset(x, 0, sizeof(*x));
}
