#ifndef CHATD_ASSETS_H
#define CHATD_ASSETS_H

#include <stddef.h>
#include <stdint.h>

/*
 * The static files under the configured assets directory, served from
 * memory: the worker reads the tree before its loop starts and looks again
 * once a second (assets_scan: a stat per file, a read only of what changed),
 * so no request waits for the disk. "/" is /chat/index.html (the web
 * client) and "/monitoring" /monitoring/index.html (the dashboard); a
 * directory is its index.html; names starting with a dot are not served.
 */

#define ASSETS_FILE_MAX (8 * 1024 * 1024)

struct asset {
	char *data;		/* owned */
	size_t len;
	const char *type;	/* Content-Type */
	const char *cache_control;
	char etag[48];		/* quoted */
	int64_t mtime_ns;
	unsigned seen;		/* the last scan that found the file */
};

/* Read new and changed files, forget removed ones (at most
 * ASSETS_FILE_MAX bytes a file, 4,096 files, 8 levels). */
void assets_scan(void);
/* 200 with *out (owned by the cache, valid until the next scan), 404 no
 * such file, 400 a path that tries to leave the directory. */
int assets_get(const char *path, size_t n, const struct asset **out);
void assets_free(void);

#endif
