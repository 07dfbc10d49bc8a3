#include "net/fcgi.h"
#include "net/auth.h"
#include "net/conn.h"
#include "net/fcgi_req.h"
#include "net/http.h"
#include "net/rest.h"
#include "lib/cidr.h"
#include "lib/util.h"
#include "proc/log.h"
#include "proc/srv.h"
#include "store/pg_queue.h"
#include "store/redis.h"

#include <errno.h>
#include <fcgiapp.h>
#include <http_parser.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FCGI_BACKLOG 1024
/* At exit, how long the threads get to finish their last request. */
#define FCGI_JOIN_WAIT_S 3
/* accept failed for another reason than the drain: a thread retries after. */
#define FCGI_ACCEPT_RETRY_US 100000
#define FCGI_MONITORING "/api/monitoring/fcgi"

/* One request, from its thread's accept to its answer written. It lives
 * on the thread's stack: the loop does not touch it after setting done. */
struct fcgi_job {
	struct fcgi_req req;		/* the parameters; the FCGX_Request's */
	struct rest_request q;		/* q.body: the thread's buffer */
	int slot;			/* the thread's index, in inflight[] */
	struct fcgi_job *next;		/* the queue to the loop */
	/* The loop's, until done: */
	struct conn *c;			/* the virtual connection (a reference); NULL once answered */
	uint64_t start_ms;		/* when the loop took it (loop time) */
	char *out;			/* the response, head and body; owned, the thread frees it */
	size_t outlen;
	int done;			/* under fcgi_lock: out is ready */
};

struct fcgi_thread {
	pthread_t tid;
	int index;
	int joined;
	char *body;			/* REST_MAX_BODY + 1 bytes; owned */
	pthread_cond_t answered;	/* its job is done (with fcgi_lock) */
};

/* Between the threads and the loop. */
static pthread_mutex_t fcgi_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fcgi_job *queue_head, *queue_tail;	/* fcgi_lock */
static int alive;					/* threads running; fcgi_lock */
static int loop_gone;					/* fcgi_stop ran; fcgi_lock */
static uv_async_t wake;
/* libfcgi's accept, one thread at a time (its threaded example does so). */
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;
static int draining;			/* atomic: the threads read it */
static int listen_fd = -1;

/* The loop's. */
static struct fcgi_thread *threads;	/* owned */
static struct fcgi_job **inflight;	/* by slot; owned */
static int nthreads, started;
static struct {
	uint64_t requests, by_class[6], too_large, timeouts;
	int64_t started_ms;
} stats;

/* -------------------------------------------------------- the response */

/* A response as the thread writes it: Status, the JSON headers, headers
 * (whole lines), the body. Owned by the caller. */
static char *
fcgi__format(int status, const char *json, size_t len, const char *headers, size_t *outlen)
{
	char head[1024];
	int hn = snprintf(head, sizeof(head), "Status: %d %s\r\nContent-Type: application/json\r\n"
	    "Cache-Control: no-store\r\n%sContent-Length: %zu\r\n\r\n", status, http_reason(status),
	    headers ? headers : "", len);
	char *out;

	if (hn < 0 || (size_t)hn >= sizeof(head))
		log_fatal("fcgi: response head too long");
	out = xmalloc((size_t)hn + len);
	memcpy(out, head, (size_t)hn);
	memcpy(out + hn, json, len);
	*outlen = (size_t)hn + len;
	return out;
}

/* The job's answer: handed to its thread, which writes it. The job is the
 * thread's again once done is set. */
static void
fcgi__respond(struct fcgi_job *j, int status, const char *json, size_t len, const char *headers)
{
	struct conn *c = j->c;
	int slot = j->slot;

	j->out = fcgi__format(status, json, len, headers, &j->outlen);
	stats.by_class[status / 100 < 6 ? status / 100 : 0]++;
	inflight[slot] = NULL;
	j->c = NULL;
	pthread_mutex_lock(&fcgi_lock);
	j->done = 1;
	pthread_cond_signal(&threads[slot].answered);
	pthread_mutex_unlock(&fcgi_lock);
	if (c != NULL)
		conn_unref(c);	/* the job's: a command still waiting holds its own */
}

/* An answer made here, in the REST API's error format. */
static void
fcgi__error(struct fcgi_job *j, int status, const char *code, const char *why,
    const char *headers)
{
	char body[320];
	int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"code\":\"%s\",\"status\":%d}",
	    why, code, status);

	fcgi__respond(j, status, body, (size_t)n, headers);
}

/* A command's answer (proto/reply.c, net/rest.c, through net/conn). The
 * first one counts; a late one (after a timeout) finds no job. */
static void
fcgi__answer(struct conn *c, int status, const char *json, size_t len, const char *headers)
{
	struct fcgi_job *j = NULL;

	for (int i = 0; i < nthreads && j == NULL; i++)
		if (inflight[i] != NULL && inflight[i]->c == c)
			j = inflight[i];
	if (j == NULL || c->rest == CONN_REST_NONE)
		return;
	c->rest = c->rest == CONN_REST_WAITING ? CONN_REST_ANSWERED : CONN_REST_NONE;
	fcgi__respond(j, status, json, len, headers);
}

/* ------------------------------------------------ this process's figures */

/* The admission rule of chatd's monitoring: a peer in monitoring_trusted
 * (REMOTE_ADDR, the web server's client), or an admin's token. */
static int
fcgi__admitted(const struct fcgi_job *j)
{
	char token[4200];
	struct auth_identity id;
	const char *v, *reason;
	size_t n;

	if (cidr_match(srv.cfg->trusted, srv.cfg->ntrusted, j->req.ip))
		return 1;
	v = j->q.header(j->q.arg, "Authorization", &n);
	if (v == NULL || n <= 7 || strncasecmp(v, "Bearer ", 7) != 0 || n - 7 >= sizeof(token))
		return 0;
	memcpy(token, v + 7, n - 7);
	token[n - 7] = '\0';
	return auth_verify(srv.cfg, token, &id, &reason) == 0 && id.admin;
}

static void
fcgi__monitoring(struct fcgi_job *j)
{
	int running, busy = 0;
	json_t *o;
	char *text;

	if (j->q.method != HTTP_GET && j->q.method != HTTP_HEAD) {
		fcgi__error(j, 405, "bad_request", "method not allowed", "Allow: GET, HEAD\r\n");
		return;
	}
	if (!fcgi__admitted(j)) {
		fcgi__error(j, 401, "unauthorized", "admin token required", "WWW-Authenticate: Bearer\r\n");
		return;
	}
	pthread_mutex_lock(&fcgi_lock);
	running = alive;
	pthread_mutex_unlock(&fcgi_lock);
	for (int i = 0; i < nthreads; i++)
		busy += inflight[i] != NULL;
	o = json_pack("{s:s, s:i, s:I, s:s, s:b, s:{s:i, s:i}, s:{s:I, s:i, s:{s:I, s:I, s:I}, "
	    "s:I, s:I}, s:{s:b}, s:{s:b}}",
	    "process", "chatd-fcgi", "pid", (int)getpid(),
	    "uptime_s", (json_int_t)((util_now_ms() - stats.started_ms) / 1000),
	    "socket", srv.cfg->fcgi_socket, "draining", srv.draining,
	    "threads", "configured", nthreads, "running", running,
	    "requests", "total", (json_int_t)stats.requests, "in_flight", busy,
	    "answered", "2xx", (json_int_t)stats.by_class[2], "4xx", (json_int_t)stats.by_class[4],
	    "5xx", (json_int_t)stats.by_class[5],
	    "too_large", (json_int_t)stats.too_large, "timeouts", (json_int_t)stats.timeouts,
	    "redis", "connected", redis_ready(), "postgres", "connected", pgq_up(srv.pg));
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	if (text == NULL)
		log_fatal("fcgi: cannot build the monitoring JSON");
	fcgi__respond(j, 200, text, strlen(text), NULL);
	free(text);
	json_decref(o);
}

/* -------------------------------------------------------- the loop's side */

static int
fcgi__is(const struct rest_request *q, const char *path)
{
	return q->path_len == strlen(path) && memcmp(q->path, path, q->path_len) == 0;
}

/* A request from a thread: a virtual connection runs it as REST. */
static void
fcgi__take(struct fcgi_job *j)
{
	struct conn *c;

	j->start_ms = uv_now(srv.loop);
	inflight[j->slot] = j;
	stats.requests++;
	stats.too_large += j->q.body_too_large != 0;
	if (fcgi__is(&j->q, FCGI_MONITORING)) {
		fcgi__monitoring(j);
		return;
	}
	c = conn_virtual(j->req.ip);
	j->c = c;
	conn_ref(c);	/* rest_run's: the answer may come, and drop the job's, before it returns */
	rest_run(c, &j->q);
	conn_unref(c);
}

static void
fcgi__wake(uv_async_t *h)
{
	struct fcgi_job *list, *j;

	(void)h;
	pthread_mutex_lock(&fcgi_lock);
	list = queue_head;
	queue_head = queue_tail = NULL;
	pthread_mutex_unlock(&fcgi_lock);
	while ((j = list) != NULL) {
		list = j->next;
		fcgi__take(j);
	}
}

void
fcgi_tick(void)
{
	uint64_t now = uv_now(srv.loop);

	for (int i = 0; i < nthreads; i++) {
		struct fcgi_job *j = inflight[i];

		if (j == NULL || now - j->start_ms < (uint64_t)srv.cfg->fcgi_timeout_ms)
			continue;
		stats.timeouts++;
		log_warn("fcgi from %s: %.*s not answered in %d ms: 503", j->req.ip, (int)j->q.path_len,
		    j->q.path, srv.cfg->fcgi_timeout_ms);
		if (j->c != NULL)
			j->c->rest = CONN_REST_NONE;	/* a late answer is dropped */
		fcgi__error(j, 503, "unavailable", "no answer in time; retry", "Retry-After: 1\r\n");
	}
}

/* -------------------------------------------------------- the threads' side */

/* An answer the thread makes itself (no request to run, or no loop). */
static void
fcgi__write_error(FCGX_Request *r, int status, const char *code, const char *why)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"code\":\"%s\",\"status\":%d}",
	    why, code, status);
	size_t len;
	char *out = fcgi__format(status, body, (size_t)n, NULL, &len);

	FCGX_PutStr(out, (int)len, r->out);
	free(out);
}

/* The body, at most REST_MAX_BODY: one declared or found larger is not
 * kept (rest_run answers 413; libfcgi discards the rest at the finish). */
static void
fcgi__read_body(struct fcgi_thread *t, FCGX_Request *r, struct fcgi_job *j)
{
	int n;

	if (j->req.content_length > REST_MAX_BODY) {
		j->q.body_too_large = 1;
		return;
	}
	n = FCGX_GetStr(t->body, REST_MAX_BODY + 1, r->in);
	if (n > REST_MAX_BODY)
		j->q.body_too_large = 1;
	else if (n > 0) {
		j->q.body = t->body;
		j->q.body_len = (size_t)n;
	}
}

/* One accepted request: read, handed to the loop, its answer written. */
static void
fcgi__serve(struct fcgi_thread *t, FCGX_Request *r)
{
	struct fcgi_job j;

	memset(&j, 0, sizeof(j));
	j.slot = t->index;
	if (fcgi_req_read(&j.req, r->envp, &j.q) != 0) {
		fcgi__write_error(r, 400, "bad_request", "no REQUEST_METHOD or path");
		return;
	}
	fcgi__read_body(t, r, &j);
	pthread_mutex_lock(&fcgi_lock);
	if (loop_gone) {
		pthread_mutex_unlock(&fcgi_lock);
		fcgi__write_error(r, 503, "unavailable", "server shutting down");
		return;
	}
	if (queue_tail != NULL)
		queue_tail->next = &j;
	else
		queue_head = &j;
	queue_tail = &j;
	uv_async_send(&wake);	/* under the lock: fcgi_stop closes it under the lock */
	while (!j.done)
		pthread_cond_wait(&t->answered, &fcgi_lock);
	pthread_mutex_unlock(&fcgi_lock);
	if (FCGX_PutStr(j.out, (int)j.outlen, r->out) < 0)
		log_info("fcgi from %s: the web server went away before the answer", j.req.ip);
	free(j.out);
}

static void *
fcgi__thread(void *arg)
{
	struct fcgi_thread *t = arg;
	FCGX_Request r;

	if (FCGX_InitRequest(&r, listen_fd, 0) != 0)
		log_fatal("fcgi: FCGX_InitRequest failed");
	for (;;) {
		int rc;

		pthread_mutex_lock(&accept_lock);
		rc = FCGX_Accept_r(&r);
		pthread_mutex_unlock(&accept_lock);
		if (rc < 0 && __atomic_load_n(&draining, __ATOMIC_SEQ_CST))
			break;
		if (rc < 0) {
			log_warn("fcgi: accept failed: %s; again in %d ms", strerror(-rc),
			    FCGI_ACCEPT_RETRY_US / 1000);
			usleep(FCGI_ACCEPT_RETRY_US);
			continue;
		}
		fcgi__serve(t, &r);
		FCGX_Finish_r(&r);
	}
	FCGX_Free(&r, 1);
	pthread_mutex_lock(&fcgi_lock);
	alive--;
	pthread_mutex_unlock(&fcgi_lock);
	return NULL;
}

/* -------------------------------------------------------- start and stop */

/* libfcgi's rule, which the configuration enforces: "host:port" is TCP,
 * a path without ':' a Unix socket. */
static int
fcgi__unix_path(const char *path)
{
	return strchr(path, ':') == NULL;
}

/* libfcgi replaces the file at a Unix socket's path: refuse when a live
 * server (another chatd-fcgi) answers there, rather than take its socket. */
static int
fcgi__path_in_use(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, used;

	if (!fcgi__unix_path(path) || strlen(path) >= sizeof(sa.sun_path))
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	used = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return used;
}

int
fcgi_start(void)
{
	const char *path = srv.cfg->fcgi_socket;
	sigset_t all, old;

	if (FCGX_Init() != 0) {
		log_err("fcgi: FCGX_Init failed");
		return -1;
	}
	if (fcgi__path_in_use(path)) {
		log_err("fcgi: %s is in use (another chatd-fcgi?)", path);
		return -1;
	}
	listen_fd = FCGX_OpenSocket(path, FCGI_BACKLOG);
	if (listen_fd < 0) {
		log_err("fcgi: cannot listen on %s: %s", path, strerror(errno));
		return -1;
	}
	/* The web server's user reaches the socket through its group. */
	if (fcgi__unix_path(path) && chmod(path, 0660) != 0)
		log_warn("fcgi: chmod 0660 %s: %s", path, strerror(errno));
	uv_async_init(srv.loop, &wake, fcgi__wake);
	conn_set_http_answer(fcgi__answer);
	nthreads = srv.cfg->fcgi_threads;
	threads = xcalloc((size_t)nthreads, sizeof(*threads));
	inflight = xcalloc((size_t)nthreads, sizeof(*inflight));
	stats.started_ms = util_now_ms();
	/* Signals are the loop thread's (uv_signal_t). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < nthreads; i++) {
		struct fcgi_thread *t = &threads[i];

		t->index = i;
		t->body = xmalloc(REST_MAX_BODY + 1);
		pthread_cond_init(&t->answered, NULL);
		pthread_mutex_lock(&fcgi_lock);
		alive++;
		pthread_mutex_unlock(&fcgi_lock);
		if (pthread_create(&t->tid, NULL, fcgi__thread, t) != 0)
			log_fatal("fcgi: cannot start a thread");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	started = 1;
	log_info("chatd-fcgi: listening on %s with %d threads", path, nthreads);
	return 0;
}

void
fcgi_drain(void)
{
	if (!started || draining)
		return;
	__atomic_store_n(&draining, 1, __ATOMIC_SEQ_CST);
	FCGX_ShutdownPending();
	/* Wakes the thread blocked in accept() (EINVAL); the others then
	 * find the socket shut at once. */
	shutdown(listen_fd, SHUT_RDWR);
}

int
fcgi_busy(void)
{
	int busy;

	pthread_mutex_lock(&fcgi_lock);
	busy = alive > 0 || queue_head != NULL;
	pthread_mutex_unlock(&fcgi_lock);
	for (int i = 0; i < nthreads && !busy; i++)
		busy = inflight[i] != NULL;
	return busy;
}

/* Threads wait for the job's answer: every job is answered 503 now. */
static void
fcgi__answer_all(void)
{
	struct fcgi_job *list, *j;

	pthread_mutex_lock(&fcgi_lock);
	loop_gone = 1;
	list = queue_head;
	queue_head = queue_tail = NULL;
	pthread_mutex_unlock(&fcgi_lock);
	while ((j = list) != NULL) {
		list = j->next;
		inflight[j->slot] = j;
	}
	for (int i = 0; i < nthreads; i++) {
		if ((j = inflight[i]) == NULL)
			continue;
		if (j->c != NULL)
			j->c->rest = CONN_REST_NONE;
		fcgi__error(j, 503, "unavailable", "server shutting down", "Retry-After: 1\r\n");
	}
}

void
fcgi_stop(void)
{
	struct timespec until;
	int left = 0;

	if (!started)
		return;
	started = 0;
	fcgi_drain();
	fcgi__answer_all();
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += FCGI_JOIN_WAIT_S;
	for (int i = 0; i < nthreads; i++) {
		if (pthread_timedjoin_np(threads[i].tid, NULL, &until) == 0) {
			threads[i].joined = 1;
			continue;
		}
		left++;
		pthread_detach(threads[i].tid);
	}
	uv_close((uv_handle_t *)&wake, NULL);
	conn_set_http_answer(NULL);
	if (fcgi__unix_path(srv.cfg->fcgi_socket))
		unlink(srv.cfg->fcgi_socket);
	if (left > 0) {
		/* Still in libfcgi (a web server that does not read): their
		 * buffers and the socket stay, the exit takes them. */
		log_warn("fcgi: %d threads still busy at exit", left);
		return;
	}
	for (int i = 0; i < nthreads; i++) {
		free(threads[i].body);
		pthread_cond_destroy(&threads[i].answered);
	}
	free(threads);
	free(inflight);
	threads = NULL;
	inflight = NULL;
	nthreads = 0;
	close(listen_fd);
	listen_fd = -1;
}
