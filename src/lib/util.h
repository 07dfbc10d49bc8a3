#ifndef CHATD_UTIL_H
#define CHATD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define UTIL_ID_MAX 64

/* Allocators that never return NULL: failure is fatal. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* The first n bytes of s (n within s), NUL-ended. */
char *xstrndup(const char *s, size_t n);

int64_t util_now_ms(void);
uint64_t util_mono_ms(void);

/* Ids of rooms, users, tenants, client_msg_ids: [A-Za-z0-9._:-]{1,64}.
 * Nothing else ever reaches a Redis key or a log line. */
int util_valid_id(const char *s);

/* 22 random characters of [A-Za-z0-9] plus NUL into out[23]. */
void util_random_id(char out[23]);

/* Bounded integer parsing: 0 ok, -1 not a number or out of [min, max]. */
int util_parse_ll(const char *s, long long min, long long max, long long *out);

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int util_valid_utf8(const char *s, size_t len);

uint64_t util_hash(const void *data, size_t len);

#endif
