/* Unit tests of src/proc/config.c: the rate keys, "N/W"; chatd-fcgi's keys. */
#include "proc/config.c"

#include "unit.h"

#include <stdlib.h>

static void
test_parse_rate(void)
{
	static const char *const bad[] = {
		"10", "0/60", "10/0", "x/y", "10/60/1", "-1/60", "10/-60", "+10/60", " 10/60",
		"10/60 ", "10 /60", "", "/", "/60", "10/", "1000001/60", "10/86401",
		"99999999999999999999/1", "1/99999999999999999999", "0x10/60", "1e3/60",
	};
	struct cfg_rate r = { -1, -1 };

	CHECK_INT(cfg__parse_rate("10/60", CFG_RATE_N_MAX, &r), 0);
	CHECK_INT(r.n, 10);
	CHECK_INT(r.window_s, 60);
	CHECK_INT(cfg__parse_rate("1/1", CFG_RATE_N_MAX, &r), 0);
	CHECK_INT(r.n, 1);
	CHECK_INT(r.window_s, 1);
	CHECK_INT(cfg__parse_rate("1000000/86400", CFG_RATE_N_MAX, &r), 0);
	CHECK_INT(r.n, 1000000);
	CHECK_INT(r.window_s, 86400);
	CHECK_INT(cfg__parse_rate("007/060", CFG_RATE_N_MAX, &r), 0);
	CHECK_INT(r.n, 7);
	CHECK_INT(r.window_s, 60);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r.n = r.window_s = -1;
		if (cfg__parse_rate(bad[i], CFG_RATE_N_MAX, &r) != -1)
			fprintf(stderr, "accepted \"%s\"\n", bad[i]);
		CHECK_INT(cfg__parse_rate(bad[i], CFG_RATE_N_MAX, &r), -1);
		CHECK_INT(r.n, -1);	/* untouched */
	}
}

/* cfg_load of a file holding text, with CHATD_JWT_SECRET and no other
 * override in the environment. */
static int
load(struct cfg *c, const char *text, char *err, size_t errlen)
{
	char path[] = "/tmp/chatd-test-config-XXXXXX";
	int fd = mkstemp(path), rc;
	FILE *f;

	if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
		return -2;
	fputs(text, f);
	fclose(f);
	rc = cfg_load(c, path, err, errlen);
	unlink(path);
	return rc;
}

static void
test_defaults_and_names(void)
{
	static const int want[RATE_NOPS][2] = {
		[RATE_SEND] = { 30, 10 }, [RATE_JOIN] = { 20, 10 }, [RATE_EDIT] = { 30, 60 },
		[RATE_DELETE] = { 30, 60 }, [RATE_REACT] = { 60, 60 }, [RATE_MEMBER] = { 30, 60 },
		[RATE_SEARCH] = { 30, 60 }, [RATE_PRESENCE] = { 10, 60 },
		[RATE_TYPING] = { 60, 60 }, [RATE_RECEIPT] = { 120, 60 },
	};
	static struct cfg c;
	char err[512] = "";

	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\n", err, sizeof(err)), 0);
	for (int op = 0; op < RATE_NOPS; op++) {
		char key[32];

		CHECK_INT(c.rate[op].n, want[op][0]);
		CHECK_INT(c.rate[op].window_s, want[op][1]);
		snprintf(key, sizeof(key), "rate_%s", cfg_rate_names[op]);
		CHECK(cfg__find(key) != NULL);
	}
	CHECK_STR(cfg_rate_names[RATE_SEND], "send");
	CHECK_STR(cfg_rate_names[RATE_RECEIPT], "receipt");
}

static void
test_file_and_environment(void)
{
	static struct cfg c;
	char err[512] = "";

	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\nrate_typing = \"5/7\";\n", err,
	    sizeof(err)), 0);
	CHECK_INT(c.rate[RATE_TYPING].n, 5);
	CHECK_INT(c.rate[RATE_TYPING].window_s, 7);
	setenv("CHATD_RATE_TYPING", "8/9", 1);
	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\nrate_typing = \"5/7\";\n", err,
	    sizeof(err)), 0);
	CHECK_INT(c.rate[RATE_TYPING].n, 8);
	CHECK_INT(c.rate[RATE_TYPING].window_s, 9);
	setenv("CHATD_RATE_TYPING", "8", 1);
	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\n", err, sizeof(err)), -1);
	CHECK(strstr(err, "environment CHATD_RATE_TYPING: rate_typing must be \"N/W\"") != NULL);
	unsetenv("CHATD_RATE_TYPING");
}

static void
test_errors_name_the_key(void)
{
	static struct cfg c;
	char err[512] = "";

	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\nrate_send = \"10\";\n", err,
	    sizeof(err)), -1);
	CHECK(strstr(err, ":2: rate_send must be \"N/W\", N requests per W seconds (N from 1 "
	    "to 1000000, W from 1 to 86400), such as \"30/10\", not \"10\"") != NULL);
	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\nrate_join = 10;\n", err,
	    sizeof(err)), -1);
	CHECK(strstr(err, ":2: rate_join must be a string in quotes, \"N/W\" such as \"20/10\"")
	    != NULL);
	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\nrate_send_burst = 30;\n", err,
	    sizeof(err)), -1);
	CHECK(strstr(err, ":2: rate_send_burst is no longer a key: use rate_send = \"N/W\"")
	    != NULL);
	CHECK_INT(load(&c, "rate_join_per_s = 5;\n", err, sizeof(err)), -1);
	CHECK(strstr(err, "rate_join_per_s is no longer a key: use rate_join =") != NULL);
	CHECK_INT(load(&c, "rate_bogus = \"1/1\";\n", err, sizeof(err)), -1);
	CHECK(strstr(err, ":1: unknown key rate_bogus") != NULL);
}

/* chatd-fcgi's keys: a Unix socket path or host:port, as libfcgi reads it. */
static void
test_fcgi_keys(void)
{
	static const char *const good[] = { "/run/chatd/fcgi.sock", "rel/fcgi.sock",
	    "127.0.0.1:9000", ":9000" };
	static const char *const bad[] = { "", "/run/a:b.sock", "127.0.0.1:", "host:0",
	    "host:70000", "host:9000x" };
	static struct cfg c;
	char text[256], err[512] = "";

	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\n", err, sizeof(err)), 0);
	CHECK_STR(c.fcgi_socket, "/run/chatd/fcgi.sock");
	CHECK_INT(c.fcgi_threads, 8);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "jwt_secret = \"0123456789\";\nfcgi_socket = \"%s\";\n",
		    good[i]);
		CHECK_INT(load(&c, text, err, sizeof(err)), 0);
		CHECK_STR(c.fcgi_socket, good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "jwt_secret = \"0123456789\";\nfcgi_socket = \"%s\";\n",
		    bad[i]);
		CHECK_INT(load(&c, text, err, sizeof(err)), -1);
		CHECK(strstr(err, "fcgi_socket must be a Unix socket path") != NULL);
	}
	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\nfcgi_threads = 0;\n", err,
	    sizeof(err)), -1);
	CHECK(strstr(err, "fcgi_threads must be a whole number from 1 to 256") != NULL);
	setenv("CHATD_FCGI_SOCKET", "/tmp/env.sock", 1);
	CHECK_INT(load(&c, "jwt_secret = \"0123456789\";\n", err, sizeof(err)), 0);
	CHECK_STR(c.fcgi_socket, "/tmp/env.sock");
	unsetenv("CHATD_FCGI_SOCKET");
}

int
main(void)
{
	/* Only the overrides these tests set. */
	for (size_t i = 0; i < CFG_NKEYS; i++)
		if (cfg_keys[i].env != NULL)
			unsetenv(cfg_keys[i].env);
	UNIT_RUN(test_parse_rate);
	UNIT_RUN(test_defaults_and_names);
	UNIT_RUN(test_file_and_environment);
	UNIT_RUN(test_errors_name_the_key);
	UNIT_RUN(test_fcgi_keys);
	return UNIT_DONE();
}
