#ifndef CHATD_CIDR_H
#define CHATD_CIDR_H

#include <stddef.h>

/* Address ranges written as IPs or CIDRs ("127.0.0.1/8, ::1, 10.0.0.0/8"),
 * and whether a peer's address is in one. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is matched as the IPv4 address. */

#define CIDR_LIST_MAX 32

struct cidr {
	int v6;
	unsigned char addr[16];
	int bits;
};

/* Entries separated by commas or spaces; an empty text is an empty list.
 * 0 with *n entries in out, or -1 with the bad entry named in err. */
int cidr_parse_list(const char *text, struct cidr *out, int max, int *n,
    char *err, size_t errlen);
/* 1 when ip (text, as inet_ntop writes it) is in one of the n ranges. */
int cidr_match(const struct cidr *list, int n, const char *ip);

#endif
