#ifndef CHATD_BUS_H
#define CHATD_BUS_H

#include <stddef.h>

/* The worker's Redis side: three links (commands, subscriber, sync
 * consumer), the Lua scripts, key names and the health ping. */

void redis_start(void);
void redis_stop(void);
/* Commands can be sent and the scripts are loaded. */
int redis_ready(void);

const char *redis_send_sha(void);
/* A script call answered NOSCRIPT (SCRIPT FLUSH, a failover): load again. */
void redis_scripts_missing(void);
const char *redis_hist_sha(void);
/* EVALSHA rate 1 <bucket> <rate> <burst> -> 0 or retry_after_ms. */
const char *redis_rate_sha(void);
void redis_rate_key(char *buf, size_t len, const char *tenant, const char *user, const char *op);

/* Key names; '{tenant/room}' is the Redis Cluster hash tag of a room. */
void redis_key(char *buf, size_t len, const char *tenant, const char *room_id, const char *what);
#define REDIS_SYNC_STREAM "chatd:sync"
#define REDIS_SYNC_GROUP "chatd"
/* Most events in one sync-stream entry ("e": events joined by '\n', "s":
 * the first one's seq, each next one's seq one more). The send script adds
 * one entry per call instead of one per message; the bound keeps a read of
 * N entries within N * REDIS_SYNC_ENTRY_MAX events. */
#define REDIS_SYNC_ENTRY_MAX 16
#define REDIS_STR_(x) #x
#define REDIS_STR(x) REDIS_STR_(x)

#endif
