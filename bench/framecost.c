/*
 * What reading WebSocket frames costs: chatd's frame reader (net/ws_frame.c)
 * against wslay 1.1 (Debian's libwslay-dev), on the same bytes, no sockets.
 * Why chatd has its own codec (docs/architecture.md, "Frames"): memory per
 * connection and time per frame, measured here, not assumed.
 *
 *   make -f bench/Makefile framecost     (needs libwslay-dev; nothing else)
 *
 * Prints, for each reader: the heap one connection's reader holds while
 * idle (after one frame has been read), and ns per frame for N masked
 * 120-byte text frames fed in 64 KiB reads (the copy of the input, which
 * both readers unmask or copy, is timed for both).
 */
#include "net/ws_frame.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wslay/wslay.h>

#define NFRAMES 200000
#define PAYLOAD 120
#define READ 65536
#define CONNS 1000

static unsigned char *input;
static size_t input_len;
static size_t pos, end;
static long messages;

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static size_t
heap_used(void)
{
	return mallinfo2().uordblks;
}

static void
make_input(void)
{
	static const unsigned char mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	char payload[PAYLOAD + 1];
	unsigned char *p;

	memset(payload, 'a', PAYLOAD);
	memcpy(payload, "{\"type\":\"message:send\",\"room\":\"r1\",\"body\":\"", 44);
	memcpy(payload + PAYLOAD - 2, "\"}", 2);
	input_len = (size_t)NFRAMES * (2 + 4 + PAYLOAD);
	input = malloc(input_len);
	p = input;
	for (int i = 0; i < NFRAMES; i++) {
		*p++ = 0x81;
		*p++ = 0x80 | PAYLOAD;
		memcpy(p, mask, 4);
		p += 4;
		for (int k = 0; k < PAYLOAD; k++)
			*p++ = (unsigned char)payload[k] ^ mask[k % 4];
	}
}

/* ---------------------------------------------------------------- chatd */

static int
own_message(void *ctx, int op, unsigned char *data, size_t len)
{
	(void)ctx;
	(void)op;
	(void)data;
	(void)len;
	messages++;
	return 0;
}

static const struct wsframe_events own_events = { own_message, NULL, NULL, NULL, NULL };

static double
own_run(unsigned char *buf)
{
	struct wsframe_reader r;
	double t0 = now_ns();

	memcpy(buf, input, input_len);
	wsframe_reader_init(&r, 1 << 20);
	for (size_t off = 0; off < input_len; off += READ)
		wsframe_read(&r, buf + off, input_len - off < READ ? input_len - off : READ,
		    &own_events, NULL);
	wsframe_reader_free(&r);
	return (now_ns() - t0) / NFRAMES;
}

/* ---------------------------------------------------------------- wslay */

static ssize_t
wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
	unsigned char *src = user;
	size_t n = end - pos;

	(void)flags;
	if (n == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (n > len)
		n = len;
	memcpy(buf, src + pos, n);
	pos += n;
	return (ssize_t)n;
}

static void
wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	(void)ctx;
	(void)arg;
	(void)user;
	messages++;
}

static const struct wslay_event_callbacks wslay_cbs = { wslay_recv, NULL, NULL, NULL, NULL, NULL,
	wslay_msg };

static double
wslay_run(unsigned char *buf)
{
	wslay_event_context_ptr ctx;
	double t0 = now_ns();

	memcpy(buf, input, input_len);
	wslay_event_context_server_init(&ctx, &wslay_cbs, buf);
	wslay_event_config_set_max_recv_msg_length(ctx, 1 << 20);
	for (pos = 0; pos < input_len;) {
		end = pos + READ < input_len ? pos + READ : input_len;
		wslay_event_recv(ctx);
	}
	wslay_event_context_free(ctx);
	return (now_ns() - t0) / NFRAMES;
}

/* Heap held by CONNS readers that have each read one frame. */
static void
memory(void)
{
	static struct wsframe_reader own[CONNS];
	static wslay_event_context_ptr ws[CONNS];
	unsigned char frame[2 + 4 + PAYLOAD];
	size_t h0;

	h0 = heap_used();
	for (int i = 0; i < CONNS; i++) {
		memcpy(frame, input, sizeof(frame));
		wsframe_reader_init(&own[i], 1 << 20);
		wsframe_read(&own[i], frame, sizeof(frame), &own_events, NULL);
	}
	printf("chatd reader: %zu bytes of struct (in struct conn only while a frame is "
	    "incomplete), %.0f bytes of heap per idle reader\n", sizeof(struct wsframe_reader),
	    (double)(heap_used() - h0) / CONNS);
	h0 = heap_used();
	for (int i = 0; i < CONNS; i++) {
		memcpy(frame, input, sizeof(frame));
		wslay_event_context_server_init(&ws[i], &wslay_cbs, frame);
		pos = 0;
		end = sizeof(frame);
		wslay_event_recv(ws[i]);
	}
	printf("wslay context: %.0f bytes of heap per idle context\n",
	    (double)(heap_used() - h0) / CONNS);
	for (int i = 0; i < CONNS; i++) {
		wsframe_reader_free(&own[i]);
		wslay_event_context_free(ws[i]);
	}
}

int
main(void)
{
	unsigned char *buf;
	double own[5], wsl[5];

	make_input();
	buf = malloc(input_len);
	memory();
	for (int i = 0; i < 5; i++) {
		messages = 0;
		own[i] = own_run(buf);
		if (messages != NFRAMES)
			return fprintf(stderr, "chatd reader: %ld messages\n", messages), 1;
		messages = 0;
		wsl[i] = wslay_run(buf);
		if (messages != NFRAMES)
			return fprintf(stderr, "wslay: %ld messages\n", messages), 1;
	}
	printf("%d frames of %d bytes, 64 KiB reads, 5 runs (ns per frame):\n", NFRAMES, PAYLOAD);
	printf("  chatd reader: %.0f %.0f %.0f %.0f %.0f\n", own[0], own[1], own[2], own[3], own[4]);
	printf("  wslay:        %.0f %.0f %.0f %.0f %.0f\n", wsl[0], wsl[1], wsl[2], wsl[3], wsl[4]);
	free(buf);
	free(input);
	return 0;
}
