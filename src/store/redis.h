#ifndef CHATD_BUS_H
#define CHATD_BUS_H

#include <stddef.h>

/* The worker's Redis side: three links (commands, subscriber, sync
 * consumer), the Lua scripts (redis_lua.h), key names and the health ping. */

void redis_start(void);
void redis_stop(void);

/* Who is told when the subscriber or the sync link connects or drops:
 * the store layer calls nothing above it, the modules that use a link
 * register here (chat/room.c the subscriber link, store/sync.c the sync
 * link). One up and one down per link; either may be NULL. They are
 * called from the loop, never from within redis_on_link(). */
enum redis_link { REDIS_LINK_SUBSCRIBER, REDIS_LINK_SYNC };
void redis_on_link(enum redis_link which, void (*up)(void), void (*down)(void));
/* (at most four registrations per link) */

/* Commands can be sent and the scripts are loaded. */
int redis_ready(void);

const char *redis_send_sha(void);
/* A script call answered NOSCRIPT (SCRIPT FLUSH, a failover): load again. */
void redis_scripts_missing(void);
const char *redis_hist_sha(void);
/* EVALSHA rate 1 <bucket> <n> <win_ms> -> 0 or retry_after_ms. */
const char *redis_rate_sha(void);
/* act.lua: store/room_log.c says what it takes. */
const char *redis_act_sha(void);
/* presence.lua: chat/presence.c says what it takes. */
const char *redis_presence_sha(void);

/*
 * Every Redis name chatd uses is made here (the scripts get theirs in
 * KEYS). They are data: a name changed loses what Redis holds under the
 * old one. '{tenant/room}' and '{tenant/user}' are Redis Cluster hash tags.
 *
 *   chatd:{T/R}:seq, chatd:{T/R}:stream   redis_key(.., "seq" / "stream")
 *   chatd:{T/R}:idem:U/C                  redis_idem_key: an ack, for dedupe
 *   chatd:rb:{T/U}:OP                     redis_rate_key: a token bucket
 *   chatd:ev:{T/R}                        redis_channel: Pub/Sub, not a key
 *   chatd:{T/R}:msg:M                     redis_msg_key: a message's state (act.lua)
 *   chatd:{T/R}:deleted                   redis_key(.., "deleted"): deleted seqs
 *   chatd:{T/R}:typing                    redis_typing_key: typists, user -> until ms
 *   chatd:sync, group chatd               REDIS_SYNC_STREAM, REDIS_SYNC_GROUP
 *   chatd:user                            REDIS_PERSONAL_CHANNEL: Pub/Sub
 *   chatd:pu:{T/U}                        redis_presence_key: a user's presence
 *   chatd:hb:W, chatd:pw:W                redis_worker_key(.., "hb" / "pw", W):
 *                                         a worker's heartbeat, its users
 *   chatd:workers                         REDIS_WORKERS: the workers with users
 *   (presence.lua's reap makes hb, pw and pu names itself from REDIS_PREFIX)
 */
void redis_key(char *buf, size_t len, const char *tenant, const char *room_id, const char *what);
void redis_idem_key(char *buf, size_t len, const char *tenant, const char *room_id,
    const char *user, const char *client_msg_id);
void redis_rate_key(char *buf, size_t len, const char *tenant, const char *user, const char *op);
void redis_channel(char *buf, size_t len, const char *tenant, const char *room_id);
void redis_msg_key(char *buf, size_t len, const char *tenant, const char *room_id,
    const char *msg_id);
/* A hash of the room's typists (chat/typing.c): user -> the ms after which
 * it no longer counts as typing; the key expires when nobody typed a while. */
void redis_typing_key(char *buf, size_t len, const char *tenant, const char *room_id);
void redis_presence_key(char *buf, size_t len, const char *tenant, const char *user);
void redis_worker_key(char *buf, size_t len, const char *what, const char *wid);
#define REDIS_PREFIX "chatd:"
#define REDIS_WORKERS "chatd:workers"
/* Events for users rather than rooms (chat/personal.c): "tenant\nu1,u2\n<frame>". */
#define REDIS_PERSONAL_CHANNEL "chatd:user"
/* An ephemeral event (no seq, not in the log: typing:update,
 * receipt:update) to the room's subscribers on every worker; dropped when
 * Redis is down. */
void redis_publish_room(const char *tenant, const char *room_id, const char *text);

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
