#include "proc/worker.h"
#include "store/redis.h"
#include "net/conn.h"
#include "net/admit.h"
#include "chat/member.h"
#include "chat/personal.h"
#include "chat/presence.h"
#include "chat/receipt.h"
#include "chat/typing.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "store/pg_queue.h"
#include "proc/srv.h"
#include "store/sync.h"
#include "net/ws.h"
#include "net/http.h"
#include "net/sse.h"
#include "net/assets.h"
#include "proc/turn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define WORKER_ACCEPT_BATCH 64
/* Out of file descriptors: accepting stops this long, and the connections
 * wait in the listen backlog (the kernel's, not ours) meanwhile. */
#define WORKER_ACCEPT_PAUSE_MS 100
#define WORKER_ACCEPT_WARN_MS 10000
#define WORKER_PG_QUEUE 10000

struct srv srv;

static int listen_fd = -1;
static uv_poll_t listen_poll;
static uv_timer_t accept_timer;
static uint64_t accept_warned_ms;
static uv_signal_t sig_term, sig_int;
static uv_timer_t tick_timer;
static uv_timer_t drain_timer;
static uint64_t drain_deadline;
static int stopping;

int
worker_listen_socket(const struct cfg *cfg)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)cfg->port);
	if (inet_pton(AF_INET, cfg->listen, &sa.sin_addr) != 1) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* TCP_NODELAY and SO_SNDBUF are inherited by the accepted sockets (on
	 * Linux): set here once, not with two syscalls per connection. 0
	 * leaves the kernel's autotuning (up to tcp_wmem's max, 4 MiB here)
	 * in charge of what a slow reader can pin in the kernel. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
	    (cfg->socket_sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->socket_sndbuf,
	    sizeof(cfg->socket_sndbuf)) != 0) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void
worker__on_accept(uv_poll_t *p, int status, int events);

static void
worker__accept_resume(uv_timer_t *t)
{
	(void)t;
	if (listen_fd >= 0 && !srv.draining && !stopping)
		uv_poll_start(&listen_poll, UV_READABLE, worker__on_accept);
}

/* accept failed for want of a descriptor (or of kernel memory). The
 * listening socket stays readable, so polling on would spin on the same
 * error: stop for WORKER_ACCEPT_PAUSE_MS, and say so at most once per
 * WORKER_ACCEPT_WARN_MS. */
static void
worker__accept_pause(int err)
{
	uint64_t now = uv_now(srv.loop);
	struct rlimit rl;

	metrics_add(M_ACCEPT_PAUSED, 1);
	if (accept_warned_ms == 0 || now - accept_warned_ms >= WORKER_ACCEPT_WARN_MS) {
		accept_warned_ms = now;
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = 0;
		log_warn("accept: %s with %d connections (open files limit %llu): new "
		    "connections wait in the listen backlog; paused %d ms (%lld times so far)",
		    strerror(err), conn_count(), (unsigned long long)rl.rlim_cur,
		    WORKER_ACCEPT_PAUSE_MS, (long long)metrics_get(M_ACCEPT_PAUSED));
	}
	uv_poll_stop(&listen_poll);
	uv_timer_start(&accept_timer, worker__accept_resume, WORKER_ACCEPT_PAUSE_MS, 0);
}

static void
worker__on_accept(uv_poll_t *p, int status, int events)
{
	(void)p;
	(void)events;
	if (status < 0 || stopping)
		return;
	for (int i = 0; i < WORKER_ACCEPT_BATCH; i++) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				worker__accept_pause(errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		http_accept(srv.loop, fd);
	}
}

static void
worker__finish(void)
{
	if (stopping)
		return;
	stopping = 1;
	log_info("drained; exiting");
	uv_timer_stop(&drain_timer);
	uv_close((uv_handle_t *)&drain_timer, NULL);
	uv_timer_stop(&tick_timer);
	uv_close((uv_handle_t *)&tick_timer, NULL);
	uv_timer_stop(&accept_timer);
	uv_close((uv_handle_t *)&accept_timer, NULL);
	uv_signal_stop(&sig_term);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_signal_stop(&sig_int);
	uv_close((uv_handle_t *)&sig_int, NULL);
	sync_stop();
	presence_stop();
	sse_shutdown();
	conn_shutdown();
	turn_shutdown();
	typing_shutdown();
	assets_free();
	redis_stop();
	pgq_close(srv.pg);
	member_shutdown();
	receipt_shutdown();
	pgq_close(srv.pgsync);
}

/* Waits until every client is closed and the sync batch in flight is
 * written, or the drain timeout passes. */
static void
worker__drain_check(uv_timer_t *t)
{
	(void)t;
	if ((conn_count() == 0 && !sync_busy()) ||
	    uv_now(srv.loop) >= drain_deadline)
		worker__finish();
}

static void
worker__drain(uv_signal_t *s, int signum)
{
	(void)s;
	if (srv.draining)
		return;
	srv.draining = 1;
	log_info("signal %d: draining %d connections", signum, conn_count());
	uv_poll_stop(&listen_poll);
	uv_close((uv_handle_t *)&listen_poll, NULL);
	close(listen_fd);
	listen_fd = -1;
	for (struct conn *c = conn_first(); c != NULL; c = c->next)
		conn_close(c, CONN_CLOSE_DRAIN);
	sync_stop();
	drain_deadline = uv_now(srv.loop) + (uint64_t)srv.cfg->drain_timeout_ms;
	uv_timer_start(&drain_timer, worker__drain_check, 0, 20);
}

static void
worker__tick(uv_timer_t *t)
{
	(void)t;
	metrics_set(M_PG_CONNECTED, pgq_up(srv.pg) && pgq_up(srv.pgsync));
	conn_sweep();
	metrics_set(M_CONN_HEAP, conn_heap_bytes());
	metrics_tick();
	http_tick();	/* after metrics_tick: the stream carries this second */
}

int
worker_run(const struct cfg *cfg, int index)
{
	static uv_loop_t loop;
	char role[16];

	snprintf(role, sizeof(role), "w%d", index);
	log_set_role(role);
	metrics_set_self(index);
	admit_set_self(index);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);	/* the parent decides what a hangup means */
	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	srv.index = index;
	srv.loop = &loop;
	if (uv_loop_init(&loop) != 0)
		log_fatal("uv_loop_init failed");
	listen_fd = worker_listen_socket(cfg);
	if (listen_fd < 0) {
		log_err("cannot listen on %s:%d: %s", cfg->listen, cfg->port, strerror(errno));
		return 2;
	}
	turn_init(&loop);
	conn_start();
	http_start();
	ws_start();
	uv_poll_init(&loop, &listen_poll, listen_fd);
	uv_poll_start(&listen_poll, UV_READABLE, worker__on_accept);
	uv_timer_init(&loop, &accept_timer);
	uv_signal_init(&loop, &sig_term);
	uv_signal_start(&sig_term, worker__drain, SIGTERM);
	uv_signal_init(&loop, &sig_int);
	uv_signal_start(&sig_int, worker__drain, SIGINT);
	uv_timer_init(&loop, &tick_timer);
	uv_timer_start(&tick_timer, worker__tick, 200, 1000);
	uv_timer_init(&loop, &drain_timer);

	srv.pg = pgq_new(&loop, "requests", cfg->database_url, WORKER_PG_QUEUE);
	srv.pgsync = pgq_new(&loop, "sync", cfg->database_url, 4);
	pgq_start(srv.pg);
	pgq_start(srv.pgsync);
	personal_start();
	presence_start();
	typing_init();
	redis_start();
	sync_start();

	uv_run(&loop, UV_RUN_DEFAULT);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		log_debug("loop closed with handles left");
	return 0;
}
