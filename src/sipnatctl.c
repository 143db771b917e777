/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sipnat.h"	/* for SIPNAT_SOCKET only: this links libc alone */

/*
 * sipnatctl: send one command to sipnatd's control socket and copy the
 * answer to stdout.  Exits 0, 1 when the daemon answers with an error, or
 * 2 when the daemon cannot be reached or does not answer in time.
 */

#define CTL_LINE_MAX	1024	/* as the daemon takes it, without newline */
#define CTL_TIMEOUT	10	/* seconds for the whole exchange */

static const char	*ctl_socket = SIPNAT_SOCKET;
static int		 ctl_send_error;	/* errno of a failed send */

static void	usage(FILE *, int) __attribute__((noreturn));
static void	ctl_alarm(int);
static char	*ctl_line(int, char **, int);
static int	ctl_connect(const char *);
static void	ctl_send(int, const char *, size_t);
static int	ctl_failed(const char *, size_t);
static int	ctl_copy(int);

/* Print the usage and exit. */
static void
usage(FILE *f, int status)
{
	fprintf(f, "usage: sipnatctl [-hj] [-s socket] command [argument ...]\n"
	    "commands: help, sessions, stats, reload (\"help\" lists them all)\n");
	exit(status);
}

/* The whole exchange took too long. */
static void
ctl_alarm(__attribute__((unused)) int sig)
{
	static const char	msg[] = "sipnatctl: no answer from the daemon\n";
	ssize_t			n;

	n = write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)n;
	_exit(2);
}

/* Build the request line: "[json ]COMMAND ARGS\n". */
static char *
ctl_line(int argc, char **argv, int json)
{
	char	*line;
	size_t	 len = 0, off = 0;
	int	 i;

	if (json)
		len += 5;
	for (i = 0; i < argc; i++) {
		if (strpbrk(argv[i], "\r\n") != NULL) {
			fprintf(stderr, "sipnatctl: newline in argument\n");
			exit(1);
		}
		len += strlen(argv[i]) + 1;
		if (len > CTL_LINE_MAX + 1) {
			fprintf(stderr, "sipnatctl: command too long (more "
			    "than %d bytes)\n", CTL_LINE_MAX);
			exit(1);
		}
	}
	if ((line = malloc(len + 1)) == NULL) {
		fprintf(stderr, "sipnatctl: out of memory\n");
		exit(1);
	}
	if (json) {
		memcpy(line, "json ", 5);
		off = 5;
	}
	for (i = 0; i < argc; i++) {
		len = strlen(argv[i]);
		memcpy(line + off, argv[i], len);
		off += len;
		line[off++] = (i == argc - 1) ? '\n' : ' ';
	}
	line[off] = '\0';
	return (line);
}

/* Connect to the control socket, or exit 2. */
static int
ctl_connect(const char *path)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		fprintf(stderr, "sipnatctl: cannot connect to %s: %s\n", path,
		    strerror(ENAMETOOLONG));
		exit(2);
	}
	memcpy(sun.sun_path, path, strlen(path));

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		fprintf(stderr, "sipnatctl: socket: %s\n", strerror(errno));
		exit(2);
	}
	while (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		if (errno == EINTR)
			continue;
		fprintf(stderr, "sipnatctl: cannot connect to %s: %s\n", path,
		    strerror(errno));
		exit(2);
	}
	return (fd);
}

/*
 * Send the whole request.  If the daemon hangs up first, it may still have
 * said why (too many clients), so the error waits until the answer is read.
 */
static void
ctl_send(int fd, const char *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			ctl_send_error = errno;
			return;
		}
		buf += n;
		len -= n;
	}
}

/* Does the start of an answer say the command failed? */
static int
ctl_failed(const char *buf, size_t len)
{
	static const char	*prefixes[] = {
		"error:",
		"reload failed",
		"{\"reload\":\"failed\"",
	};
	size_t			 i, plen;

	for (i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		plen = strlen(prefixes[i]);
		if (len >= plen && memcmp(buf, prefixes[i], plen) == 0)
			return (1);
	}
	return (0);
}

/* Copy the answer to stdout; return the exit status. */
static int
ctl_copy(int fd)
{
	char	buf[8192], head[32];
	size_t	hlen = 0, n;
	ssize_t	r;

	for (;;) {
		r = read(fd, buf, sizeof buf);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			/* The daemon hung up on the rest of a long request. */
			if (errno == ECONNRESET && hlen != 0)
				break;
			fprintf(stderr, "sipnatctl: read from %s: %s\n",
			    ctl_socket, strerror(errno));
			return (2);
		}
		if (r == 0)
			break;
		if (hlen < sizeof head) {
			n = sizeof head - hlen;
			if (n > (size_t)r)
				n = r;
			memcpy(head + hlen, buf, n);
			hlen += n;
		}
		if (fwrite(buf, 1, r, stdout) != (size_t)r)
			break;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "sipnatctl: stdout: %s\n", strerror(errno));
		return (1);
	}
	if (hlen == 0 && ctl_send_error != 0) {
		fprintf(stderr, "sipnatctl: send to %s: %s\n", ctl_socket,
		    strerror(ctl_send_error));
		return (2);
	}
	if (hlen == 0) {
		fprintf(stderr, "sipnatctl: empty answer from %s\n",
		    ctl_socket);
		return (2);
	}
	return (ctl_failed(head, hlen));
}

/* A path made absolute from the working directory. */
static char *
ctl_absolute(const char *path)
{
	char	cwd[4096], *abs;

	if (getcwd(cwd, sizeof cwd) == NULL ||
	    asprintf(&abs, "%s/%s", cwd, path) == -1) {
		fprintf(stderr, "sipnatctl: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	return (abs);
}

int
main(int argc, char **argv)
{
	char	*line;
	int	 ch, fd, json = 0, status;

	while ((ch = getopt(argc, argv, "+hjs:")) != -1) {
		switch (ch) {
		case 'h':
			usage(stdout, 0);
		case 'j':
			json = 1;
			break;
		case 's':
			ctl_socket = optarg;
			break;
		default:
			usage(stderr, 1);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage(stderr, 1);

	/* The daemon runs elsewhere: give it an absolute capture file. */
	if (argc >= 3 && strcmp(argv[0], "capture") == 0 &&
	    strcmp(argv[1], "start") == 0 && argv[2][0] != '/')
		argv[2] = ctl_absolute(argv[2]);
	line = ctl_line(argc, argv, json);
	signal(SIGALRM, ctl_alarm);
	alarm(CTL_TIMEOUT);

	fd = ctl_connect(ctl_socket);
	ctl_send(fd, line, strlen(line));
	status = ctl_copy(fd);
	close(fd);
	free(line);
	return (status);
}
