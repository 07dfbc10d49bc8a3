#include "lib/utf8.h"

#include <string.h>

/*
 * A DFA over byte classes. The states are what the next byte must be:
 *
 *   0 ACCEPT  a new character (or the end)
 *   1         one continuation byte, 80..BF
 *   2         two continuation bytes
 *   3         three continuation bytes
 *   4         after E0: A0..BF, then one more (no overlong 3-byte forms)
 *   5         after ED: 80..9F, then one more (no surrogates)
 *   6         after F0: 90..BF, then two more (no overlong 4-byte forms)
 *   7         after F4: 80..8F, then two more (nothing past U+10FFFF)
 *   8 REJECT  sticky
 *
 * Splitting the continuation bytes into three classes (80..8F, 90..9F,
 * A0..BF) is what lets states 4-7 express the second-byte ranges.
 */

enum utf8__class {
	UTF8__ASCII,	/* 00..7F */
	UTF8__CONT_LO,	/* 80..8F */
	UTF8__CONT_MID,	/* 90..9F */
	UTF8__CONT_HI,	/* A0..BF */
	UTF8__BAD,	/* C0, C1, F5..FF: never in UTF-8 */
	UTF8__LEAD2,	/* C2..DF */
	UTF8__E0,
	UTF8__LEAD3,	/* E1..EC, EE, EF */
	UTF8__ED,
	UTF8__F0,
	UTF8__LEAD4,	/* F1..F3 */
	UTF8__F4,
	UTF8__NCLASS
};

#define A UTF8__ASCII
#define L UTF8__CONT_LO
#define M UTF8__CONT_MID
#define H UTF8__CONT_HI
#define X UTF8__BAD
#define C UTF8__LEAD2
#define T UTF8__LEAD3
#define Q UTF8__LEAD4
#define E UTF8__E0
#define D UTF8__ED
#define F UTF8__F0
#define G UTF8__F4

static const unsigned char utf8__class_of[256] = {
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 00 */
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 10 */
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 20 */
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 30 */
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 40 */
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 50 */
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 60 */
	A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,	/* 70 */
	L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,	/* 80 */
	M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,	/* 90 */
	H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,	/* A0 */
	H, H, H, H, H, H, H, H, H, H, H, H, H, H, H, H,	/* B0 */
	X, X, C, C, C, C, C, C, C, C, C, C, C, C, C, C,	/* C0 */
	C, C, C, C, C, C, C, C, C, C, C, C, C, C, C, C,	/* D0 */
	E, T, T, T, T, T, T, T, T, T, T, T, T, D, T, T,	/* E0: E = E0, D = ED */
	F, Q, Q, Q, G, X, X, X, X, X, X, X, X, X, X, X,	/* F0: F = F0, G = F4 */
};

#undef A
#undef L
#undef M
#undef H
#undef X
#undef C
#undef T
#undef Q
#undef E
#undef D
#undef F
#undef G

#define R UTF8_REJECT

static const unsigned char utf8__next[UTF8_REJECT + 1][UTF8__NCLASS] = {
	/*        ASCII  LO  MID  HI  BAD LEAD2 E0 LEAD3 ED  F0 LEAD4 F4 */
	/* 0 */ { 0,     R,  R,   R,  R,  1,    4, 2,    5,  6, 3,    7 },
	/* 1 */ { R,     0,  0,   0,  R,  R,    R, R,    R,  R, R,    R },
	/* 2 */ { R,     1,  1,   1,  R,  R,    R, R,    R,  R, R,    R },
	/* 3 */ { R,     2,  2,   2,  R,  R,    R, R,    R,  R, R,    R },
	/* 4 */ { R,     R,  R,   1,  R,  R,    R, R,    R,  R, R,    R },
	/* 5 */ { R,     1,  1,   R,  R,  R,    R, R,    R,  R, R,    R },
	/* 6 */ { R,     R,  2,   2,  R,  R,    R, R,    R,  R, R,    R },
	/* 7 */ { R,     2,  R,   R,  R,  R,    R, R,    R,  R, R,    R },
	/* 8 */ { R,     R,  R,   R,  R,  R,    R, R,    R,  R, R,    R },
};

#undef R

#define UTF8__HIGH_BITS 0x8080808080808080ull

uint32_t
utf8_step(uint32_t state, const unsigned char *p, size_t n, size_t *bad)
{
	size_t i = 0;

	/* A state from nowhere is as good as a rejected one. */
	if (state >= UTF8_REJECT)
		goto reject;
	while (i < n) {
		/* Chat text is mostly ASCII: between characters, skip 8 bytes
		 * at a time while none has its high bit set. */
		if (state == UTF8_ACCEPT) {
			uint64_t w;

			while (n - i >= 8) {
				memcpy(&w, p + i, 8);
				if (w & UTF8__HIGH_BITS)
					break;
				i += 8;
			}
			if (i == n)
				break;
		}
		state = utf8__next[state][utf8__class_of[p[i]]];
		if (state == UTF8_REJECT)
			goto reject;
		i++;
	}
	return state;

reject:
	if (bad != NULL)
		*bad = i;
	return UTF8_REJECT;
}

int
utf8_valid(const char *p, size_t n)
{
	return utf8_step(UTF8_ACCEPT, (const unsigned char *)p, n, NULL) == UTF8_ACCEPT;
}
