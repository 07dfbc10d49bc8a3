/* loadgen: a WebSocket load generator for chatd (bench/README.md).
 *
 * One thread, one epoll loop. N connections are opened (paced, spread over
 * source addresses and rooms), each reaches hello and joins its room; then
 * the first S connections send at an aggregate open-loop rate M: message k
 * is due at t0 + k/M whatever the acks do, and carries its due time, so the
 * receivers measure end-to-end latency including any delay in sending.
 * After warm-up and the measured window, a drain period collects what is
 * still in flight; lost = expected deliveries - received. */
#include "lg_run.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define CONNECTS_PER_TURN 256
#define JOINS_PER_TURN 256
#define SENDS_PER_TURN 4096

struct lg g;

static volatile sig_atomic_t interrupted;
static volatile sig_atomic_t go_signal;	/* SIGUSR1s so far (--pause-at-hellos,
					 * --start-on-signal: one each, in order) */

uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double
real_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void
err_count(struct errtab *t, const char *code, size_t len)
{
	int i;

	if (len >= sizeof(t->e[0].code))
		len = sizeof(t->e[0].code) - 1;
	for (i = 0; i < t->n; i++) {
		if (strlen(t->e[i].code) == len && memcmp(t->e[i].code, code, len) == 0) {
			t->e[i].count++;
			return;
		}
	}
	if (t->n == LG_MAX_CODES)
		i = LG_MAX_CODES - 1;	/* the last slot collects the overflow */
	else
		i = t->n++;
	memcpy(t->e[i].code, code, len);
	t->e[i].code[len] = '\0';
	t->e[i].count++;
}

/* ------------------------------------------------------------- options */

static void
usage(FILE *f)
{
	fprintf(f,
"usage: loadgen [options]\n"
"  --host ADDR          server address (127.0.0.1)\n"
"  --port P             server port (8080)\n"
"  --path PATH          WebSocket path (/ws)\n"
"  --conns N            connections (100)\n"
"  --rooms R            rooms; connection i joins room i %% R (1)\n"
"  --senders S          the first S connections send (1)\n"
"  --rate M             aggregate messages/s, open loop (100)\n"
"  --warmup SECONDS     sending before the measured window (1)\n"
"  --duration SECONDS   measured window (5)\n"
"  --drain SECONDS      wait for messages in flight after sending stops (3)\n"
"  --idle               no sending: hold the joined connections for\n"
"                       warmup + duration\n"
"  --secret S           sign HS256 tokens with S (chatd's jwt_secret)\n"
"  --token-cmd CMD      or run CMD for each user's token (%%s = the user)\n"
"  --tenant T           tenant claim of the tokens (bench)\n"
"  --users U            distinct users; connection i is user i %% U (0 = one\n"
"                       per connection)\n"
"  --token-ttl SECONDS  token lifetime (3600)\n"
"  --src-ips A,B,...    bind connections to these source addresses in turn\n"
"  --connect-rate C     new connections per second (0 = as fast as possible)\n"
"  --max-pending K      handshakes in flight at once (512)\n"
"  --max-joins K        room:create/join requests in flight at once, once\n"
"                       every connection has its hello (256)\n"
"  --create-rooms       the first connection of each room creates it\n"
"  --body-bytes B       message body size, at least 21 (64)\n"
"  --chatty T           the T connections after the senders type and read\n"
"                       (typing:start/stop, receipt:read); every connection\n"
"                       counts typing:update and receipt:update (0)\n"
"  --coalesce-ms W      the server's coalescing window for the bounds (1000)\n"
"  --id-prefix P        prefix of users, rooms and client_msg_ids; unique per\n"
"                       process ([A-Za-z0-9._:-], at most 32; lg<pid>-)\n"
"  --setup-timeout S    give up on connections not joined after S seconds (60)\n"
"  --start-at EPOCH     start sending at this CLOCK_REALTIME time, after set-up\n"
"  --start-on-signal    after set-up, wait for SIGUSR1 before going on (several\n"
"                       loadgens of one run hold their connections together)\n"
"  --pause-at-hellos    once every connection has its hello, print \"hellos done\"\n"
"                       on stderr and wait for SIGUSR1 before joining (the\n"
"                       server's cost of the handshakes alone; with\n"
"                       --start-on-signal, that signal is the second)\n"
"  --json               print one JSON line of results on stdout\n");
}

static int
parse_num(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
		fprintf(stderr, "loadgen: --%s must be a number from %g to %g, not \"%s\"\n",
		    name, lo, hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_ip(const char *s, size_t len, struct sockaddr_in *sa)
{
	char buf[64];

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	return inet_pton(AF_INET, buf, &sa->sin_addr) == 1 ? 0 : -1;
}

static int
parse_src_ips(const char *s)
{
	const char *p = s, *comma;

	while (*p) {
		comma = strchr(p, ',');
		if (comma == NULL)
			comma = p + strlen(p);
		if (g.o.nsrc == LG_MAX_SRC || parse_ip(p, (size_t)(comma - p), &g.o.src[g.o.nsrc]) != 0) {
			fprintf(stderr, "loadgen: --src-ips: bad address list \"%s\"\n", s);
			return -1;
		}
		g.o.nsrc++;
		p = *comma ? comma + 1 : comma;
	}
	return 0;
}

static int
valid_prefix(const char *s)
{
	size_t n = strlen(s);

	if (n > 32)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") == n;
}

static int
parse_options(int argc, char **argv)
{
	enum {
		O_HOST = 256, O_PORT, O_PATH, O_CONNS, O_ROOMS, O_SENDERS, O_RATE, O_WARMUP,
		O_DURATION, O_DRAIN, O_IDLE, O_SECRET, O_TOKEN_CMD, O_TENANT, O_USERS, O_TTL,
		O_SRC, O_CRATE, O_PENDING, O_JOINS, O_CREATE, O_BODY, O_PREFIX, O_SETUP, O_START, O_SIGSTART,
		O_HELLOPAUSE, O_CHATTY, O_COALESCE, O_JSON, O_HELP
	};
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, O_HOST },
		{ "port", required_argument, NULL, O_PORT },
		{ "path", required_argument, NULL, O_PATH },
		{ "conns", required_argument, NULL, O_CONNS },
		{ "rooms", required_argument, NULL, O_ROOMS },
		{ "senders", required_argument, NULL, O_SENDERS },
		{ "rate", required_argument, NULL, O_RATE },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "drain", required_argument, NULL, O_DRAIN },
		{ "idle", no_argument, NULL, O_IDLE },
		{ "secret", required_argument, NULL, O_SECRET },
		{ "token-cmd", required_argument, NULL, O_TOKEN_CMD },
		{ "tenant", required_argument, NULL, O_TENANT },
		{ "users", required_argument, NULL, O_USERS },
		{ "token-ttl", required_argument, NULL, O_TTL },
		{ "src-ips", required_argument, NULL, O_SRC },
		{ "connect-rate", required_argument, NULL, O_CRATE },
		{ "max-pending", required_argument, NULL, O_PENDING },
		{ "max-joins", required_argument, NULL, O_JOINS },
		{ "create-rooms", no_argument, NULL, O_CREATE },
		{ "body-bytes", required_argument, NULL, O_BODY },
		{ "id-prefix", required_argument, NULL, O_PREFIX },
		{ "setup-timeout", required_argument, NULL, O_SETUP },
		{ "start-at", required_argument, NULL, O_START },
		{ "start-on-signal", no_argument, NULL, O_SIGSTART },
		{ "pause-at-hellos", no_argument, NULL, O_HELLOPAUSE },
		{ "chatty", required_argument, NULL, O_CHATTY },
		{ "coalesce-ms", required_argument, NULL, O_COALESCE },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 }
	};
	static char defprefix[32];
	double v;
	int opt, rc = 0;

	g.o.host = "127.0.0.1";
	g.o.port = 8080;
	g.o.path = "/ws";
	g.o.conns = 100;
	g.o.rooms = 1;
	g.o.senders = 1;
	g.o.rate = 100;
	g.o.warmup = 1;
	g.o.duration = 5;
	g.o.drain = 3;
	g.o.setup_timeout = 60;
	g.o.tenant = "bench";
	g.o.max_pending = 512;
	g.o.max_joins = 256;
	g.o.body_bytes = 64;
	g.o.token_ttl = 3600;
	g.o.coalesce_ms = 1000;
	snprintf(defprefix, sizeof(defprefix), "lg%ld-", (long)getpid());
	g.o.prefix = defprefix;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case O_HOST: g.o.host = optarg; break;
		case O_PATH: g.o.path = optarg; break;
		case O_SECRET: g.o.secret = optarg; break;
		case O_TOKEN_CMD: g.o.token_cmd = optarg; break;
		case O_TENANT: g.o.tenant = optarg; break;
		case O_PREFIX: g.o.prefix = optarg; break;
		case O_IDLE: g.o.idle = 1; break;
		case O_CREATE: g.o.create_rooms = 1; break;
		case O_JSON: g.o.json = 1; break;
		case O_SRC: rc |= parse_src_ips(optarg); break;
		case O_PORT: rc |= parse_num("port", optarg, 1, 65535, &v); g.o.port = (int)v; break;
		case O_CONNS: rc |= parse_num("conns", optarg, 1, 1e6, &v); g.o.conns = (uint32_t)v; break;
		case O_ROOMS: rc |= parse_num("rooms", optarg, 1, 1e6, &v); g.o.rooms = (uint32_t)v; break;
		case O_SENDERS: rc |= parse_num("senders", optarg, 0, 1e6, &v); g.o.senders = (uint32_t)v; break;
		case O_USERS: rc |= parse_num("users", optarg, 0, 1e6, &v); g.o.users = (uint32_t)v; break;
		case O_RATE: rc |= parse_num("rate", optarg, 0.001, 1e8, &g.o.rate); break;
		case O_WARMUP: rc |= parse_num("warmup", optarg, 0, 3600, &g.o.warmup); break;
		case O_DURATION: rc |= parse_num("duration", optarg, 0.1, 3600, &g.o.duration); break;
		case O_DRAIN: rc |= parse_num("drain", optarg, 0, 600, &g.o.drain); break;
		case O_SETUP: rc |= parse_num("setup-timeout", optarg, 1, 3600, &g.o.setup_timeout); break;
		case O_START: rc |= parse_num("start-at", optarg, 0, 1e11, &g.o.start_at); break;
		case O_SIGSTART: g.o.start_on_signal = 1; break;
		case O_HELLOPAUSE: g.o.pause_at_hellos = 1; break;
		case O_CRATE: rc |= parse_num("connect-rate", optarg, 0, 1e7, &g.o.connect_rate); break;
		case O_TTL: rc |= parse_num("token-ttl", optarg, 60, 1e7, &v); g.o.token_ttl = (long)v; break;
		case O_PENDING: rc |= parse_num("max-pending", optarg, 1, 1e6, &v); g.o.max_pending = (uint32_t)v; break;
		case O_JOINS: rc |= parse_num("max-joins", optarg, 1, 1e6, &v); g.o.max_joins = (uint32_t)v; break;
		case O_BODY: rc |= parse_num("body-bytes", optarg, 1 + LG_DUE_DIGITS, 1 << 20, &v); g.o.body_bytes = (uint32_t)v; break;
		case O_CHATTY: rc |= parse_num("chatty", optarg, 0, 1e6, &v); g.o.chatty = (uint32_t)v; break;
		case O_COALESCE: rc |= parse_num("coalesce-ms", optarg, 1, 60000, &v); g.o.coalesce_ms = (uint32_t)v; break;
		case O_HELP: case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (rc != 0)
		return -1;
	if (optind < argc) {
		fprintf(stderr, "loadgen: unexpected argument \"%s\"\n", argv[optind]);
		return -1;
	}
	if ((g.o.secret == NULL) == (g.o.token_cmd == NULL)) {
		fprintf(stderr, "loadgen: give exactly one of --secret and --token-cmd\n");
		return -1;
	}
	if (!valid_prefix(g.o.prefix) || !valid_prefix(g.o.tenant)) {
		fprintf(stderr, "loadgen: --id-prefix and --tenant: [A-Za-z0-9._:-], at most 32\n");
		return -1;
	}
	if (parse_ip(g.o.host, strlen(g.o.host), &g.o.dst) != 0) {
		fprintf(stderr, "loadgen: --host must be an IPv4 address, not \"%s\"\n", g.o.host);
		return -1;
	}
	g.o.dst.sin_port = htons((uint16_t)g.o.port);
	if (g.o.rooms > g.o.conns)
		g.o.rooms = g.o.conns;
	if (g.o.senders > g.o.conns)
		g.o.senders = g.o.conns;
	if (g.o.idle)
		g.o.senders = 0;
	if (g.o.chatty && (g.o.idle || (g.o.users != 0 && g.o.users != g.o.conns))) {
		fprintf(stderr, "loadgen: --chatty needs senders (no --idle) and one user per "
		    "connection (no --users)\n");
		return -1;
	}
	if (g.o.users == 0 || g.o.users > g.o.conns)
		g.o.users = g.o.conns;
	return 0;
}

/* --------------------------------------------------------------- set-up */

static int
make_tokens(void)
{
	char user[LG_ID_MAX + 1];

	g.tokens = calloc(g.o.users, sizeof(*g.tokens));
	if (g.tokens == NULL)
		return -1;
	for (uint32_t u = 0; u < g.o.users; u++) {
		snprintf(user, sizeof(user), "%su%u", g.o.prefix, u);
		g.tokens[u] = g.o.secret ? auth_token_hs256(g.o.secret, user, g.o.tenant, g.o.token_ttl)
		    : auth_token_cmd(g.o.token_cmd, user);
		if (g.tokens[u] == NULL) {
			fprintf(stderr, "loadgen: no token for user %s\n", user);
			return -1;
		}
	}
	return 0;
}

static int
init_run(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && g.o.conns + 16 > rl.rlim_cur)
		fprintf(stderr, "loadgen: warning: %u connections but only %llu open files allowed; "
		    "run several processes\n", g.o.conns, (unsigned long long)rl.rlim_cur);
	g.conns = calloc(g.o.conns, sizeof(*g.conns));
	g.rooms = calloc(g.o.rooms, sizeof(*g.rooms));
	g.bufcap = 256 * 1024;
	g.buf = malloc(g.bufcap);
	g.outcap = 64 * 1024;
	g.out = malloc(g.outcap);
	g.retry_q = calloc(g.o.conns, sizeof(*g.retry_q));
	g.retry_at = calloc(g.o.conns, sizeof(*g.retry_at));
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	if (g.conns == NULL || g.rooms == NULL || g.buf == NULL || g.out == NULL ||
	    g.retry_q == NULL || g.retry_at == NULL || g.ep < 0) {
		perror("loadgen: init");
		return -1;
	}
	for (uint32_t r = 0; r < g.o.rooms; r++) {
		snprintf(g.rooms[r].id, sizeof(g.rooms[r].id), "%sr%u", g.o.prefix, r);
		g.rooms[r].creator = r;	/* connection r is the first of room r */
		g.rooms[r].created = !g.o.create_rooms;
	}
	for (uint32_t i = 0; i < g.o.conns; i++) {
		g.conns[i].fd = -1;
		g.conns[i].idx = i;
		g.conns[i].room = i % g.o.rooms;
		g.rooms[i % g.o.rooms].size++;
	}
	hist_init(&g.hs);
	hist_init(&g.joinh);
	hist_init(&g.lat);
	hist_init(&g.lat_app);
	{
		struct timespec rt;

		clock_gettime(CLOCK_REALTIME, &rt);
		g.real_minus_mono = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec -
		    mono_ns();
	}
	hist_init(&g.acklat);
	hist_init(&g.lag);
	if (g.o.chatty && chatty_init() != 0) {
		perror("loadgen: init");
		return -1;
	}
	return 0;
}

/* Starts as many connections as the pacing and the in-flight cap allow;
 * returns when the next one may start (0: not limited by time). */
static uint64_t
setup_connect(uint64_t now)
{
	uint64_t allowed = g.o.conns, next = 0;
	int n = 0;

	if (g.o.connect_rate > 0) {
		allowed = (uint64_t)((double)(now - g.t_setup0) / 1e9 * g.o.connect_rate) + 1;
		if (allowed > g.o.conns)
			allowed = g.o.conns;
	}
	while (g.started < allowed && g.pending < g.o.max_pending && n++ < CONNECTS_PER_TURN)
		conn_start(&g.conns[g.started++]);
	if (g.o.connect_rate > 0 && g.started < g.o.conns)
		next = g.t_setup0 + (uint64_t)((double)g.started / g.o.connect_rate * 1e9);
	return next;
}

/* Every connection has its hello (or failed): says so once on stderr
 * (--pause-at-hellos; the driver reads the server's CPU time then), and
 * whether the joins may start (after the first SIGUSR1). */
static int
hellos_done(uint64_t now)
{
	if (!g.o.pause_at_hellos)
		return 1;
	if (!g.hellos_marked) {
		g.hellos_marked = 1;
		fprintf(stderr, "loadgen %s: hellos done: %u of %u in %.3f s, mono_ns %llu\n",
		    g.o.prefix, g.hellos, g.o.conns, (now - g.t_setup0) / 1e9,
		    (unsigned long long)now);
		fflush(stderr);
	}
	return go_signal >= 1;
}

/* Once every connection has its hello (or failed): room:create by each
 * room's first connection, then room:join, in connection order, at most
 * max_joins in flight; refused joins come back from the retry queue.
 * Returns when a queued retry is due (0: none waiting). */
static uint64_t
setup_join(uint64_t now)
{
	int n = 0;

	if (g.t_join0 == 0)
		g.t_join0 = now;
	while (g.retry_len > 0 && g.joins_inflight < g.o.max_joins) {
		struct conn *c = g.retry_q[g.retry_head];

		if (c->state == C_RETRY && g.retry_at[g.retry_head] > now)
			break;
		g.retry_head = (g.retry_head + 1) % g.o.conns;
		g.retry_len--;
		if (c->state == C_RETRY)
			conn_join(c);
	}
	while (g.join_cursor < g.o.conns && g.joins_inflight < g.o.max_joins &&
	    n++ < JOINS_PER_TURN) {
		struct conn *c = &g.conns[g.join_cursor];
		struct room *r = &g.rooms[c->room];

		if (c->state == C_READY) {
			if (!r->created && r->creator == c->idx)
				conn_create(c);
			else if (!r->created)
				break;	/* its room:create is in flight */
			else
				conn_join(c);
		}
		g.join_cursor++;
	}
	return g.retry_len > 0 ? g.retry_at[g.retry_head] : 0;
}

static void
setup_finish(uint64_t now)
{
	double secs;

	for (uint32_t i = 0; i < g.o.conns; i++) {
		struct conn *c = &g.conns[i];

		if (c->state == C_NEW)
			c->state = C_CONNECTING, g.pending++;	/* counted as abandoned */
		if (c->state != C_JOINED && c->state != C_FAILED && c->state != C_DEAD)
			conn_abandon(c, "setup_timeout");
	}
	(void)hellos_done(now);	/* the driver waits for the line */
	g.t_setup_done = now;
	g.phase = P_WAIT;
	secs = (g.t_last_hello - g.t_setup0) / 1e9;
	fprintf(stderr, "loadgen %s: setup done: %u of %u joined in %.2f s (%.0f hellos/s)\n",
	    g.o.prefix, g.joined, g.o.conns, (now - g.t_setup0) / 1e9,
	    secs > 0 ? g.hellos / secs : 0.0);
	fflush(stderr);
}

/* ----------------------------------------------------------- the loop */

static struct conn **senders;
static uint32_t nsenders;
static uint64_t next_k;		/* number of the next message */

static void
run_begin(uint64_t now)
{
	senders = calloc(g.o.senders ? g.o.senders : 1, sizeof(*senders));
	for (uint32_t i = 0; i < g.o.senders; i++)
		if (g.conns[i].state == C_JOINED)
			senders[nsenders++] = &g.conns[i];
	g.t_warm = now;
	g.t_meas = now + (uint64_t)(g.o.warmup * 1e9);
	g.t_send_end = g.t_meas + (uint64_t)(g.o.duration * 1e9);
	g.phase = P_WARMUP;
	if (g.o.chatty)
		chatty_begin(now);
}

static uint64_t
due_of(uint64_t k)
{
	return g.t_warm + (uint64_t)((long double)k * 1e9L / g.o.rate);
}

/* Sends every message due by now (at most SENDS_PER_TURN, so that reading
 * keeps up); returns the due time of the next one. */
static uint64_t
run_send(uint64_t now)
{
	uint64_t due;
	int n = 0;

	if (nsenders == 0)
		return g.t_send_end;
	while ((due = due_of(next_k)) <= now && due < g.t_send_end && n++ < SENDS_PER_TURN) {
		struct conn *c = senders[next_k % nsenders];
		int measured = due >= g.t_meas;

		if (measured) {
			hist_add(&g.lag, now - due);
			if (c->state == C_JOINED) {
				g.sent++;
				g.expected += g.rooms[c->room].joined;
			}
		} else if (c->state == C_JOINED) {
			g.sent_warm++;
		}
		conn_send_message(c, due, measured);
		next_k++;
	}
	return due < g.t_send_end ? due : g.t_send_end;
}

static void
advance(uint64_t now, uint64_t *wake)
{
	uint64_t next;

	switch (g.phase) {
	case P_SETUP:
		next = setup_connect(now);
		if (g.started == g.o.conns && g.pending == 0) {
			uint64_t retry = 0;

			if (hellos_done(now))
				retry = setup_join(now);
			else
				retry = now + 1000000;	/* paused until SIGUSR1 */
			if (retry && (next == 0 || retry < next))
				next = retry;
		}
		if (g.settled == g.o.conns ||
		    now >= g.t_setup0 + (uint64_t)(g.o.setup_timeout * 1e9)) {
			setup_finish(now);
			advance(now, wake);
			return;
		}
		if (next)
			*wake = next;
		return;
	case P_WAIT:
		if ((g.o.start_at > 0 && real_s() < g.o.start_at) ||
		    (g.o.start_on_signal && go_signal < 1 + g.o.pause_at_hellos)) {
			*wake = now + 1000000;
			return;
		}
		run_begin(now);
		/* FALLTHROUGH */
	case P_WARMUP:
	case P_MEASURE:
		g.phase = now >= g.t_meas ? P_MEASURE : P_WARMUP;
		next = run_send(now);
		if (g.o.chatty && now < g.t_send_end) {
			uint64_t act = chatty_act(now);

			if (act < next)
				next = act;
		}
		if (now >= g.t_send_end) {
			if (g.o.chatty)
				chatty_end(now);
			g.phase = P_DRAIN;
			g.t_drain_end = now + (uint64_t)(g.o.drain * 1e9);
			advance(now, wake);
			return;
		}
		*wake = next;
		return;
	case P_DRAIN:
		if (now >= g.t_drain_end || (g.received >= g.expected && g.acked >= g.sent &&
		    (!g.o.chatty || chatty_drained(now)))) {
			g.phase = P_DONE;
			return;
		}
		*wake = g.t_drain_end;
		return;
	case P_DONE:
		return;
	}
}

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void
on_go(int sig)
{
	(void)sig;
	if (go_signal < 8)
		go_signal++;
}

static void
loop(void)
{
	struct epoll_event ev[MAX_EVENTS];
	struct timespec ts;
	uint64_t now, wake;
	int n;

	g.t_setup0 = mono_ns();
	g.phase = P_SETUP;
	while (!interrupted) {
		now = mono_ns();
		wake = now + 100000000;	/* look again at least every 100 ms */
		advance(now, &wake);
		if (g.phase == P_DONE)
			break;
		if (g.phase == P_SETUP && g.started < g.o.conns && g.pending < g.o.max_pending &&
		    wake > now + 100000000)
			wake = now;
		now = mono_ns();
		wake = wake > now ? wake - now : 0;
		if (wake > 100000000)
			wake = 100000000;
		ts.tv_sec = (time_t)(wake / 1000000000ull);
		ts.tv_nsec = (long)(wake % 1000000000ull);
		n = epoll_pwait2(g.ep, ev, MAX_EVENTS, &ts, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("loadgen: epoll_pwait2");
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			conn_event(ev[i].data.ptr, ev[i].events);
			/* A long batch of reads must not make the sends late. */
			if ((i & 63) == 63 && (g.phase == P_WARMUP || g.phase == P_MEASURE))
				(void)run_send(mono_ns());
		}
	}
}

/* -------------------------------------------------------------- report */

static void
errtab_json(FILE *f, const struct errtab *t)
{
	fputc('{', f);
	for (int i = 0; i < t->n; i++)
		fprintf(f, "%s\"%s\":%llu", i ? "," : "", t->e[i].code,
		    (unsigned long long)t->e[i].count);
	fputc('}', f);
}

/* Deliveries per second: the measured ones over the measured window, or
 * until the last of them arrived if that was later (during the drain). */
static double
deliveries_per_s(void)
{
	double secs = g.o.duration;

	if (g.t_last_rx > g.t_meas && (g.t_last_rx - g.t_meas) / 1e9 > secs)
		secs = (g.t_last_rx - g.t_meas) / 1e9;
	return g.received / secs;
}

static void
report_json(FILE *f)
{
	double hs_s = (g.t_last_hello - g.t_setup0) / 1e9;
	double join_s = g.t_join0 ? (g.t_last_join - g.t_join0) / 1e9 : 0;
	long long lost = (long long)g.expected - (long long)g.received;

	fprintf(f, "{\"tool\":\"loadgen\",\"id_prefix\":\"%s\",\"conns\":%u,\"rooms\":%u,"
	    "\"senders\":%u,\"senders_active\":%u,\"rate\":%.3f,\"warmup_s\":%.3f,"
	    "\"duration_s\":%.3f,\"drain_s\":%.3f,\"body_bytes\":%u,\"idle\":%s,",
	    g.o.prefix, g.o.conns, g.o.rooms, g.o.senders, nsenders, g.o.rate, g.o.warmup,
	    g.o.duration, g.o.drain, g.o.body_bytes, g.o.idle ? "true" : "false");
	fprintf(f, "\"setup\":{\"hellos\":%u,\"joined\":%u,\"failed\":%u,\"join_retries\":%u,"
	    "\"seconds\":%.3f,\"hello_seconds\":%.3f,\"hellos_per_s\":%.1f,\"joins_per_s\":%.1f,"
	    "\"errors\":", g.hellos, g.joined, g.o.conns - g.joined, g.join_retries,
	    (g.t_setup_done - g.t_setup0) / 1e9, hs_s, hs_s > 0 ? g.hellos / hs_s : 0.0,
	    join_s > 0 ? g.joined / join_s : 0.0);
	errtab_json(f, &g.setup_err);
	fputs(",\"handshake_us\":", f);
	hist_json(f, &g.hs);
	fputs(",\"join_us\":", f);
	hist_json(f, &g.joinh);
	fprintf(f, "},\"sent\":%llu,\"sent_warmup\":%llu,\"send_skipped\":%llu,\"acked\":%llu,"
	    "\"expected\":%llu,\"received\":%llu,\"lost\":%lld,\"received_warmup\":%llu,"
	    "\"received_other\":%llu,\"gaps\":%llu,\"lost_conns\":%llu,\"pings\":%llu,"
	    "\"frames_in\":%llu,\"bytes_in\":%llu,\"msgs_per_s\":%.1f,\"deliveries_per_s\":%.1f,"
	    "\"errors\":",
	    (unsigned long long)g.sent, (unsigned long long)g.sent_warm,
	    (unsigned long long)g.send_skipped, (unsigned long long)g.acked,
	    (unsigned long long)g.expected, (unsigned long long)g.received, lost,
	    (unsigned long long)g.received_warm, (unsigned long long)g.received_other,
	    (unsigned long long)g.gaps, (unsigned long long)g.lost_conns,
	    (unsigned long long)g.pings, (unsigned long long)g.frames_in,
	    (unsigned long long)g.bytes_in, g.sent / g.o.duration, deliveries_per_s());
	errtab_json(f, &g.err);
	fputs(",\"latency_us\":", f);
	hist_json(f, &g.lat);
	fputs(",\"latency_app_us\":", f);
	hist_json(f, &g.lat_app);
	fputs(",\"ack_us\":", f);
	hist_json(f, &g.acklat);
	fputs(",\"send_lag_us\":", f);
	hist_json(f, &g.lag);
	if (g.o.chatty) {
		fputs(",\"chatty\":", f);
		chatty_report_json(f);
	}
	fputs(",\"buckets\":{\"latency\":", f);
	hist_json_buckets(f, &g.lat);
	fputs(",\"handshake\":", f);
	hist_json_buckets(f, &g.hs);
	fputs("}}\n", f);
}

static void
report_text(FILE *f)
{
	fprintf(f, "setup: %u/%u joined, %.0f hellos/s, handshake p50 %.0f us p99 %.0f us, "
	    "%.0f joins/s (%u retries)\n", g.joined, g.o.conns, (g.t_last_hello > g.t_setup0) ?
	    g.hellos / ((g.t_last_hello - g.t_setup0) / 1e9) : 0.0,
	    hist_quantile(&g.hs, 0.5) / 1e3, hist_quantile(&g.hs, 0.99) / 1e3,
	    g.t_last_join > g.t_join0 ? g.joined / ((g.t_last_join - g.t_join0) / 1e9) : 0.0,
	    g.join_retries);
	for (int i = 0; i < g.setup_err.n; i++)
		fprintf(f, "setup error %s: %llu\n", g.setup_err.e[i].code,
		    (unsigned long long)g.setup_err.e[i].count);
	if (g.o.idle)
		return;
	fprintf(f, "sent %llu (%.0f/s), acked %llu, expected %llu, received %llu (%.0f/s), "
	    "lost %lld, gaps %llu, conns lost %llu\n", (unsigned long long)g.sent,
	    g.sent / g.o.duration, (unsigned long long)g.acked, (unsigned long long)g.expected,
	    (unsigned long long)g.received, deliveries_per_s(),
	    (long long)g.expected - (long long)g.received, (unsigned long long)g.gaps,
	    (unsigned long long)g.lost_conns);
	fprintf(f, "latency (kernel receive time) us: p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f\n",
	    hist_quantile(&g.lat, 0.5) / 1e3, hist_quantile(&g.lat, 0.9) / 1e3,
	    hist_quantile(&g.lat, 0.99) / 1e3, hist_quantile(&g.lat, 0.999) / 1e3,
	    g.lat.max / 1e3);
	fprintf(f, "latency to the read, us: p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f\n",
	    hist_quantile(&g.lat_app, 0.5) / 1e3, hist_quantile(&g.lat_app, 0.9) / 1e3,
	    hist_quantile(&g.lat_app, 0.99) / 1e3, hist_quantile(&g.lat_app, 0.999) / 1e3,
	    g.lat_app.max / 1e3);
	for (int i = 0; i < g.err.n; i++)
		fprintf(f, "error %s: %llu\n", g.err.e[i].code, (unsigned long long)g.err.e[i].count);
	if (g.o.chatty)
		chatty_report_text(f);
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	double cap;

	if (parse_options(argc, argv) != 0)
		return 2;
	rnd_seed();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_go;
	sigaction(SIGUSR1, &sa, NULL);
	if (init_run() != 0 || make_tokens() != 0)
		return 1;
	/* The hard cap: whatever happens, this process is gone by then. */
	cap = g.o.setup_timeout + g.o.warmup + g.o.duration + g.o.drain + 30;
	if (g.o.start_at > 0 && g.o.start_at > real_s())
		cap += g.o.start_at - real_s();
	if (g.o.start_on_signal || g.o.pause_at_hellos)
		cap += g.o.setup_timeout;	/* the others' set-up, at most */
	alarm((unsigned)ceil(cap));
	loop();
	if (g.phase == P_SETUP)
		setup_finish(mono_ns());
	conn_close_all();
	if (g.o.json)
		report_json(stdout);
	else
		report_text(stdout);
	fflush(stdout);
	return interrupted ? 130 : 0;
}
