#ifndef CHATD_AUTH_H
#define CHATD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "proc/config.h"
#include "lib/util.h"

struct auth_identity {
	char user[UTIL_ID_MAX + 1];
	char tenant[UTIL_ID_MAX + 1];
	int admin;
	int64_t exp;		/* seconds since the epoch */
};

/* Verifies a token against the configuration: the configured algorithm
 * only (never "none"), signature, exp (required, with leeway), nbf, a valid
 * sub and tenant. 0 ok, -1 refused (reason: a short static text). */
int auth_verify(const struct cfg *c, const char *token, struct auth_identity *id,
    const char **reason);

/* A signed token for `chatd token`; caller frees. NULL on failure. */
char *auth_issue(const struct cfg *c, const char *user, const char *tenant,
    const char *role, long ttl_s);

#endif
