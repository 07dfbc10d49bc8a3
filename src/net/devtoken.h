#ifndef CHATD_DEVTOKEN_H
#define CHATD_DEVTOKEN_H

struct conn;
struct http_req;

/*
 * /dev/token: the web client's "dev sign-in", a token for any user name
 * without an identity provider, signed as `chatd token` signs (HS256 with
 * jwt_secret). For development only: it exists when dev_tokens = 1 and
 * only for peers in monitoring_trusted; anyone else gets 404, whatever the
 * method.
 *
 *   GET  /dev/token  -> 200 {"dev_tokens":true,"tenant":<default_tenant>}
 *   POST /dev/token  {user, tenant?} (JSON, or a form) -> 200 {token, user,
 *                    tenant, exp}; a bad field is 400
 */
void devtoken_handle(struct conn *c, struct http_req *r);

#endif
