#include "net/auth.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static jwt_alg_t
auth__alg(const struct cfg *c)
{
	if (strcmp(c->jwt_alg, "RS256") == 0)
		return JWT_ALG_RS256;
	if (strcmp(c->jwt_alg, "ES256") == 0)
		return JWT_ALG_ES256;
	return JWT_ALG_HS256;
}

/* aud may be one string or an array of strings. */
static int
auth__audience_ok(jwt_t *j, const char *want)
{
	char *text = jwt_get_grants_json(j, "aud");
	json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
	size_t i;
	json_t *e;
	int ok = 0;

	if (json_is_string(v))
		ok = strcmp(json_string_value(v), want) == 0;
	json_array_foreach(v, i, e)
		ok |= json_is_string(e) && strcmp(json_string_value(e), want) == 0;
	json_decref(v);
	free(text);
	return ok;
}

int
auth_verify(const struct cfg *c, const char *token, struct auth_identity *id,
    const char **reason)
{
	jwt_t *j = NULL;
	const char *sub, *tenant, *role, *key;
	long exp, nbf;
	time_t now = time(NULL);
	int rc = -1;

	if (token == NULL || *token == '\0') {
		*reason = "missing token";
		return -1;
	}
	if (strlen(token) > 4096) {
		*reason = "token longer than 4096 bytes";
		return -1;
	}
	key = auth__alg(c) == JWT_ALG_HS256 ? c->jwt_secret : c->jwt_key;
	if (jwt_decode(&j, token, (const unsigned char *)key, (int)strlen(key)) != 0 || j == NULL) {
		*reason = "bad token";
		goto fail;
	}
	/* libjwt accepts alg none, and an HS256 token keyed with our RSA
	 * public key: insist on the one algorithm configured. */
	if (jwt_get_alg(j) != auth__alg(c)) {
		*reason = "token algorithm not allowed";
		goto fail;
	}
	/* The leeway goes on now's side: a claim of LLONG_MAX must not
	 * overflow. Non-integer times are refused, not ignored. */
	errno = 0;
	exp = jwt_get_grant_int(j, "exp");
	if (errno == ENOENT) {
		*reason = "token without exp";
		goto fail;
	}
	if (errno != 0) {
		*reason = "token exp is not a whole number of seconds";
		goto fail;
	}
	if ((long long)exp < (long long)now - c->jwt_leeway_s) {
		*reason = "token expired";
		goto fail;
	}
	errno = 0;
	nbf = jwt_get_grant_int(j, "nbf");
	if (errno != 0 && errno != ENOENT) {
		*reason = "token nbf is not a whole number of seconds";
		goto fail;
	}
	if (errno == 0 && (long long)nbf > (long long)now + c->jwt_leeway_s) {
		*reason = "token not yet valid";
		goto fail;
	}
	if (c->jwt_issuer[0] != '\0' && (jwt_get_grant(j, "iss") == NULL ||
	    strcmp(jwt_get_grant(j, "iss"), c->jwt_issuer) != 0)) {
		*reason = "token issuer not accepted";
		goto fail;
	}
	if (c->jwt_audience[0] != '\0' && !auth__audience_ok(j, c->jwt_audience)) {
		*reason = "token audience not accepted";
		goto fail;
	}
	sub = jwt_get_grant(j, "sub");
	if (!util_valid_id(sub)) {
		*reason = "token sub missing or not a valid user id";
		goto fail;
	}
	tenant = jwt_get_grant(j, "tenant");
	if (tenant == NULL)
		tenant = c->default_tenant;
	if (!util_valid_id(tenant)) {
		*reason = "token tenant not a valid id";
		goto fail;
	}
	role = jwt_get_grant(j, "role");
	snprintf(id->user, sizeof(id->user), "%s", sub);
	snprintf(id->tenant, sizeof(id->tenant), "%s", tenant);
	id->admin = role != NULL && strcmp(role, "admin") == 0;
	id->exp = exp;
	rc = 0;
fail:
	jwt_free(j);
	return rc;
}

char *
auth_issue(const struct cfg *c, const char *user, const char *tenant,
    const char *role, long ttl_s)
{
	jwt_t *j = NULL;
	char *tok = NULL;
	long now = (long)time(NULL);

	if (auth__alg(c) != JWT_ALG_HS256 || jwt_new(&j) != 0)
		return NULL;
	if (jwt_add_grant(j, "sub", user) != 0 ||
	    jwt_add_grant(j, "tenant", tenant) != 0 ||
	    (role != NULL && jwt_add_grant(j, "role", role) != 0) ||
	    jwt_add_grant_int(j, "iat", now) != 0 ||
	    jwt_add_grant_int(j, "exp", now + ttl_s) != 0 ||
	    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)c->jwt_secret,
	    (int)strlen(c->jwt_secret)) != 0)
		goto fail;
	tok = jwt_encode_str(j);
fail:
	jwt_free(j);
	return tok;
}
