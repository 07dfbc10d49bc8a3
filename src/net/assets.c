#include "net/assets.h"
#include "lib/hmap.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/srv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ASSETS_DEPTH_MAX 8
#define ASSETS_FILES_MAX 4096

static struct hmap *cache;	/* URL path ("/chat/index.html") -> struct asset, owned */
static unsigned scan_gen;	/* the scan that last saw each asset */
static int nfiles;

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

static int64_t
assets__mtime(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int
assets__load(const char *file, const struct stat *st, struct asset *a)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	char *data;

	if (fd < 0)
		return -1;
	data = xmalloc((size_t)st->st_size + 1);
	while (got < (size_t)st->st_size) {
		ssize_t r = read(fd, data + got, (size_t)st->st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	free(a->data);
	a->data = data;
	a->len = got;
	a->mtime_ns = assets__mtime(st);
	a->type = assets__type(file);
	a->cache_control = strstr(a->type, "text/html") ? "no-cache" : "public, max-age=300";
	snprintf(a->etag, sizeof(a->etag), "\"%llx-%llx\"", (unsigned long long)got,
	    (unsigned long long)a->mtime_ns);
	return 0;
}

/* One file of the tree: loaded when new or changed. */
static void
assets__file(const char *file, const char *url, const struct stat *st)
{
	struct asset *a = hmap_get(cache, url);

	if (a == NULL) {
		if (nfiles >= ASSETS_FILES_MAX || st->st_size > ASSETS_FILE_MAX)
			return;
		a = xcalloc(1, sizeof(*a));
		hmap_put(cache, url, a);
		nfiles++;
	}
	a->seen = scan_gen;
	if (a->data == NULL || a->len != (size_t)st->st_size || a->mtime_ns != assets__mtime(st))
		if (assets__load(file, st, a) != 0)
			a->seen = 0;	/* gone again: dropped below */
}

static void
assets__walk(const char *dir, const char *url, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char file[1024], sub[1024];
		struct stat st;
		int fn, un;

		if (e->d_name[0] == '.')
			continue;	/* ., .., and hidden files are not served */
		fn = snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
		un = snprintf(sub, sizeof(sub), "%s/%s", url, e->d_name);
		if (fn < 0 || (size_t)fn >= sizeof(file) || un < 0 || (size_t)un >= sizeof(sub) ||
		    stat(file, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < ASSETS_DEPTH_MAX)
			assets__walk(file, sub, depth + 1);
		else if (S_ISREG(st.st_mode))
			assets__file(file, sub, &st);
	}
	closedir(d);
}

struct assets__gone {
	char **keys;
	int n;
};

static void
assets__collect(const char *key, void *value, void *arg)
{
	struct asset *a = value;
	struct assets__gone *g = arg;

	if (a->seen != scan_gen)
		g->keys[g->n++] = xstrdup(key);
}

void
assets_scan(void)
{
	struct assets__gone gone = { NULL, 0 };

	if (cache == NULL)
		cache = hmap_new();
	if (++scan_gen == 0)
		scan_gen = 1;
	assets__walk(srv.cfg->assets, "", 0);
	gone.keys = xcalloc((size_t)nfiles + 1, sizeof(*gone.keys));
	hmap_each(cache, assets__collect, &gone);
	for (int i = 0; i < gone.n; i++) {
		struct asset *a = hmap_del(cache, gone.keys[i]);

		free(a->data);
		free(a);
		free(gone.keys[i]);
		nfiles--;
	}
	free(gone.keys);
}

int
assets_get(const char *path, size_t n, const struct asset **out)
{
	char p[1024];
	const struct asset *a;

	if (n == 0 || n >= sizeof(p) - sizeof("/index.html") || path[0] != '/' ||
	    memchr(path, '\0', n) || memchr(path, '\\', n))
		return 400;
	memcpy(p, path, n);
	p[n] = '\0';
	if (strstr(p, "/..") != NULL || strstr(p, "//") != NULL)
		return 400;
	if (strcmp(p, "/") == 0)
		n = (size_t)snprintf(p, sizeof(p), "/chat/index.html");	/* the web client */
	else if (strcmp(p, "/monitoring") == 0)
		n = (size_t)snprintf(p, sizeof(p), "/monitoring/index.html");
	if (p[n - 1] == '/')
		p[--n] = '\0';
	a = cache ? hmap_get(cache, p) : NULL;
	if (a == NULL && cache != NULL) {
		memcpy(p + n, "/index.html", sizeof("/index.html"));	/* a directory */
		a = hmap_get(cache, p);
	}
	if (a == NULL)
		return 404;
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
	nfiles = 0;
}
