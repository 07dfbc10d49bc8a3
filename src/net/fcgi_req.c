#include "net/fcgi_req.h"
#include "net/rest.h"
#include "lib/util.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <string.h>

const char *
fcgi_req_param(char *const *envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp != NULL && *envp != NULL; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

int
fcgi_req_method(const char *name)
{
#define FCGI_REQ_METHOD(num, id, text) if (strcmp(name, #text) == 0) return num;
	HTTP_METHOD_MAP(FCGI_REQ_METHOD)
#undef FCGI_REQ_METHOD
	return -1;
}

/* rest_request.header: header name as the parameter HTTP_<NAME>. */
static const char *
fcgi_req__header(const void *arg, const char *name, size_t *n)
{
	const struct fcgi_req *f = arg;
	char param[128] = "HTTP_";
	size_t k = 5;
	const char *v;

	for (; *name != '\0' && k + 1 < sizeof(param); name++)
		param[k++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
	param[k] = '\0';
	if (*name != '\0' || (v = fcgi_req_param(f->envp, param)) == NULL)
		return NULL;
	*n = strlen(v);
	return v;
}

/* The request's path: see fcgi_req_read. NULL when there is none. */
static const char *
fcgi_req__path(struct fcgi_req *f, size_t *n)
{
	const char *p = fcgi_req_param(f->envp, "DOCUMENT_URI");
	const char *script, *info;

	if (p != NULL && p[0] == '/') {
		*n = strlen(p);
		return p;
	}
	script = fcgi_req_param(f->envp, "SCRIPT_NAME");
	info = fcgi_req_param(f->envp, "PATH_INFO");
	if (script != NULL && (script[0] == '/' || (info != NULL && info[0] == '/'))) {
		int w = snprintf(f->path, sizeof(f->path), "%s%s", script, info ? info : "");

		if (w < 0 || (size_t)w >= sizeof(f->path))
			return NULL;
		*n = (size_t)w;
		return f->path;
	}
	p = fcgi_req_param(f->envp, "REQUEST_URI");
	if (p == NULL || p[0] != '/')
		return NULL;
	*n = strcspn(p, "?#");
	return p;
}

int
fcgi_req_read(struct fcgi_req *f, char **envp, struct rest_request *q)
{
	const char *m, *ip, *cl, *qs;
	long long v;

	memset(q, 0, sizeof(*q));
	f->envp = envp;
	f->content_length = -1;
	ip = fcgi_req_param(envp, "REMOTE_ADDR");
	snprintf(f->ip, sizeof(f->ip), "%s", ip != NULL && ip[0] != '\0' &&
	    strlen(ip) < sizeof(f->ip) ? ip : "?");
	cl = fcgi_req_param(envp, "CONTENT_LENGTH");
	if (cl != NULL && cl[0] != '\0' && util_parse_ll(cl, 0, INT64_MAX, &v) == 0)
		f->content_length = v;
	m = fcgi_req_param(envp, "REQUEST_METHOD");
	if (m == NULL || (q->path = fcgi_req__path(f, &q->path_len)) == NULL)
		return -1;
	q->method = fcgi_req_method(m);
	qs = fcgi_req_param(envp, "QUERY_STRING");
	if (qs != NULL && qs[0] != '\0') {
		q->query = qs;
		q->query_len = strlen(qs);
	}
	q->body = "";
	q->header = fcgi_req__header;
	q->arg = f;
	return 0;
}
