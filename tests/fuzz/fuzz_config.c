/* libFuzzer target: cfg_load() (src/config.c, libconfig underneath) on the
 * input written to a memfd, read back through /proc/self/fd/N.
 *
 * Invariants: on success port is 1..65535, workers 1..64, redis_port
 * 1..65535, instance is set, every rate is 1..1000000 per 1..86400 s; on
 * failure err holds a message. */
#include "proc/config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz_config: invariant failed: %s (%s:%d)\n", \
		    #cond, __FILE__, __LINE__); \
		abort(); \
	} \
} while (0)

/* libconfig 1.5 (Debian 12) leaks the string token its lexer made when the
 * parser stops on a syntax error, e.g. `port = 1 "x";` or `a = ""; "" = 1;`:
 * its bug, not chatd's, and harmless to a process that reads its
 * configuration once. Those strings come from these two functions of
 * libconfig's lexer (libconfig has no frame pointers: the stacks end there). */
const char *
__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static int fuzz_fd = -1;
static char fuzz_path[64];
static volatile size_t sink;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* Every variable cfg_load() consults: the file alone decides. */
	static const char *const vars[] = {
		"CHATD_LISTEN", "CHATD_PORT", "CHATD_WORKERS", "CHATD_INSTANCE",
		"CHATD_ASSETS", "CHATD_LOG_LEVEL", "CHATD_DURABILITY",
		"CHATD_JWT_SECRET", "CHATD_JWT_PUBLIC_KEY_FILE", "CHATD_ALLOWED_ORIGINS",
		"REDIS_URL", "DATABASE_URL", "CHATD_RATE_SEND", "CHATD_RATE_JOIN",
		"CHATD_RATE_EDIT", "CHATD_RATE_DELETE", "CHATD_RATE_REACT", "CHATD_RATE_MEMBER",
		"CHATD_RATE_SEARCH", "CHATD_RATE_PRESENCE", "CHATD_RATE_TYPING",
		"CHATD_RATE_RECEIPT",
	};
	int null;

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	/* libconfig's @include and jwt_public_key_file open any path the input
	 * names: let "/dev/stdin" read EOF rather than wait for a terminal. */
	null = open("/dev/null", O_RDONLY);
	if (null >= 0 && null != STDIN_FILENO) {
		dup2(null, STDIN_FILENO);
		close(null);
	}
	fuzz_fd = memfd_create("fuzz_config", MFD_CLOEXEC);
	if (fuzz_fd < 0) {
		perror("fuzz_config: memfd_create");
		abort();
	}
	snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d", fuzz_fd);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg *c;
	char err[512];
	size_t off = 0;
	int rc;

	if (ftruncate(fuzz_fd, 0) != 0 || lseek(fuzz_fd, 0, SEEK_SET) != 0)
		abort();
	while (off < size) {
		ssize_t n = pwrite(fuzz_fd, data + off, size - off, (off_t)off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}

	c = malloc(sizeof(*c));	/* heap, so ASan sees overflows of it */
	if (c == NULL)
		return 0;
	memset(err, 0, sizeof(err));
	rc = cfg_load(c, fuzz_path, err, sizeof(err));
	if (rc == 0) {
		CHECK(c->port >= 1 && c->port <= 65535);
		CHECK(c->workers >= 1 && c->workers <= 64);
		CHECK(c->redis_port >= 1 && c->redis_port <= 65535);
		CHECK(c->instance[0] != '\0');
		for (int op = 0; op < RATE_NOPS; op++) {
			CHECK(c->rate[op].n >= 1 && c->rate[op].n <= 1000000);
			CHECK(c->rate[op].window_s >= 1 && c->rate[op].window_s <= 86400);
		}
		CHECK(memchr(c->redis_host, '\0', sizeof(c->redis_host)) != NULL);
		sink += strlen(c->redis_host) + strlen(c->instance);
	} else {
		CHECK(rc == -1);
		CHECK(err[0] != '\0');
		CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		sink += strlen(err);
	}
	free(c);
	return 0;
}
