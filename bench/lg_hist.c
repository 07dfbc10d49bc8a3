#include "lg.h"

#include <string.h>

void
hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

/* Lower bound and width of bucket i. */
static void
hist__bounds(unsigned i, uint64_t *lo, uint64_t *width)
{
	unsigned e, m;

	if (i < HIST_SUB) {
		*lo = i;
		*width = 1;
		return;
	}
	e = (i - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
	m = (i - HIST_SUB) % HIST_SUB + HIST_SUB;
	*width = 1ull << (e - HIST_SUB_BITS);
	*lo = (uint64_t)m * *width;
}

uint64_t
hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0, lo, width, v;

	if (h->count == 0)
		return 0;
	rank = (uint64_t)(q * (double)h->count + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			hist__bounds(i, &lo, &width);
			v = lo + width / 2;
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

void
hist_json(FILE *f, const struct hist *h)
{
	fprintf(f, "{\"count\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
	    "\"max\":%.1f,\"mean\":%.1f}", (unsigned long long)h->count,
	    hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
	    hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3,
	    h->count ? h->max / 1e3 : 0.0,
	    h->count ? (double)h->sum / (double)h->count / 1e3 : 0.0);
}

void
hist_json_buckets(FILE *f, const struct hist *h)
{
	int first = 1;

	fputc('[', f);
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		if (h->b[i] == 0)
			continue;
		fprintf(f, "%s[%u,%llu]", first ? "" : ",", i, (unsigned long long)h->b[i]);
		first = 0;
	}
	fputc(']', f);
}
