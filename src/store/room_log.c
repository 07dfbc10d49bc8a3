#include "store/room_log.h"
#include "store/redis.h"
#include "store/redis_link.h"
#include "store/pg_queue.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * act.lua (store/redis.c loads it). KEYS: 1 sync stream, 2 the room's
 * counter, 3 its stream, 4 the message's state, 5 the room's deleted set.
 * ARGV: 1 op (event, edit, delete, react), 2 maxlen, 3 stream ttl,
 * 4 channel, 5 seq floor or "", 6 tenant, 7 room, 8 ts, 9 state ttl,
 * 10 seed ("", "pg", "stream"), 11.. the op's (below), 17.. the seed from
 * PostgreSQL: author, seq, deleted (0/1), edits, then user, emoji pairs.
 *   event   11 head, 12 tail, 13 personal channel or "", 14 its message
 *   edit    11 msg id, 12 user, 13 body (JSON)
 *   delete  11 msg id, 12 by, 13 privileged (0/1)
 *   react   11 msg id, 12 user, 13 emoji (JSON), 14 emoji, 15 add (0/1),
 *           16 most distinct emoji
 *   peek    11 msg id, 12 scan (0/1): {-7} when the message is deleted; else
 *           scan 0 -> {3, 0, 0, 0, 0, ""}; scan 1 -> its message:new in the
 *           stream, {3, seq, 0, 0, 0, its reply_to or "", its author}, or {-7}
 * Returns {1, seq, ts, count, edits} appended, {2, 0, ts, count, 0}
 * unchanged, {-1} no counter and no floor, {-6} no state and no seed,
 * {-7} no such message (or deleted), {-8} not the author, {-10} too many
 * emoji.
 */

/* A message's state stays in Redis this long after its last use. */
#define RLOG_STATE_TTL_S 86400
#define RLOG_MAX_EMOJI 20
#define RLOG_ARGS 16

enum rlog_op { OP_EVENT, OP_EDIT, OP_DELETE, OP_REACT, OP_PEEK };
static const char *const op_names[] = { "event", "edit", "delete", "react", "peek" };

struct rlog_req {
	enum rlog_op op;
	char tenant[UTIL_ID_MAX + 1];
	char room[UTIL_ID_MAX + 1];
	char msg_id[UTIL_ID_MAX + 1];
	char *args[RLOG_ARGS + 1];	/* ARGV 11.. of the op; owned */
	int nargs;
	char floor[24];			/* "" until PostgreSQL's max was read */
	const char *seed;		/* "", "pg", "stream" */
	char **seedv;			/* ARGV 17..; owned */
	int nseed;
	rlog_cb *cb;
	void *arg;
};

static const char max_seq_sql[] =
"SELECT coalesce(max(seq), 0) FROM room_events WHERE tenant = $1 AND room_id = $2";

static const char state_sql[] =
"SELECT user_id, seq, deleted_at IS NOT NULL, edits,"
" (SELECT string_agg(r.user_id || ' ' || r.emoji, E'\\n') FROM message_reactions r"
"  WHERE r.tenant = m.tenant AND r.room_id = m.room_id AND r.msg_id = m.id AND r.present)"
" FROM messages m WHERE tenant = $1 AND room_id = $2 AND id = $3";

static void rlog__call(struct rlog_req *q);

static void
rlog__free(struct rlog_req *q)
{
	for (int i = 0; i < q->nargs; i++)
		free(q->args[i]);
	for (int i = 0; i < q->nseed; i++)
		free(q->seedv[i]);
	free(q->seedv);
	free(q);
}

static void
rlog__finish(struct rlog_req *q, enum rlog_status st, const redisReply *r)
{
	struct rlog_result res = { st, 0, 0, 0, 0, "", "" };

	if (r != NULL && r->elements >= 5) {
		res.seq = r->element[1]->integer;
		res.ts = r->element[2]->integer;
		res.count = r->element[3]->integer;
		res.edits = r->element[4]->integer;
	}
	if (r != NULL && r->elements >= 6 && r->element[5]->type == REDIS_REPLY_STRING)
		res.reply_to = r->element[5]->str;
	if (r != NULL && r->elements >= 7 && r->element[6]->type == REDIS_REPLY_STRING)
		res.user = r->element[6]->str;
	q->cb(q->arg, &res);
	rlog__free(q);
}

static void
rlog__floor(const PGresult *res, void *arg)
{
	struct rlog_req *q = arg;

	if (!pgq_ok(res) || PQntuples(res) != 1) {
		rlog__finish(q, RLOG_NO_DB, NULL);
		return;
	}
	snprintf(q->floor, sizeof(q->floor), "%s", PQgetvalue(res, 0, 0));
	rlog__call(q);
}

static void
rlog__seeded(const PGresult *res, void *arg)
{
	struct rlog_req *q = arg;
	const char *rx;

	if (!pgq_ok(res)) {
		rlog__finish(q, RLOG_NO_DB, NULL);
		return;
	}
	if (PQntuples(res) == 0) {
		/* Sent moments ago: the script looks in the room stream. */
		q->seed = "stream";
		rlog__call(q);
		return;
	}
	q->seed = "pg";
	q->seedv = xcalloc(4, sizeof(char *));
	q->seedv[q->nseed++] = xstrdup(PQgetvalue(res, 0, 0));
	q->seedv[q->nseed++] = xstrdup(PQgetvalue(res, 0, 1));
	q->seedv[q->nseed++] = xstrdup(PQgetvalue(res, 0, 2)[0] == 't' ? "1" : "0");
	q->seedv[q->nseed++] = xstrdup(PQgetvalue(res, 0, 3));
	rx = PQgetisnull(res, 0, 4) ? "" : PQgetvalue(res, 0, 4);
	/* "user emoji" lines: user ids have no space, emoji none either. */
	while (*rx != '\0') {
		const char *nl = strchr(rx, '\n'), *end = nl ? nl : rx + strlen(rx);
		const char *sp = memchr(rx, ' ', (size_t)(end - rx));

		if (sp != NULL) {
			q->seedv = xrealloc(q->seedv, (size_t)(q->nseed + 2) * sizeof(char *));
			q->seedv[q->nseed++] = xstrndup(rx, (size_t)(sp - rx));
			q->seedv[q->nseed++] = xstrndup(sp + 1, (size_t)(end - sp - 1));
		}
		rx = nl ? nl + 1 : end;
	}
	rlog__call(q);
}

static void
rlog__answered(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct rlog_req *q = priv;
	const char *params[3] = { q->tenant, q->room, q->msg_id };

	(void)ac;
	if (rlink_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR) {
			log_warn("act script failed: %s", r->str);
			if (strncmp(r->str, "NOSCRIPT", 8) == 0)
				redis_scripts_missing();
		}
		rlog__finish(q, RLOG_NO_BUS, NULL);
		return;
	}
	switch (r->element[0]->integer) {
	case 1:
		rlog__finish(q, RLOG_OK, r);
		return;
	case 2:
		rlog__finish(q, RLOG_UNCHANGED, r);
		return;
	case 3:
		rlog__finish(q, RLOG_OK, r);
		return;
	case -1:
		if (q->floor[0] == '\0' &&
		    pgq_exec(srv.pg, max_seq_sql, 2, params, rlog__floor, q) == 0)
			return;
		rlog__finish(q, RLOG_NO_DB, NULL);
		return;
	case -6:
		if (q->seed[0] == '\0' &&
		    pgq_exec(srv.pg, state_sql, 3, params, rlog__seeded, q) == 0)
			return;
		rlog__finish(q, RLOG_NO_DB, NULL);
		return;
	case -7:
		rlog__finish(q, RLOG_NOT_FOUND, NULL);
		return;
	case -8:
		rlog__finish(q, RLOG_FORBIDDEN, NULL);
		return;
	case -10:
		rlog__finish(q, RLOG_TOO_MANY, NULL);
		return;
	default:
		rlog__finish(q, RLOG_NO_BUS, NULL);
	}
}

static void
rlog__call(struct rlog_req *q)
{
	char kseq[200], kstream[200], kstate[300], kdel[200], channel[200];
	char maxlen[16], ttl[16], ts[24], sttl[16];
	const char *argv[5 + 5 + 10 + RLOG_ARGS];
	int argc = 0, n = 0;

	if (!redis_ready()) {
		rlog__finish(q, RLOG_NO_BUS, NULL);
		return;
	}
	redis_key(kseq, sizeof(kseq), q->tenant, q->room, "seq");
	redis_key(kstream, sizeof(kstream), q->tenant, q->room, "stream");
	redis_msg_key(kstate, sizeof(kstate), q->tenant, q->room, q->msg_id);
	redis_key(kdel, sizeof(kdel), q->tenant, q->room, "deleted");
	redis_channel(channel, sizeof(channel), q->tenant, q->room);
	snprintf(maxlen, sizeof(maxlen), "%d", srv.cfg->stream_maxlen);
	snprintf(ttl, sizeof(ttl), "%d", srv.cfg->stream_ttl_s);
	snprintf(ts, sizeof(ts), "%lld", (long long)util_now_ms());
	snprintf(sttl, sizeof(sttl), "%d", RLOG_STATE_TTL_S);
	argv[argc++] = "EVALSHA";
	argv[argc++] = redis_act_sha();
	argv[argc++] = "5";
	argv[argc++] = REDIS_SYNC_STREAM;
	argv[argc++] = kseq;
	argv[argc++] = kstream;
	argv[argc++] = kstate;
	argv[argc++] = kdel;
	argv[argc++] = op_names[q->op];
	argv[argc++] = maxlen;
	argv[argc++] = ttl;
	argv[argc++] = channel;
	argv[argc++] = q->floor;
	argv[argc++] = q->tenant;
	argv[argc++] = q->room;
	argv[argc++] = ts;
	argv[argc++] = sttl;
	argv[argc++] = q->seed;
	for (; n < 6; n++)
		argv[argc++] = n < q->nargs ? q->args[n] : "";
	{
		const char **all = xcalloc((size_t)(argc + q->nseed), sizeof(char *));

		memcpy(all, argv, (size_t)argc * sizeof(char *));
		for (int i = 0; i < q->nseed; i++)
			all[argc + i] = q->seedv[i];
		if (rlink_cmdargv(srv.rcmd, rlog__answered, q, argc + q->nseed, all, NULL) != 0) {
			free(all);
			rlog__finish(q, RLOG_NO_BUS, NULL);
			return;
		}
		free(all);
	}
}

static struct rlog_req *
rlog__new(enum rlog_op op, const char *tenant, const char *room, const char *msg_id,
    rlog_cb *cb, void *arg)
{
	struct rlog_req *q = xcalloc(1, sizeof(*q));

	q->op = op;
	snprintf(q->tenant, sizeof(q->tenant), "%s", tenant);
	snprintf(q->room, sizeof(q->room), "%s", room);
	snprintf(q->msg_id, sizeof(q->msg_id), "%s", msg_id ? msg_id : "");
	q->seed = "";
	q->cb = cb;
	q->arg = arg;
	return q;
}

static void
rlog__arg(struct rlog_req *q, const char *v)
{
	q->args[q->nargs++] = xstrdup(v ? v : "");
}

void
rlog_event(const char *tenant, const char *room, const char *head, const char *tail,
    const char *puser, const char *ptext, rlog_cb *cb, void *arg)
{
	struct rlog_req *q = rlog__new(OP_EVENT, tenant, room, NULL, cb, arg);
	char *personal = NULL;

	rlog__arg(q, head);
	rlog__arg(q, tail);
	if (puser != NULL && asprintf(&personal, "%s\n%s\n%s", tenant, puser, ptext) < 0)
		log_fatal("room_log: out of memory");
	rlog__arg(q, puser ? REDIS_PERSONAL_CHANNEL : "");
	rlog__arg(q, personal);
	free(personal);
	rlog__call(q);
}

void
rlog_edit(const char *tenant, const char *room, const char *msg_id, const char *user,
    const char *body_json, rlog_cb *cb, void *arg)
{
	struct rlog_req *q = rlog__new(OP_EDIT, tenant, room, msg_id, cb, arg);

	rlog__arg(q, msg_id);
	rlog__arg(q, user);
	rlog__arg(q, body_json);
	rlog__call(q);
}

void
rlog_delete(const char *tenant, const char *room, const char *msg_id, const char *by,
    int privileged, rlog_cb *cb, void *arg)
{
	struct rlog_req *q = rlog__new(OP_DELETE, tenant, room, msg_id, cb, arg);

	rlog__arg(q, msg_id);
	rlog__arg(q, by);
	rlog__arg(q, privileged ? "1" : "0");
	rlog__call(q);
}

void
rlog_react(const char *tenant, const char *room, const char *msg_id, const char *user,
    const char *emoji, int add, rlog_cb *cb, void *arg)
{
	struct rlog_req *q = rlog__new(OP_REACT, tenant, room, msg_id, cb, arg);
	json_t *js = json_string(emoji);
	char *ej = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	char max[16];

	json_decref(js);
	if (ej == NULL)
		log_fatal("room_log: cannot encode an emoji");
	snprintf(max, sizeof(max), "%d", RLOG_MAX_EMOJI);
	rlog__arg(q, msg_id);
	rlog__arg(q, user);
	rlog__arg(q, ej);
	rlog__arg(q, emoji);
	rlog__arg(q, add ? "1" : "0");
	rlog__arg(q, max);
	free(ej);
	rlog__call(q);
}

void
rlog_peek(const char *tenant, const char *room, const char *msg_id, int scan, rlog_cb *cb,
    void *arg)
{
	struct rlog_req *q = rlog__new(OP_PEEK, tenant, room, msg_id, cb, arg);

	rlog__arg(q, msg_id);
	rlog__arg(q, scan ? "1" : "0");
	rlog__call(q);
}
