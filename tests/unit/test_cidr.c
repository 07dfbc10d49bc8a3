/* Unit tests of src/lib/cidr.c: the monitoring_trusted lists. */
#include "lib/cidr.c"

#include "unit.h"

static void
test_default_list(void)
{
	struct cidr l[CIDR_LIST_MAX];
	char err[160];
	int n = -1;

	CHECK_INT(cidr_parse_list("127.0.0.1/8, ::1", l, CIDR_LIST_MAX, &n, err, sizeof(err)), 0);
	CHECK_INT(n, 2);
	CHECK(cidr_match(l, n, "127.0.0.1"));
	CHECK(cidr_match(l, n, "127.255.3.4"));
	CHECK(cidr_match(l, n, "::1"));
	CHECK(cidr_match(l, n, "::ffff:127.0.0.9"));
	CHECK(!cidr_match(l, n, "128.0.0.1"));
	CHECK(!cidr_match(l, n, "10.0.0.1"));
	CHECK(!cidr_match(l, n, "::2"));
	CHECK(!cidr_match(l, n, "not an ip"));
}

static void
test_prefixes(void)
{
	struct cidr l[CIDR_LIST_MAX];
	char err[160];
	int n = -1;

	CHECK_INT(cidr_parse_list("10.1.2.0/23 2001:db8::/33 192.168.1.7", l, CIDR_LIST_MAX, &n,
	    err, sizeof(err)), 0);
	CHECK_INT(n, 3);
	CHECK(cidr_match(l, n, "10.1.3.255"));
	CHECK(!cidr_match(l, n, "10.1.4.0"));
	CHECK(cidr_match(l, n, "2001:db8:7fff::1"));
	CHECK(!cidr_match(l, n, "2001:db8:8000::1"));
	CHECK(cidr_match(l, n, "192.168.1.7"));
	CHECK(!cidr_match(l, n, "192.168.1.8"));
	CHECK_INT(cidr_parse_list("0.0.0.0/0", l, CIDR_LIST_MAX, &n, err, sizeof(err)), 0);
	CHECK(cidr_match(l, n, "203.0.113.5"));
	CHECK(!cidr_match(l, n, "::5"));
}

static void
test_empty_and_bad(void)
{
	struct cidr l[2];
	char err[160];
	int n = -1;

	CHECK_INT(cidr_parse_list("", l, 2, &n, err, sizeof(err)), 0);
	CHECK_INT(n, 0);
	CHECK(!cidr_match(l, n, "127.0.0.1"));
	CHECK_INT(cidr_parse_list(" , ", l, 2, &n, err, sizeof(err)), 0);
	CHECK_INT(n, 0);
	CHECK_INT(cidr_parse_list("127.0.0.1/33", l, 2, &n, err, sizeof(err)), -1);
	CHECK(strstr(err, "127.0.0.1/33") != NULL);
	CHECK_INT(cidr_parse_list("::1/129", l, 2, &n, err, sizeof(err)), -1);
	CHECK_INT(cidr_parse_list("localhost", l, 2, &n, err, sizeof(err)), -1);
	CHECK_INT(cidr_parse_list("10.0.0.1/", l, 2, &n, err, sizeof(err)), -1);
	CHECK_INT(cidr_parse_list("1.1.1.1 2.2.2.2 3.3.3.3", l, 2, &n, err, sizeof(err)), -1);
}

int
main(void)
{
	UNIT_RUN(test_default_list);
	UNIT_RUN(test_prefixes);
	UNIT_RUN(test_empty_and_bad);
	return UNIT_DONE();
}
