/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/queue.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sipnat.h"

/*
 * Unit tests for timer.c: timers fire in the second they are due and
 * never before, whether the wheel is crossed once, many times or jumped
 * over, and callbacks may re-arm or delete timers.
 */

#define NSLOTS		4096
#define START		1000000		/* where the wheel starts */
#define MANY		2000

/* A timer that notes when it fired and what to do then. */
struct tt {
	struct timer	 timer;
	unsigned	 fired;
	uint64_t	 when;		/* the tick it last fired at */
	uint64_t	 rearm;		/* re-arm this far ahead, or 0 */
	unsigned	 rearms;	/* how many times more */
	struct tt	*victim;	/* delete this one when firing */
};

static struct timer_wheel	 wheel;

static void	tt_cb(struct timer *, uint64_t);
static void	tt_init(struct tt *);

/* The callback: count, note the time, re-arm or delete as told. */
static void
tt_cb(struct timer *t, uint64_t now)
{
	struct tt	*x;

	x = (struct tt *)((char *)t - offsetof(struct tt, timer));

	assert_false(t->armed);
	x->fired++;
	x->when = now;
	if (x->victim != NULL)
		timer_del(&wheel, &x->victim->timer);
	if (x->rearm != 0 && x->rearms > 0) {
		x->rearms--;
		timer_add(&wheel, t, now + x->rearm);
	}
}

/* Clear a test timer. */
static void
tt_init(struct tt *x)
{
	memset(x, 0, sizeof *x);
	x->timer.cb = tt_cb;
}

/* A fresh wheel for each test. */
static int
setup(void **state)
{
	if (timer_wheel_init(&wheel, NSLOTS, START) == -1)
		return (-1);
	return (0);
}

/* Free the wheel. */
static int
teardown(void **state)
{
	timer_wheel_free(&wheel);
	return (0);
}

/* The slot count is rounded up to a power of two. */
static void
test_init(void **state)
{
	struct timer_wheel	w;

	assert_int_equal(wheel.nslots, NSLOTS);
	assert_int_equal(wheel.now, START);
	assert_int_equal(wheel.count, 0);
	assert_int_equal(timer_wheel_init(&w, 1000, 5), 0);
	assert_int_equal(w.nslots, 1024);
	timer_wheel_free(&w);
	assert_int_equal(timer_wheel_init(&w, 1, 5), 0);
	assert_int_equal(w.nslots, 1);
	timer_wheel_free(&w);
}

/* A timer fires in its second, not one before, whatever the step. */
static void
test_exact_second(void **state)
{
	struct tt	x;
	uint64_t	t;

	tt_init(&x);
	timer_add(&wheel, &x.timer, START + 30);
	assert_true(x.timer.armed);
	assert_int_equal(wheel.count, 1);
	for (t = START + 1; t < START + 30; t++) {
		assert_int_equal(timer_advance(&wheel, t), 0);
		assert_int_equal(x.fired, 0);
	}
	assert_int_equal(timer_advance(&wheel, START + 30), 1);
	assert_int_equal(x.fired, 1);
	assert_int_equal(x.when, START + 30);
	assert_false(x.timer.armed);
	assert_int_equal(wheel.count, 0);
	/* Never again. */
	assert_int_equal(timer_advance(&wheel, START + 30 + 2 * NSLOTS), 0);
	assert_int_equal(x.fired, 1);

	/* Jumping straight past it: fires, reporting its own second. */
	timer_add(&wheel, &x.timer, wheel.now + 10);
	assert_int_equal(timer_advance(&wheel, wheel.now + 9), 0);
	assert_int_equal(timer_advance(&wheel, wheel.now + 5), 1);
	assert_int_equal(x.fired, 2);
	assert_int_equal(x.when, wheel.now - 4);

	/* The same time again does nothing. */
	assert_int_equal(timer_advance(&wheel, wheel.now), 0);
}

/* A time in the past (or now) fires on the next tick. */
static void
test_past(void **state)
{
	struct tt	x, y;

	tt_init(&x);
	tt_init(&y);
	timer_add(&wheel, &x.timer, START - 100);
	timer_add(&wheel, &y.timer, START);
	assert_int_equal(x.timer.expire, START + 1);
	assert_int_equal(timer_advance(&wheel, START + 1), 2);
	assert_int_equal(x.fired, 1);
	assert_int_equal(y.fired, 1);
}

/* Many timers in the same slot, some due and some a lap later. */
static void
test_same_slot(void **state)
{
	static struct tt	x[MANY];
	unsigned		i, due = 0, lap1 = 0;

	for (i = 0; i < MANY; i++) {
		tt_init(&x[i]);
		/* Half now+50, half one or more laps later, same slot. */
		if (i % 2 == 0) {
			timer_add(&wheel, &x[i].timer, START + 50);
			due++;
		} else {
			timer_add(&wheel, &x[i].timer,
			    START + 50 + (uint64_t)NSLOTS * (1 + i % 3));
			if (i % 3 == 0)
				lap1++;
		}
	}
	assert_int_equal(wheel.count, MANY);
	assert_int_equal(timer_advance(&wheel, START + 49), 0);
	assert_int_equal(timer_advance(&wheel, START + 50), due);
	for (i = 0; i < MANY; i++)
		assert_int_equal(x[i].fired, i % 2 == 0 ? 1 : 0);
	assert_int_equal(wheel.count, MANY - due);
	assert_int_equal(timer_advance(&wheel, START + 50 + NSLOTS - 1), 0);
	assert_int_equal(timer_advance(&wheel, START + 50 + NSLOTS), lap1);
	for (i = 1; i < MANY; i += 2)
		if (x[i].fired)
			assert_int_equal(x[i].when, START + 50 + NSLOTS);
	/* A step of two laps: the rest fire, none before its second. */
	assert_int_equal(timer_advance(&wheel, START + 50 + 3 * NSLOTS),
	    MANY - due - lap1);
	for (i = 0; i < MANY; i++) {
		assert_int_equal(x[i].fired, 1);
		assert_true(x[i].when >= x[i].timer.expire);
		assert_true(x[i].when <= START + 50 + 3 * NSLOTS);
	}
	assert_int_equal(wheel.count, 0);
}

/* 10000 s on a 4096-slot wheel: skipped twice, fired on the third lap. */
static void
test_beyond_wheel(void **state)
{
	struct tt	x;
	uint64_t	t;

	tt_init(&x);
	timer_add(&wheel, &x.timer, START + 10000);
	for (t = START + 1; t < START + 10000; t++)
		assert_int_equal(timer_advance(&wheel, t), 0);
	assert_int_equal(x.fired, 0);
	assert_int_equal(timer_advance(&wheel, START + 10000), 1);
	assert_int_equal(x.when, START + 10000);

	/* In big steps that land on the slot's earlier laps. */
	timer_add(&wheel, &x.timer, wheel.now + 10000);
	assert_int_equal(timer_advance(&wheel, wheel.now + 10000 - NSLOTS),
	    0);
	assert_int_equal(timer_advance(&wheel, wheel.now + NSLOTS - 1), 0);
	assert_int_equal(timer_advance(&wheel, wheel.now + 1), 1);
	assert_int_equal(x.fired, 2);
}

/* A deleted timer never fires; deleting twice is harmless. */
static void
test_del(void **state)
{
	struct tt	x, y;

	tt_init(&x);
	tt_init(&y);
	timer_add(&wheel, &x.timer, START + 5);
	timer_add(&wheel, &y.timer, START + 5);
	timer_del(&wheel, &x.timer);
	assert_false(x.timer.armed);
	assert_int_equal(wheel.count, 1);
	timer_del(&wheel, &x.timer);
	assert_int_equal(wheel.count, 1);
	assert_int_equal(timer_advance(&wheel, START + 100), 1);
	assert_int_equal(x.fired, 0);
	assert_int_equal(y.fired, 1);
	/* Deleting a fired timer is harmless too. */
	timer_del(&wheel, &y.timer);
	assert_int_equal(wheel.count, 0);
}

/* Adding an armed timer moves it (no double insertion). */
static void
test_rearm_armed(void **state)
{
	struct tt	x;

	tt_init(&x);
	timer_add(&wheel, &x.timer, START + 5);
	timer_add(&wheel, &x.timer, START + 7);
	timer_add(&wheel, &x.timer, START + 9);
	assert_int_equal(wheel.count, 1);
	assert_int_equal(timer_advance(&wheel, START + 8), 0);
	assert_int_equal(timer_advance(&wheel, START + 9), 1);
	assert_int_equal(x.fired, 1);
	assert_int_equal(wheel.count, 0);
}

/* A callback re-arms its own timer: it fires again, on time. */
static void
test_rearm_in_callback(void **state)
{
	struct tt	x, y;

	tt_init(&x);
	x.rearm = 10;
	x.rearms = 5;
	timer_add(&wheel, &x.timer, START + 10);
	assert_int_equal(timer_advance(&wheel, START + 10), 1);
	assert_true(x.timer.armed);
	assert_int_equal(x.timer.expire, START + 20);
	assert_int_equal(timer_advance(&wheel, START + 19), 0);
	assert_int_equal(timer_advance(&wheel, START + 20), 1);
	/* The rest in one step: each re-arm fires in its own second. */
	assert_int_equal(timer_advance(&wheel, START + 100), 4);
	assert_int_equal(x.fired, 6);
	assert_int_equal(x.when, START + 60);
	assert_false(x.timer.armed);

	/* Re-armed a whole lap ahead: lands in its own slot, not now. */
	tt_init(&y);
	y.rearm = NSLOTS;
	y.rearms = 1;
	timer_add(&wheel, &y.timer, wheel.now + 1);
	assert_int_equal(timer_advance(&wheel, wheel.now + 1), 1);
	assert_int_equal(y.fired, 1);
	assert_int_equal(timer_advance(&wheel, wheel.now + NSLOTS - 1), 0);
	assert_int_equal(timer_advance(&wheel, wheel.now + 1), 1);
	assert_int_equal(y.fired, 2);

	/* Re-armed for "now": the next tick. */
	tt_init(&y);
	timer_add(&wheel, &y.timer, wheel.now + 1);
	y.rearm = 0;
	assert_int_equal(timer_advance(&wheel, wheel.now + 1), 1);
	timer_add(&wheel, &y.timer, y.when);
	assert_int_equal(timer_advance(&wheel, wheel.now + 1), 1);
	assert_int_equal(y.fired, 2);
}

/* A callback deletes a timer due in the same second: it does not fire. */
static void
test_delete_in_callback(void **state)
{
	struct tt	x, y;
	unsigned	fired;

	tt_init(&x);
	tt_init(&y);
	x.victim = &y;
	y.victim = &x;
	timer_add(&wheel, &x.timer, START + 3);
	timer_add(&wheel, &y.timer, START + 3);
	fired = timer_advance(&wheel, START + 3);
	assert_int_equal(fired, 1);
	assert_int_equal(x.fired + y.fired, 1);
	assert_int_equal(wheel.count, 0);
}

/* A jump of a million seconds fires everything exactly once. */
static void
test_long_jump(void **state)
{
	static struct tt	x[MANY];
	unsigned		i;

	for (i = 0; i < MANY; i++) {
		tt_init(&x[i]);
		timer_add(&wheel, &x[i].timer, START + 1 + (uint64_t)i * 397);
	}
	assert_int_equal(timer_advance(&wheel, START + 1000000), MANY);
	for (i = 0; i < MANY; i++) {
		assert_int_equal(x[i].fired, 1);
		assert_false(x[i].timer.armed);
	}
	assert_int_equal(wheel.count, 0);
	assert_int_equal(wheel.now, START + 1000000);
	assert_int_equal(timer_advance(&wheel, START + 2000000), 0);

	/* After the jump, timers work as before. */
	timer_add(&wheel, &x[0].timer, wheel.now + 2);
	assert_int_equal(timer_advance(&wheel, wheel.now + 1), 0);
	assert_int_equal(timer_advance(&wheel, wheel.now + 1), 1);
	assert_int_equal(x[0].fired, 2);
}

/* A jump with re-arming callbacks runs each at most once a lap. */
static void
test_long_jump_rearm(void **state)
{
	struct tt	x;
	unsigned	fired;

	tt_init(&x);
	x.rearm = 1;
	x.rearms = 1000000;
	timer_add(&wheel, &x.timer, START + 1);
	/*
	 * Only the last lap is replayed: the timer first fires in the
	 * lap's second of its slot and then every second to the end.
	 */
	fired = timer_advance(&wheel, START + 1000000);
	assert_true(fired <= NSLOTS);
	assert_int_equal(fired, (1000000 - 1) % NSLOTS + 1);
	assert_true(x.timer.armed);
	assert_int_equal(x.when, START + 1000000);
	assert_int_equal(x.timer.expire, START + 1000001);
}

/* Run the timer tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exact_second, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_past, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_slot, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_beyond_wheel, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rearm_armed, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rearm_in_callback, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_delete_in_callback, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_long_jump, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_long_jump_rearm, setup,
		    teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
