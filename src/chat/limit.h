#ifndef CHATD_LIMIT_H
#define CHATD_LIMIT_H

#include "proc/config.h"

/*
 * Per-user rate limits of the operations that do not go through the send
 * script: one bucket per user and operation, "N per W seconds" (the
 * operation's rate_* key), shared by every worker and instance
 * (store/rate.lua).
 */

enum limit_op {
	LIMIT_EDIT,
	LIMIT_DELETE,
	LIMIT_REACT,
	LIMIT_MEMBER,	/* member:*, room:update */
	LIMIT_SEARCH,
	LIMIT_PRESENCE,
	LIMIT_TYPING,
	LIMIT_RECEIPT,
	LIMIT_NOPS
};

/* retry_ms: 0 a token was taken, > 0 limited (retry after that many ms),
 * -1 Redis unavailable. */
typedef void limit_cb(void *arg, long long retry_ms);

/* Takes a token from tenant/user's bucket for op; cb runs exactly once:
 * later, or at once (-1) when Redis is down. */
void limit_take(const char *tenant, const char *user, enum limit_op op, limit_cb *cb, void *arg);

/* The same for any configured rate, by its key (room:join: RATE_JOIN). */
void limit_take_rate(const char *tenant, const char *user, enum cfg_rate_op op, limit_cb *cb,
    void *arg);

struct conn;

/* The answer when limit_take gave no token: retry_ms > 0 is rate_limited
 * with retry_after_ms ("too many <what>; retry in N ms"), < 0 unavailable.
 * 1: answered (the command stops); 0: a token was taken. */
int limit_refused(struct conn *c, const char *idjson, long long retry_ms, const char *what);

#endif
