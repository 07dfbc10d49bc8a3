#include "proc/turn.h"
#include "proc/log.h"

#include <string.h>

#define TURN_STEPS_MAX 8

static struct {
	enum turn_order order;
	turn_step *fn;
} steps[TURN_STEPS_MAX];
static int nsteps;
static uv_check_t check;
static uv_idle_t idle;		/* no blocking poll while a step has work left */
static int ready;

static void
turn__idle(uv_idle_t *h)
{
	(void)h;
}

static int
turn__run(void)
{
	int more = 0;

	for (int i = 0; i < nsteps; i++)
		more |= steps[i].fn();
	return more;
}

static void
turn__check(uv_check_t *h)
{
	(void)h;
	if (turn__run()) {
		uv_idle_start(&idle, turn__idle);
		return;
	}
	uv_idle_stop(&idle);
	uv_check_stop(&check);
}

void
turn_init(uv_loop_t *loop)
{
	uv_check_init(loop, &check);
	uv_idle_init(loop, &idle);
	ready = 1;
}

void
turn_register(enum turn_order order, turn_step *fn)
{
	int i;

	if (nsteps == TURN_STEPS_MAX)
		log_fatal("turn: more than %d steps", TURN_STEPS_MAX);
	for (i = nsteps; i > 0 && steps[i - 1].order > order; i--)
		steps[i] = steps[i - 1];
	steps[i].order = order;
	steps[i].fn = fn;
	nsteps++;
}

void
turn_kick(void)
{
	if (ready && !uv_is_active((uv_handle_t *)&check))
		uv_check_start(&check, turn__check);
}

void
turn_shutdown(void)
{
	if (!ready)
		return;
	for (int i = 0; i < 1000 && turn__run(); i++)
		;
	uv_close((uv_handle_t *)&check, NULL);
	uv_close((uv_handle_t *)&idle, NULL);
	ready = 0;
	nsteps = 0;
	memset(steps, 0, sizeof(steps));
}
