/*
 * chatd: a real-time team chat server. A parent process and one worker per
 * core (Kore's shape) on libuv, http-parser, hiredis and libpq.
 *
 *   chatd [-c chatd.conf]          run
 *   chatd -t [-c chatd.conf]       check the configuration
 *   chatd token --user U [--tenant T] [--role admin] [--ttl S] [-c chatd.conf]
 */
#include "net/auth.h"
#include "proc/config.h"
#include "proc/log.h"
#include "proc/master.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
usage(void)
{
	fprintf(stderr,
	    "usage: chatd [-c chatd.conf] [-t]\n"
	    "       chatd token --user USER [--tenant TENANT] [--role admin] [--ttl SECONDS] [-c chatd.conf]\n");
}

/* -c FILE, or chatd.conf in the working directory if there is one. */
static int
load_config(struct cfg *c, const char *path)
{
	char err[1024];
	enum log_level level;

	if (path == NULL && access("chatd.conf", R_OK) == 0)
		path = "chatd.conf";
	if (cfg_load(c, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "chatd: configuration error: %s\n", err);
		return -1;
	}
	if (log_parse_level(c->log_level, &level) == 0)
		log_set_level(level);
	return 0;
}

static int
cmd_token(int argc, char **argv)
{
	const char *user = NULL, *tenant = NULL, *role = NULL, *path = NULL;
	long long ttl = 3600;
	struct cfg c;
	char *tok;

	for (int i = 2; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (val == NULL) {
			usage();
			return 2;
		}
		if (strcmp(opt, "--user") == 0)
			user = val;
		else if (strcmp(opt, "--tenant") == 0)
			tenant = val;
		else if (strcmp(opt, "--role") == 0)
			role = val;
		else if (strcmp(opt, "--ttl") == 0) {
			if (util_parse_ll(val, 1, 10LL * 365 * 86400, &ttl) != 0) {
				fprintf(stderr, "chatd token: --ttl must be a number of seconds\n");
				return 2;
			}
		} else if (strcmp(opt, "-c") == 0)
			path = val;
		else {
			usage();
			return 2;
		}
		i++;
	}
	if (!util_valid_id(user) || (tenant && !util_valid_id(tenant))) {
		fprintf(stderr, "chatd token: --user (and --tenant) must match [A-Za-z0-9._:-]{1,64}\n");
		return 2;
	}
	if (role != NULL && strcmp(role, "admin") != 0 && strcmp(role, "member") != 0) {
		fprintf(stderr, "chatd token: --role must be admin or member\n");
		return 2;
	}
	if (load_config(&c, path) != 0)
		return 1;
	tok = auth_issue(&c, user, tenant ? tenant : c.default_tenant, role, (long)ttl);
	if (tok == NULL) {
		fprintf(stderr, "chatd token: cannot sign the token (it signs HS256 only; jwt_alg is %s)\n",
		    c.jwt_alg);
		return 1;
	}
	printf("%s\n", tok);
	free(tok);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	int check = 0;
	static struct cfg c;

	if (argc > 1 && strcmp(argv[1], "token") == 0)
		return cmd_token(argc, argv);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "-t") == 0)
			check = 1;
		else {
			usage();
			return 2;
		}
	}
	if (load_config(&c, path) != 0)
		return 1;
	if (check) {
		printf("chatd: configuration ok (%d workers, port %d)\n", c.workers, c.port);
		return 0;
	}
	return master_run(&c);
}
