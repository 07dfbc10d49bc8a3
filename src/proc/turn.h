#ifndef CHATD_TURN_H
#define CHATD_TURN_H

#include <uv.h>

/*
 * The end of a loop turn. Work gathered while the loop read its sockets
 * (the sends of this turn for Redis, the joins' member checks, the read
 * receipts' positions, each room's batch of events, each connection's
 * writes) is done once, at the end of the turn, by steps that modules
 * register here in the order below. The loop knows none of them; a
 * module asks for the end of turn with turn_kick() when it has something
 * waiting.
 */

enum turn_order {
	TURN_SEND = 10,		/* store/send_batch: this turn's sends to Redis */
	TURN_MEMBERS = 20,	/* chat/member: this turn's member checks to PostgreSQL */
	TURN_RECEIPTS = 22,	/* chat/receipt: this turn's read positions to PostgreSQL */
	TURN_PRESENCE = 25,	/* chat/presence: this turn's connections opened and closed */
	TURN_ROOMS = 30,	/* chat/room: each room's batch into its subscribers' queues */
	TURN_WRITE = 40		/* net/conn: each connection's one write */
};

/* A step returns 1 when it left work for the next turn (the loop then
 * polls without blocking), else 0. */
typedef int turn_step(void);

void turn_init(uv_loop_t *loop);
void turn_register(enum turn_order order, turn_step *fn);
/* Run the steps at the end of this turn. */
void turn_kick(void);
/* Run every step until none has work left, then release the handles. */
void turn_shutdown(void);

#endif
