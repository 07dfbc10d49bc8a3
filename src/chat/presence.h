#ifndef CHATD_PRESENCE_H
#define CHATD_PRESENCE_H

#include <jansson.h>

struct conn;

/*
 * Who is online (docs/protocol.md section 8): a user is online while any of
 * its connections is open, on any worker or instance. State in Redis
 * (store/presence.lua): per user, its connections per worker and its
 * status; per worker, a heartbeat key that expires presence_timeout_s after
 * the worker stops renewing it, and the users it holds, which any live
 * worker reaps then. The connections opened and closed in one loop turn
 * go to Redis as one script call.
 */

/* Worker start: the open and close hooks, the heartbeat and reaper. */
void presence_start(void);
/* Worker exit: this worker's users lose its connections now. */
void presence_stop(void);

/* room:members' answer (chat/readview's answer hook): each member with its
 * status and last_seen, as presence:get shows them. */
void presence_members_ack(struct conn *c, const char *idjson, const char *obj);

/* The room:join ack's presence: of users (ids, comma-separated) of
 * tenant, those not offline, as [{user, status, last_seen}] (a new
 * reference, given to cb; empty when Redis failed). 0 sent (cb later), -1
 * not (cb never called). */
int presence_read(const char *tenant, const char *users, void (*cb)(void *arg, json_t *list),
    void *arg);

/* room:info's answer (readview's answer hook): its room with online, how
 * many of its members are not offline (the first 10,000 counted). */
void presence_info_ack(struct conn *c, const char *idjson, const char *obj);

/* presence:set {status}, presence:get {users}. */
void presence_set(struct conn *c, const char *idjson, json_t *msg);
void presence_get(struct conn *c, const char *idjson, json_t *msg);

#endif
