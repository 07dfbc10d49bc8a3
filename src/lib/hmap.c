#include "lib/hmap.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

struct hmap_entry {
	struct hmap_entry *next;
	uint64_t hash;
	void *value;
	char key[];
};

struct hmap {
	struct hmap_entry **buckets;
	size_t nbuckets;	/* power of two */
	size_t count;
};

struct hmap *
hmap_new(void)
{
	struct hmap *m = xcalloc(1, sizeof(*m));

	m->nbuckets = 16;
	m->buckets = xcalloc(m->nbuckets, sizeof(*m->buckets));
	return m;
}

void
hmap_free(struct hmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hmap_entry *e = m->buckets[i];

		while (e != NULL) {
			struct hmap_entry *next = e->next;

			free(e);
			e = next;
		}
	}
	free(m->buckets);
	free(m);
}

static struct hmap_entry **
hmap__slot(const struct hmap *m, const char *key, uint64_t hash)
{
	struct hmap_entry **pp = &m->buckets[hash & (m->nbuckets - 1)];

	while (*pp != NULL && ((*pp)->hash != hash || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->next;
	return pp;
}

void *
hmap_get(const struct hmap *m, const char *key)
{
	struct hmap_entry **pp = hmap__slot(m, key, util_hash(key, strlen(key)));

	return *pp ? (*pp)->value : NULL;
}

static void
hmap__grow(struct hmap *m)
{
	size_t n = m->nbuckets * 2;
	struct hmap_entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hmap_entry *e = m->buckets[i];

		while (e != NULL) {
			struct hmap_entry *next = e->next;

			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

void
hmap_put(struct hmap *m, const char *key, void *value)
{
	size_t len = strlen(key);
	uint64_t hash = util_hash(key, len);
	struct hmap_entry **pp = hmap__slot(m, key, hash);
	struct hmap_entry *e;

	if (*pp != NULL) {
		(*pp)->value = value;
		return;
	}
	e = xmalloc(sizeof(*e) + len + 1);
	e->next = NULL;
	e->hash = hash;
	e->value = value;
	memcpy(e->key, key, len + 1);
	*pp = e;
	if (++m->count > m->nbuckets)
		hmap__grow(m);
}

void *
hmap_del(struct hmap *m, const char *key)
{
	struct hmap_entry **pp = hmap__slot(m, key, util_hash(key, strlen(key)));
	struct hmap_entry *e = *pp;
	void *value;

	if (e == NULL)
		return NULL;
	*pp = e->next;
	value = e->value;
	free(e);
	m->count--;
	return value;
}

size_t
hmap_count(const struct hmap *m)
{
	return m->count;
}

void
hmap_each(const struct hmap *m, void (*fn)(const char *, void *, void *), void *arg)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct hmap_entry *e = m->buckets[i]; e != NULL; e = e->next)
			fn(e->key, e->value, arg);
}
