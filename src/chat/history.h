#ifndef CHATD_HISTORY_H
#define CHATD_HISTORY_H

#include <jansson.h>
#include <stdint.h>

/* Which room events to read. Seqs are gap-free, so a range says exactly
 * how many events it holds. */
struct history_query {
	long long from;		/* first seq; -1: the newest `count` up to `to` */
	long long to;		/* last seq; -1: up to the room's newest */
	int count;		/* at most this many events */
	int max_gap;		/* from set, to -1: more than this missing -> not recovered; 0: no limit */
};

struct history_result {
	int64_t last_seq;	/* the room's newest seq when read */
	int64_t from, to;	/* the range resolved against last_seq */
	int recovered;		/* 0: the gap was larger than max_gap; no events */
	int n;
	char **events;		/* JSON texts, oldest first, seq from..to */
};

/* Reads from the Redis stream (the hot window) when it covers the range,
 * else from PostgreSQL, merged by seq; when Redis knew nothing of the room
 * PostgreSQL alone answers and the stream is warmed again. cb gets NULL
 * when a backend failed. 0 started, -1 unavailable (cb not called). */
int history_read(const char *tenant, const char *room_id, const struct history_query *q,
    void (*cb)(const struct history_result *h, void *arg), void *arg);

/* The result's events as a JSON array (new reference), for an ack. */
json_t *history_events_json(const struct history_result *h);

#endif
