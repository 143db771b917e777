/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/queue.h>

#include <stdlib.h>

#include "sipnat.h"

/*
 * A hashed timing wheel with one-second ticks.  Adding and removing a
 * timer is O(1); a timer further away than the wheel is long stays in its
 * slot and is skipped until its turn comes round.  Sessions do not move
 * their timer on every packet: they note the time and let the callback
 * re-arm the timer if the session was used since.
 */

/* Make a wheel of nslots (rounded up to a power of two) starting at now. */
int
timer_wheel_init(struct timer_wheel *w, unsigned nslots, uint64_t now)
{
	unsigned	n = 1, i;

	while (n < nslots)
		n <<= 1;
	w->slots = calloc(n, sizeof *w->slots);
	if (w->slots == NULL)
		return (-1);
	for (i = 0; i < n; i++)
		LIST_INIT(&w->slots[i]);
	w->nslots = n;
	w->now = now;
	w->count = 0;
	return (0);
}

/* Free the slots; the timers belong to their owners. */
void
timer_wheel_free(struct timer_wheel *w)
{
	free(w->slots);
	w->slots = NULL;
	w->count = 0;
}

/* Arm (or re-arm) a timer for the given second. */
void
timer_add(struct timer_wheel *w, struct timer *t, uint64_t expire)
{
	if (t->armed)
		timer_del(w, t);
	/* Never behind the wheel: a past time fires on the next tick. */
	if (expire <= w->now)
		expire = w->now + 1;
	t->expire = expire;
	t->armed = true;
	LIST_INSERT_HEAD(&w->slots[expire & (w->nslots - 1)], t, entry);
	w->count++;
}

/* Disarm a timer; harmless if it is not armed. */
void
timer_del(struct timer_wheel *w, struct timer *t)
{
	if (!t->armed)
		return;
	LIST_REMOVE(t, entry);
	t->armed = false;
	w->count--;
}

/*
 * Run every timer due up to now, one slot per second passed, and return
 * how many fired.  A callback may re-arm its own timer or free others.
 */
unsigned
timer_advance(struct timer_wheel *w, uint64_t now)
{
	struct timer_slot	 due;
	struct timer		*t, *next;
	unsigned		 fired = 0;

	/* After a long stall, one lap of the wheel sees every slot. */
	if (now > w->now + w->nslots)
		w->now = now - w->nslots;
	while (w->now < now) {
		w->now++;
		LIST_INIT(&due);
		t = LIST_FIRST(&w->slots[w->now & (w->nslots - 1)]);
		for (; t != NULL; t = next) {
			next = LIST_NEXT(t, entry);
			if (t->expire > w->now)
				continue;
			LIST_REMOVE(t, entry);
			LIST_INSERT_HEAD(&due, t, entry);
		}
		/* Callbacks run from a private list: they may touch slots. */
		while ((t = LIST_FIRST(&due)) != NULL) {
			LIST_REMOVE(t, entry);
			t->armed = false;
			w->count--;
			fired++;
			t->cb(t, w->now);
		}
	}
	return (fired);
}
