#ifndef CHATD_FCGI_REQ_H
#define CHATD_FCGI_REQ_H

#include <stddef.h>

struct rest_request;

/*
 * A FastCGI request's parameters (the CGI/1.1 variables a web server sends:
 * REQUEST_METHOD, DOCUMENT_URI, QUERY_STRING, REMOTE_ADDR, CONTENT_LENGTH,
 * HTTP_<header>) read as a REST request (net/rest.h). No socket, no libfcgi,
 * so unit tests run exactly this; net/fcgi.c adds the body from FCGI_STDIN.
 */

/* The longest path made of SCRIPT_NAME and PATH_INFO. */
#define FCGI_REQ_PATH_MAX 2048
/* The longest REMOTE_ADDR kept (an IPv6 address is 45). */
#define FCGI_REQ_IP_MAX 64

struct fcgi_req {
	char **envp;			/* "NAME=value"..., NULL-ended; the caller's */
	char path[FCGI_REQ_PATH_MAX];	/* SCRIPT_NAME + PATH_INFO, when that is the path */
	char ip[FCGI_REQ_IP_MAX];	/* REMOTE_ADDR, or "?" */
	long long content_length;	/* CONTENT_LENGTH; -1 when absent or not a number */
};

/* The value of parameter name, or NULL. */
const char *fcgi_req_param(char *const *envp, const char *name);

/* Reads envp into f and q (but the body, which stays empty). The path is
 * DOCUMENT_URI (nginx), else SCRIPT_NAME followed by PATH_INFO (Apache,
 * lighttpd), else REQUEST_URI up to its '?'. q's header lookup reads
 * HTTP_<NAME> (upper case, '-' as '_') of f, which must outlive q. 0, or
 * -1 when there is no method or no path (not a request to answer). */
int fcgi_req_read(struct fcgi_req *f, char **envp, struct rest_request *q);

/* An HTTP method's name as http-parser's enum http_method; -1 unknown. */
int fcgi_req_method(const char *name);

#endif
