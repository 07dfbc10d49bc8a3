#ifndef CHATD_UTF8_H
#define CHATD_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * UTF-8 validation that can stop and resume anywhere, as RFC 6455 needs for
 * a text message that arrives in pieces (frames, fragments, reads): the
 * state after one piece is the state to start the next one with. Strict
 * RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF), nothing past
 * U+10FFFF. Pure; no allocation.
 */

#define UTF8_ACCEPT 0u	/* between characters: a complete text may end here */
#define UTF8_REJECT 8u	/* an invalid byte was seen; stays rejected */

/* The state after p[0..n) starting from state. Stops at the first invalid
 * byte: UTF8_REJECT, with *bad (if not NULL) set to its index in p (0 when
 * state was UTF8_REJECT already). */
uint32_t utf8_step(uint32_t state, const unsigned char *p, size_t n, size_t *bad);

/* 1 when p[0..n) is complete, valid UTF-8. */
int utf8_valid(const char *p, size_t n);

#endif
