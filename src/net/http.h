#ifndef CHATD_HTTP_H
#define CHATD_HTTP_H

struct lws;

/* Plain HTTP on the WebSocket port: /health, /ready, the monitoring JSON,
 * /monitoring and static files from the assets directory. Returns what the
 * lws callback returns. */
int http_request(struct lws *wsi, const char *path);

#endif
