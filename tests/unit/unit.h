#ifndef CHATD_UNIT_H
#define CHATD_UNIT_H

/*
 * The smallest harness that does the job, H2O's t/00unit way: a test file
 * #includes the .c under test (so it sees its static functions), defines
 * static test functions with CHECKs in them, and main() runs each with
 * UNIT_RUN and ends with UNIT_DONE. A failed CHECK prints file:line and the
 * test goes on, so one run shows every broken case.
 */

#include <stdio.h>
#include <string.h>

static int unit_checks_failed;
static int unit_tests_passed;
static int unit_tests_failed;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		unit_checks_failed++; \
	} \
} while (0)

#define CHECK_INT(a, b) do { \
	long long unit_a_ = (long long)(a), unit_b_ = (long long)(b); \
	if (unit_a_ != unit_b_) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
		    __FILE__, __LINE__, #a, #b, unit_a_, unit_b_); \
		unit_checks_failed++; \
	} \
} while (0)

#define CHECK_STR(a, b) do { \
	const char *unit_a_ = (a), *unit_b_ = (b); \
	if (strcmp(unit_a_, unit_b_) != 0) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s == %s\n  got:  \"%s\"\n  want: \"%s\"\n", \
		    __FILE__, __LINE__, #a, #b, unit_a_, unit_b_); \
		unit_checks_failed++; \
	} \
} while (0)

#define UNIT_RUN(fn) do { \
	int unit_before_ = unit_checks_failed; \
	fn(); \
	if (unit_checks_failed == unit_before_) { \
		unit_tests_passed++; \
	} else { \
		unit_tests_failed++; \
		fprintf(stderr, "FAIL %s\n", #fn); \
	} \
} while (0)

/* The last line of every test binary; main's exit status. */
#define UNIT_DONE() ( \
	printf("%s: %d passed, %d failed\n", __FILE__, unit_tests_passed, unit_tests_failed), \
	unit_tests_failed != 0)

#endif
