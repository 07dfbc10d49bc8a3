#include "lg.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;

void
rnd_seed(void)
{
	uint64_t s = 0;
	struct timespec ts;

	if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
		clock_gettime(CLOCK_REALTIME, &ts);
		s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
	}
	rnd_state = s ? s : 0x9E3779B97F4A7C15ull;
}

uint64_t
rnd_next(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545F4914F6CDD1Dull;
}

void
ws_make_key(char key[WS_KEY_LEN + 1])
{
	unsigned char raw[16];
	uint64_t a = rnd_next(), b = rnd_next();

	memcpy(raw, &a, 8);
	memcpy(raw + 8, &b, 8);
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	key[WS_KEY_LEN] = '\0';
}

int
ws_accept_ok(const char *key, const char *accept, size_t accept_len)
{
	char in[WS_KEY_LEN + sizeof(ws_guid)];
	unsigned char digest[SHA_DIGEST_LENGTH];
	char want[32];
	int n;

	memcpy(in, key, WS_KEY_LEN);
	memcpy(in + WS_KEY_LEN, ws_guid, sizeof(ws_guid) - 1);
	SHA1((const unsigned char *)in, WS_KEY_LEN + sizeof(ws_guid) - 1, digest);
	n = EVP_EncodeBlock((unsigned char *)want, digest, sizeof(digest));
	return (size_t)n == accept_len && memcmp(want, accept, accept_len) == 0;
}

int
ws_parse_header(const uint8_t *buf, size_t len, struct ws_frame *f)
{
	size_t need = 2;
	uint64_t plen;

	if (len < 2)
		return 0;
	if (buf[0] & 0x70)
		return -1;	/* RSV bits: no extension was negotiated */
	f->fin = (buf[0] & 0x80) != 0;
	f->opcode = buf[0] & 0x0F;
	f->masked = (buf[1] & 0x80) != 0;
	plen = buf[1] & 0x7F;
	if (plen == 126)
		need += 2;
	else if (plen == 127)
		need += 8;
	if (f->masked)
		need += 4;
	if (len < need)
		return 0;
	if (plen == 126) {
		plen = (uint64_t)buf[2] << 8 | buf[3];
	} else if (plen == 127) {
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | buf[2 + i];
		if (plen >> 63)
			return -1;
	}
	if (f->opcode & 0x8) {
		if (plen > 125 || !f->fin)
			return -1;
	} else if (f->opcode > WS_BINARY) {
		return -1;
	}
	if (f->masked)
		memcpy(f->mask, buf + need - 4, 4);
	f->len = plen;
	f->header = need;
	return 1;
}

void
ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t off)
{
	for (size_t i = 0; i < len; i++)
		p[i] ^= mask[(off + i) & 3];
}

size_t
ws_encode(uint8_t *out, int opcode, const void *payload, size_t len)
{
	size_t h = 2;
	uint32_t m32 = (uint32_t)rnd_next();
	uint8_t mask[4];
	const uint8_t *src = payload;
	uint8_t *dst;

	out[0] = (uint8_t)(0x80 | (opcode & 0x0F));
	if (len < 126) {
		out[1] = (uint8_t)(0x80 | len);
	} else if (len <= 0xFFFF) {
		out[1] = 0x80 | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		h += 2;
	} else {
		out[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h += 8;
	}
	memcpy(mask, &m32, 4);
	memcpy(out + h, mask, 4);
	h += 4;
	dst = out + h;
	/* Eight bytes at a time: the mask repeats every four. */
	{
		uint64_t m64 = (uint64_t)m32 << 32 | m32, w;
		size_t i = 0;

		for (; i + 8 <= len; i += 8) {
			memcpy(&w, src + i, 8);
			w ^= m64;
			memcpy(dst + i, &w, 8);
		}
		for (; i < len; i++)
			dst[i] = src[i] ^ mask[i & 3];
	}
	return h + len;
}
