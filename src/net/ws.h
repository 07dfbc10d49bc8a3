#ifndef CHATD_WS_H
#define CHATD_WS_H

struct auth_identity;
struct conn;
struct http_req;

/*
 * WebSocket (RFC 6455) on an HTTP connection: the upgrade at GET /ws, then
 * frames (net/ws_frame.c) to commands (proto/cmd.c) and back. The
 * handshake's checks, in order: the request is an RFC 6455 upgrade
 * (426 with the version, 400 for the key), the server is not draining
 * (503), the origin (403), the address's attempt and failure limits (429),
 * the token (401), the address's and the user's connection limits (429).
 */

/* A refused upgrade, for net/http.c to answer. */
struct ws_refusal {
	int status;
	const char *why;
	const char *header;	/* an extra header line ("Name: value\r\n"), or NULL */
};

/* 0: the 101 and the hello are queued, c is a WebSocket and c->req is
 * gone (r with it). -1: refused, out says how to answer. */
int ws_upgrade(struct conn *c, struct http_req *r, struct ws_refusal *out);

/* The door of a user's connection (the WebSocket's, and the room event
 * stream's, net/http.c): draining (503), Origin (403), attempts and failed
 * tokens per address (429), the token from ?token= or Authorization:
 * Bearer (401), connections per address and per user (429). 0: *id is the
 * user (admit_conn_opened is the caller's); -1: out says how to answer. */
int ws_admit(struct conn *c, const struct http_req *r, struct auth_identity *id,
    struct ws_refusal *out);

/* Worker start: WebSocket bytes to the frame reader, admission released
 * at close. */
void ws_start(void);

#endif
