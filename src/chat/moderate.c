#include "chat/moderate.h"
#include "chat/limit.h"
#include "proto/reply.h"
#include "net/conn.h"
#include "proc/log.h"
#include "store/pg_queue.h"
#include "store/room_log.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One statement per command checks and changes together, so that what was
 * checked is what is changed. Under READ COMMITTED every part of a
 * statement reads one snapshot, taken when it started: two admins demoting
 * each other at once would each count two admins and both succeed. So the
 * rows a check reads are locked first (l: the actor's, the target's and,
 * where the admins are counted, every admin's, in user order so that two
 * statements never wait for each other in a circle). A row that a
 * concurrent statement changed while this one waited is read again, as it
 * now is, and dropped from l when it no longer matches (an admin demoted
 * meanwhile is not counted). An admin made meanwhile is not seen: the
 * count errs towards refusing.
 *
 * Ranks: admin 3, moderator 2, member 1, none (or banned) 0. A tenant
 * admin (token role admin) counts as a moderator in a support room it is
 * not a member of. s says what the checks found; u makes the change when
 * s is 'ok' and returns a row when it did (a concurrent statement may have
 * made it first: then nothing changed).
 *
 * $1 tenant, $2 room, $3 actor, $4 target, $5 the actor is a tenant admin,
 * $6 the command's own (role, the mute's end in ms).
 */
#define MOD__RANK(role) \
	"CASE " role " WHEN 'admin' THEN 3 WHEN 'moderator' THEN 2 WHEN 'member' THEN 1 ELSE 0 END"

#define MOD__HEAD(also_lock) \
"WITH r AS (SELECT kind FROM rooms WHERE tenant = $1 AND id = $2)," \
" l AS (SELECT user_id, role, banned, muted_until FROM room_members" \
"  WHERE tenant = $1 AND room_id = $2 AND (user_id IN ($3, $4)" also_lock ")" \
"  ORDER BY user_id FOR UPDATE)," \
" a AS (SELECT coalesce((SELECT CASE WHEN banned THEN 0 ELSE " MOD__RANK("role") " END" \
"  FROM l WHERE user_id = $3)," \
"  CASE WHEN $5::boolean AND (SELECT kind FROM r) = 'support' THEN 2 ELSE 0 END) AS rank)," \
" t AS (SELECT role, banned, muted_until," \
"  CASE WHEN banned THEN 0 ELSE " MOD__RANK("role") " END AS rank FROM l WHERE user_id = $4),"

#define MOD__ADMINS \
" n AS (SELECT count(*) AS admins FROM l WHERE role = 'admin' AND NOT banned),"

#define MOD__STATUS(cases) \
" s AS (SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM r) THEN 'no_room' " cases \
"  ELSE 'ok' END AS st FROM a LEFT JOIN t ON true),"

#define MOD__TARGET "m.tenant = $1 AND m.room_id = $2 AND m.user_id = $4"
#define MOD__UNTIL "('epoch'::timestamptz + $6::bigint * interval '1 millisecond')"
#define MOD__END " SELECT s.st, EXISTS (SELECT 1 FROM u) FROM s"

static const char add_sql[] =
MOD__HEAD("")
MOD__STATUS("WHEN a.rank < 2 THEN 'forbidden'"
    " WHEN (SELECT kind FROM r) = 'direct' THEN 'direct'"
    " WHEN t.banned THEN 'banned' WHEN t.role IS NOT NULL THEN 'unchanged'")
" u AS (INSERT INTO room_members (tenant, room_id, user_id, role)"
"  SELECT $1, $2, $4, 'member' FROM s WHERE s.st = 'ok'"
"  ON CONFLICT (tenant, room_id, user_id) DO NOTHING RETURNING 1)"
MOD__END;

static const char remove_sql[] =
MOD__HEAD(" OR role = 'admin'") MOD__ADMINS
MOD__STATUS("WHEN $3::text <> $4::text AND a.rank < 2 THEN 'forbidden'"
    " WHEN coalesce(t.rank, 0) = 0 THEN 'no_target'"
    " WHEN $3::text <> $4::text AND t.rank >= a.rank THEN 'forbidden'"
    " WHEN t.role = 'admin' AND (SELECT admins FROM n) <= 1 THEN 'last_admin'")
" u AS (DELETE FROM room_members m USING s WHERE s.st = 'ok' AND " MOD__TARGET
"  AND NOT m.banned RETURNING 1)"
MOD__END;

static const char role_sql[] =
MOD__HEAD(" OR role = 'admin'") MOD__ADMINS
MOD__STATUS("WHEN a.rank < 3 THEN 'forbidden'"
    " WHEN coalesce(t.rank, 0) = 0 THEN 'no_target'"
    " WHEN t.role = $6::text THEN 'unchanged'"
    " WHEN t.role = 'admin' AND (SELECT admins FROM n) <= 1 THEN 'last_admin'")
" u AS (UPDATE room_members m SET role = $6 FROM s WHERE s.st = 'ok' AND " MOD__TARGET
"  AND NOT m.banned AND m.role <> $6 RETURNING 1)"
MOD__END;

static const char mute_sql[] =
MOD__HEAD("")
MOD__STATUS("WHEN a.rank < 2 THEN 'forbidden'"
    " WHEN coalesce(t.rank, 0) = 0 THEN 'no_target'"
    " WHEN t.rank >= a.rank THEN 'forbidden'"
    " WHEN t.muted_until IS NOT DISTINCT FROM " MOD__UNTIL " THEN 'unchanged'")
" u AS (UPDATE room_members m SET muted_until = " MOD__UNTIL " FROM s WHERE s.st = 'ok'"
"  AND " MOD__TARGET " AND NOT m.banned RETURNING 1)"
MOD__END;

static const char unmute_sql[] =
MOD__HEAD("")
MOD__STATUS("WHEN a.rank < 2 THEN 'forbidden'"
    " WHEN coalesce(t.rank, 0) = 0 THEN 'no_target'"
    " WHEN t.rank >= a.rank THEN 'forbidden'"
    " WHEN t.muted_until IS NULL OR t.muted_until <= now() THEN 'unchanged'")
" u AS (UPDATE room_members m SET muted_until = NULL FROM s WHERE s.st = 'ok'"
"  AND " MOD__TARGET " AND NOT m.banned AND m.muted_until > now() RETURNING 1)"
MOD__END;

/* A ban is a row with banned = true (role member), made for a user who was
 * not a member: it is what keeps the user out. */
static const char ban_sql[] =
MOD__HEAD("")
MOD__STATUS("WHEN a.rank < 2 THEN 'forbidden'"
    " WHEN t.banned THEN 'unchanged'"
    " WHEN coalesce(t.rank, 0) >= a.rank THEN 'forbidden'")
" u AS (INSERT INTO room_members AS m (tenant, room_id, user_id, role, banned)"
"  SELECT $1, $2, $4, 'member', true FROM s WHERE s.st = 'ok'"
"  ON CONFLICT (tenant, room_id, user_id) DO UPDATE SET role = 'member', banned = true"
"  WHERE NOT m.banned AND " MOD__RANK("m.role") " < (SELECT rank FROM a) RETURNING 1)"
MOD__END;

/* Unbanned, the user is no member: the row goes (a public room's join
 * makes a new one). */
static const char unban_sql[] =
MOD__HEAD("")
MOD__STATUS("WHEN a.rank < 2 THEN 'forbidden'"
    " WHEN NOT coalesce(t.banned, false) THEN 'no_target'")
" u AS (DELETE FROM room_members m USING s WHERE s.st = 'ok' AND " MOD__TARGET
"  AND m.banned RETURNING 1)"
MOD__END;

/* $1 tenant, $2 room, $3 actor, $4 name or NULL, $5 description or NULL.
 * The room's row is locked so that "unchanged" compares with what is
 * there; the event carries what the update left. */
static const char update_sql[] =
"WITH r AS (SELECT name, description FROM rooms WHERE tenant = $1 AND id = $2"
"  FOR NO KEY UPDATE),"
" a AS (SELECT coalesce((SELECT CASE WHEN banned THEN 0 ELSE " MOD__RANK("role") " END"
"  FROM room_members WHERE tenant = $1 AND room_id = $2 AND user_id = $3), 0) AS rank),"
" s AS (SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM r) THEN 'no_room'"
"  WHEN a.rank < 3 THEN 'forbidden'"
"  WHEN (SELECT name = coalesce($4::text, name) AND description = coalesce($5::text, description)"
"   FROM r) THEN 'unchanged'"
"  ELSE 'ok' END AS st FROM a),"
" u AS (UPDATE rooms SET name = coalesce($4, name), description = coalesce($5, description)"
"  FROM s WHERE s.st = 'ok' AND tenant = $1 AND id = $2 RETURNING name, description)"
" SELECT s.st, EXISTS (SELECT 1 FROM u), (SELECT name FROM u), (SELECT description FROM u)"
" FROM s";

enum mod_op {
	MOD_ADD, MOD_REMOVE, MOD_ROLE, MOD_MUTE, MOD_UNMUTE, MOD_BAN, MOD_UNBAN, MOD_UPDATE
};

struct mod_cmd {
	const char *sql;
	int nparams;
	const char *deny;	/* the forbidden answer's message */
	const char *missing;	/* the not_found answer's, about the target */
};

static const struct mod_cmd mod_cmds[] = {
	[MOD_ADD] = { add_sql, 5, "only a moderator or an admin adds members", NULL },
	[MOD_REMOVE] = { remove_sql, 5, "only a moderator or an admin of higher rank removes"
	    " a member", "is not a member" },
	[MOD_ROLE] = { role_sql, 6, "only an admin changes roles", "is not a member" },
	[MOD_MUTE] = { mute_sql, 6, "only a moderator or an admin of higher rank mutes a member",
	    "is not a member" },
	[MOD_UNMUTE] = { unmute_sql, 5, "only a moderator or an admin of higher rank unmutes"
	    " a member", "is not a member" },
	[MOD_BAN] = { ban_sql, 5, "only a moderator or an admin of higher rank bans a user", NULL },
	[MOD_UNBAN] = { unban_sql, 5, "only a moderator or an admin unbans a user", "is not banned" },
	[MOD_UPDATE] = { update_sql, 5, "only an admin updates a room", NULL },
};

static const char *const member_roles[] = { "admin", "moderator", "member" };

struct mod_req {
	struct reply_req req;
	enum mod_op op;
	char tenant[UTIL_ID_MAX + 1];
	char actor[UTIL_ID_MAX + 1];
	char room[UTIL_ID_MAX + 1];
	char user[UTIL_ID_MAX + 1];	/* the target; "" for room:update */
	int tenant_admin;
	char arg[24];			/* role, or the mute's end in ms */
	long long until_ms;		/* mute */
	char *text[2];			/* owned: ban reason; room:update name, description */
	char *head, *tail, *ptext;	/* owned: the event, the target's room:removed */
};

static void
moderate__free(struct mod_req *mr)
{
	reply_req_done(&mr->req);
	free(mr->text[0]);
	free(mr->text[1]);
	free(mr->head);
	free(mr->tail);
	free(mr->ptext);
	free(mr);
}

/* The ack: {room, user, seq} (room:update: {room, seq}); seq < 0 is null,
 * nothing changed. */
static void
moderate__ack(struct mod_req *mr, long long seq)
{
	json_t *o = json_pack("{s:s}", "room", mr->room);

	if (mr->op != MOD_UPDATE)
		json_object_set_new(o, "user", json_string(mr->user));
	json_object_set_new(o, "seq", seq >= 0 ? json_integer(seq) : json_null());
	reply_ack(mr->req.c, mr->req.idjson, o);
}

/* s as a JSON string (free it). */
static char *
moderate__json_string(const char *s)
{
	json_t *js = json_string(s);
	char *out = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;

	json_decref(js);
	if (out == NULL)
		log_fatal("moderate: cannot encode a string jansson accepted");
	return out;
}

static void
moderate__xasprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
moderate__xasprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	if (n < 0)
		log_fatal("moderate: out of memory");
}

/* member:left, and the room:removed frame for the user who left. */
static void
moderate__left(struct mod_req *mr, const char *reason)
{
	char *note = mr->text[0] ? moderate__json_string(mr->text[0]) : NULL;

	moderate__xasprintf(&mr->head, "{\"type\":\"member:left\",\"room\":\"%s\",\"seq\":", mr->room);
	moderate__xasprintf(&mr->tail, ",\"user\":\"%s\",\"by\":\"%s\",\"reason\":\"%s\"%s%s}",
	    mr->user, mr->actor, reason, note ? ",\"ban_reason\":" : "", note ? note : "");
	moderate__xasprintf(&mr->ptext, "{\"type\":\"room:removed\",\"room\":\"%s\",\"reason\":\"%s\"}",
	    mr->room, reason);
	free(note);
}

/* The event text around its seq, from what the statement left. */
static void
moderate__event(struct mod_req *mr, const PGresult *res)
{
	char *name, *desc, field[64];

	if (mr->op == MOD_UPDATE) {
		name = moderate__json_string(PQgetvalue(res, 0, 2));
		desc = moderate__json_string(PQgetvalue(res, 0, 3));
		moderate__xasprintf(&mr->head, "{\"type\":\"room:updated\",\"room\":\"%s\",\"seq\":",
		    mr->room);
		moderate__xasprintf(&mr->tail, ",\"name\":%s,\"description\":%s,\"by\":\"%s\"}",
		    name, desc, mr->actor);
		free(name);
		free(desc);
		return;
	}
	if (mr->op == MOD_ADD) {
		moderate__xasprintf(&mr->head, "{\"type\":\"member:joined\",\"room\":\"%s\",\"seq\":",
		    mr->room);
		moderate__xasprintf(&mr->tail, ",\"user\":\"%s\",\"role\":\"member\",\"by\":\"%s\"}",
		    mr->user, mr->actor);
		return;
	}
	if (mr->op == MOD_REMOVE || mr->op == MOD_BAN) {
		moderate__left(mr, mr->op == MOD_BAN ? "banned" :
		    strcmp(mr->user, mr->actor) == 0 ? "left" : "removed");
		return;
	}
	if (mr->op == MOD_ROLE)
		snprintf(field, sizeof(field), "\"role\":\"%s\"", mr->arg);
	else if (mr->op == MOD_MUTE)
		snprintf(field, sizeof(field), "\"muted_until\":%lld", mr->until_ms);
	else if (mr->op == MOD_UNMUTE)
		snprintf(field, sizeof(field), "\"muted_until\":null");
	else
		snprintf(field, sizeof(field), "\"banned\":false");
	moderate__xasprintf(&mr->head, "{\"type\":\"member:updated\",\"room\":\"%s\",\"seq\":",
	    mr->room);
	moderate__xasprintf(&mr->tail, ",\"user\":\"%s\",\"by\":\"%s\",%s}", mr->user, mr->actor,
	    field);
}

static void
moderate__appended(void *arg, const struct rlog_result *r)
{
	struct mod_req *mr = arg;

	if (r->st == RLOG_OK)
		moderate__ack(mr, r->seq);
	else
		reply_error(mr->req.c, mr->req.idjson, "unavailable",
		    "changed, but its event could not be written (%s); retry",
		    r->st == RLOG_NO_DB ? "database unavailable" : "message bus unavailable");
	moderate__free(mr);
}

/* The statement's status: an answer, or (st "ok") the event to append. */
static void
moderate__changed(const PGresult *res, void *arg)
{
	struct mod_req *mr = arg;
	struct conn *c = mr->req.c;
	const char *idjson = mr->req.idjson, *st;
	int removed;

	if (!pgq_ok(res) || PQntuples(res) != 1) {
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
		goto done;
	}
	st = PQgetvalue(res, 0, 0);
	if (strcmp(st, "no_room") == 0) {
		reply_error(c, idjson, "not_found", "no room \"%s\"", mr->room);
	} else if (strcmp(st, "forbidden") == 0) {
		reply_error(c, idjson, "forbidden", "%s", mod_cmds[mr->op].deny);
	} else if (strcmp(st, "direct") == 0) {
		reply_error(c, idjson, "forbidden", "members are not added to a direct room");
	} else if (strcmp(st, "banned") == 0) {
		reply_error(c, idjson, "conflict", "user \"%s\" is banned from room \"%s\"",
		    mr->user, mr->room);
	} else if (strcmp(st, "no_target") == 0) {
		reply_error(c, idjson, "not_found", "user \"%s\" %s in room \"%s\"", mr->user,
		    mod_cmds[mr->op].missing, mr->room);
	} else if (strcmp(st, "last_admin") == 0) {
		reply_error(c, idjson, "conflict", "user \"%s\" is the last admin of room \"%s\"",
		    mr->user, mr->room);
	} else if (strcmp(st, "ok") == 0 && PQgetvalue(res, 0, 1)[0] == 't') {
		moderate__event(mr, res);
		removed = mr->op == MOD_REMOVE || mr->op == MOD_BAN;
		rlog_event(mr->tenant, mr->room, mr->head, mr->tail, removed ? mr->user : NULL,
		    removed ? mr->ptext : NULL, moderate__appended, mr);
		return;
	} else {
		/* unchanged, or a concurrent statement made the change first */
		moderate__ack(mr, -1);
	}
done:
	moderate__free(mr);
}

static void
moderate__limited(void *arg, long long retry_ms)
{
	struct mod_req *mr = arg;
	const char *params[6];
	int n = mod_cmds[mr->op].nparams;

	if (limit_refused(mr->req.c, mr->req.idjson, retry_ms, "membership changes"))
		goto fail;
	params[0] = mr->tenant;
	params[1] = mr->room;
	params[2] = mr->actor;
	if (mr->op == MOD_UPDATE) {
		params[3] = mr->text[0];
		params[4] = mr->text[1];
	} else {
		params[3] = mr->user;
		params[4] = mr->tenant_admin ? "true" : "false";
		params[5] = mr->arg;
	}
	if (pgq_exec(srv.pg, mod_cmds[mr->op].sql, n, params, moderate__changed, mr) == 0)
		return;
	reply_error(mr->req.c, mr->req.idjson, "unavailable", "database unavailable; retry");
fail:
	moderate__free(mr);
}

static struct mod_req *
moderate__new(struct conn *c, const char *idjson, json_t *msg, enum mod_op op)
{
	struct mod_req *mr = xcalloc(1, sizeof(*mr));
	const char *user = json_string_value(json_object_get(msg, "user"));

	mr->op = op;
	snprintf(mr->tenant, sizeof(mr->tenant), "%s", c->id.tenant);
	snprintf(mr->actor, sizeof(mr->actor), "%s", c->id.user);
	snprintf(mr->room, sizeof(mr->room), "%s", json_string_value(json_object_get(msg, "room")));
	snprintf(mr->user, sizeof(mr->user), "%s", user ? user : "");
	mr->tenant_admin = c->id.admin;
	reply_req_init(&mr->req, c, idjson);
	return mr;
}

/* After the fields: the user's bucket, then the statement. */
static void
moderate__start(struct mod_req *mr)
{
	limit_take(mr->tenant, mr->actor, LIMIT_MEMBER, moderate__limited, mr);
}

void
moderate_member_add(struct conn *c, const char *idjson, json_t *msg)
{
	moderate__start(moderate__new(c, idjson, msg, MOD_ADD));
}

void
moderate_member_remove(struct conn *c, const char *idjson, json_t *msg)
{
	moderate__start(moderate__new(c, idjson, msg, MOD_REMOVE));
}

void
moderate_member_role(struct conn *c, const char *idjson, json_t *msg)
{
	const char *role = json_string_value(json_object_get(msg, "role"));
	struct mod_req *mr;
	int known = 0;

	/* The table checks role's form; which roles exist is this module's. */
	for (size_t i = 0; i < sizeof(member_roles) / sizeof(member_roles[0]); i++)
		known |= strcmp(role, member_roles[i]) == 0;
	if (!known) {
		reply_error(c, idjson, "bad_request", "field \"role\" must be admin, moderator or member");
		return;
	}
	mr = moderate__new(c, idjson, msg, MOD_ROLE);
	snprintf(mr->arg, sizeof(mr->arg), "%s", role);
	moderate__start(mr);
}

void
moderate_member_mute(struct conn *c, const char *idjson, json_t *msg)
{
	json_t *until = json_object_get(msg, "until");
	long long ms = MODERATE_MUTE_FOREVER_MS;
	struct mod_req *mr;

	if (until != NULL && !json_is_null(until)) {
		ms = (long long)json_integer_value(until);
		if (ms <= util_now_ms() || ms > MODERATE_MUTE_FOREVER_MS) {
			reply_error(c, idjson, "bad_request", "field \"until\" must be a time to come"
			    " (ms since the epoch, at most %lld)", MODERATE_MUTE_FOREVER_MS);
			return;
		}
	}
	mr = moderate__new(c, idjson, msg, MOD_MUTE);
	mr->until_ms = ms;
	snprintf(mr->arg, sizeof(mr->arg), "%lld", ms);
	moderate__start(mr);
}

void
moderate_member_unmute(struct conn *c, const char *idjson, json_t *msg)
{
	moderate__start(moderate__new(c, idjson, msg, MOD_UNMUTE));
}

void
moderate_member_ban(struct conn *c, const char *idjson, json_t *msg)
{
	const char *reason = json_string_value(json_object_get(msg, "reason"));
	struct mod_req *mr = moderate__new(c, idjson, msg, MOD_BAN);

	mr->text[0] = reason ? xstrdup(reason) : NULL;
	moderate__start(mr);
}

void
moderate_member_unban(struct conn *c, const char *idjson, json_t *msg)
{
	moderate__start(moderate__new(c, idjson, msg, MOD_UNBAN));
}

void
moderate_room_update(struct conn *c, const char *idjson, json_t *msg)
{
	const char *name = json_string_value(json_object_get(msg, "name"));
	const char *desc = json_string_value(json_object_get(msg, "description"));
	struct mod_req *mr;

	if (name == NULL && desc == NULL) {
		reply_error(c, idjson, "bad_request", "give \"name\", \"description\" or both");
		return;
	}
	mr = moderate__new(c, idjson, msg, MOD_UPDATE);
	mr->text[0] = name ? xstrdup(name) : NULL;
	mr->text[1] = desc ? xstrdup(desc) : NULL;
	moderate__start(mr);
}
