#ifndef CHATD_ROOM_H
#define CHATD_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

struct outbuf;

enum sub_state { SUB_JOINING, SUB_LIVE };
enum sub_role { SUB_MEMBER, SUB_MODERATOR, SUB_ADMIN };

/* One connection's subscription to one local room. Made and freed here
 * (room_attach, room_detach); the connection lists it (conn.subs) and the
 * room holds it at subs[ridx]. */
struct sub {
	struct conn *c;
	struct room *room;
	int64_t delivered_seq;	/* highest seq queued to the client */
	struct outbuf **pend;	/* live events held while joining; owned refs */
	int64_t muted_until_ms;
	int64_t typing_until_ms;	/* chat/typing: typing until then; 0 not typing */
	int64_t typing_sent_ms;	/* chat/typing: when typing:true last went out */
	uint32_t gen;		/* unique per subscription: a freed one's address may come back */
	int ridx;
	int npend, pendcap;
	int pend_frames;
	uint8_t state;		/* enum sub_state */
	uint8_t role;		/* enum sub_role */
	uint8_t broadcast;	/* the room's kind is broadcast */
	uint8_t gapped;		/* events were dropped: nothing more until the client rejoins */
	uint8_t missed;		/* the subscriber link dropped while joining */
};


/* The rooms this worker has local subscribers in. A room is SUBSCRIBEd on
 * the worker's Redis subscriber link while it has subscribers. The events
 * Redis delivers for a room during one loop turn are framed once, one
 * after the other, into the room's batch (in the order Redis delivered
 * them: seq order); at the end of the turn the batch is queued by
 * reference to each local subscriber (room_seal_batches, an end-of-turn step). */

/* Subscribes c to the room (state SUB_JOINING: live events are held). */
struct sub *room_attach(struct conn *c, const char *tenant, const char *room_id,
    const char *role);
void room_detach(struct sub *s);
const char *room_sub_room_id(const struct sub *s);

/* Calls cb(arg, 1) once the room's Redis subscription is confirmed (at
 * once if it is), or cb(arg, 0) if the subscriber link is down or drops
 * first. Reading history after this cannot miss a live event. */
void room_when_active(struct sub *s, void (*cb)(void *arg, int ok), void *arg);

/* Join finished: the client got everything up to after_seq. Held events
 * after that go out now, in order; then the subscription is live. */
void room_sub_live(struct sub *s, int64_t after_seq);

/* End of the loop turn: queue every room's batch to its subscribers. */
int room_seal_batches(void);

/* Who catches a live subscription up when it may have missed events (the
 * subscriber link dropped and came back): join.c, which reads history.
 * Set before the first room_attach(); fn sends what s missed and then
 * calls room_sub_live(). */
void room_on_catch_up(void (*fn)(struct sub *s));

/* Called with every subscription about to be freed (leave, re-join,
 * close, removal): chat/typing ends its typing. */
void room_on_detach(void (*fn)(struct sub *s));

/* Called with every typing:update a room's channel brings while the room
 * has local subscribers, before it is delivered; key is "tenant/room"
 * (chat/typing: the typists other workers may never end). */
void room_on_typing(void (*fn)(const char *key, const char *payload, size_t len));
/* Delivers a typing:update made on this worker (payload) to the room's local
 * subscribers but its user's connections, as if the channel had brought it. */
void room_typing_local(const char *tenant, const char *room_id, const char *payload,
    size_t len);

void room_channel(char *buf, size_t len, const char *tenant, const char *room_id);

#endif
