#ifndef CHATD_SEND_BATCH_H
#define CHATD_SEND_BATCH_H

/*
 * The send queue: every message:send and message:edit that arrives in one
 * loop turn goes to Redis at the end of the turn (sendbatch_flush,
 * an end-of-turn step), in batches of one room each, several rooms' batches per
 * call of the send script (store/redis.c). A fast sender's pipelined burst costs
 * Redis one counter update, one PUBLISH and one bucket update instead of
 * one of each per message, and chatd one pub/sub message; many rooms with
 * a message each share the call and its reads. The items keep their order;
 * each gets its own answer.
 */

enum sendbatch_status {
	SENDBATCH_NEW = 1,		/* val: the ack's fields */
	SENDBATCH_REPEAT = 0,	/* val: the first ack's fields (same client_msg_id) */
	SENDBATCH_LIMITED = -2,	/* val: ms until the user's bucket has a token */
	SENDBATCH_NO_BUS = -3,	/* Redis down or the script failed */
	SENDBATCH_NO_DB = -4,	/* the counter needed PostgreSQL's max seq: failed */
	SENDBATCH_NO_SEED = -5	/* still no counter after seeding */
};

struct sendbatch_item {
	/* Set by the caller, borrowed until done is called. */
	const char *tenant, *room, *user, *cmid;
	const char *head, *mid, *tail;	/* the event around its seq (mid "": one seq) */
	const char *msg_id;
	long long ts;
	int idem_ttl_s;
	void (*done)(struct sendbatch_item *it, enum sendbatch_status st, const char *val);
};

/* Queues it for this loop turn; done is called exactly once, later. */
void sendbatch_add(struct sendbatch_item *it);
/* Sends this turn's batches (flush.c, at the end of every loop turn). */
int sendbatch_flush(void);
/* After flush_shutdown's last flush: frees the queue's own state. */
void sendbatch_shutdown(void);

#endif
