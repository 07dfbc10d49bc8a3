#ifndef CHATD_FUZZ_UTIL_H
#define CHATD_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fold n bytes into an FNV-1a hash: the targets that feed one input whole
 * and in chunks compare the two runs' events by their hash. */
static inline void
fuzz_mix(uint64_t *hash, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		*hash = (*hash ^ b[i]) * 1099511628211ull;
}

#endif
