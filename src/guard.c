#include "guard.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define GUARD_SLOTS 16384	/* power of two */
#define GUARD_PROBE 64

struct guard_slot {
	uint64_t key;		/* 0: free */
	int64_t win_start;	/* attempts window, seconds */
	int32_t attempts;
	int32_t fails;
	int64_t fail_start;	/* auth failures window, seconds */
	uint16_t active[METRICS_MAX_WORKERS];	/* open connections per worker */
};

struct guard_shm {
	pthread_mutex_t lock;	/* process-shared, robust */
	struct guard_slot slots[GUARD_SLOTS];
};

static struct guard_shm *g;
static const struct cfg *gcfg;
static int gself;

int
guard_init(const struct cfg *c)
{
	pthread_mutexattr_t a;
	void *p = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	g = p;
	gcfg = c;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&g->lock, &a);
	pthread_mutexattr_destroy(&a);
	return 0;
}

void
guard_set_self(int index)
{
	gself = index;
}

static void
guard__lock(void)
{
	/* A worker killed while holding the lock leaves it to the next one. */
	if (pthread_mutex_lock(&g->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&g->lock);
}

static void
guard__unlock(void)
{
	pthread_mutex_unlock(&g->lock);
}

static int64_t
guard__now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static int
guard__idle(const struct guard_slot *s, int64_t now)
{
	for (int i = 0; i < METRICS_MAX_WORKERS; i++)
		if (s->active[i])
			return 0;
	return now - s->win_start > gcfg->conn_attempts_window_s &&
	    now - s->fail_start > gcfg->auth_failures_window_s;
}

/* The slot of a key, claimed if needed (reusing an idle one); NULL when
 * the neighbourhood is full: then the limits are not applied. Locked. */
static struct guard_slot *
guard__slot(const char *kind, const char *a, const char *b, int claim)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s:%s/%s", kind, a, b ? b : "");
	uint64_t key = util_hash(buf, (size_t)n) | 1;
	int64_t now = guard__now();
	struct guard_slot *reuse = NULL;

	for (int i = 0; i < GUARD_PROBE; i++) {
		struct guard_slot *s = &g->slots[(key + (uint64_t)i) & (GUARD_SLOTS - 1)];

		if (s->key == key)
			return s;
		if (reuse == NULL && (s->key == 0 || guard__idle(s, now)))
			reuse = s;
	}
	if (!claim || reuse == NULL)
		return NULL;
	memset(reuse, 0, sizeof(*reuse));
	reuse->key = key;
	reuse->win_start = reuse->fail_start = now;
	return reuse;
}

static int
guard__active(const struct guard_slot *s)
{
	int n = 0;

	for (int i = 0; i < METRICS_MAX_WORKERS; i++)
		n += s->active[i];
	return n;
}

int
guard_attempt(const char *ip)
{
	struct guard_slot *s;
	int64_t now = guard__now();
	int rc = 0;

	guard__lock();
	s = guard__slot("ip", ip, NULL, 1);
	if (s != NULL) {
		if (now - s->win_start >= gcfg->conn_attempts_window_s) {
			s->win_start = now;
			s->attempts = 0;
		}
		if (++s->attempts > gcfg->conn_attempts_per_ip)
			rc = -1;
	}
	guard__unlock();
	return rc;
}

int
guard_auth_blocked(const char *ip)
{
	struct guard_slot *s;
	int64_t now = guard__now();
	int rc = 0;

	guard__lock();
	s = guard__slot("ip", ip, NULL, 0);
	if (s != NULL && now - s->fail_start < gcfg->auth_failures_window_s &&
	    s->fails >= gcfg->auth_failures_per_ip)
		rc = -1;
	guard__unlock();
	return rc;
}

void
guard_auth_failed(const char *ip)
{
	struct guard_slot *s;
	int64_t now = guard__now();

	guard__lock();
	s = guard__slot("ip", ip, NULL, 1);
	if (s != NULL) {
		if (now - s->fail_start >= gcfg->auth_failures_window_s) {
			s->fail_start = now;
			s->fails = 0;
		}
		s->fails++;
	}
	guard__unlock();
}

int
guard_conn_check(const char *ip, const char *tenant, const char *user)
{
	struct guard_slot *s;
	int rc = 0;

	guard__lock();
	s = guard__slot("ip", ip, NULL, 0);
	if (s != NULL && guard__active(s) >= gcfg->max_conns_per_ip)
		rc = -1;
	s = guard__slot("user", tenant, user, 0);
	if (rc == 0 && s != NULL && guard__active(s) >= gcfg->max_conns_per_user)
		rc = -2;
	guard__unlock();
	return rc;
}

static void
guard__count(const char *ip, const char *tenant, const char *user, int delta)
{
	struct guard_slot *s;

	guard__lock();
	s = guard__slot("ip", ip, NULL, delta > 0);
	if (s != NULL && (delta > 0 || s->active[gself] > 0))
		s->active[gself] = (uint16_t)(s->active[gself] + delta);
	s = guard__slot("user", tenant, user, delta > 0);
	if (s != NULL && (delta > 0 || s->active[gself] > 0))
		s->active[gself] = (uint16_t)(s->active[gself] + delta);
	guard__unlock();
}

void
guard_conn_opened(const char *ip, const char *tenant, const char *user)
{
	guard__count(ip, tenant, user, 1);
}

void
guard_conn_closed(const char *ip, const char *tenant, const char *user)
{
	guard__count(ip, tenant, user, -1);
}

void
guard_worker_died(int index)
{
	guard__lock();
	for (int i = 0; i < GUARD_SLOTS; i++)
		g->slots[i].active[index] = 0;
	guard__unlock();
}
