/* SPDX-License-Identifier: ISC */

/*
 * udpblast: send UDP datagrams as fast as possible, in sendmmsg() batches,
 * for the benchmark (tests/bench/run-bench.sh).
 *
 * usage: udpblast -d ADDR [-p PORT] [-r NPORTS] [-s SPORT] [-n NSRC]
 *                 [-l SIZE] [-t SECS] [-c COUNT] [-b BATCH] [-o] [-q]
 *
 *   -d ADDR    destination IPv4 address
 *   -p PORT    first destination port (9000)
 *   -r NPORTS  destination ports PORT .. PORT+NPORTS-1 are cycled (1)
 *   -s SPORT   first source port; 0: one ephemeral port per socket (0)
 *   -n NSRC    sockets, bound to SPORT .. SPORT+NSRC-1 (1)
 *   -l SIZE    UDP payload bytes (64)
 *   -t SECS    stop after this many seconds (5; fractions allowed)
 *   -c COUNT   stop after this many packets (0: no limit)
 *   -b BATCH   packets per sendmmsg (64, at most 1024)
 *   -o         once: send each of the NSRC x NPORTS flows exactly once,
 *              then stop (-t still bounds it)
 *   -q         no progress on stderr
 *
 * Batches go to the sockets in turn; inside a batch, the destination
 * port advances with every packet, so with -r N every packet of a socket
 * is a different flow until N packets have gone from it.  Prints one line:
 *   sent=N elapsed=SECS pps=RATE errors=E flows=F
 * where errors counts packets a sendmmsg() refused (ENOBUFS and so on).
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH	1024
#define MAX_PAYLOAD	65507

struct src {
	int		 fd;
	uint32_t	 next;		/* next destination port offset */
	uint64_t	 left;		/* -o: packets still to send */
};

static volatile sig_atomic_t	stop;

static void
usage(void)
{
	fprintf(stderr, "usage: udpblast -d addr [-p port] [-r nports] "
	    "[-s sport] [-n nsrc] [-l size] [-t secs] [-c count] [-b batch] "
	    "[-o] [-q]\n");
	exit(2);
}

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double
now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

static unsigned long
number(const char *s, unsigned long lo, unsigned long hi, const char *what)
{
	char		*end;
	unsigned long	 v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "udpblast: bad %s: %s (%lu to %lu)\n", what,
		    s, lo, hi);
		exit(2);
	}
	return (v);
}

int
main(int argc, char **argv)
{
	static struct mmsghdr		msg[MAX_BATCH];
	static struct iovec		iov[MAX_BATCH];
	static struct sockaddr_in	to[MAX_BATCH];
	struct sockaddr_in		dst, sin;
	struct sigaction		sa;
	struct src			*src;
	uint8_t				*payload;
	const char			*addr = NULL;
	unsigned long			 dport = 9000, nports = 1, sport = 0;
	unsigned long			 nsrc = 1, size = 64, batch = 64;
	unsigned long long		 count = 0, sent = 0, errors = 0;
	double				 secs = 5, t0, t1, deadline;
	unsigned			 i, k, cur = 0, n, iter = 0;
	int				 ch, once = 0, quiet = 0, r, sz, one = 1;
	char				*end;

	while ((ch = getopt(argc, argv, "b:c:d:l:n:op:qr:s:t:")) != -1) {
		switch (ch) {
		case 'b':
			batch = number(optarg, 1, MAX_BATCH, "batch");
			break;
		case 'c':
			count = number(optarg, 0, ~0UL, "count");
			break;
		case 'd':
			addr = optarg;
			break;
		case 'l':
			size = number(optarg, 0, MAX_PAYLOAD, "size");
			break;
		case 'n':
			nsrc = number(optarg, 1, 4096, "socket count");
			break;
		case 'o':
			once = 1;
			break;
		case 'p':
			dport = number(optarg, 1, 65535, "port");
			break;
		case 'q':
			quiet = 1;
			break;
		case 'r':
			nports = number(optarg, 1, 65535, "port count");
			break;
		case 's':
			sport = number(optarg, 0, 65535, "source port");
			break;
		case 't':
			secs = strtod(optarg, &end);
			if (*optarg == '\0' || *end != '\0' || !(secs > 0) ||
			    secs > 86400) {
				fprintf(stderr, "udpblast: bad seconds: %s\n",
				    optarg);
				exit(2);
			}
			break;
		default:
			usage();
		}
	}
	if (optind != argc || addr == NULL)
		usage();
	if (dport + nports - 1 > 65535) {
		fprintf(stderr, "udpblast: ports %lu + %lu pass 65535\n",
		    dport, nports);
		exit(2);
	}
	if (sport != 0 && sport + nsrc - 1 > 65535) {
		fprintf(stderr, "udpblast: source ports %lu + %lu pass 65535\n",
		    sport, nsrc);
		exit(2);
	}
	memset(&dst, 0, sizeof dst);
	dst.sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1) {
		fprintf(stderr, "udpblast: bad address: %s\n", addr);
		exit(2);
	}

	if ((payload = calloc(1, size ? size : 1)) == NULL ||
	    (src = calloc(nsrc, sizeof *src)) == NULL) {
		perror("udpblast: calloc");
		exit(1);
	}
	for (i = 0; i < size; i++)
		payload[i] = (uint8_t)i;
	sz = 4 * 1024 * 1024;
	for (k = 0; k < nsrc; k++) {
		src[k].fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (src[k].fd == -1) {
			perror("udpblast: socket");
			exit(1);
		}
		setsockopt(src[k].fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
		setsockopt(src[k].fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof one);
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)(sport ? sport + k : 0));
		if (bind(src[k].fd, (struct sockaddr *)&sin, sizeof sin) == -1) {
			fprintf(stderr, "udpblast: bind port %lu: %s\n",
			    sport ? sport + k : 0, strerror(errno));
			exit(1);
		}
		src[k].left = nports;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (i = 0; i < batch; i++) {
		to[i] = dst;
		iov[i].iov_base = payload;
		iov[i].iov_len = size;
		msg[i].msg_hdr.msg_name = &to[i];
		msg[i].msg_hdr.msg_namelen = sizeof to[i];
		msg[i].msg_hdr.msg_iov = &iov[i];
		msg[i].msg_hdr.msg_iovlen = 1;
	}

	t0 = now();
	deadline = t0 + secs;
	while (!stop) {
		struct src	*s;

		/* Every 16 batches: the clock (a vDSO call, cheap). */
		if ((iter++ & 15) == 0 && now() >= deadline)
			break;
		if (count != 0 && sent >= count)
			break;
		/* The next socket with something left to send. */
		for (k = 0; k < nsrc; k++) {
			s = &src[(cur + k) % nsrc];
			if (!once || s->left > 0)
				break;
		}
		if (k == nsrc)
			break;			/* -o: every flow sent */
		s = &src[(cur + k) % nsrc];
		cur = (cur + k + 1) % nsrc;

		n = (unsigned)batch;
		if (once && s->left < n)
			n = (unsigned)s->left;
		if (count != 0 && count - sent < n)
			n = (unsigned)(count - sent);
		for (i = 0; i < n; i++) {
			to[i].sin_port = htons((uint16_t)(dport + s->next));
			if (++s->next == nports)
				s->next = 0;
		}
		r = sendmmsg(s->fd, msg, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ENOBUFS && errno != EAGAIN &&
			    errno != ECONNREFUSED && errno != EPERM) {
				perror("udpblast: sendmmsg");
				exit(1);
			}
			/* Skip the first packet: it was refused. */
			errors++;
			r = 1;
		} else
			sent += (unsigned)r;
		if (once)
			s->left -= (unsigned)r;
		/* Refused or short: those ports come again (not -o). */
		if (!once && (unsigned)r < n) {
			unsigned back = n - (unsigned)r;

			s->next = (uint32_t)((s->next + nports -
			    back % nports) % nports);
		}
	}
	t1 = now();
	if (!quiet)
		fprintf(stderr, "udpblast: %llu packets in %.3f s\n", sent,
		    t1 - t0);
	printf("sent=%llu elapsed=%.6f pps=%.0f errors=%llu flows=%lu\n",
	    sent, t1 - t0, t1 > t0 ? (double)sent / (t1 - t0) : 0.0, errors,
	    nsrc * nports);
	return (0);
}
