#include "lib/cidr.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* ip as 4 or 16 bytes; a v4-mapped IPv6 address becomes IPv4. */
static int
cidr__addr(const char *ip, unsigned char addr[16], int *v6)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (inet_pton(AF_INET, ip, addr) == 1) {
		*v6 = 0;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, addr) != 1)
		return -1;
	*v6 = 1;
	if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
		memmove(addr, addr + 12, 4);
		*v6 = 0;
	}
	return 0;
}

static int
cidr__parse(const char *entry, struct cidr *c)
{
	char ip[64];
	const char *slash = strchr(entry, '/');
	size_t n = slash ? (size_t)(slash - entry) : strlen(entry);
	long long bits;

	if (n == 0 || n >= sizeof(ip))
		return -1;
	memcpy(ip, entry, n);
	ip[n] = '\0';
	if (cidr__addr(ip, c->addr, &c->v6) != 0)
		return -1;
	c->bits = c->v6 ? 128 : 32;
	if (slash != NULL) {
		if (util_parse_ll(slash + 1, 0, c->bits, &bits) != 0)
			return -1;
		c->bits = (int)bits;
	}
	return 0;
}

int
cidr_parse_list(const char *text, struct cidr *out, int max, int *n, char *err, size_t errlen)
{
	const char *p = text;

	*n = 0;
	while (*p != '\0') {
		char entry[80];
		size_t len = strcspn(p, ", \t");

		if (len == 0) {
			p++;
			continue;
		}
		if (len >= sizeof(entry) || *n == max) {
			snprintf(err, errlen, "\"%.*s\" is too long, or more than %d entries",
			    (int)(len < 40 ? len : 40), p, max);
			return -1;
		}
		memcpy(entry, p, len);
		entry[len] = '\0';
		if (cidr__parse(entry, &out[*n]) != 0) {
			snprintf(err, errlen, "\"%s\" is not an IP address or CIDR", entry);
			return -1;
		}
		(*n)++;
		p += len;
	}
	return 0;
}

int
cidr_match(const struct cidr *list, int n, const char *ip)
{
	unsigned char addr[16];
	int v6;

	if (cidr__addr(ip, addr, &v6) != 0)
		return 0;
	for (int i = 0; i < n; i++) {
		const struct cidr *c = &list[i];
		int full = c->bits / 8, rest = c->bits % 8;

		if (c->v6 != v6 || memcmp(c->addr, addr, (size_t)full) != 0)
			continue;
		if (rest == 0 || ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff) == 0)
			return 1;
	}
	return 0;
}
