#include "proc/master.h"
#include "net/admit.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "store/schema.h"
#include "lib/util.h"
#include "proc/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MASTER_RESTART_DELAY_MS 1000	/* after a worker died young */
#define MASTER_NOFILE_LOW 4096		/* fewer open files than this: a warning */

struct master_slot {
	pid_t pid;
	uint64_t started_ms;
	uint64_t restart_at_ms;		/* 0: not waiting */
};

static struct master_slot slots[METRICS_MAX_WORKERS];

static void
master__spawn(const struct cfg *cfg, int index)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0) {
		log_err("fork: %s; retrying in 1 s", strerror(errno));
		slots[index].restart_at_ms = util_mono_ms() + MASTER_RESTART_DELAY_MS;
		return;
	}
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(0);
		_exit(worker_run(cfg, index));
	}
	slots[index].pid = pid;
	slots[index].started_ms = util_mono_ms();
	slots[index].restart_at_ms = 0;
	metrics_worker_started(index, pid);
}

/* Every connection is a descriptor, so the soft limit on open files (often
 * 1,024) is the number of connections a worker can hold. Raised to the hard
 * limit before forking (the workers inherit it), as nginx's
 * worker_rlimit_nofile and Kore's rlimit_nofiles do; returns the limit. */
static unsigned long long
master__raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;

		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("cannot raise the open files limit to %llu: %s",
			    (unsigned long long)want, strerror(errno));
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			return 0;
	}
	if (rl.rlim_cur < MASTER_NOFILE_LOW)
		log_warn("open files limited to %llu per process: a worker holds fewer than "
		    "that many connections (raise the hard limit: ulimit -Hn, LimitNOFILE=)",
		    (unsigned long long)rl.rlim_cur);
	return rl.rlim_cur;
}

static int
master__index_of(pid_t pid, int n)
{
	for (int i = 0; i < n; i++)
		if (slots[i].pid == pid)
			return i;
	return -1;
}

static void
master__reap(const struct cfg *cfg, int stopping)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int i = master__index_of(pid, cfg->workers);
		uint64_t now = util_mono_ms();

		if (i < 0)
			continue;
		slots[i].pid = 0;
		metrics_worker_died(i);
		admit_worker_died(i);
		if (stopping)
			continue;
		if (WIFSIGNALED(status))
			log_err("worker %d (pid %d) killed by signal %d; restarting", i, (int)pid,
			    WTERMSIG(status));
		else
			log_err("worker %d (pid %d) exited with %d; restarting", i, (int)pid,
			    WEXITSTATUS(status));
		slots[i].restart_at_ms = now - slots[i].started_ms < MASTER_RESTART_DELAY_MS ?
		    now + MASTER_RESTART_DELAY_MS : now;
	}
}

static int
master__live(int n)
{
	int live = 0;

	for (int i = 0; i < n; i++)
		live += slots[i].pid != 0;
	return live;
}

int
master_run(const struct cfg *cfg)
{
	char err[512];
	sigset_t set;
	int fd, stopping = 0;
	unsigned long long nofile;
	uint64_t deadline = 0;

	if (schema_check(cfg->database_url, err, sizeof(err)) != 0) {
		log_err("%s", err);
		return 1;
	}
	/* Fail here, once, rather than in every worker. */
	fd = worker_listen_socket(cfg);
	if (fd < 0) {
		log_err("cannot listen on %s:%d: %s", cfg->listen, cfg->port, strerror(errno));
		return 1;
	}
	close(fd);
	if (admit_init(cfg) != 0) {
		log_err("cannot map the shared limits table: %s", strerror(errno));
		return 1;
	}
	if (metrics_init(cfg->workers, util_now_ms()) != 0) {
		log_err("cannot map the shared metrics: %s", strerror(errno));
		return 1;
	}
	nofile = master__raise_nofile();
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (int i = 0; i < cfg->workers; i++)
		master__spawn(cfg, i);
	log_info("listening on %s:%d with %d workers (instance %s), %llu open files each",
	    cfg->listen, cfg->port, cfg->workers, cfg->instance, nofile);

	for (;;) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		int sig = sigtimedwait(&set, NULL, &ts);
		uint64_t now = util_mono_ms();

		if (sig == SIGTERM || sig == SIGINT) {
			if (!stopping) {
				log_info("signal %d: draining workers", sig);
				stopping = 1;
				deadline = now + (uint64_t)cfg->drain_timeout_ms + 2000;
				for (int i = 0; i < cfg->workers; i++)
					if (slots[i].pid)
						kill(slots[i].pid, SIGTERM);
			}
		}
		master__reap(cfg, stopping);
		if (stopping) {
			if (master__live(cfg->workers) == 0)
				break;
			if (now >= deadline) {
				log_err("workers did not drain in time; killing them");
				for (int i = 0; i < cfg->workers; i++)
					if (slots[i].pid)
						kill(slots[i].pid, SIGKILL);
				deadline = now + 5000;
			}
			continue;
		}
		for (int i = 0; i < cfg->workers; i++)
			if (slots[i].pid == 0 && slots[i].restart_at_ms != 0 &&
			    now >= slots[i].restart_at_ms)
				master__spawn(cfg, i);
	}
	log_info("stopped");
	return 0;
}
