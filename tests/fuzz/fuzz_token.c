/* libFuzzer target: auth_verify() (src/auth.c) with the input as the token,
 * against the configuration cfg_load() builds from its defaults plus
 * CHATD_JWT_SECRET (HS256).
 *
 * A token never starts with '{' (base64url), so an input that does is taken
 * as the claims of a token this harness signs with the secret: random bytes
 * never get past the signature check, and the claims (exp, nbf, sub,
 * tenant...) are what auth_verify() checks after it.
 *
 * Invariants: on success user and tenant are valid ids and the token is not
 * expired (exp + leeway >= now); on failure a reason is given. */
#include "net/auth.h"
#include "proc/config.h"
#include "lib/util.h"

#include <jwt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SECRET "fuzz-secret-0123456789"	/* tests/fuzz/make_seeds.py signs with it */

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz_token: invariant failed: %s (%s:%d)\n", \
		    #cond, __FILE__, __LINE__); \
		abort(); \
	} \
} while (0)

static struct cfg fuzz_cfg;
static volatile size_t sink;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* Only the defaults and the secret: no override from the caller's
	 * environment may change what is being fuzzed. */
	static const char *const vars[] = {
		"CHATD_LISTEN", "CHATD_PORT", "CHATD_WORKERS", "CHATD_INSTANCE",
		"CHATD_ASSETS", "CHATD_LOG_LEVEL", "CHATD_DURABILITY",
		"CHATD_JWT_PUBLIC_KEY_FILE", "CHATD_ALLOWED_ORIGINS",
		"REDIS_URL", "DATABASE_URL",
	};
	char err[512] = "";

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("CHATD_JWT_SECRET", FUZZ_SECRET, 1);
	if (cfg_load(&fuzz_cfg, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_token: cfg_load: %s\n", err);
		abort();
	}
	return 0;
}

/* The claims (a JSON object) as an HS256 token signed with the secret;
 * NULL when libjwt refuses them. */
static char *
sign_claims(const char *claims)
{
	jwt_t *j = NULL;
	char *tok = NULL;

	if (jwt_new(&j) != 0)
		return NULL;
	if (jwt_add_grants_json(j, claims) == 0 &&
	    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)FUZZ_SECRET,
	    (int)strlen(FUZZ_SECRET)) == 0)
		tok = jwt_encode_str(j);
	jwt_free(j);
	return tok;	/* malloc'd by libjwt 1.10 (no jwt_set_alloc) */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_identity id;
	const char *reason = NULL;
	char *token;
	int rc;

	token = malloc(size + 1);
	if (token == NULL)
		return 0;
	memcpy(token, data, size);
	token[size] = '\0';
	if (size > 0 && data[0] == '{') {
		char *signed_token = sign_claims(token);

		free(token);
		if (signed_token == NULL)
			return 0;
		token = signed_token;
	}

	memset(&id, 0, sizeof(id));
	rc = auth_verify(&fuzz_cfg, token, &id, &reason);
	if (rc == 0) {
		CHECK(util_valid_id(id.user));
		CHECK(util_valid_id(id.tenant));
		CHECK(id.admin == 0 || id.admin == 1);
		CHECK((long long)id.exp >= (long long)time(NULL) - fuzz_cfg.jwt_leeway_s);
		sink += strlen(id.user) + strlen(id.tenant);
	} else {
		CHECK(rc == -1);
		CHECK(reason != NULL && reason[0] != '\0');
		sink += strlen(reason);
	}
	free(token);
	return 0;
}
