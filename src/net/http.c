#include "net/http.h"
#include "net/auth.h"
#include "store/redis.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "store/pg_queue.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <libwebsockets.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int
http__reply(struct lws *wsi, int status, const char *ctype, const char *body, size_t len)
{
	unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start;
	unsigned char *end = hdr + sizeof(hdr) - 1;
	unsigned char *buf;
	int n;

	if (lws_add_http_common_headers(wsi, (unsigned int)status, ctype, len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
	    (const unsigned char *)"no-store", 8, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	buf = xmalloc(LWS_PRE + len + 1);
	memcpy(buf + LWS_PRE, body, len);
	n = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
	free(buf);
	if (n < (int)len)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int
http__json(struct lws *wsi, int status, const char *body)
{
	return http__reply(wsi, status, "application/json", body, strlen(body));
}

/* Monitoring is for loopback (trusted) peers or an admin token. */
static int
http__trusted(struct lws *wsi)
{
	char ip[64], auth[4200];
	struct auth_identity id;
	const char *reason;
	int n;

	lws_get_peer_simple(wsi, ip, sizeof(ip));
	if (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
	    strncmp(ip, "::ffff:127.", 11) == 0)
		return 1;
	n = lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION);
	return n > 7 && strncasecmp(auth, "Bearer ", 7) == 0 &&
	    auth_verify(srv.cfg, auth + 7, &id, &reason) == 0 && id.admin;
}

static const char *
http__mime(const char *path)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "application/javascript" },
		{ ".mjs", "application/javascript" },
		{ ".css", "text/css" },
		{ ".json", "application/json" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
		{ ".txt", "text/plain; charset=utf-8" },
	};
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

static int
http__static(struct lws *wsi, const char *path)
{
	char file[1024];
	struct stat st;
	int n;

	if (strstr(path, "..") != NULL || path[0] != '/')
		return http__json(wsi, 400, "{\"error\":\"bad path\"}");
	if (strcmp(path, "/") == 0 || strcmp(path, "/monitoring") == 0 ||
	    strcmp(path, "/monitoring/") == 0)
		path = "/monitoring/index.html";
	n = snprintf(file, sizeof(file), "%s%s", srv.cfg->assets, path);
	if (n < 0 || (size_t)n >= sizeof(file) || stat(file, &st) != 0 || !S_ISREG(st.st_mode))
		return http__json(wsi, 404, "{\"error\":\"not found\"}");
	n = lws_serve_http_file(wsi, file, http__mime(file), NULL, 0);
	if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
		return -1;
	return 0;
}

int
http_request(struct lws *wsi, const char *path)
{
	char body[256];

	if (strcmp(path, "/health") == 0) {
		snprintf(body, sizeof(body), "{\"status\":\"ok\",\"worker\":%d,\"draining\":%s}",
		    srv.index, srv.draining ? "true" : "false");
		return http__json(wsi, 200, body);
	}
	if (strcmp(path, "/ready") == 0) {
		int redis = redis_ready(), pg = pgq_up(srv.pg);
		int ok = redis && pg && !srv.draining;

		snprintf(body, sizeof(body), "{\"ready\":%s,\"redis\":%s,\"postgres\":%s,\"draining\":%s}",
		    ok ? "true" : "false", redis ? "true" : "false", pg ? "true" : "false",
		    srv.draining ? "true" : "false");
		return http__json(wsi, ok ? 200 : 503, body);
	}
	if (strcmp(path, "/api/monitoring/websocket") == 0) {
		char *json;
		int rc;

		if (!http__trusted(wsi))
			return http__json(wsi, 401, "{\"error\":\"admin token required\"}");
		json = metrics_json();
		rc = http__json(wsi, 200, json);
		free(json);
		return rc;
	}
	return http__static(wsi, path);
}
