#ifndef CHATD_FCGI_H
#define CHATD_FCGI_H

/*
 * The FastCGI transport of chatd-fcgi (docs/fcgi.md): the REST API
 * (net/rest.c) for a web server in front, over Debian's libfcgi.
 *
 * fcgi_threads threads block in FCGX_Accept_r on fcgi_socket (libfcgi's
 * multi-threaded use: FCGX_Init first, one FCGX_Request each). A thread
 * reads one request whole, its parameters (net/fcgi_req.c) and its body
 * (at most REST_MAX_BODY; a larger one is answered 413 unread), queues it
 * for the loop thread (a uv_async), waits for the answer, writes it and
 * finishes the request. The loop thread does all of chatd's work: each
 * request is a virtual connection (conn_virtual) run by rest_run, and its
 * answer comes back through conn_http_answer_json. The threads touch only
 * libfcgi, the queue, the allocator and the log.
 *
 * GET /api/monitoring/fcgi is this process's own figures (fcgi_json): the
 * monitoring of chatd's workers lives in chatd's shared memory, which
 * nginx reaches by proxying /api/monitoring/ to chatd.
 */

/* Opens fcgi_socket, starts the threads and the loop's hand-off (on
 * srv.loop). -1 (logged) when the socket cannot be opened. */
int fcgi_start(void);
/* Once a second: requests not answered within fcgi_timeout_ms get 503 (a
 * thread is not held by a command that never answers: hiredis and libpq
 * have no timeout of their own for a backend that hangs). */
void fcgi_tick(void);
/* SIGTERM: no more requests are accepted; those taken are answered
 * (srv.draining makes new commands 503). */
void fcgi_drain(void);
/* Requests taken and not yet written, or threads still running: 1. */
int fcgi_busy(void);
/* Exit: what still waits is answered 503, the threads are joined (a
 * bounded wait), the hand-off closed, a Unix socket removed. */
void fcgi_stop(void);

#endif
