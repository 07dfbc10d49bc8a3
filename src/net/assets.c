#include "net/assets.h"
#include "lib/hmap.h"
#include "lib/util.h"
#include "proc/srv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct hmap *cache;	/* file name -> struct asset, owned */

static const char *
assets__type(const char *file)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".mjs", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".json", "application/json" },
		{ ".map", "application/json" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
		{ ".woff2", "font/woff2" },
		{ ".txt", "text/plain; charset=utf-8" },
	};
	const char *dot = strrchr(file, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* A URL path as a file name under the assets directory; -1 when it tries
 * to leave it (a "..", a NUL, a backslash) or is too long. */
static int
assets__file(const char *path, size_t n, char *file, size_t len)
{
	char p[1024];
	int w;

	if (n == 0 || n >= sizeof(p) || path[0] != '/' || memchr(path, '\0', n) ||
	    memchr(path, '\\', n))
		return -1;
	memcpy(p, path, n);
	p[n] = '\0';
	if (strstr(p, "/..") != NULL || strstr(p, "//") != NULL)
		return -1;
	if (strcmp(p, "/") == 0 || strcmp(p, "/monitoring") == 0)
		snprintf(p, sizeof(p), "/monitoring/index.html");
	w = snprintf(file, len, "%s%s%s", srv.cfg->assets, p,
	    p[strlen(p) - 1] == '/' ? "index.html" : "");
	return w < 0 || (size_t)w >= len ? -1 : 0;
}

static int
assets__load(const char *file, const struct stat *st, struct asset *a)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	if (fd < 0)
		return -1;
	free(a->data);
	a->data = xmalloc((size_t)st->st_size + 1);
	while (got < (size_t)st->st_size) {
		ssize_t r = read(fd, a->data + got, (size_t)st->st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	a->len = got;
	a->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	a->type = assets__type(file);
	a->cache_control = strstr(a->type, "text/html") ? "no-cache" : "public, max-age=300";
	snprintf(a->etag, sizeof(a->etag), "\"%llx-%llx\"", (unsigned long long)got,
	    (unsigned long long)a->mtime_ns);
	return 0;
}

int
assets_get(const char *path, size_t n, const struct asset **out)
{
	char file[1200];
	struct stat st;
	struct asset *a;

	if (assets__file(path, n, file, sizeof(file)) != 0)
		return 400;
	if (stat(file, &st) != 0)
		return 404;
	if (S_ISDIR(st.st_mode)) {
		size_t l = strlen(file);

		if (l + sizeof("/index.html") > sizeof(file))
			return 404;
		memcpy(file + l, "/index.html", sizeof("/index.html"));
		if (stat(file, &st) != 0)
			return 404;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > ASSETS_FILE_MAX)
		return 404;
	if (cache == NULL)
		cache = hmap_new();
	a = hmap_get(cache, file);
	if (a == NULL) {
		a = xcalloc(1, sizeof(*a));
		hmap_put(cache, file, a);
	}
	if (a->data == NULL || a->len != (size_t)st.st_size ||
	    a->mtime_ns != (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec) {
		if (assets__load(file, &st, a) != 0)
			return 404;
	}
	*out = a;
	return 200;
}

static void
assets__free_one(const char *key, void *value, void *arg)
{
	struct asset *a = value;

	(void)key;
	(void)arg;
	free(a->data);
	free(a);
}

void
assets_free(void)
{
	if (cache == NULL)
		return;
	hmap_each(cache, assets__free_one, NULL);
	hmap_free(cache);
	cache = NULL;
}
