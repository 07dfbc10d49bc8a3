#include "lg.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* base64url without padding; out needs 4 * ceil(n / 3) + 1 bytes. */
static size_t
auth__b64url(char *out, const void *in, size_t n)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (int i = 0; i < len; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return (size_t)len;
}

char *
auth_token_hs256(const char *secret, const char *user, const char *tenant, long ttl_s)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char claims[512], buf[1024];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	long long now = (long long)time(NULL);
	size_t n;
	int c;

	c = snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"tenant\":\"%s\",\"iat\":%lld,"
	    "\"exp\":%lld}", user, tenant, now, now + ttl_s);
	if (c < 0 || (size_t)c >= sizeof(claims))
		return NULL;
	n = auth__b64url(buf, header, sizeof(header) - 1);
	buf[n++] = '.';
	n += auth__b64url(buf + n, claims, (size_t)c);
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)buf, n, mac,
	    &maclen) == NULL)
		return NULL;
	buf[n++] = '.';
	auth__b64url(buf + n, mac, maclen);
	return strdup(buf);
}

char *
auth_token_cmd(const char *cmd, const char *user)
{
	char line[4096], *out = NULL;
	size_t ulen = strlen(user), len = 0, cap = strlen(cmd) + 1;
	const char *p;
	FILE *f;
	int rc;

	for (p = cmd; (p = strstr(p, "%s")) != NULL; p += 2)
		cap += ulen;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	for (p = cmd; *p; p++) {
		if (p[0] == '%' && p[1] == 's') {
			memcpy(out + len, user, ulen);
			len += ulen;
			p++;
		} else {
			out[len++] = *p;
		}
	}
	out[len] = '\0';
	f = popen(out, "r");
	if (f == NULL) {
		fprintf(stderr, "loadgen: cannot run token command: %s\n", out);
		free(out);
		return NULL;
	}
	line[0] = '\0';
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	rc = pclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	if (rc != 0 || line[0] == '\0') {
		fprintf(stderr, "loadgen: token command failed (status %d): %s\n", rc, out);
		free(out);
		return NULL;
	}
	free(out);
	return strdup(line);
}
