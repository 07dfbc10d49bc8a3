/* loadgen: shared declarations of the load generator's modules.
 *
 *   lg_hist.c   log-linear latency histogram (HDR-like, ~1.6% precision)
 *   lg_ws.c     WebSocket client side: upgrade request, accept check, framing
 *   lg_auth.c   HS256 tokens signed here, or obtained from a command
 *   lg_conn.c   one connection: socket, handshake, frames, the chat protocol
 *   lg_chatty.c the chatty room: people who type and read (--chatty)
 *   loadgen.c   options, connections, the epoll loop, the scenario, the report
 */
#ifndef LG_H
#define LG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------ histogram */

/* Values are nanoseconds. 64 linear sub-buckets per power of two: a value is
 * known to within 1/64 (reported as its bucket's midpoint, < 0.8% off).
 * Values at or above 2^37 ns (137 s) land in the last bucket. */
/* A body: 'm' (measured) or 'w' (warm-up), then the due time in
 * CLOCK_MONOTONIC ns in this many digits, zero-padded. */
#define LG_DUE_DIGITS 20

#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_MAX_EXP 37
#define HIST_BUCKETS (HIST_SUB + (HIST_MAX_EXP - HIST_SUB_BITS) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t max;		/* exact */
	uint64_t min;		/* exact; UINT64_MAX when empty */
	uint64_t sum;		/* ns; 25M samples of 137 s still fit */
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
/* Inline: the load generator adds millions of values a second. */
static inline unsigned
hist_index(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);	/* >= HIST_SUB_BITS */
	if (e >= HIST_MAX_EXP)
		return HIST_BUCKETS - 1;
	return HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB +
	    (unsigned)((v >> (e - HIST_SUB_BITS)) - HIST_SUB);
}

static inline void
hist_add(struct hist *h, uint64_t ns)
{
	h->b[hist_index(ns)]++;
	h->count++;
	h->sum += ns;
	if (ns > h->max)
		h->max = ns;
	if (ns < h->min)
		h->min = ns;
}
/* The value at quantile q (0..1): its bucket's midpoint, clamped to max. */
uint64_t hist_quantile(const struct hist *h, double q);
/* Writes {"count":..,"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"mean":..}
 * in microseconds. */
void hist_json(FILE *f, const struct hist *h);
/* Writes the non-empty buckets as [[index,count],...] for merging. */
void hist_json_buckets(FILE *f, const struct hist *h);

/* ------------------------------------------------------------ WebSocket */

enum {
	WS_CONT = 0x0, WS_TEXT = 0x1, WS_BINARY = 0x2,
	WS_CLOSE = 0x8, WS_PING = 0x9, WS_PONG = 0xA
};

#define WS_KEY_LEN 24		/* base64 of 16 bytes */
#define WS_MAX_HEADER 14	/* 2 + 8 (64-bit length) + 4 (mask key) */

struct ws_frame {
	int fin;
	int opcode;
	int masked;
	uint8_t mask[4];
	uint64_t len;		/* payload length */
	size_t header;		/* header length */
};

/* A fresh random Sec-WebSocket-Key (NUL-terminated, WS_KEY_LEN characters). */
void ws_make_key(char key[WS_KEY_LEN + 1]);
/* 1 when accept is base64(SHA-1(key + GUID)), else 0. */
int ws_accept_ok(const char *key, const char *accept, size_t accept_len);
/* Parses the frame header at buf. Returns 1 with f filled when the header is
 * complete (the payload may not be), 0 when more bytes are needed, -1 on a
 * protocol error (reserved bits, a control frame over 125 bytes or
 * fragmented, a length with the top bit set). */
int ws_parse_header(const uint8_t *buf, size_t len, struct ws_frame *f);
/* XORs len bytes at p with mask, starting at payload offset off. */
void ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t off);
/* Encodes one masked, final frame into out (capacity len + WS_MAX_HEADER)
 * and returns its total length. */
size_t ws_encode(uint8_t *out, int opcode, const void *payload, size_t len);

/* Fast non-cryptographic random numbers (xorshift64*), seeded once. */
void rnd_seed(void);
uint64_t rnd_next(void);

/* --------------------------------------------------------------- tokens */

/* A HS256 JWT {sub, tenant, iat, exp}; malloc'd, NULL on failure. */
char *auth_token_hs256(const char *secret, const char *user, const char *tenant, long ttl_s);
/* Runs cmd through /bin/sh with every "%s" replaced by user and returns its
 * first output line (malloc'd), or NULL with a message on stderr. */
char *auth_token_cmd(const char *cmd, const char *user);

#endif
