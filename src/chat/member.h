#ifndef CHATD_MEMBER_H
#define CHATD_MEMBER_H

#include <stdint.h>

/*
 * The member check of room:join and session:resume: does the room exist,
 * is the user a member (added as `member` when the room is public and it
 * is not one yet; as `moderator` to a support room when a tenant admin),
 * banned, muted; and the members' read positions for the ack. The checks
 * of a loop turn go to PostgreSQL together as one statement, one
 * transaction, so a batch of joins costs one commit; at most one batch is
 * in flight per worker.
 */

enum member_status {
	MEMBER_OK,		/* info is set */
	MEMBER_NO_ROOM,
	MEMBER_UNAVAILABLE,	/* database down or refused; why says so */
};

struct member_info {
	const char *kind;	/* the room's */
	const char *role;	/* NULL: not a member (a private room) */
	int banned;
	int64_t muted_until_ms;
	/* The room:join ack's receipts: [{user, delivered_seq, read_seq}] of
	 * at most join_receipts_max members, furthest read first, as JSON
	 * text; NULL when the user may not join. */
	const char *receipts;
	/* The room's members, comma-separated, when at most presence_room_max
	 * (the ack's presence), else NULL. */
	const char *members;
};

/* info and why are valid during the call only. */
typedef void member_cb(void *arg, enum member_status st, const struct member_info *info,
    const char *why);

/* Queues a check (ids valid per util_valid_id); cb runs once, at the end
 * of the loop turn or later, or at once when the database is down or too
 * many checks wait. admin: the user's token has role admin (a tenant
 * admin joins any support room of the tenant, as a moderator). */
void member_check(const char *tenant, const char *room, const char *user, int admin,
    member_cb *cb, void *arg);
/* End of a loop turn (flush.c): the waiting checks go as one statement,
 * unless one is in flight (then they go when it is answered). */
/* The end-of-turn step (proc/turn.h): sends the waiting checks. */
int member_flush(void);
/* Worker exit, after the requests connection closed: answers what waits. */
void member_shutdown(void);

#endif
