#ifndef CHATD_RLINK_UV_H
#define CHATD_RLINK_UV_H

#include <hiredis/async.h>
#include <uv.h>

/*
 * hiredis on a libuv loop. hiredis 0.14's own adapter (adapters/libuv.h)
 * returns early when the poll reports an error, so a reset connection with
 * a command in flight is never noticed: the link looks up forever and the
 * request is never answered. This one hands an error to hiredis' read and
 * write handlers, which see the failure and disconnect (the fix hiredis 1.x
 * made). REDIS_OK or REDIS_ERR.
 */
int rlink_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
