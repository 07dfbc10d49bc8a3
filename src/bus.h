#ifndef CHATD_BUS_H
#define CHATD_BUS_H

#include <stddef.h>

/* The worker's Redis side: three links (commands, subscriber, sync
 * consumer), the Lua scripts, key names and the health ping. */

void bus_start(void);
void bus_stop(void);
/* Commands can be sent and the scripts are loaded. */
int bus_ready(void);

const char *bus_send_sha(void);
/* A script call answered NOSCRIPT (SCRIPT FLUSH, a failover): load again. */
void bus_scripts_missing(void);
const char *bus_hist_sha(void);
/* EVALSHA rate 1 <bucket> <rate> <burst> -> 0 or retry_after_ms. */
const char *bus_rate_sha(void);
void bus_rate_key(char *buf, size_t len, const char *tenant, const char *user, const char *op);

/* Key names; '{tenant/room}' is the Redis Cluster hash tag of a room. */
void bus_key(char *buf, size_t len, const char *tenant, const char *room_id, const char *what);
#define BUS_SYNC_STREAM "chatd:sync"
#define BUS_SYNC_GROUP "chatd"
/* Most events in one sync-stream entry ("e": events joined by '\n', "s":
 * the first one's seq, each next one's seq one more). The send script adds
 * one entry per call instead of one per message; the bound keeps a read of
 * N entries within N * BUS_SYNC_ENTRY_MAX events. */
#define BUS_SYNC_ENTRY_MAX 16
#define BUS_STR_(x) #x
#define BUS_STR(x) BUS_STR_(x)

#endif
