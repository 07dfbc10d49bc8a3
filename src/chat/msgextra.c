#include "chat/msgextra.h"
#include "proc/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTACH_URL_MAX 2048
#define ATTACH_NAME_MAX 255
#define ATTACH_MIME_MAX 255
#define ATTACH_SIZE_MAX (1LL << 40)

static const char *const attach_keys[] = { "kind", "url", "name", "size", "mime" };

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

void
msgextra_free(struct msgextra *x)
{
	free(x->mentions_json);
	free(x->notify_csv);
	free(x->attachments_json);
	memset(x, 0, sizeof(*x));
}
