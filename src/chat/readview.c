#include "chat/readview.h"
#include "net/conn.h"
#include "proto/proto.h"
#include "proto/reply.h"
#include "proc/srv.h"
#include "store/pg_queue.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

struct readview_req {
	struct reply_req req;
	char *room;		/* owned, or NULL */
	char *target;		/* owned, or NULL */
	char *forbidden_why;	/* owned, or NULL */
	char *denied_code;	/* owned */
	char *denied_why;	/* owned, or NULL */
	void (*answer)(struct conn *c, const char *idjson, const char *obj);
};

static char *
readview__dup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
readview__free(struct readview_req *rr)
{
	reply_req_done(&rr->req);
	free(rr->room);
	free(rr->target);
	free(rr->forbidden_why);
	free(rr->denied_code);
	free(rr->denied_why);
	free(rr);
}

void
readview_ack(struct conn *c, const char *idjson, const char *obj)
{
	size_t len = strlen(obj);
	char *inner;

	/* An object with at least one field: the ack's fields follow "id". */
	if (len < 3 || obj[0] != '{' || obj[len - 1] != '}') {
		reply_error(c, idjson, "internal", "a read built no answer");
		return;
	}
	inner = xstrdup(obj + 1);
	inner[len - 2] = '\0';
	reply_ack_raw(c, idjson, inner);
	free(inner);
}

static void
readview__done(const PGresult *res, void *arg)
{
	struct readview_req *rr = arg;
	struct conn *c = rr->req.c;
	const char *idjson = rr->req.idjson;

	if (!pgq_ok(res))
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
	else if (PQnfields(res) != 3 || PQntuples(res) > 1)
		reply_error(c, idjson, "internal", "a read's answer has the wrong shape");
	else if (PQntuples(res) == 0)
		reply_error(c, idjson, "not_found", "no room \"%s\"", rr->room ? rr->room : "");
	else if (PQgetvalue(res, 0, 0)[0] != 't' && rr->forbidden_why != NULL)
		reply_error(c, idjson, "forbidden", "%s", rr->forbidden_why);
	else if (PQgetvalue(res, 0, 0)[0] != 't')
		reply_error(c, idjson, "forbidden", "not a reader of room \"%s\"",
		    rr->room ? rr->room : "");
	else if (PQgetisnull(res, 0, 1))
		reply_error(c, idjson, "not_found", "no %s in room \"%s\"",
		    rr->target ? rr->target : "such thing", rr->room ? rr->room : "");
	else if (PQgetvalue(res, 0, 1)[0] != 't')
		reply_error(c, idjson, rr->denied_code, "%s",
		    rr->denied_why ? rr->denied_why : "not allowed");
	else if (PQgetisnull(res, 0, 2))
		reply_error(c, idjson, "internal", "a read built no answer");
	else
		rr->answer(c, idjson, PQgetvalue(res, 0, 2));
	readview__free(rr);
}

void
readview_run(struct conn *c, const char *idjson, const struct readview_query *q)
{
	struct readview_req *rr = xcalloc(1, sizeof(*rr));

	reply_req_init(&rr->req, c, idjson);
	rr->room = readview__dup(q->room);
	rr->target = readview__dup(q->target);
	rr->forbidden_why = readview__dup(q->forbidden_why);
	rr->denied_code = xstrdup(q->denied_code ? q->denied_code : "forbidden");
	rr->denied_why = readview__dup(q->denied_why);
	rr->answer = q->answer != NULL ? q->answer : readview_ack;
	if (pgq_exec(srv.pg, q->sql, q->nparams, q->params, readview__done, rr) != 0) {
		reply_error(c, idjson, "unavailable", "database unavailable; retry");
		readview__free(rr);
	}
}

int
readview_limit(json_t *msg, const char *field, int dflt)
{
	long long v = proto_seq(json_object_get(msg, field));

	return v < 1 ? dflt : (int)v;
}

const char *
readview_admin(const struct conn *c)
{
	return c->id.admin ? "true" : "false";
}
