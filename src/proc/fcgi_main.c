/*
 * chatd-fcgi: chatd's REST API as a FastCGI responder, for sites behind
 * nginx or Apache (docs/fcgi.md).
 *
 *   chatd-fcgi [-c chatd.conf]       serve on fcgi_socket
 *   chatd-fcgi -t [-c chatd.conf]    check the configuration and exit
 *
 * One process: one libuv loop thread that does all of chatd's work as a
 * worker does (the Redis links and scripts, PostgreSQL, the command
 * handlers: the same code), and fcgi_threads threads in libfcgi that only
 * read requests and write answers (net/fcgi.c). No HTTP port, no
 * WebSocket, no sync consumer (chatd's workers run it): a message posted
 * here reaches subscribers through Redis like any other.
 */
#include "net/admit.h"
#include "net/fcgi.h"
#include "proc/config.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "proc/turn.h"
#include "chat/member.h"
#include "chat/receipt.h"
#include "store/pg_queue.h"
#include "store/redis.h"
#include "store/schema.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FCGI_PG_QUEUE 10000

static uv_signal_t sig_term, sig_int;
static uv_timer_t tick_timer, drain_timer;
static uint64_t drain_deadline;
static int stopping;

static void
fcgi_main__usage(void)
{
	fprintf(stderr, "usage: chatd-fcgi [-c chatd.conf] [-t]\n");
}

/* -c FILE, or chatd.conf in the working directory if there is one (as chatd). */
static int
fcgi_main__config(struct cfg *c, const char *path)
{
	char err[1024];
	enum log_level level;

	if (path == NULL && access("chatd.conf", R_OK) == 0)
		path = "chatd.conf";
	if (cfg_load(c, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "chatd-fcgi: configuration error: %s\n", err);
		return -1;
	}
	if (log_parse_level(c->log_level, &level) == 0)
		log_set_level(level);
	return 0;
}

static void
fcgi_main__close(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* The order of a worker's exit: no more requests, the answers owed, the
 * end-of-turn steps, then the backends (what still waits on them is
 * answered, to nobody). */
static void
fcgi_main__finish(void)
{
	if (stopping)
		return;
	stopping = 1;
	log_info("drained; exiting");
	uv_timer_stop(&drain_timer);
	uv_timer_stop(&tick_timer);
	uv_signal_stop(&sig_term);
	uv_signal_stop(&sig_int);
	fcgi_main__close((uv_handle_t *)&drain_timer);
	fcgi_main__close((uv_handle_t *)&tick_timer);
	fcgi_main__close((uv_handle_t *)&sig_term);
	fcgi_main__close((uv_handle_t *)&sig_int);
	fcgi_stop();
	turn_shutdown();
	redis_stop();
	pgq_close(srv.pg);
	member_shutdown();
	receipt_shutdown();
}

static void
fcgi_main__drain_check(uv_timer_t *t)
{
	(void)t;
	if (!fcgi_busy() || uv_now(srv.loop) >= drain_deadline)
		fcgi_main__finish();
}

static void
fcgi_main__drain(uv_signal_t *s, int signum)
{
	(void)s;
	if (srv.draining)
		return;
	srv.draining = 1;
	log_info("signal %d: draining", signum);
	fcgi_drain();
	drain_deadline = uv_now(srv.loop) + (uint64_t)srv.cfg->drain_timeout_ms;
	uv_timer_start(&drain_timer, fcgi_main__drain_check, 0, 20);
}

static void
fcgi_main__tick(uv_timer_t *t)
{
	(void)t;
	fcgi_tick();
}

static int
fcgi_main__run(const struct cfg *cfg)
{
	static uv_loop_t loop;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	srv.loop = &loop;
	if (uv_loop_init(&loop) != 0)
		log_fatal("uv_loop_init failed");
	turn_init(&loop);
	if (fcgi_start() != 0) {
		uv_loop_close(&loop);
		return 2;
	}
	uv_signal_init(&loop, &sig_term);
	uv_signal_start(&sig_term, fcgi_main__drain, SIGTERM);
	uv_signal_init(&loop, &sig_int);
	uv_signal_start(&sig_int, fcgi_main__drain, SIGINT);
	uv_timer_init(&loop, &tick_timer);
	uv_timer_start(&tick_timer, fcgi_main__tick, 1000, 1000);
	uv_timer_init(&loop, &drain_timer);
	srv.pg = pgq_new(&loop, "requests", cfg->database_url, FCGI_PG_QUEUE);
	pgq_start(srv.pg);
	redis_start();

	uv_run(&loop, UV_RUN_DEFAULT);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		log_debug("loop closed with handles left");
	return 0;
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	char err[512];
	int check = 0;
	static struct cfg c;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "-t") == 0)
			check = 1;
		else {
			fcgi_main__usage();
			return 2;
		}
	}
	if (fcgi_main__config(&c, path) != 0)
		return 1;
	if (check) {
		printf("chatd-fcgi: configuration ok (socket %s, %d threads)\n", c.fcgi_socket,
		    c.fcgi_threads);
		return 0;
	}
	log_set_role("fcgi");
	if (schema_check(c.database_url, err, sizeof(err)) != 0) {
		log_err("%s", err);
		return 1;
	}
	/* Failed tokens are counted per address as in chatd, in this
	 * process's own table (chatd's is in chatd's shared memory). */
	if (admit_init(&c) != 0)
		log_fatal("cannot map the admission table");
	admit_set_self(0);
	return fcgi_main__run(&c);
}
