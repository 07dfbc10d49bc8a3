#ifndef CHATD_HMAP_H
#define CHATD_HMAP_H

#include <stddef.h>

/* A string-keyed hash map. Keys are copied; values are borrowed. */
struct hmap;

struct hmap *hmap_new(void);
void hmap_free(struct hmap *m);
void *hmap_get(const struct hmap *m, const char *key);
void hmap_put(struct hmap *m, const char *key, void *value);
void *hmap_del(struct hmap *m, const char *key);
size_t hmap_count(const struct hmap *m);
/* Calls fn for each entry; fn must not change the map. */
void hmap_each(const struct hmap *m, void (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
