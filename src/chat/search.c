#include "chat/search.h"
#include "chat/limit.h"
#include "chat/readview.h"
#include "net/conn.h"
#include "proto/reply.h"
#include "lib/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEARCH_PAGE 20

/*
 * message:search. $1 tenant, $2 user, $3 admin, $4 q, $5 room (NULL: every
 * room the user reads), $6..$9 the cursor (rank, ts_ms, room, seq; NULL:
 * the first page), $10 limit.
 *
 * q is read by websearch_to_tsquery('english'): words (stemmed), "a
 * phrase", -word, or. A q with no word left once stop words are dropped
 * matches nothing, and is not even given to websearch_to_tsquery (which
 * would send a NOTICE for it). The GIN index on messages.search finds the
 * matches; deleted messages, other tenants and rooms the user does not
 * read are left out. Every match is ranked (a common word costs in
 * proportion to its matches in the tenant), sorted as narrow rows, and
 * only the page's rows are read whole. Results go by ts_rank, best first,
 * then newest first, then by room and seq (each result has its own place
 * in this order): `next` is the last result's place, and the next page
 * starts after it, so a result never comes twice. The headline is HTML:
 * the body with &, < and > escaped, the matches in <b>...</b>, computed
 * for the page only.
 */
static const char search_sql[] =
"WITH tq AS (SELECT CASE WHEN to_tsvector('english', $4::text) = ''::tsvector THEN NULL"
"  ELSE websearch_to_tsquery('english', $4::text) END AS q),"
" st AS (SELECT r.id, " READVIEW_READER("$3::boolean") " AS reader"
"  FROM rooms r LEFT JOIN room_members mb ON mb.tenant = r.tenant AND mb.room_id = r.id"
"   AND mb.user_id = $2"
"  WHERE r.tenant = $1 AND ($5::text IS NULL OR r.id = $5::text)),"
" hits AS (SELECT m.room_id, m.seq, ts_rank(m.search, tq.q) AS rank,"
"   " READVIEW_MS("m.ts") " AS ts_ms"
"  FROM messages m, tq WHERE tq.q IS NOT NULL AND m.tenant = $1"
"   AND m.room_id IN (SELECT id FROM st WHERE reader)"
"   AND m.deleted_at IS NULL AND m.search @@ tq.q),"
" p AS (SELECT * FROM hits WHERE $6::real IS NULL"
"   OR (rank, ts_ms, room_id, seq) < ($6::real, $7::bigint, $8::text, $9::bigint)"
"  ORDER BY rank DESC, ts_ms DESC, room_id DESC, seq DESC LIMIT $10::int + 1),"
" n AS (SELECT m.*, p.rank, p.ts_ms, row_number() OVER (ORDER BY p.rank DESC, p.ts_ms DESC,"
"   p.room_id DESC, p.seq DESC) AS rn"
"  FROM p JOIN messages m ON m.tenant = $1 AND m.room_id = p.room_id AND m.seq = p.seq)"
" SELECT CASE WHEN $5::text IS NULL THEN true ELSE (SELECT bool_or(reader) FROM st) END, true,"
"  (SELECT jsonb_build_object('messages', coalesce(jsonb_agg(jsonb_build_object("
"     'room', n.room_id, 'rank', n.rank,"
"     'headline', ts_headline('english', replace(replace(replace(n.body, '&', '&amp;'),"
"       '<', '&lt;'), '>', '&gt;'), tq.q, 'StartSel=<b>, StopSel=</b>'),"
"     'msg', " READVIEW_MSG("n") ") ORDER BY n.rn) FILTER (WHERE n.rn <= $10::int), '[]'::jsonb),"
"    'has_more', count(*) > $10::int,"
"    'next', max(n.rank::text || ':' || n.ts_ms || ':' || n.seq || ':' || n.room_id)"
"     FILTER (WHERE n.rn = $10::int AND n.rn < (SELECT count(*) FROM p)))"
"   FROM n, tq)::text"
" WHERE $5::text IS NULL OR EXISTS (SELECT 1 FROM st)";

struct search_req {
	struct reply_req req;
	char *q;			/* owned */
	char room[UTIL_ID_MAX + 1];	/* "" when every readable room */
	char rank[32], ts[24], seq[24];	/* the cursor; rank "" on the first page */
	char croom[UTIL_ID_MAX + 1];
	char limit[16];
};

static void
search__free(struct search_req *sr)
{
	reply_req_done(&sr->req);
	free(sr->q);
	free(sr);
}

/* Copies the cursor's part [s, end) into out (size n); 0 or -1. */
static int
search__part(const char *s, const char *end, char *out, size_t n)
{
	if (end == NULL || end == s || (size_t)(end - s) >= n)
		return -1;
	memcpy(out, s, (size_t)(end - s));
	out[end - s] = '\0';
	return 0;
}

/* A cursor as `next` wrote it: rank:ts_ms:seq:room (room ids may hold ':',
 * so the room comes last). 0 ok, -1 malformed. */
static int
search__cursor(struct search_req *sr, const char *s)
{
	const char *a = strchr(s, ':'), *b = a ? strchr(a + 1, ':') : NULL;
	const char *c = b ? strchr(b + 1, ':') : NULL;
	long long v;
	double rank;
	char *end;

	if (search__part(s, a, sr->rank, sizeof(sr->rank)) != 0 ||
	    search__part(a + 1, b, sr->ts, sizeof(sr->ts)) != 0 ||
	    search__part(b + 1, c, sr->seq, sizeof(sr->seq)) != 0 || !util_valid_id(c + 1))
		return -1;
	snprintf(sr->croom, sizeof(sr->croom), "%s", c + 1);
	/* A decimal number, as PostgreSQL's real prints (no hex, nan, inf). */
	if (sr->rank[strspn(sr->rank, "0123456789.eE+-")] != '\0')
		return -1;
	rank = strtod(sr->rank, &end);
	if (*end != '\0' || !isfinite(rank) || rank < 0 ||
	    util_parse_ll(sr->ts, 0, INT64_MAX, &v) != 0 ||
	    util_parse_ll(sr->seq, 0, INT64_MAX, &v) != 0)
		return -1;
	return 0;
}

static void
search__run(struct search_req *sr)
{
	struct conn *c = sr->req.c;
	int first = sr->rank[0] == '\0';
	const char *params[10] = { c->id.tenant, c->id.user, readview_admin(c), sr->q,
	    sr->room[0] ? sr->room : NULL, first ? NULL : sr->rank, first ? NULL : sr->ts,
	    first ? NULL : sr->croom, first ? NULL : sr->seq, sr->limit };
	struct readview_query q = { .sql = search_sql, .nparams = 10, .params = params,
	    .room = sr->room };

	readview_run(c, sr->req.idjson, &q);
}

static void
search__limited(void *arg, long long retry_ms)
{
	struct search_req *sr = arg;

	if (!limit_refused(sr->req.c, sr->req.idjson, retry_ms, "searches"))
		search__run(sr);
	search__free(sr);
}

void
search_messages(struct conn *c, const char *idjson, json_t *msg)
{
	const char *room = json_string_value(json_object_get(msg, "room"));
	const char *before = json_string_value(json_object_get(msg, "before"));
	struct search_req *sr = xcalloc(1, sizeof(*sr));

	if (before != NULL && search__cursor(sr, before) != 0) {
		reply_error(c, idjson, "bad_request",
		    "field \"before\" must be the \"next\" of a previous search");
		free(sr);
		return;
	}
	sr->q = xstrdup(json_string_value(json_object_get(msg, "q")));
	snprintf(sr->room, sizeof(sr->room), "%s", room ? room : "");
	snprintf(sr->limit, sizeof(sr->limit), "%d", readview_limit(msg, "limit", SEARCH_PAGE));
	reply_req_init(&sr->req, c, idjson);
	limit_take(c->id.tenant, c->id.user, LIMIT_SEARCH, search__limited, sr);
}
