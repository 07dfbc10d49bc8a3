#ifndef CHATD_HISTORY_H
#define CHATD_HISTORY_H

#include <stdint.h>

/* Room events for a join or resume: from the Redis stream (the hot
 * window) when it covers the range, else from PostgreSQL, merged by seq. */
struct history_result {
	int64_t last_seq;	/* the room's newest seq when read */
	int recovered;		/* 0: the gap after since was too large */
	int n;
	char **events;		/* JSON texts, oldest first */
};

/* since -1: the latest history_on_join events; else the events after since.
 * cb gets NULL when a backend failed. 0 started, -1 unavailable. */
int history_read(const char *tenant, const char *room_id, long long since,
    void (*cb)(const struct history_result *h, void *arg), void *arg);

#endif
