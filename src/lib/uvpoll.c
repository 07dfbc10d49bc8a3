#include "lib/uvpoll.h"

void
uvpoll_watch(uv_poll_t *h, int *armed, int events, uv_poll_cb cb)
{
	if (events == *armed)
		return;
	*armed = events;
	if (events)
		uv_poll_start(h, events, cb);
	else
		uv_poll_stop(h);
}
