/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <stddef.h>
#include <string.h>

#include "alg.h"

/*
 * The helper registry: one table, searched in order.  Adding a helper is
 * one line here and one file implementing struct alg.
 */

static const struct alg *algs[] = {
	&alg_sip,
	NULL
};

/* The helper that wants this packet, or NULL (most packets). */
const struct alg *
alg_find(const struct pkt *p, enum nat_dir dir)
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->match(p, dir))
			return (*a);
	return (NULL);
}

/* Give every helper the configuration; the first refusal wins. */
int
alg_configure(const struct config *c, char **cause)
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->configure != NULL && (*a)->configure(c, cause) == -1)
			return (-1);
	return (0);
}

/* Once a second, for every helper. */
void
alg_tick(uint64_t now)
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->tick != NULL)
			(*a)->tick(now);
}

/* A packet no mapping wanted: helpers may know why (diagnostics). */
void
alg_stray(const struct pkt *p)
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->stray != NULL)
			(*a)->stray(p);
}

/* The capture filter a helper offers for a mode; -1 if none does. */
int
alg_capture(const char *mode, const char *arg, capture_filter_cb *cb,
    void **cb_arg, void (**cb_free)(void *))
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->capture != NULL &&
		    (*a)->capture(mode, arg, cb, cb_arg, cb_free) == 0)
			return (0);
	return (-1);
}

/* Helpers' labelled series for the metrics endpoint. */
void
alg_metrics(struct evbuffer *out)
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->metrics != NULL)
			(*a)->metrics(out);
}

/* At exit. */
void
alg_shutdown(void)
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->shutdown != NULL)
			(*a)->shutdown();
}

/* Every helper's counters. */
void
alg_stats(alg_stat_cb cb, void *arg)
{
	const struct alg	**a;

	for (a = algs; *a != NULL; a++)
		if ((*a)->stats != NULL)
			(*a)->stats(cb, arg);
	stream_stats(cb, arg);
}

/* A control command some helper adds. */
const struct alg_cmd *
alg_cmd_find(const char *name)
{
	const struct alg	**a;
	const struct alg_cmd	 *c;

	for (a = algs; *a != NULL; a++) {
		for (c = (*a)->cmds; c != NULL && c->name != NULL; c++)
			if (strcmp(c->name, name) == 0)
				return (c);
	}
	return (NULL);
}

/* Call cb for every helper command (for help). */
void
alg_cmd_foreach(void (*cb)(const struct alg_cmd *, void *), void *arg)
{
	const struct alg	**a;
	const struct alg_cmd	 *c;

	for (a = algs; *a != NULL; a++)
		for (c = (*a)->cmds; c != NULL && c->name != NULL; c++)
			cb(c, arg);
}
