#include "chat/roomcmd.h"
#include "store/redis.h"
#include "proto/reply.h"
#include "store/redis_link.h"
#include "net/conn.h"
#include "proc/log.h"
#include "store/pg_queue.h"
#include "chat/room.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

static const char create_sql[] =
"WITH r AS ("
"  INSERT INTO rooms (tenant, id, name, kind, private, description, created_by, direct_key)"
"  VALUES ($1, $2, $3, $4, $5::boolean, $6, $7, $8) ON CONFLICT DO NOTHING"
"  RETURNING id, name, kind, private, description),"
" m AS ("
"  INSERT INTO room_members (tenant, room_id, user_id, role)"
"  SELECT $1, r.id, u.user_id, CASE WHEN u.user_id = $7 THEN 'admin' ELSE 'member' END"
"  FROM r, (SELECT DISTINCT unnest($9::text[] || ARRAY[$7]) AS user_id) AS u"
"  ON CONFLICT DO NOTHING)"
"SELECT id, name, kind, private, description, true FROM r"
" UNION ALL"
" SELECT id, name, kind, private, description, false FROM rooms"
" WHERE tenant = $1 AND NOT EXISTS (SELECT 1 FROM r)"
" AND (($8::text IS NOT NULL AND direct_key = $8) OR ($8::text IS NULL AND id = $2))";

static const char *const room_kinds[] = { "group", "direct", "support", "broadcast" };

struct create_req {
	struct reply_req req;
	int direct;
};

static void
roomcmd__created(const PGresult *res, void *arg)
{
	struct create_req *cr = arg;
	struct conn *c = cr->req.c;
	const char *idjson = cr->req.idjson;

	if (!pgq_ok(res)) {
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
	} else if (PQntuples(res) == 0) {
		reply_error(c, idjson, "internal", "room not created");
	} else if (strcmp(PQgetvalue(res, 0, 5), "f") == 0 && !cr->direct) {
		reply_error(c, idjson, "conflict", "a room with id \"%s\" exists", PQgetvalue(res, 0, 0));
	} else {
		if (PQgetvalue(res, 0, 5)[0] == 't') {
			/* A new room's log starts at 0: its first message need not
			 * ask PostgreSQL for a seq floor. NX: never over a live one. */
			char key[200];

			redis_key(key, sizeof(key), c->id.tenant, PQgetvalue(res, 0, 0), "seq");
			rlink_cmd(srv.rcmd, NULL, NULL, "SET %s 0 NX", key);
		}
		reply_ack(c, idjson, json_pack("{s:{s:s, s:s, s:s, s:b, s:s}, s:b}",
		    "room", "id", PQgetvalue(res, 0, 0), "name", PQgetvalue(res, 0, 1),
		    "kind", PQgetvalue(res, 0, 2), "private", PQgetvalue(res, 0, 3)[0] == 't',
		    "description", PQgetvalue(res, 0, 4),
		    "created", PQgetvalue(res, 0, 5)[0] == 't'));
	}
	reply_req_done(&cr->req);
	free(cr);
}

/* members as a PostgreSQL text[] literal; ids need no quoting. *n counts
 * the members other than the creator, *first is the first of them. */
static char *
roomcmd__members(struct conn *c, json_t *arr, int *n, const char **first)
{
	size_t i, len = 1, cap = json_array_size(arr) * (UTIL_ID_MAX + 1) + 3;
	char *lit = xmalloc(cap);
	json_t *v;

	*n = 0;
	*first = NULL;
	lit[0] = '{';
	json_array_foreach(arr, i, v) {
		const char *u = json_string_value(v);

		if (strcmp(u, c->id.user) != 0) {
			if (*first == NULL)
				*first = u;
			(*n)++;
		}
		len += (size_t)snprintf(lit + len, cap - len, "%s%s", len > 1 ? "," : "", u);
	}
	snprintf(lit + len, cap - len, "}");
	return lit;
}

void
roomcmd_create(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room_id = json_string_value(json_object_get(msg, "room"));
	const char *name = json_string_value(json_object_get(msg, "name"));
	const char *kind = json_string_value(json_object_get(msg, "kind"));
	const char *desc = json_string_value(json_object_get(msg, "description"));
	const char *other;
	char gen[23], direct_key[2 * UTIL_ID_MAX + 2], *members;
	const char *params[9];
	struct create_req *cr;
	int nothers, is_private = json_is_true(json_object_get(msg, "private")), known = 0;

	/* The table checks kind's form; which kinds of room exist, and what
	 * each means, is this module's to say. */
	if (kind == NULL)
		kind = "group";
	for (size_t i = 0; i < sizeof(room_kinds) / sizeof(room_kinds[0]); i++)
		known |= strcmp(kind, room_kinds[i]) == 0;
	if (!known) {
		reply_error(c, idjson, "bad_request", "kind must be group, direct, support or broadcast");
		return;
	}
	members = roomcmd__members(c, json_object_get(msg, "members"), &nothers, &other);
	cr = xcalloc(1, sizeof(*cr));
	cr->direct = strcmp(kind, "direct") == 0;
	if (cr->direct) {
		if (nothers != 1) {
			reply_error(c, idjson, "bad_request", "a direct room has exactly one other member");
			goto fail;
		}
		/* The pair, sorted, finds the same room again. */
		if (strcmp(c->id.user, other) < 0)
			snprintf(direct_key, sizeof(direct_key), "%s|%s", c->id.user, other);
		else
			snprintf(direct_key, sizeof(direct_key), "%s|%s", other, c->id.user);
		is_private = 1;
	}
	/* A support room is between its requester and the tenant's admins. */
	if (strcmp(kind, "support") == 0)
		is_private = 1;
	if (room_id == NULL) {
		util_random_id(gen);
		room_id = gen;
	}
	params[0] = c->id.tenant;
	params[1] = room_id;
	params[2] = name;
	params[3] = kind;
	params[4] = is_private ? "true" : "false";
	params[5] = desc ? desc : "";
	params[6] = c->id.user;
	params[7] = cr->direct ? direct_key : NULL;
	params[8] = members;
	reply_req_init(&cr->req, c, idjson);
	if (pgq_exec(srv.pg, create_sql, 9, params, roomcmd__created, cr) != 0) {
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
		reply_req_done(&cr->req);
		goto fail;
	}
	free(members);
	return;
fail:
	free(members);
	free(cr);
}

void
roomcmd_leave(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room_id = json_string_value(json_object_get(msg, "room"));
	struct sub *s = conn_find_sub(c, room_id);

	if (s == NULL) {
		reply_error(c, idjson, "not_found", "not joined to room \"%s\"", room_id);
		return;
	}
	room_detach(s);
	reply_ack(c, idjson, json_pack("{s:s}", "room", room_id));
}
