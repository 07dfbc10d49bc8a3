#ifndef CHATD_ASSETS_H
#define CHATD_ASSETS_H

#include <stddef.h>
#include <stdint.h>

/*
 * The static files under the configured assets directory, served from
 * memory: a file is read once, and again only when its size or time
 * changes (one stat per request), so a request does no read of the disk.
 * "/" and "/monitoring" are /monitoring/index.html; a directory is its
 * index.html.
 */

#define ASSETS_FILE_MAX (8 * 1024 * 1024)

struct asset {
	char *data;		/* owned */
	size_t len;
	const char *type;	/* Content-Type */
	const char *cache_control;
	char etag[48];		/* quoted */
	int64_t mtime_ns;
};

/* 200 with *out (owned by the cache, valid until the next call), 404 no
 * such file, 400 a path that tries to leave the directory. */
int assets_get(const char *path, size_t n, const struct asset **out);
void assets_free(void);

#endif
