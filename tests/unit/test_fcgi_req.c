/* Unit tests of src/net/fcgi_req.c: FastCGI parameters read as a REST
 * request, as nginx, Apache and a bare REQUEST_URI send them. */
#include "net/fcgi_req.c"

#include "unit.h"

static int
span_is(const char *p, size_t n, const char *want)
{
	return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* What nginx's fastcgi_params sends for a POST with two headers. */
static void
test_nginx(void)
{
	char *envp[] = {
		"QUERY_STRING=", "REQUEST_METHOD=POST", "CONTENT_TYPE=application/json",
		"CONTENT_LENGTH=17", "SCRIPT_NAME=/api/rooms/r1/messages",
		"REQUEST_URI=/api/rooms/r1/messages?x=1", "DOCUMENT_URI=/api/rooms/r1/messages",
		"REMOTE_ADDR=127.0.0.1", "HTTP_AUTHORIZATION=Bearer abc.def.ghi",
		"HTTP_IDEMPOTENCY_KEY=k-1", NULL
	};
	struct fcgi_req f;
	struct rest_request q;
	size_t n = 0;
	const char *v;

	CHECK_INT(fcgi_req_read(&f, envp, &q), 0);
	CHECK_INT(q.method, HTTP_POST);
	CHECK(span_is(q.path, q.path_len, "/api/rooms/r1/messages"));
	CHECK(q.query == NULL && q.query_len == 0);
	CHECK_STR(f.ip, "127.0.0.1");
	CHECK_INT(f.content_length, 17);
	CHECK_INT(q.body_len, 0);
	CHECK(!q.body_too_large);
	v = q.header(q.arg, "Authorization", &n);
	CHECK(span_is(v, n, "Bearer abc.def.ghi"));
	v = q.header(q.arg, "idempotency-key", &n);
	CHECK(span_is(v, n, "k-1"));
	CHECK(q.header(q.arg, "Last-Event-ID", &n) == NULL);
	CHECK(q.header(q.arg, "Content-Type", &n) == NULL);	/* CONTENT_TYPE, not HTTP_ */
}

static void
test_query_and_method(void)
{
	char *envp[] = {
		"REQUEST_METHOD=PATCH", "DOCUMENT_URI=/api/search", "QUERY_STRING=q=hi%20there&limit=5",
		NULL
	};
	struct fcgi_req f;
	struct rest_request q;

	CHECK_INT(fcgi_req_read(&f, envp, &q), 0);
	CHECK_INT(q.method, HTTP_PATCH);
	CHECK(span_is(q.query, q.query_len, "q=hi%20there&limit=5"));
	CHECK_STR(f.ip, "?");
	CHECK_INT(f.content_length, -1);
	CHECK_INT(fcgi_req_method("GET"), HTTP_GET);
	CHECK_INT(fcgi_req_method("DELETE"), HTTP_DELETE);
	CHECK_INT(fcgi_req_method("get"), -1);
	CHECK_INT(fcgi_req_method("BREW"), -1);
}

/* Apache's mod_proxy_fcgi and lighttpd: SCRIPT_NAME and PATH_INFO; a bare
 * gateway: REQUEST_URI only. */
static void
test_other_paths(void)
{
	char *apache[] = {
		"REQUEST_METHOD=GET", "SCRIPT_NAME=/api", "PATH_INFO=/rooms/r1",
		"REQUEST_URI=/api/rooms/r1", NULL
	};
	char *bare[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/api/rooms?limit=3#x", NULL };
	char *none[] = { "REQUEST_METHOD=GET", "QUERY_STRING=a=b", NULL };
	char *nomethod[] = { "DOCUMENT_URI=/api/rooms", NULL };
	char *badlen[] = { "REQUEST_METHOD=GET", "DOCUMENT_URI=/api/rooms", "CONTENT_LENGTH=12x",
	    NULL };
	struct fcgi_req f;
	struct rest_request q;

	CHECK_INT(fcgi_req_read(&f, apache, &q), 0);
	CHECK(span_is(q.path, q.path_len, "/api/rooms/r1"));
	CHECK_INT(fcgi_req_read(&f, bare, &q), 0);
	CHECK(span_is(q.path, q.path_len, "/api/rooms"));
	CHECK_INT(fcgi_req_read(&f, none, &q), -1);
	CHECK_INT(fcgi_req_read(&f, nomethod, &q), -1);
	CHECK_INT(fcgi_req_read(&f, badlen, &q), 0);
	CHECK_INT(f.content_length, -1);
}

/* Limits: a path over FCGI_REQ_PATH_MAX, an address over FCGI_REQ_IP_MAX,
 * a header name over the lookup's buffer. */
static void
test_limits(void)
{
	static char script[FCGI_REQ_PATH_MAX + 16] = "SCRIPT_NAME=/";
	static char ip[FCGI_REQ_IP_MAX + 32] = "REMOTE_ADDR=";
	char *long_path[] = { "REQUEST_METHOD=GET", script, "PATH_INFO=/x", NULL };
	char *long_ip[] = { "REQUEST_METHOD=GET", "DOCUMENT_URI=/api/rooms", ip, NULL };
	char name[200];
	struct fcgi_req f;
	struct rest_request q;
	size_t n;

	memset(script + strlen(script), 'a', FCGI_REQ_PATH_MAX);
	memset(ip + strlen(ip), '1', FCGI_REQ_IP_MAX);
	CHECK_INT(fcgi_req_read(&f, long_path, &q), -1);
	CHECK_INT(fcgi_req_read(&f, long_ip, &q), 0);
	CHECK_STR(f.ip, "?");
	memset(name, 'A', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	CHECK(q.header(q.arg, name, &n) == NULL);
}

int
main(void)
{
	UNIT_RUN(test_nginx);
	UNIT_RUN(test_query_and_method);
	UNIT_RUN(test_other_paths);
	UNIT_RUN(test_limits);
	return UNIT_DONE();
}
