#ifndef CHATD_UVPOLL_H
#define CHATD_UVPOLL_H

#include <uv.h>

/*
 * uv_poll_start stops and re-adds its watcher on every call, even with the
 * same events: one or two epoll_ctl calls in the next loop turn for
 * nothing. Callers that re-ask often (hiredis after every read and with
 * every command, pgq with every query) keep the events the handle watches
 * in *armed and go through uvpoll_watch, which calls libuv only on a
 * change (0 events: uv_poll_stop). When libuv reports an error on the
 * handle it has stopped it itself: the caller sets *armed to 0 then.
 */
void uvpoll_watch(uv_poll_t *h, int *armed, int events, uv_poll_cb cb);

#endif
