/* Unit tests of src/chat/history.c's one pure step, history__resolve():
 * a query (from, to, count, max_gap) and the room's last seq give the
 * range of events to read. The queries are shaped as their callers shape
 * them: message:history (msgcmd.c: before -> to = before - 1, after ->
 * from = after + 1, limit -> count), room:join (join.c: the newest
 * history_on_join, or since -> from = since + 1 with max_resume_gap as
 * count and max_gap) and the resync after a gap (join.c, the same).
 * The rest of history.c talks to Redis and PostgreSQL: the functions it
 * calls are stubbed below and never reached. */
#include "chat/history.c"

#include "unit.h"

#include <stdlib.h>

struct srv srv;

/* Not reached by these tests. */
#define UNREACHED() do { \
	fprintf(stderr, "%s: not stubbed for this test\n", __func__); \
	abort(); \
} while (0)

int
rlink_up(const struct rlink *l)
{
	(void)l;
	UNREACHED();
}

int
rlink_failed(const redisReply *r)
{
	(void)r;
	UNREACHED();
}

int
redis_ready(void)
{
	UNREACHED();
}

void
redis_scripts_missing(void)
{
	UNREACHED();
}

const char *
redis_hist_sha(void)
{
	UNREACHED();
}

int
pgq_ok(const PGresult *res)
{
	(void)res;
	UNREACHED();
}

int
rlink_cmd(struct rlink *l, redisCallbackFn *fn, void *priv, const char *fmt, ...)
{
	(void)l, (void)fn, (void)priv, (void)fmt;
	UNREACHED();
}

void
redis_key(char *buf, size_t len, const char *tenant, const char *room_id, const char *what)
{
	(void)buf, (void)len, (void)tenant, (void)room_id, (void)what;
	UNREACHED();
}

int
pgq_exec(struct pgq *q, const char *sql, int nparams, const char *const *params,
    pgq_cb *cb, void *arg)
{
	(void)q, (void)sql, (void)nparams, (void)params, (void)cb, (void)arg;
	UNREACHED();
}

/* Resolves q against last: "from..to n=N" plus " lost" when not recovered. */
static const char *
resolve(long long from, long long to, int count, int max_gap, long long last)
{
	static char out[128];
	struct history_op op;
	long long n;

	memset(&op, 0, sizeof(op));
	op.q = (struct history_query){ from, to, count, max_gap };
	op.res.recovered = 1;
	n = history__resolve(&op, last);
	CHECK_INT(op.res.last_seq, last);
	if (!op.res.recovered) {
		CHECK_INT(n, 0);
		snprintf(out, sizeof(out), "lost");
		return out;
	}
	/* The count matches the range, and never more than asked. */
	CHECK_INT(n, op.res.to >= op.res.from ? op.res.to - op.res.from + 1 : 0);
	CHECK(n <= (count > 0 ? count : 0));
	CHECK(n == 0 || (op.res.from >= 1 && op.res.to <= last));
	snprintf(out, sizeof(out), "%lld..%lld n=%lld", (long long)op.res.from,
	    (long long)op.res.to, n);
	return out;
}

/* message:history as msgcmd_history() builds it (-1: not given). */
static const char *
page(long long before, long long after, int limit, long long last)
{
	return resolve(after >= 0 ? after + 1 : -1, before >= 0 ? before - 1 : -1, limit, 0, last);
}

static void
test_history_newest(void)
{
	CHECK_STR(page(-1, -1, 50, 100), "51..100 n=50");
	CHECK_STR(page(-1, -1, 50, 50), "1..50 n=50");
	CHECK_STR(page(-1, -1, 50, 10), "1..10 n=10");
	CHECK_STR(page(-1, -1, 1, 7), "7..7 n=1");
	/* An empty room. */
	CHECK_STR(page(-1, -1, 50, 0), "1..0 n=0");
}

static void
test_history_before(void)
{
	CHECK_STR(page(60, -1, 10, 100), "50..59 n=10");
	CHECK_STR(page(11, -1, 10, 100), "1..10 n=10");
	CHECK_STR(page(5, -1, 10, 100), "1..4 n=4");
	CHECK_STR(page(2, -1, 10, 100), "1..1 n=1");
	CHECK_STR(page(1, -1, 10, 100), "1..0 n=0");
	/* Before the newest and past it: the newest page. */
	CHECK_STR(page(101, -1, 10, 100), "91..100 n=10");
	CHECK_STR(page(500, -1, 10, 100), "91..100 n=10");
	CHECK_STR(page(500, -1, 10, 0), "1..0 n=0");
}

static void
test_history_after(void)
{
	CHECK_STR(page(-1, 95, 50, 100), "96..100 n=5");
	CHECK_STR(page(-1, 10, 5, 100), "11..15 n=5");
	CHECK_STR(page(-1, 0, 5, 100), "1..5 n=5");
	CHECK_STR(page(-1, 99, 5, 100), "100..100 n=1");
	CHECK_STR(page(-1, 100, 5, 100), "101..100 n=0");
	CHECK_STR(page(-1, 200, 5, 100), "201..100 n=0");
	CHECK_STR(page(-1, 0, 5, 0), "1..0 n=0");
}

/* room:join without since: the newest history_on_join events. */
static void
test_join_newest(void)
{
	CHECK_STR(resolve(-1, -1, 20, 0, 100), "81..100 n=20");
	CHECK_STR(resolve(-1, -1, 20, 0, 3), "1..3 n=3");
	/* history_on_join 0: none. */
	CHECK_STR(resolve(-1, -1, 0, 0, 100), "101..100 n=0");
}

/* room:join with since (and the resync): everything after since, unless
 * more than max_gap are missing. */
static void
test_join_since(void)
{
	CHECK_STR(resolve(91, -1, 1000, 1000, 100), "91..100 n=10");
	CHECK_STR(resolve(1, -1, 1000, 1000, 100), "1..100 n=100");
	/* Exactly max_gap missing: recovered; one more: lost. */
	CHECK_STR(resolve(4001, -1, 1000, 1000, 5000), "4001..5000 n=1000");
	CHECK_STR(resolve(4000, -1, 1000, 1000, 5000), "lost");
	CHECK_STR(resolve(1, -1, 1000, 1000, 5000), "lost");
	/* Up to date, or ahead of the room (Redis lost its counter). */
	CHECK_STR(resolve(101, -1, 1000, 1000, 100), "101..100 n=0");
	CHECK_STR(resolve(500, -1, 1000, 1000, 100), "500..100 n=0");
	/* max_gap 0: no limit, but still at most count. */
	CHECK_STR(resolve(1, -1, 10, 0, 5000), "1..10 n=10");
}

/*
 * A since, after or before as large as the protocol lets through (any
 * integer of 0 or more; cmd_seq_value() makes INT64_MAX one less, so
 * from = since + 1 is at most INT64_MAX): the arithmetic must not
 * overflow (UBSan stops the test if it does).
 */
static void
test_huge_seqs(void)
{
	CHECK_STR(resolve(INT64_MAX, -1, 1000, 1000, 100), "9223372036854775807..100 n=0");
	CHECK_STR(resolve(INT64_MAX, -1, 50, 0, 100), "9223372036854775807..100 n=0");
	CHECK_STR(page(-1, INT64_MAX - 1, 50, 100), "9223372036854775807..100 n=0");
	CHECK_STR(resolve(INT64_MAX - 10, -1, 50, 0, INT64_MAX),
	    "9223372036854775797..9223372036854775807 n=11");
	CHECK_STR(page(INT64_MAX, -1, 10, 100), "91..100 n=10");
	CHECK_STR(resolve(-1, -1, 100, 0, INT64_MAX),
	    "9223372036854775708..9223372036854775807 n=100");
}

int
main(void)
{
	UNIT_RUN(test_history_newest);
	UNIT_RUN(test_history_before);
	UNIT_RUN(test_history_after);
	UNIT_RUN(test_join_newest);
	UNIT_RUN(test_join_since);
	UNIT_RUN(test_huge_seqs);
	return UNIT_DONE();
}
