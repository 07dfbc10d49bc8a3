#ifndef CHATD_TEST_REF_UTF8_H
#define CHATD_TEST_REF_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* A plain UTF-8 decoder written the other way round (by code point), to
 * check src/lib/utf8.c's state machine against: the unit test and the
 * frame fuzzer include it. 1 when p[0..n) is valid. */
static inline int
ref_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t k;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc0 && c < 0xe0) {
			k = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c < 0xf0) {
			k = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c < 0xf8) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

#endif
