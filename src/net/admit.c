#include "net/admit.h"
#include "proc/config.h"
#include "proc/log.h"
#include "proc/metrics.h"
#include "lib/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/*
 * The table grows: it starts at ADMIT_MIN_SLOTS and doubles (a rehash
 * under the lock, dropping idle slots) whenever more than three quarters hold
 * keys, up to ADMIT_MAX_SLOTS (fewer if the system will not map that
 * much). The mapping reserves the largest size (MAP_NORESERVE) but only
 * the first nslots are ever touched, so its resident size follows the
 * table's. Each open connection holds at most two slots (its IP and its
 * user): the limits hold for any number of connections an instance can
 * have, not only for the first thousands. A worker killed in the middle of
 * a rehash leaves some slots lost: their limits restart from zero.
 */
#define ADMIT_MIN_SLOTS 1024u		/* powers of two */
#define ADMIT_MAX_SLOTS (1u << 20)

struct admit_slot {
	uint64_t key;		/* 0: free */
	int32_t win_start;	/* attempts window, monotonic seconds */
	int32_t attempts;
	int32_t fail_start;	/* auth failures window, monotonic seconds */
	int32_t fails;
	uint32_t active[];	/* open connections per worker, g->workers of them */
};

struct admit_shm {
	pthread_mutex_t lock;	/* process-shared, robust */
	uint32_t nslots;	/* a power of two */
	uint32_t maxslots;	/* what the mapping holds */
	uint32_t used;		/* slots with a key */
	int64_t users;		/* user slots with open connections */
	uint32_t workers;
	uint32_t stride;	/* bytes per slot */
	int64_t warned;		/* when the full table was last reported */
	_Alignas(8) unsigned char slots[];	/* nslots * stride */
};

static struct admit_shm *g;
static const struct cfg *gcfg;
static int gself;

static struct admit_slot *
admit__at(uint32_t i)
{
	return (struct admit_slot *)(void *)(g->slots + (size_t)i * g->stride);
}

int
admit_init(const struct cfg *c)
{
	pthread_mutexattr_t a;
	size_t stride = (sizeof(struct admit_slot) + 4 * (size_t)c->workers + 7) & ~(size_t)7;
	uint32_t max = ADMIT_MAX_SLOTS;
	void *p;

	while ((p = mmap(NULL, sizeof(*g) + (size_t)max * stride, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)) == MAP_FAILED) {
		if (max == ADMIT_MIN_SLOTS)
			return -1;
		max /= 2;
	}
	if (max < ADMIT_MAX_SLOTS)
		log_warn("guard: room for %u slots only (the system refused a larger mapping)", max);
	g = p;
	gcfg = c;
	g->nslots = ADMIT_MIN_SLOTS;
	g->maxslots = max;
	g->workers = (uint32_t)c->workers;
	g->stride = (uint32_t)stride;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&g->lock, &a);
	pthread_mutexattr_destroy(&a);
	return 0;
}

void
admit_set_self(int index)
{
	gself = index;
}

static void
admit__lock(void)
{
	/* A worker killed while holding the lock leaves it to the next one. */
	if (pthread_mutex_lock(&g->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&g->lock);
}

static void
admit__unlock(void)
{
	pthread_mutex_unlock(&g->lock);
}

static int64_t
admit__now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static int64_t
admit__active(const struct admit_slot *s)
{
	int64_t n = 0;

	for (uint32_t i = 0; i < g->workers; i++)
		n += s->active[i];
	return n;
}

static int
admit__idle(const struct admit_slot *s, int64_t now)
{
	return admit__active(s) == 0 &&
	    now - s->win_start > gcfg->conn_attempts_window_s &&
	    now - s->fail_start > gcfg->auth_failures_window_s;
}

/* Twice the slots; the slots still in use are inserted again, the idle
 * ones dropped. Locked. */
static void
admit__grow(int64_t now)
{
	uint32_t n = 0, mask = g->nslots * 2 - 1;
	unsigned char *keep = xmalloc((size_t)g->used * g->stride);

	for (uint32_t i = 0; i < g->nslots; i++) {
		struct admit_slot *s = admit__at(i);

		if (s->key != 0 && !admit__idle(s, now) && n < g->used)
			memcpy(keep + (size_t)n++ * g->stride, s, g->stride);
	}
	g->nslots *= 2;
	memset(g->slots, 0, (size_t)g->nslots * g->stride);
	for (uint32_t j = 0; j < n; j++) {
		struct admit_slot *s = (struct admit_slot *)(void *)(keep + (size_t)j * g->stride);
		uint32_t i = (uint32_t)s->key & mask;

		while (admit__at(i)->key != 0)
			i = (i + 1) & mask;
		memcpy(admit__at(i), s, g->stride);
	}
	g->used = n;
	free(keep);
	log_info("admit: table grown to %u slots (%u in use)", g->nslots, n);
}

/* The slot of a key, claimed if needed (reusing an idle one); NULL when
 * not found and not claimed, or when the table is at its largest and has
 * no free or idle slot: then the limits are not applied (and a warning
 * says so, once a minute). Linear probing up to the first free slot: slots
 * only ever go from free to used, so a key is always before it. Locked. */
static struct admit_slot *
admit__slot(const char *kind, const char *a, const char *b, int claim)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s:%s/%s", kind, a, b ? b : "");
	/* Bit 1 tells a user's key from an address's (distinct users). */
	uint64_t key = kind[0] == 'u' ? util_hash(buf, (size_t)n) | 3
	    : (util_hash(buf, (size_t)n) | 1) & ~(uint64_t)2;
	int64_t now = admit__now();
	struct admit_slot *reuse = NULL, *fresh = NULL;
	uint32_t mask = g->nslots - 1;

	for (uint32_t i = 0; i < g->nslots; i++) {
		struct admit_slot *s = admit__at(((uint32_t)key + i) & mask);

		if (s->key == key)
			return s;
		if (s->key == 0) {
			fresh = s;
			break;
		}
		if (reuse == NULL && admit__idle(s, now))
			reuse = s;
	}
	if (!claim)
		return NULL;
	if (reuse == NULL) {
		if (fresh == NULL || (g->used + 1) * 4 > g->nslots * 3) {
			if (g->nslots < g->maxslots) {
				admit__grow(now);
				return admit__slot(kind, a, b, claim);
			}
			if (fresh == NULL) {
				if (now - g->warned >= 60 || g->warned == 0) {
					g->warned = now;
					log_warn("guard: all %u slots in use: connection limits not applied "
					    "to new addresses and users", g->nslots);
				}
				return NULL;
			}
		}
		reuse = fresh;
		g->used++;
	}
	memset(reuse, 0, g->stride);
	reuse->key = key;
	reuse->win_start = reuse->fail_start = (int32_t)now;
	return reuse;
}

int
admit_attempt(const char *ip)
{
	struct admit_slot *s;
	int64_t now = admit__now();
	int rc = 0;

	admit__lock();
	s = admit__slot("ip", ip, NULL, 1);
	if (s != NULL) {
		if (now - s->win_start >= gcfg->conn_attempts_window_s) {
			s->win_start = now;
			s->attempts = 0;
		}
		if (++s->attempts > gcfg->conn_attempts_per_ip)
			rc = -1;
	}
	admit__unlock();
	return rc;
}

int
admit_auth_blocked(const char *ip)
{
	struct admit_slot *s;
	int64_t now = admit__now();
	int rc = 0;

	admit__lock();
	s = admit__slot("ip", ip, NULL, 0);
	if (s != NULL && now - s->fail_start < gcfg->auth_failures_window_s &&
	    s->fails >= gcfg->auth_failures_per_ip)
		rc = -1;
	admit__unlock();
	return rc;
}

void
admit_auth_failed(const char *ip)
{
	struct admit_slot *s;
	int64_t now = admit__now();

	admit__lock();
	s = admit__slot("ip", ip, NULL, 1);
	if (s != NULL) {
		if (now - s->fail_start >= gcfg->auth_failures_window_s) {
			s->fail_start = now;
			s->fails = 0;
		}
		s->fails++;
	}
	admit__unlock();
}

int
admit_conn_check(const char *ip, const char *tenant, const char *user)
{
	struct admit_slot *s;
	int rc = 0;

	admit__lock();
	s = admit__slot("ip", ip, NULL, 0);
	if (s != NULL && admit__active(s) >= gcfg->max_conns_per_ip)
		rc = -1;
	s = admit__slot("user", tenant, user, 0);
	if (rc == 0 && s != NULL && admit__active(s) >= gcfg->max_conns_per_user)
		rc = -2;
	admit__unlock();
	return rc;
}

static void
admit__count(const char *ip, const char *tenant, const char *user, int delta)
{
	struct admit_slot *s;

	admit__lock();
	s = admit__slot("ip", ip, NULL, delta > 0);
	if (s != NULL && (delta > 0 || s->active[gself] > 0))
		s->active[gself] = (uint32_t)((int64_t)s->active[gself] + delta);
	s = admit__slot("user", tenant, user, delta > 0);
	if (s != NULL && (delta > 0 || s->active[gself] > 0)) {
		int64_t before = admit__active(s);

		s->active[gself] = (uint32_t)((int64_t)s->active[gself] + delta);
		if ((before == 0) != (admit__active(s) == 0)) {
			g->users += before == 0 ? 1 : -1;
			metrics_set_users(g->users);
		}
	}
	admit__unlock();
}

void
admit_conn_opened(const char *ip, const char *tenant, const char *user)
{
	admit__count(ip, tenant, user, 1);
}

void
admit_conn_closed(const char *ip, const char *tenant, const char *user)
{
	admit__count(ip, tenant, user, -1);
}

void
admit_worker_died(int index)
{
	admit__lock();
	g->users = 0;
	for (uint32_t i = 0; i < g->nslots; i++) {
		struct admit_slot *s = admit__at(i);

		s->active[index] = 0;
		if ((s->key & 2) && admit__active(s) > 0)
			g->users++;
	}
	metrics_set_users(g->users);
	admit__unlock();
}
