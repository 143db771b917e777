/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "sipnat.h"

/* Logging: stderr in the foreground, syslog otherwise. */

static int	log_foreground = 1;
static int	log_debugging;

static void	log_vwrite(int, const char *, const char *, va_list)
		    __attribute__((format(printf, 2, 0)));

/* Start logging; -f keeps it on stderr, -d adds debug messages. */
void
log_init(int foreground, int debug)
{
	log_foreground = foreground;
	log_debugging = debug;
	if (!foreground)
		openlog("sipnatd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

/* Turn debug messages on or off (the config's log level, on reload). */
void
log_set_debug(int debug)
{
	log_debugging = debug;
}

/*
 * Write one message, with an optional error string after it.  Messages
 * quote the network (Call-IDs, URIs): a control byte would forge lines in
 * the log or drive a terminal, so each becomes a '?'.
 */
static void
log_vwrite(int pri, const char *fmt, const char *err, va_list ap)
{
	char	msg[1024], *c;

	vsnprintf(msg, sizeof msg, fmt, ap);
	for (c = msg; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	if (log_foreground) {
		if (err != NULL)
			fprintf(stderr, "sipnatd: %s: %s\n", msg, err);
		else
			fprintf(stderr, "sipnatd: %s\n", msg);
		fflush(stderr);
	} else if (err != NULL)
		syslog(pri, "%s: %s", msg, err);
	else
		syslog(pri, "%s", msg);
}

/* A warning with strerror(errno). */
void
log_warn(const char *fmt, ...)
{
	const char	*err = strerror(errno);
	va_list		 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_WARNING, fmt, err, ap);
	va_end(ap);
}

/* A warning without errno. */
void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_WARNING, fmt, NULL, ap);
	va_end(ap);
}

/* Something worth knowing in normal operation. */
void
log_info(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_INFO, fmt, NULL, ap);
	va_end(ap);
}

/* Only with -d or log_level = debug. */
void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	if (!log_debugging)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_DEBUG, fmt, NULL, ap);
	va_end(ap);
}

/* Give up, with strerror(errno). */
void
fatal(const char *fmt, ...)
{
	const char	*err = strerror(errno);
	va_list		 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, fmt, err, ap);
	va_end(ap);
	exit(1);
}

/* Give up. */
void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, fmt, NULL, ap);
	va_end(ap);
	exit(1);
}
