#include "store/redis.h"
#include "store/redis_lua.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "store/redis_link.h"
#include "proc/srv.h"
#include "lib/util.h"

#include <limits.h>
#include <string.h>

/*
 * The scripts are the .lua files beside this one, embedded by
 * redis_lua.S (redis_lua.h says which files make which script).
 * They name no key: every key comes in KEYS, named by the functions below.
 *
 * bucket.lua, prepended to send.lua and rate.lua: a token bucket per user
 * and operation, the same for every worker and instance: n requests per
 * window, on Redis' clock (the operation's rate_* key, "N/W"). The bucket
 * holds n tokens and refills continuously at n per window; in integers, one
 * token is win_ms units (the window in ms), the bucket refills n units a ms,
 * a full one holds n * win_ms units and a request costs win_ms, so an empty
 * bucket has its next token in ceil((win_ms - level) / n) ms. It is one
 * string, "<level in units> <ms>", read and written with one GET (or a part
 * of the send script's MGET) and one SET ... PX (the time to refill from
 * empty, win_ms, plus a second: a key gone is a full bucket), with no float
 * formatted for every send. bucket_now() is Redis' clock in ms;
 * bucket_level() the level there now in a bucket's value (false: a full
 * bucket); bucket_get() reads it; bucket_put() stores what is left.
 *
 * rate.lua (chat/limit.c). KEYS: 1 bucket. ARGV: 1 n, 2 win_ms. Returns 0 (a
 * token taken) or the ms until one is there.
 *
 * send.lua, the send path, for every message:send and message:edit that
 * arrived in one loop turn (send_batch.c), in batches of one room each,
 * several rooms per call, atomically. First one MGET reads every room's
 * counter and every item's dedupe key and bucket. Then per room, per item:
 * the idempotency check (also against an earlier item of the same call),
 * the rate limit, seq = the room's counter + 1 (re-seeded from PostgreSQL's
 * maximum if Redis lost the counter), the event into the room stream (id
 * seq-0, trimmed), the ack kept for the dedupe window; then, once for the
 * room, its new events into the sync stream (entries of at most
 * REDIS_SYNC_ENTRY_MAX events joined by '\n', "s" the first one's seq: a
 * room's new seqs in a call are consecutive), the counter, the stream's
 * expiry and one PUBLISH of the new events joined by '\n' (an event is
 * JSON: it has no raw newline). One script, so publish order is seq order.
 * Two batches of one room in a call (a burst of more than SENDBATCH_MAX)
 * continue one counter.
 *
 * The rate limit is checked after the dedupe (a retry costs nothing) and
 * after the seed check (the re-run with the seed costs one token, not two).
 * redis.call and the script call itself are most of the cost, so the reads
 * are one MGET and TIME, the buckets' writes and the call are shared by
 * every item of the call: with one message per room (many quiet rooms), a
 * call of many rooms costs Redis far less per message than a call each.
 *
 * KEYS: 1 sync stream; then per room: its counter, its stream, and per item
 *       its dedupe key and its rate bucket
 * ARGV: 1 maxlen, 2 stream ttl, 3 n, 4 win_ms (rate_send's N and W in ms),
 *       5 rooms; then per room:
 *       channel, seq floor or "", tenant, room, items; then per item: the
 *       event text before, between and after the two seq numbers (the
 *       middle empty: one seq), msg id, ts, dedupe ttl
 * Returns per room {-1} when its counter is missing and no floor was given,
 * else per item two values: 1, ack (new); 0, ack (repeat); -2,
 * retry_after_ms.
 *
 * history.lua, history from the hot window. KEYS: 1 seq, 2 room stream,
 * 3 the room's deleted messages (a sorted set: msg id by its seq).
 * ARGV: 1 from (-1: the newest), 2 to (-1: up to the last), 3 count.
 * Returns {last_seq, event..., {seq of a deleted message among them...}}
 * oldest first, or {-1} when Redis has no counter.
 *
 * presence.lua, who is online (chat/presence.c says what each op takes).
 *
 * act.lua, an event appended with the state it changes (edits, deletes,
 * reactions, and plain events such as member:*): store/room_log.c says
 * what it takes.
 */

/* send.lua writes REDIS_SYNC_ENTRY_MAX as a number (a script is loaded as
 * it is, with no parameters of the build); redis_start() checks the two
 * agree. */
/* INFO memory once every this many pings (one a second). */
#define REDIS_INFO_EVERY 5
#define REDIS_SEND_ENTRY_LOOP "for j = 1, #evs, " REDIS_STR(REDIS_SYNC_ENTRY_MAX) " do\n"

static char send_sha[41];
static char hist_sha[41];
static char rate_sha[41];
static char act_sha[41];
static char presence_sha[41];
static int scripts_loaded;
static uv_timer_t ping_timer;
static uint64_t ping_sent_us;
static int ping_outstanding;

/* '/' is not an id character, so tenant/room and tenant/user pairs cannot
 * collide. */
void
redis_key(char *buf, size_t len, const char *tenant, const char *room_id, const char *what)
{
	snprintf(buf, len, "chatd:{%s/%s}:%s", tenant, room_id, what);
}

void
redis_idem_key(char *buf, size_t len, const char *tenant, const char *room_id,
    const char *user, const char *client_msg_id)
{
	snprintf(buf, len, "chatd:{%s/%s}:idem:%s/%s", tenant, room_id, user, client_msg_id);
}

void
redis_channel(char *buf, size_t len, const char *tenant, const char *room_id)
{
	snprintf(buf, len, "chatd:ev:{%s/%s}", tenant, room_id);
}

static int scripts_loading;

static void
redis__loaded(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	char *dst = priv;

	(void)ac;
	scripts_loading--;
	if (rlink_failed(r) || r->type != REDIS_REPLY_STRING || r->len != 40) {
		log_warn("redis: SCRIPT LOAD failed: %s", r ? r->str : "link lost");
		return;
	}
	memcpy(dst, r->str, 41);
	if (send_sha[0] && hist_sha[0] && rate_sha[0] && act_sha[0] && presence_sha[0])
		scripts_loaded = 1;
}

/* Also again from the ping timer while a load failed (a restarted Redis
 * answers LOADING until its AOF is read). */
static void
redis__load_scripts(struct rlink *l)
{
	scripts_loaded = 0;
	send_sha[0] = hist_sha[0] = rate_sha[0] = act_sha[0] = presence_sha[0] = '\0';
	scripts_loading = 0;
	if (rlink_cmd(l, redis__loaded, send_sha, "SCRIPT LOAD %s", redis_lua_send) == 0)
		scripts_loading++;
	if (rlink_cmd(l, redis__loaded, hist_sha, "SCRIPT LOAD %s", redis_lua_history) == 0)
		scripts_loading++;
	if (rlink_cmd(l, redis__loaded, rate_sha, "SCRIPT LOAD %s", redis_lua_rate) == 0)
		scripts_loading++;
	if (rlink_cmd(l, redis__loaded, act_sha, "SCRIPT LOAD %s", redis_lua_act) == 0)
		scripts_loading++;
	if (rlink_cmd(l, redis__loaded, presence_sha, "SCRIPT LOAD %s", redis_lua_presence) == 0)
		scripts_loading++;
}

void
redis_scripts_missing(void)
{
	if (scripts_loading == 0 && rlink_up(srv.rcmd))
		redis__load_scripts(srv.rcmd);
}

static void
redis__cmd_up(struct rlink *l, void *arg)
{
	(void)arg;
	ping_outstanding = 0;
	redis__load_scripts(l);
	metrics_set(M_REDIS_CONNECTED, 1);
}

static void
redis__cmd_down(struct rlink *l, void *arg)
{
	(void)l;
	(void)arg;
	scripts_loaded = 0;
	metrics_set(M_REDIS_CONNECTED, 0);
}

/* redis_on_link's callbacks, by enum redis_link; a link's arg is its
 * entry. */
#define REDIS_LINK_CBS 4
struct redis_link_cbs {
	int n;
	void (*up[REDIS_LINK_CBS])(void);
	void (*down[REDIS_LINK_CBS])(void);
};
static struct redis_link_cbs link_cbs[REDIS_LINK_SYNC + 1];

void
redis_on_link(enum redis_link which, void (*up)(void), void (*down)(void))
{
	struct redis_link_cbs *cbs = &link_cbs[which];

	if (cbs->n == REDIS_LINK_CBS)
		log_fatal("redis: more than %d users of one link", REDIS_LINK_CBS);
	cbs->up[cbs->n] = up;
	cbs->down[cbs->n] = down;
	cbs->n++;
}

static void
redis__link_up(struct rlink *l, void *arg)
{
	const struct redis_link_cbs *cbs = arg;

	(void)l;
	for (int i = 0; i < cbs->n; i++)
		if (cbs->up[i] != NULL)
			cbs->up[i]();
}

static void
redis__link_down(struct rlink *l, void *arg)
{
	const struct redis_link_cbs *cbs = arg;

	(void)l;
	for (int i = 0; i < cbs->n; i++)
		if (cbs->down[i] != NULL)
			cbs->down[i]();
}

static const struct rlink_ops redis_cmd_ops = { redis__cmd_up, redis__cmd_down };
static const struct rlink_ops redis_link_ops = { redis__link_up, redis__link_down };

static uint64_t
redis__now_us(void)
{
	return uv_hrtime() / 1000;
}

static void
redis__pong(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)ac;
	(void)priv;
	ping_outstanding = 0;
	if (rlink_failed(reply))
		return;
	metrics_set(M_REDIS_PING_US, (int64_t)(redis__now_us() - ping_sent_us));
}

/* used_memory of INFO memory: what the dashboard shows of Redis' memory. */
static void
redis__info(redisAsyncContext *ac, void *reply, void *priv)
{
	const redisReply *r = reply;
	const char *p;
	long long v;
	char num[24];
	size_t n;

	(void)ac;
	(void)priv;
	if (rlink_failed(reply) || r->type != REDIS_REPLY_STRING ||
	    (p = strstr(r->str, "used_memory:")) == NULL)
		return;
	p += sizeof("used_memory:") - 1;
	n = strspn(p, "0123456789");
	if (n == 0 || n >= sizeof(num))
		return;
	memcpy(num, p, n);
	num[n] = '\0';
	if (util_parse_ll(num, 0, LLONG_MAX, &v) == 0)
		metrics_set(M_REDIS_USED_MEMORY, v);
}

static void
redis__ping(uv_timer_t *t)
{
	static unsigned ticks;

	(void)t;
	metrics_set(M_REDIS_CONNECTED, rlink_up(srv.rcmd) && rlink_up(srv.rsub) ? 1 : 0);
	if (!scripts_loaded && scripts_loading == 0 && rlink_up(srv.rcmd))
		redis__load_scripts(srv.rcmd);
	if (ping_outstanding || !rlink_up(srv.rcmd))
		return;
	ping_sent_us = redis__now_us();
	if (rlink_cmd(srv.rcmd, redis__pong, NULL, "PING") == 0)
		ping_outstanding = 1;
	if (ticks++ % REDIS_INFO_EVERY == 0 &&
	    rlink_cmd(srv.rcmd, redis__info, NULL, "INFO memory") != 0)
		log_debug("redis: INFO memory not sent");
}

void
redis_start(void)
{
	const struct cfg *c = srv.cfg;

	if (strstr(redis_lua_send, REDIS_SEND_ENTRY_LOOP) == NULL)
		log_fatal("redis: send.lua does not write REDIS_SYNC_ENTRY_MAX (%d) events an entry",
		    REDIS_SYNC_ENTRY_MAX);
	srv.rcmd = rlink_new(srv.loop, "command", c->redis_host, c->redis_port, c->redis_db,
	    &redis_cmd_ops, NULL);
	srv.rsub = rlink_new(srv.loop, "subscriber", c->redis_host, c->redis_port, c->redis_db,
	    &redis_link_ops, &link_cbs[REDIS_LINK_SUBSCRIBER]);
	srv.rsync = rlink_new(srv.loop, "sync", c->redis_host, c->redis_port, c->redis_db,
	    &redis_link_ops, &link_cbs[REDIS_LINK_SYNC]);
	rlink_start(srv.rcmd);
	rlink_start(srv.rsub);
	rlink_start(srv.rsync);
	uv_timer_init(srv.loop, &ping_timer);
	uv_timer_start(&ping_timer, redis__ping, 1000, 1000);
}

void
redis_stop(void)
{
	uv_timer_stop(&ping_timer);
	uv_close((uv_handle_t *)&ping_timer, NULL);
	rlink_close(srv.rsync);
	rlink_close(srv.rsub);
	rlink_close(srv.rcmd);
}

int
redis_ready(void)
{
	return rlink_up(srv.rcmd) && scripts_loaded;
}

const char *
redis_send_sha(void)
{
	return send_sha;
}

const char *
redis_rate_sha(void)
{
	return rate_sha;
}

void
redis_rate_key(char *buf, size_t len, const char *tenant, const char *user, const char *op)
{
	snprintf(buf, len, "chatd:rb:{%s/%s}:%s", tenant, user, op);
}

const char *
redis_hist_sha(void)
{
	return hist_sha;
}

const char *
redis_act_sha(void)
{
	return act_sha;
}

const char *
redis_presence_sha(void)
{
	return presence_sha;
}

void
redis_presence_key(char *buf, size_t len, const char *tenant, const char *user)
{
	snprintf(buf, len, REDIS_PREFIX "pu:{%s/%s}", tenant, user);
}

void
redis_worker_key(char *buf, size_t len, const char *what, const char *wid)
{
	snprintf(buf, len, REDIS_PREFIX "%s:%s", what, wid);
}

void
redis_publish_room(const char *tenant, const char *room_id, const char *text)
{
	char channel[200];

	redis_channel(channel, sizeof(channel), tenant, room_id);
	if (!rlink_up(srv.rcmd) ||
	    rlink_cmd(srv.rcmd, NULL, NULL, "PUBLISH %s %s", channel, text) != 0)
		log_debug("redis: an event for %s/%s not published", tenant, room_id);
}

void
redis_msg_key(char *buf, size_t len, const char *tenant, const char *room_id, const char *msg_id)
{
	snprintf(buf, len, "chatd:{%s/%s}:msg:%s", tenant, room_id, msg_id);
}

void
redis_typing_key(char *buf, size_t len, const char *tenant, const char *room_id)
{
	redis_key(buf, len, tenant, room_id, "typing");
}
