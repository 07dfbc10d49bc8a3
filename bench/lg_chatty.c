/* loadgen: the chatty room (--chatty T, bench/README.md): T connections
 * after the senders act as people, who type and read (docs/protocol.md
 * section 8), and every connection counts the typing:update and
 * receipt:update frames it receives, to set them against the bound that
 * the server's coalescing rules allow.
 *
 * A person alternates typing bursts (typing:start every LG_TYPE_EVERY_MS
 * for 2-5 s, then typing:stop) with pauses of 1-3 s, and every
 * LG_READ_EVERY_MS sends receipt:read with the latest seq its connection
 * received, when that moved. The senders (the first S connections) send
 * messages as in S1. A person is user prefix + "u" + its connection's
 * index (one user per connection), which is how a receiver tells whose
 * event it got. */
#include "lg_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LG_TYPE_EVERY_MS 300
#define LG_BURST_MIN_MS 2000
#define LG_BURST_MAX_MS 5000
#define LG_PAUSE_MIN_MS 1000
#define LG_PAUSE_MAX_MS 3000
#define LG_READ_EVERY_MS 200
/* Per (receiver, person) spacing is checked when the table stays under
 * this many pairs (1,000 x 100 = 100,000 pairs, 800 KB). */
#define LG_PAIRS_MAX (1u << 22)
/* Two events of one person closer than this share of the coalescing
 * window count as too close: room for the jitter of their delivery. */
#define LG_GAP_SLACK 0.8

struct person {
	struct conn *c;
	uint64_t next_type;	/* next typing:start or typing:stop */
	uint64_t burst_end;	/* typing until then; 0 = pausing */
	uint64_t next_read;	/* next look at seq_seen */
	uint64_t seq_seen;	/* latest seq of a message:new received */
	uint64_t seq_read;	/* latest receipt:read sent */
};

/* What one kind of event did: counted by receive time, the window's ones
 * apart, and the closest two of one person at one receiver. */
struct evcount {
	uint64_t total, window;
	uint64_t too_close;	/* pairs of events closer than LG_GAP_SLACK x window */
	uint64_t min_gap_ns;	/* UINT64_MAX while none */
	uint64_t *per_s;	/* owned: the window's, per second */
	uint32_t *last;		/* owned: [receiver * npeople + person], ms since set-up + 1 */
};

static struct {
	struct person *p;	/* owned, npeople */
	uint32_t npeople, first;	/* people are connections first .. first + npeople - 1 */
	uint32_t nsec;		/* seconds of the measured window, rounded up */
	uint64_t next_any;	/* earliest next action of any person */
	uint64_t t_end;		/* when the people stopped (chatty_end) */
	/* requests sent: total, and in the measured window */
	uint64_t starts, stops, reads, starts_w, stops_w, reads_w;
	uint64_t acks_typing, acks_receipt, errors;	/* answers to them */
	/* the window's typing:stops times the recipients each one's typing:false
	 * has (the typist's room but the typist) */
	uint64_t stop_recipients_w;
	struct evcount ty_true, ty_false, receipt;
	uint64_t *deliv_per_s;	/* owned: measured message:new by receive second */
	struct hist ack_typing, ack_receipt;	/* request to ack */
} ch;

static uint64_t
ms_ns(uint64_t ms)
{
	return ms * 1000000ull;
}

static uint64_t
rnd_between(uint64_t lo_ms, uint64_t hi_ms)
{
	return ms_ns(lo_ms) + rnd_next() % (ms_ns(hi_ms - lo_ms) + 1);
}

static int
evcount_init(struct evcount *e, int pairs)
{
	e->min_gap_ns = UINT64_MAX;
	e->per_s = calloc(ch.nsec, sizeof(*e->per_s));
	if (pairs)
		e->last = calloc((size_t)g.o.conns * ch.npeople, sizeof(*e->last));
	return e->per_s == NULL || (pairs && e->last == NULL) ? -1 : 0;
}

int
chatty_init(void)
{
	uint32_t i;
	int pairs;

	ch.first = g.o.senders;
	ch.npeople = g.o.chatty;
	if (ch.first + ch.npeople > g.o.conns)
		ch.npeople = g.o.conns - ch.first;
	ch.nsec = (uint32_t)ceil(g.o.duration);
	ch.p = calloc(ch.npeople ? ch.npeople : 1, sizeof(*ch.p));
	ch.deliv_per_s = calloc(ch.nsec, sizeof(*ch.deliv_per_s));
	pairs = (uint64_t)g.o.conns * ch.npeople <= LG_PAIRS_MAX;
	if (ch.p == NULL || ch.deliv_per_s == NULL || evcount_init(&ch.ty_true, pairs) != 0 ||
	    evcount_init(&ch.ty_false, 0) != 0 || evcount_init(&ch.receipt, pairs) != 0)
		return -1;
	for (i = 0; i < ch.npeople; i++)
		ch.p[i].c = &g.conns[ch.first + i];
	hist_init(&ch.ack_typing);
	hist_init(&ch.ack_receipt);
	return 0;
}

/* People start at random points of their cycle and of the read period,
 * so that they do not all act in the same millisecond and the warm-up
 * looks like the rest: a share of them (the mean burst over the mean
 * cycle) already typing, for part of a burst, the others pausing. */
void
chatty_begin(uint64_t now)
{
	const uint64_t burst = (LG_BURST_MIN_MS + LG_BURST_MAX_MS) / 2;
	const uint64_t cycle = burst + (LG_PAUSE_MIN_MS + LG_PAUSE_MAX_MS) / 2;

	for (uint32_t i = 0; i < ch.npeople; i++) {
		struct person *p = &ch.p[i];

		p->next_read = now + rnd_between(0, LG_READ_EVERY_MS);
		p->next_type = now + rnd_between(0, LG_PAUSE_MAX_MS);
		if (rnd_next() % cycle < burst) {
			p->next_type = now + rnd_between(0, LG_TYPE_EVERY_MS);
			p->burst_end = p->next_type + rnd_between(0, LG_BURST_MAX_MS);
		}
	}
	ch.next_any = now;
}

static int
in_window(uint64_t t)
{
	return t >= g.t_meas && t < g.t_send_end;
}

/* what: "start" (request id "ts" + now) or "stop" ("tp" + now). */
static void
person__typing(struct person *p, const char *what, uint64_t now)
{
	char msg[256];

	conn_send_text(p->c, msg, snprintf(msg, sizeof(msg),
	    "{\"type\":\"typing:%s\",\"id\":\"t%c%llu\",\"room\":\"%s\"}", what,
	    what[2] == 'a' ? 's' : 'p', (unsigned long long)now, g.rooms[p->c->room].id));
}

static void
person__stop(struct person *p, uint64_t now)
{
	person__typing(p, "stop", now);
	p->burst_end = 0;
	ch.stops++;
	if (in_window(now)) {
		ch.stops_w++;
		ch.stop_recipients_w += g.rooms[p->c->room].joined - 1;
	}
}

/* A pause ends in a burst of typing:start, which ends in typing:stop. */
static void
person__type(struct person *p, uint64_t now)
{
	if (p->burst_end != 0 && now >= p->burst_end) {
		person__stop(p, now);
		p->next_type = now + rnd_between(LG_PAUSE_MIN_MS, LG_PAUSE_MAX_MS);
		return;
	}
	if (p->burst_end == 0)
		p->burst_end = now + rnd_between(LG_BURST_MIN_MS, LG_BURST_MAX_MS);
	person__typing(p, "start", now);
	ch.starts++;
	ch.starts_w += in_window(now);
	p->next_type = now + ms_ns(LG_TYPE_EVERY_MS);
	if (p->next_type > p->burst_end)
		p->next_type = p->burst_end;
}

static void
person__read(struct person *p, uint64_t now)
{
	char msg[256];

	p->next_read = now + ms_ns(LG_READ_EVERY_MS);
	if (p->seq_seen <= p->seq_read)
		return;
	p->seq_read = p->seq_seen;
	conn_send_text(p->c, msg, snprintf(msg, sizeof(msg),
	    "{\"type\":\"receipt:read\",\"id\":\"rr%llu\",\"room\":\"%s\",\"seq\":%llu}",
	    (unsigned long long)now, g.rooms[p->c->room].id, (unsigned long long)p->seq_read));
	ch.reads++;
	ch.reads_w += in_window(now);
}

/* Every action due by now; returns when the next one is due. */
uint64_t
chatty_act(uint64_t now)
{
	uint64_t next = UINT64_MAX;

	if (now < ch.next_any)
		return ch.next_any;
	for (uint32_t i = 0; i < ch.npeople; i++) {
		struct person *p = &ch.p[i];

		if (p->c->state != C_JOINED)
			continue;
		if (now >= p->next_type)
			person__type(p, now);
		if (now >= p->next_read)
			person__read(p, now);
		if (p->next_type < next)
			next = p->next_type;
		if (p->next_read < next)
			next = p->next_read;
	}
	ch.next_any = next;
	return next;
}

/* Sending is over: whoever is typing stops (after the window: not counted
 * in it, nor are the typing:false frames that follow). */
void
chatty_end(uint64_t now)
{
	for (uint32_t i = 0; i < ch.npeople; i++)
		if (ch.p[i].burst_end != 0 && ch.p[i].c->state == C_JOINED)
			person__stop(&ch.p[i], now);
	ch.next_any = UINT64_MAX;
	ch.t_end = now;
}

/* ------------------------------------------------------ what arrives */

static struct person *
person_of_conn(const struct conn *c)
{
	if (c->idx < ch.first || c->idx - ch.first >= ch.npeople)
		return NULL;
	return &ch.p[c->idx - ch.first];
}

/* The person whose user is v (prefix + "u" + connection index), or -1. */
static long
person_of_user(const char *v, size_t vlen)
{
	size_t plen = strlen(g.o.prefix);
	uint64_t idx = 0;

	if (vlen <= plen + 1 || vlen > plen + 11 || memcmp(v, g.o.prefix, plen) != 0 ||
	    v[plen] != 'u')
		return -1;
	for (size_t i = plen + 1; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		idx = idx * 10 + (uint64_t)(v[i] - '0');
	}
	if (idx < ch.first || idx - ch.first >= ch.npeople)
		return -1;
	return (long)(idx - ch.first);
}

void
chatty_message_new(struct conn *c, const char *p, size_t len)
{
	struct person *who = person_of_conn(c);
	const char *v;
	size_t vlen;
	uint64_t seq = 0;

	if (who == NULL || json_field(p, len, "seq", &v, &vlen) != 0)
		return;
	for (size_t i = 0; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
		seq = seq * 10 + (uint64_t)(v[i] - '0');
	if (seq > who->seq_seen)
		who->seq_seen = seq;
}

/* A measured delivery received now (g.rx_ns): the per-second series. */
void
chatty_delivered(void)
{
	if (in_window(g.rx_ns))
		ch.deliv_per_s[(g.rx_ns - g.t_meas) / 1000000000ull]++;
}

/* Counts one event of person k at receiver c; checks its spacing from
 * the person's previous one there when 'spaced'. */
static void
evcount_add(struct evcount *e, const struct conn *c, long k, int spaced)
{
	uint64_t t = g.rx_ns, gap;
	uint32_t *last, ms;

	e->total++;
	if (in_window(t)) {
		e->window++;
		e->per_s[(t - g.t_meas) / 1000000000ull]++;
	}
	if (e->last == NULL || k < 0)
		return;
	last = &e->last[(size_t)c->idx * ch.npeople + (size_t)k];
	ms = (uint32_t)((t - g.t_setup0) / 1000000ull) + 1;
	if (spaced && *last != 0 && ms >= *last) {
		gap = ms_ns(ms - *last);
		if (gap < e->min_gap_ns)
			e->min_gap_ns = gap;
		if ((double)gap < LG_GAP_SLACK * (double)ms_ns(g.o.coalesce_ms))
			e->too_close++;
	}
	*last = ms;
}

/* typing:true at most once a second per typist while typing:start
 * repeats; typing:false ends that, and the next true may come at once. */
void
chatty_typing_update(struct conn *c, const char *p, size_t len)
{
	const char *v;
	size_t vlen;
	long k = -1;

	if (json_field(p, len, "user", &v, &vlen) == 0)
		k = person_of_user(v, vlen);
	if (json_field(p, len, "typing", &v, &vlen) == 0 && vlen == 4 &&
	    memcmp(v, "true", 4) == 0) {
		evcount_add(&ch.ty_true, c, k, 1);
		return;
	}
	evcount_add(&ch.ty_false, c, k, 0);
	if (k >= 0 && ch.ty_true.last != NULL)
		ch.ty_true.last[(size_t)c->idx * ch.npeople + (size_t)k] = 0;
}

/* receipt:update at most once per user and room per coalescing window. */
void
chatty_receipt_update(struct conn *c, const char *p, size_t len)
{
	const char *v;
	size_t vlen;
	long k = -1;

	if (json_field(p, len, "user", &v, &vlen) == 0)
		k = person_of_user(v, vlen);
	evcount_add(&ch.receipt, c, k, 1);
}

/* Request ids: "ts"/"tp" + send time (typing:start/stop), "rr" + send time
 * (receipt:read). */
const char *
chatty_op(const char *id, size_t idlen)
{
	if (idlen < 3)
		return NULL;
	if (id[0] == 't' && (id[1] == 's' || id[1] == 'p'))
		return "typing";
	if (id[0] == 'r' && id[1] == 'r')
		return "receipt";
	return NULL;
}

void
chatty_error(void)
{
	ch.errors++;
}

/* The drain may end: every request of the people has its answer, and a
 * coalescing window has passed since the last of them, so the events the
 * server held back for the window's end have arrived too. */
int
chatty_drained(uint64_t now)
{
	return ch.acks_typing + ch.acks_receipt + ch.errors >= ch.starts + ch.stops + ch.reads &&
	    now >= ch.t_end + ms_ns(g.o.coalesce_ms + 200);
}

int
chatty_ack(const char *id, size_t idlen)
{
	const char *op = chatty_op(id, idlen);
	uint64_t sent = 0, now;

	if (op == NULL)
		return 0;
	for (size_t i = 2; i < idlen && id[i] >= '0' && id[i] <= '9'; i++)
		sent = sent * 10 + (uint64_t)(id[i] - '0');
	now = mono_ns();
	if (op[0] == 't') {
		ch.acks_typing++;
		hist_add(&ch.ack_typing, now > sent ? now - sent : 0);
	} else {
		ch.acks_receipt++;
		hist_add(&ch.ack_receipt, now > sent ? now - sent : 0);
	}
	return 1;
}

/* ----------------------------------------------------------- report */

/* The bounds of docs/protocol.md section 8 over the measured window of D
 * seconds, W the coalescing window (1 s): a typist's typing:true frames
 * are at least W apart while it keeps typing, so at most D/W + 1 of them
 * fall in the window, to every subscriber of its room but itself; one
 * typing:false per typing:stop; a reader's receipt:update frames are at
 * least W apart, D/W + 1 in the window, to every subscriber (itself too).
 * The + 1 is the window's edges; per second, the bound is the count / D. */
struct bounds {
	double typing, receipt;	/* per second */
	uint64_t typers;	/* people joined */
};

static struct bounds
chatty_bounds(void)
{
	struct bounds b = { 0, 0, 0 };
	double d = g.o.duration, per = (double)(uint64_t)(d * 1000 / g.o.coalesce_ms) + 1;
	double ty = 0, rc = 0;

	for (uint32_t i = 0; i < ch.npeople; i++) {
		const struct conn *c = ch.p[i].c;
		uint32_t n = g.rooms[c->room].joined;

		if (c->state != C_JOINED && c->state != C_DEAD)
			continue;
		b.typers++;
		ty += per * (n ? n - 1 : 0);
		rc += per * n;
	}
	b.typing = (ty + (double)ch.stop_recipients_w) / d;
	b.receipt = rc / d;
	return b;
}

/* The per-second series a (+ b when not NULL). */
static void
series_json(FILE *f, const uint64_t *a, const uint64_t *b)
{
	fputc('[', f);
	for (uint32_t i = 0; i < ch.nsec; i++)
		fprintf(f, "%s%llu", i ? "," : "", (unsigned long long)(a[i] + (b ? b[i] : 0)));
	fputc(']', f);
}

static uint64_t
series_max(const uint64_t *a, const uint64_t *b)
{
	uint64_t m = 0;

	for (uint32_t i = 0; i < ch.nsec; i++)
		if (a[i] + (b ? b[i] : 0) > m)
			m = a[i] + (b ? b[i] : 0);
	return m;
}

static void
gap_json(FILE *f, const char *name, const struct evcount *e)
{
	fprintf(f, ",\"%s_too_close\":%llu,\"%s_min_gap_ms\":", name,
	    (unsigned long long)e->too_close, name);
	if (e->last == NULL || e->min_gap_ns == UINT64_MAX)
		fputs("null", f);
	else
		fprintf(f, "%.0f", e->min_gap_ns / 1e6);
}

void
chatty_report_json(FILE *f)
{
	struct bounds b = chatty_bounds();
	double d = g.o.duration;

	fprintf(f, "{\"people\":%u,\"typers\":%llu,\"coalesce_ms\":%u,\"type_every_ms\":%d,"
	    "\"read_every_ms\":%d,\"starts\":%llu,\"stops\":%llu,\"reads\":%llu,"
	    "\"starts_per_s\":%.1f,\"stops_per_s\":%.1f,\"reads_per_s\":%.1f,"
	    "\"acks_typing\":%llu,\"acks_receipt\":%llu,\"errors\":%llu,",
	    ch.npeople, (unsigned long long)b.typers, g.o.coalesce_ms, LG_TYPE_EVERY_MS,
	    LG_READ_EVERY_MS, (unsigned long long)ch.starts, (unsigned long long)ch.stops,
	    (unsigned long long)ch.reads, ch.starts_w / d, ch.stops_w / d, ch.reads_w / d,
	    (unsigned long long)ch.acks_typing, (unsigned long long)ch.acks_receipt,
	    (unsigned long long)ch.errors);
	fprintf(f, "\"typing_true\":%llu,\"typing_false\":%llu,\"receipt\":%llu,"
	    "\"typing_per_s\":%.1f,\"typing_true_per_s\":%.1f,\"typing_false_per_s\":%.1f,"
	    "\"typing_bound_per_s\":%.1f,\"receipt_per_s\":%.1f,\"receipt_bound_per_s\":%.1f,"
	    "\"typing_max_1s\":%llu,\"receipt_max_1s\":%llu",
	    (unsigned long long)ch.ty_true.total, (unsigned long long)ch.ty_false.total,
	    (unsigned long long)ch.receipt.total,
	    (ch.ty_true.window + ch.ty_false.window) / d, ch.ty_true.window / d,
	    ch.ty_false.window / d, b.typing, ch.receipt.window / d, b.receipt,
	    (unsigned long long)series_max(ch.ty_true.per_s, ch.ty_false.per_s),
	    (unsigned long long)series_max(ch.receipt.per_s, NULL));
	gap_json(f, "typing_true", &ch.ty_true);
	gap_json(f, "receipt", &ch.receipt);
	fputs(",\"per_s\":{\"deliveries\":", f);
	series_json(f, ch.deliv_per_s, NULL);
	fputs(",\"typing\":", f);
	series_json(f, ch.ty_true.per_s, ch.ty_false.per_s);
	fputs(",\"receipt\":", f);
	series_json(f, ch.receipt.per_s, NULL);
	fputs("},\"ack_typing_us\":", f);
	hist_json(f, &ch.ack_typing);
	fputs(",\"ack_receipt_us\":", f);
	hist_json(f, &ch.ack_receipt);
	fputc('}', f);
}

void
chatty_report_text(FILE *f)
{
	struct bounds b = chatty_bounds();
	double d = g.o.duration;

	fprintf(f, "chatty: %llu people typing and reading: typing:start %.0f/s, typing:stop "
	    "%.1f/s, receipt:read %.0f/s in the window; acks p99 typing %.0f us, receipt %.0f us\n",
	    (unsigned long long)b.typers, ch.starts_w / d, ch.stops_w / d, ch.reads_w / d,
	    hist_quantile(&ch.ack_typing, 0.99) / 1e3, hist_quantile(&ch.ack_receipt, 0.99) / 1e3);
	fprintf(f, "typing:update received %.0f/s (true %.0f/s, false %.0f/s), bound %.0f/s%s\n",
	    (ch.ty_true.window + ch.ty_false.window) / d, ch.ty_true.window / d,
	    ch.ty_false.window / d, b.typing,
	    (ch.ty_true.window + ch.ty_false.window) / d <= b.typing ? "" : ": OVER");
	fprintf(f, "receipt:update received %.0f/s, bound %.0f/s%s\n", ch.receipt.window / d,
	    b.receipt, ch.receipt.window / d <= b.receipt ? "" : ": OVER");
	if (ch.ty_true.last != NULL)
		fprintf(f, "closest two of one person at one receiver: typing:true %.0f ms, "
		    "receipt:update %.0f ms; closer than %.0f ms: %llu and %llu\n",
		    ch.ty_true.min_gap_ns == UINT64_MAX ? -1 : ch.ty_true.min_gap_ns / 1e6,
		    ch.receipt.min_gap_ns == UINT64_MAX ? -1 : ch.receipt.min_gap_ns / 1e6,
		    LG_GAP_SLACK * g.o.coalesce_ms, (unsigned long long)ch.ty_true.too_close,
		    (unsigned long long)ch.receipt.too_close);
}
