#include "proc/config.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum cfg_type { CFG_INT, CFG_STR, CFG_RATE };

struct cfg_key {
	const char *name;
	const char *env;	/* environment override, or NULL */
	enum cfg_type type;
	size_t off;
	size_t size;		/* CFG_STR: buffer size */
	long long min, max;	/* CFG_INT: range; CFG_RATE: range of N */
	const char *def;	/* default, as text */
};

/* A rate is "N/W": N requests per W seconds, W at most a day. With N at
 * most CFG_RATE_N_MAX a bucket holds at most N * W * 1000 units (bucket.lua),
 * 8.64e13, exact in a Lua number (a double). */
#define CFG_RATE_N_MAX 1000000
#define CFG_RATE_W_MAX 86400

#define I(n, env, lo, hi, d) { #n, env, CFG_INT, offsetof(struct cfg, n), 0, lo, hi, d }
#define S(n, env, d) { #n, env, CFG_STR, offsetof(struct cfg, n), sizeof(((struct cfg *)0)->n), 0, 0, d }

/* The rate keys: rate_<name>, environment CHATD_RATE_<OP>, the default. One
 * list for the key table and cfg_rate_names. */
#define CFG_RATES(X) \
	X(SEND, send, "30/10") \
	X(JOIN, join, "20/10") \
	X(EDIT, edit, "30/60") \
	X(DELETE, delete, "30/60") \
	X(REACT, react, "60/60") \
	X(MEMBER, member, "30/60") \
	X(SEARCH, search, "30/60") \
	X(PRESENCE, presence, "10/60") \
	X(TYPING, typing, "60/60") \
	X(RECEIPT, receipt, "120/60")

#define R(OP, name, d) { "rate_" #name, "CHATD_RATE_" #OP, CFG_RATE, \
	offsetof(struct cfg, rate) + (size_t)RATE_##OP * sizeof(struct cfg_rate), 0, \
	1, CFG_RATE_N_MAX, d },
#define RATE_NAME(OP, name, d) [RATE_##OP] = #name,

#define RATE_ONE(OP, name, d) + 1

const char *const cfg_rate_names[RATE_NOPS] = { CFG_RATES(RATE_NAME) };
_Static_assert(0 CFG_RATES(RATE_ONE) == RATE_NOPS, "a rate key for every cfg_rate_op");

/* Keys that were replaced: naming one stops the start with the new key. */
static const struct {
	const char *old, *now;
} cfg_retired[] = {
	{ "rate_send_per_s", "rate_send" },
	{ "rate_send_burst", "rate_send" },
	{ "rate_join_per_s", "rate_join" },
	{ "rate_join_burst", "rate_join" },
};

static const struct cfg_key cfg_keys[] = {
	S(listen, "CHATD_LISTEN", "127.0.0.1"),
	I(port, "CHATD_PORT", 1, 65535, "8080"),
	I(workers, "CHATD_WORKERS", 0, 64, "0"),
	S(instance, "CHATD_INSTANCE", ""),
	I(drain_timeout_ms, NULL, 100, 600000, "10000"),
	S(assets, "CHATD_ASSETS", "assets"),
	S(log_level, "CHATD_LOG_LEVEL", "info"),
	S(redis_url, "REDIS_URL", "redis://127.0.0.1:6390/0"),
	S(database_url, "DATABASE_URL", "postgresql://chatd@127.0.0.1:5440/chatd"),
	S(jwt_alg, NULL, "HS256"),
	S(jwt_secret, "CHATD_JWT_SECRET", ""),
	S(jwt_public_key_file, "CHATD_JWT_PUBLIC_KEY_FILE", ""),
	S(jwt_issuer, NULL, ""),
	S(jwt_audience, NULL, ""),
	I(jwt_leeway_s, NULL, 0, 3600, "30"),
	S(default_tenant, NULL, "default"),
	S(allowed_origins, "CHATD_ALLOWED_ORIGINS", ""),
	S(monitoring_trusted, "CHATD_MONITORING_TRUSTED", "127.0.0.1/8, ::1"),
	I(allow_missing_origin, NULL, 0, 1, "1"),
	I(handshake_timeout_s, NULL, 1, 300, "10"),
	CFG_RATES(R)
	I(conn_attempts_per_ip, NULL, 1, 10000000, "60"),
	I(conn_attempts_window_s, NULL, 1, 3600, "10"),
	I(auth_failures_per_ip, NULL, 1, 10000000, "5"),
	I(auth_failures_window_s, NULL, 1, 86400, "300"),
	I(max_conns_per_ip, NULL, 1, 10000000, "1000"),
	I(max_conns_per_user, NULL, 1, 10000000, "20"),
	I(heartbeat_ms, NULL, 1000, 3600000, "30000"),
	I(max_frame_bytes, NULL, 1024, 64 * 1024 * 1024, "1048576"),
	I(max_body_bytes, NULL, 1, 1024 * 1024, "16384"),
	I(max_rooms_per_conn, NULL, 1, 10000, "100"),
	I(outbound_max_frames, NULL, 16, 1000000, "4096"),
	I(outbound_max_bytes, NULL, 4096, 1 << 30, "1048576"),
	I(socket_sndbuf, NULL, 0, 1 << 30, "0"),
	I(stall_timeout_ms, NULL, 1000, 3600000, "30000"),
	I(history_on_join, NULL, 0, 1000, "50"),
	I(stream_maxlen, NULL, 10, 1000000, "1000"),
	I(stream_ttl_s, NULL, 10, 30 * 86400, "1200"),
	I(dedupe_ttl_s, NULL, 86400, 30 * 86400, "86400"),
	I(sync_batch_size, NULL, 1, 10000, "500"),
	I(sync_batch_wait_ms, NULL, 1, 10000, "50"),
	I(sync_claim_idle_ms, NULL, 1000, 3600000, "30000"),
	I(max_resume_gap, NULL, 1, 1000000, "1000"),
	I(presence_grace_ms, NULL, 0, 60000, "3000"),
	I(presence_timeout_s, NULL, 3, 3600, "15"),
	I(presence_room_max, NULL, 0, 1000000, "100"),
	I(typing_timeout_ms, NULL, 500, 600000, "10000"),
	I(receipt_coalesce_ms, NULL, 0, 60000, "1000"),
	I(join_receipts_max, NULL, 0, 10000, "100"),
	S(durability, "CHATD_DURABILITY", "redis"),
	I(dev_tokens, NULL, 0, 1, "0"),
	S(fcgi_socket, "CHATD_FCGI_SOCKET", "/run/chatd/fcgi.sock"),
	I(fcgi_threads, NULL, 1, 256, "8"),
	I(fcgi_timeout_ms, NULL, 1000, 600000, "30000"),
};

#define CFG_NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

/* One decimal number of s[0..n), digits only, within [1, max]. */
static int
cfg__rate_part(const char *s, size_t n, long long max, int *out)
{
	char num[16];
	long long v;

	if (n == 0 || n >= sizeof(num) || strspn(s, "0123456789") < n)
		return -1;
	memcpy(num, s, n);
	num[n] = '\0';
	if (util_parse_ll(num, 1, max, &v) != 0)
		return -1;
	*out = (int)v;
	return 0;
}

/* "N/W": N requests per W seconds, both whole numbers, nothing else. */
static int
cfg__parse_rate(const char *text, long long nmax, struct cfg_rate *out)
{
	const char *slash = strchr(text, '/');
	struct cfg_rate r;

	if (slash == NULL ||
	    cfg__rate_part(text, (size_t)(slash - text), nmax, &r.n) != 0 ||
	    cfg__rate_part(slash + 1, strlen(slash + 1), CFG_RATE_W_MAX, &r.window_s) != 0)
		return -1;
	*out = r;
	return 0;
}

static int
cfg__set(struct cfg *c, const struct cfg_key *k, const char *text, const char *origin,
    char *err, size_t errlen)
{
	char *dst = (char *)c + k->off;
	long long v;

	if (k->type == CFG_RATE) {
		if (cfg__parse_rate(text, k->max, (struct cfg_rate *)(void *)dst) != 0) {
			snprintf(err, errlen, "%s: %s must be \"N/W\", N requests per W seconds "
			    "(N from 1 to %lld, W from 1 to %d), such as \"%s\", not \"%s\"",
			    origin, k->name, k->max, CFG_RATE_W_MAX, k->def, text);
			return -1;
		}
		return 0;
	}
	if (k->type == CFG_STR) {
		if (strlen(text) >= k->size) {
			snprintf(err, errlen, "%s: %s is too long (at most %zu characters)",
			    origin, k->name, k->size - 1);
			return -1;
		}
		memcpy(dst, text, strlen(text) + 1);
		return 0;
	}
	if (util_parse_ll(text, k->min, k->max, &v) != 0) {
		snprintf(err, errlen, "%s: %s must be a whole number from %lld to %lld, not \"%s\"",
		    origin, k->name, k->min, k->max, text);
		return -1;
	}
	*(int *)dst = (int)v;
	return 0;
}

static const struct cfg_key *
cfg__find(const char *name)
{
	for (size_t i = 0; i < CFG_NKEYS; i++)
		if (strcmp(cfg_keys[i].name, name) == 0)
			return &cfg_keys[i];
	return NULL;
}

static void
cfg__unknown(const char *name, const char *origin, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(cfg_retired) / sizeof(cfg_retired[0]); i++) {
		if (strcmp(cfg_retired[i].old, name) == 0) {
			const struct cfg_key *k = cfg__find(cfg_retired[i].now);

			snprintf(err, errlen, "%s: %s is no longer a key: use %s = \"N/W\" "
			    "(N requests per W seconds, such as \"%s\")", origin, name, k->name, k->def);
			return;
		}
	}
	snprintf(err, errlen, "%s: unknown key %s", origin, name);
}

static int
cfg__from_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
	config_t lc;
	config_setting_t *root;
	int rc = -1;

	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read the configuration file", path);
		else
			snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&lc),
			    config_error_text(&lc));
		goto fail;
	}
	root = config_root_setting(&lc);
	for (int i = 0; i < config_setting_length(root); i++) {
		config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct cfg_key *k = cfg__find(name);
		char origin[CFG_STR_MAX + 16];
		char num[32];
		const char *text;

		snprintf(origin, sizeof(origin), "%s:%d", path, config_setting_source_line(s));
		if (k == NULL) {
			cfg__unknown(name, origin, err, errlen);
			goto fail;
		}
		if (k->type == CFG_STR || k->type == CFG_RATE) {
			if (config_setting_type(s) != CONFIG_TYPE_STRING && k->type == CFG_RATE) {
				snprintf(err, errlen, "%s: %s must be a string in quotes, \"N/W\" "
				    "such as \"%s\"", origin, name, k->def);
				goto fail;
			}
			if (config_setting_type(s) != CONFIG_TYPE_STRING) {
				snprintf(err, errlen, "%s: %s must be a string in quotes", origin, name);
				goto fail;
			}
			text = config_setting_get_string(s);
		} else {
			if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
				snprintf(num, sizeof(num), "%d", config_setting_get_bool(s));
			} else if (config_setting_type(s) == CONFIG_TYPE_INT ||
			    config_setting_type(s) == CONFIG_TYPE_INT64) {
				snprintf(num, sizeof(num), "%lld", config_setting_get_int64(s));
			} else {
				snprintf(err, errlen, "%s: %s must be a whole number", origin, name);
				goto fail;
			}
			text = num;
		}
		if (cfg__set(c, k, text, origin, err, errlen) != 0)
			goto fail;
	}
	rc = 0;
fail:
	config_destroy(&lc);
	return rc;
}

/* redis://host:port/db, the only form chatd accepts. */
static int
cfg__parse_redis_url(struct cfg *c, char *err, size_t errlen)
{
	const char *p = c->redis_url;
	const char *colon, *slash;
	long long v;
	char num[16];
	size_t hostlen;

	if (strncmp(p, "redis://", 8) != 0)
		goto bad;
	p += 8;
	colon = strchr(p, ':');
	slash = strchr(p, '/');
	hostlen = (size_t)((colon ? colon : slash ? slash : p + strlen(p)) - p);
	if (hostlen == 0 || hostlen >= sizeof(c->redis_host))
		goto bad;
	memcpy(c->redis_host, p, hostlen);
	c->redis_host[hostlen] = '\0';
	c->redis_port = 6379;
	c->redis_db = 0;
	if (colon != NULL) {
		size_t n = (size_t)((slash ? slash : colon + strlen(colon)) - colon - 1);

		if (n == 0 || n >= sizeof(num))
			goto bad;
		memcpy(num, colon + 1, n);
		num[n] = '\0';
		if (util_parse_ll(num, 1, 65535, &v) != 0)
			goto bad;
		c->redis_port = (int)v;
	}
	if (slash != NULL && slash[1] != '\0') {
		if (util_parse_ll(slash + 1, 0, 1023, &v) != 0)
			goto bad;
		c->redis_db = (int)v;
	}
	return 0;
bad:
	snprintf(err, errlen, "redis_url must look like redis://host:port/db, not \"%s\"",
	    c->redis_url);
	return -1;
}

/* RS256/ES256 verify with a public key in PEM form, read once here. */
static int
cfg__read_key(struct cfg *c, char *err, size_t errlen)
{
	FILE *f;
	size_t n;

	if (c->jwt_public_key_file[0] == '\0') {
		snprintf(err, errlen, "jwt_public_key_file must be set when jwt_alg is %s", c->jwt_alg);
		return -1;
	}
	f = fopen(c->jwt_public_key_file, "r");
	if (f == NULL) {
		snprintf(err, errlen, "jwt_public_key_file: cannot read \"%s\"", c->jwt_public_key_file);
		return -1;
	}
	n = fread(c->jwt_key, 1, sizeof(c->jwt_key) - 1, f);
	fclose(f);
	c->jwt_key[n] = '\0';
	if (n == 0 || n == sizeof(c->jwt_key) - 1 || strstr(c->jwt_key, "-----BEGIN") == NULL ||
	    strstr(c->jwt_key, "PRIVATE KEY") != NULL) {
		snprintf(err, errlen, "jwt_public_key_file: \"%s\" is not a PEM public key",
		    c->jwt_public_key_file);
		return -1;
	}
	return 0;
}

static int
cfg__validate(struct cfg *c, char *err, size_t errlen)
{
	char why[160];

	if (strcmp(c->jwt_alg, "HS256") == 0) {
		if (strlen(c->jwt_secret) < 8) {
			snprintf(err, errlen, "jwt_secret must be set, at least 8 characters "
			    "(or CHATD_JWT_SECRET in the environment)");
			return -1;
		}
	} else if (strcmp(c->jwt_alg, "RS256") == 0 || strcmp(c->jwt_alg, "ES256") == 0) {
		if (cfg__read_key(c, err, errlen) != 0)
			return -1;
	} else {
		snprintf(err, errlen, "jwt_alg must be HS256, RS256 or ES256, not \"%s\"", c->jwt_alg);
		return -1;
	}
	if (!util_valid_id(c->default_tenant)) {
		snprintf(err, errlen, "default_tenant must match [A-Za-z0-9._:-]{1,64}");
		return -1;
	}
	if (strcmp(c->log_level, "error") && strcmp(c->log_level, "warn") &&
	    strcmp(c->log_level, "info") && strcmp(c->log_level, "debug")) {
		snprintf(err, errlen, "log_level must be error, warn, info or debug, not \"%s\"",
		    c->log_level);
		return -1;
	}
	if (strcmp(c->durability, "redis") != 0 && strcmp(c->durability, "postgres") != 0) {
		snprintf(err, errlen, "durability must be redis or postgres, not \"%s\"", c->durability);
		return -1;
	}
	if (c->dev_tokens && strcmp(c->jwt_alg, "HS256") != 0) {
		snprintf(err, errlen, "dev_tokens = 1 needs jwt_alg HS256 (chatd signs HS256 only), "
		    "not \"%s\"", c->jwt_alg);
		return -1;
	}
	{
		/* libfcgi's rule: a port after the first ':' makes it TCP. */
		const char *colon = strchr(c->fcgi_socket, ':');
		long long port;

		if (c->fcgi_socket[0] == '\0' ||
		    (colon != NULL && util_parse_ll(colon + 1, 1, 65535, &port) != 0)) {
			snprintf(err, errlen, "fcgi_socket must be a Unix socket path (without ':') "
			    "or host:port, not \"%s\"", c->fcgi_socket);
			return -1;
		}
	}
	if (c->database_url[0] == '\0') {
		snprintf(err, errlen, "database_url must be set (or DATABASE_URL in the environment)");
		return -1;
	}
	{
		unsigned char addr[4];

		if (inet_pton(AF_INET, c->listen, addr) != 1) {
			snprintf(err, errlen, "listen must be an IPv4 address such as 127.0.0.1 or 0.0.0.0, "
			    "not \"%s\"", c->listen);
			return -1;
		}
	}
	if (cidr_parse_list(c->monitoring_trusted, c->trusted, CIDR_LIST_MAX, &c->ntrusted,
	    why, sizeof(why)) != 0) {
		snprintf(err, errlen, "monitoring_trusted: %s", why);
		return -1;
	}
	if (c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		c->workers = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
	}
	if (c->instance[0] == '\0') {
		char host[64];

		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "chatd");
		host[sizeof(host) - 1] = '\0';
		snprintf(c->instance, sizeof(c->instance), "%s:%d", host, c->port);
	}
	return cfg__parse_redis_url(c, err, errlen);
}

int
cfg_load(struct cfg *c, const char *path, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < CFG_NKEYS; i++)
		if (cfg__set(c, &cfg_keys[i], cfg_keys[i].def, "default", err, errlen) != 0)
			return -1;
	if (path != NULL && cfg__from_file(c, path, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < CFG_NKEYS; i++) {
		const char *v = cfg_keys[i].env ? getenv(cfg_keys[i].env) : NULL;
		char origin[64];

		if (v == NULL)
			continue;
		snprintf(origin, sizeof(origin), "environment %s", cfg_keys[i].env);
		if (cfg__set(c, &cfg_keys[i], v, origin, err, errlen) != 0)
			return -1;
	}
	return cfg__validate(c, err, errlen);
}
