/* SPDX-License-Identifier: ISC */

/*
 * udpblast: send UDP datagrams as fast as possible, in sendmmsg() batches,
 * for the benchmark (tests/bench/run-bench.sh).
 *
 * usage: udpblast -d ADDR [-p PORT] [-r NPORTS] [-s SPORT] [-n NSRC]
 *                 [-j THREADS] [-l SIZE] [-t SECS] [-c COUNT] [-b BATCH]
 *                 [-o] [-q]
 *
 *   -d ADDR     destination IPv4 address
 *   -p PORT     first destination port (9000)
 *   -r NPORTS   destination ports PORT .. PORT+NPORTS-1 are cycled (1)
 *   -s SPORT    first source port; 0: an ephemeral port per socket (0)
 *   -n NSRC     sockets per thread, bound to consecutive source ports from
 *               SPORT (thread t uses SPORT+t*NSRC ..) (1)
 *   -j THREADS  sending threads (1)
 *   -l SIZE     UDP payload bytes (64)
 *   -t SECS     stop after this many seconds (5; fractions allowed)
 *   -c COUNT    stop after this many packets in all (0: no limit)
 *   -b BATCH    packets per sendmmsg (64, at most 1024)
 *   -o          once: send each of the THREADS x NSRC x NPORTS flows
 *               exactly once, then stop (-t still bounds it)
 *   -q          no summary on stderr
 *
 * Each thread sends its batches to its sockets in turn; inside a batch the
 * destination port advances with every packet, so with -r N every packet
 * of a socket is a new flow until N packets have gone from it.  Prints one
 * line on stdout:
 *   sent=N elapsed=SECS pps=RATE errors=E flows=F
 * elapsed runs from the start to the last thread's end; errors counts the
 * packets a sendmmsg() refused (ENOBUFS and the like).
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH	1024
#define MAX_PAYLOAD	65507
#define MAX_THREADS	64

struct src {
	int		 fd;
	uint32_t	 next;		/* next destination port offset */
	uint64_t	 left;		/* -o: packets still to send */
};

struct sender {
	pthread_t		 thread;
	struct src		*src;
	unsigned long long	 count;	/* 0: no limit */
	unsigned long long	 sent;
	unsigned long long	 errors;
	double			 end;
	struct mmsghdr		 msg[MAX_BATCH];
	struct iovec		 iov[MAX_BATCH];
	struct sockaddr_in	 to[MAX_BATCH];
};

static volatile sig_atomic_t	 stop;
static struct sockaddr_in	 dst;
static uint8_t			*payload;
static unsigned long		 dport = 9000, nports = 1, sport = 0;
static unsigned long		 nsrc = 1, size = 64, batch = 64;
static double			 deadline;
static int			 once;

static void
usage(void)
{
	fprintf(stderr, "usage: udpblast -d addr [-p port] [-r nports] "
	    "[-s sport] [-n nsrc] [-j threads] [-l size] [-t secs] "
	    "[-c count] [-b batch] [-o] [-q]\n");
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

/* Open thread t's sockets. */
static void
sender_open(struct sender *sd, unsigned t)
{
	struct sockaddr_in	sin;
	unsigned long		port;
	unsigned		k, i;
	int			sz = 4 * 1024 * 1024, one = 1;

	if ((sd->src = calloc(nsrc, sizeof *sd->src)) == NULL) {
		perror("udpblast: calloc");
		exit(1);
	}
	for (k = 0; k < nsrc; k++) {
		sd->src[k].fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (sd->src[k].fd == -1) {
			perror("udpblast: socket");
			exit(1);
		}
		setsockopt(sd->src[k].fd, SOL_SOCKET, SO_SNDBUF, &sz,
		    sizeof sz);
		setsockopt(sd->src[k].fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof one);
		port = sport ? sport + t * nsrc + k : 0;
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		if (bind(sd->src[k].fd, (struct sockaddr *)&sin,
		    sizeof sin) == -1) {
			fprintf(stderr, "udpblast: bind port %lu: %s\n", port,
			    strerror(errno));
			exit(1);
		}
		sd->src[k].left = nports;
	}
	for (i = 0; i < batch; i++) {
		sd->to[i] = dst;
		sd->iov[i].iov_base = payload;
		sd->iov[i].iov_len = size;
		sd->msg[i].msg_hdr.msg_name = &sd->to[i];
		sd->msg[i].msg_hdr.msg_namelen = sizeof sd->to[i];
		sd->msg[i].msg_hdr.msg_iov = &sd->iov[i];
		sd->msg[i].msg_hdr.msg_iovlen = 1;
	}
}

/* One thread's loop: batches to its sockets in turn until done. */
static void *
sender_run(void *arg)
{
	struct sender	*sd = arg;
	struct src	*s;
	unsigned	 i, k, n, cur = 0, iter = 0, back;
	int		 r;

	while (!stop) {
		/* Every 16 batches: the clock (a vDSO call, cheap). */
		if ((iter++ & 15) == 0 && now() >= deadline)
			break;
		if (sd->count != 0 && sd->sent >= sd->count)
			break;
		/* The next socket with something left to send. */
		for (k = 0; k < nsrc; k++) {
			s = &sd->src[(cur + k) % nsrc];
			if (!once || s->left > 0)
				break;
		}
		if (k == nsrc)
			break;			/* -o: every flow sent */
		s = &sd->src[(cur + k) % nsrc];
		cur = (unsigned)((cur + k + 1) % nsrc);

		n = (unsigned)batch;
		if (once && s->left < n)
			n = (unsigned)s->left;
		if (sd->count != 0 && sd->count - sd->sent < n)
			n = (unsigned)(sd->count - sd->sent);
		for (i = 0; i < n; i++) {
			sd->to[i].sin_port = htons((uint16_t)(dport + s->next));
			if (++s->next == nports)
				s->next = 0;
		}
		r = sendmmsg(s->fd, sd->msg, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ENOBUFS && errno != EAGAIN &&
			    errno != ECONNREFUSED && errno != EPERM) {
				perror("udpblast: sendmmsg");
				exit(1);
			}
			/* The first packet was refused: skip it. */
			sd->errors++;
			r = 1;
		} else
			sd->sent += (unsigned)r;
		if (once)
			s->left -= (unsigned)r;
		else if ((unsigned)r < n) {
			/* Not sent: those ports come again. */
			back = n - (unsigned)r;
			s->next = (uint32_t)((s->next + nports -
			    back % nports) % nports);
		}
	}
	sd->end = now();
	return (NULL);
}

int
main(int argc, char **argv)
{
	struct sigaction	 sa;
	struct sender		*sd;
	const char		*addr = NULL;
	unsigned long		 nthreads = 1;
	unsigned long long	 count = 0, sent = 0, errors = 0;
	double			 secs = 5, t0, t1;
	unsigned		 i, t;
	int			 ch, quiet = 0, err;
	char			*end;

	while ((ch = getopt(argc, argv, "b:c:d:j:l:n:op:qr:s:t:")) != -1) {
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
		case 'j':
			nthreads = number(optarg, 1, MAX_THREADS, "threads");
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
	if (sport != 0 && sport + nthreads * nsrc - 1 > 65535) {
		fprintf(stderr, "udpblast: source ports from %lu pass 65535\n",
		    sport);
		exit(2);
	}
	memset(&dst, 0, sizeof dst);
	dst.sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1) {
		fprintf(stderr, "udpblast: bad address: %s\n", addr);
		exit(2);
	}

	if ((payload = calloc(1, size ? size : 1)) == NULL ||
	    (sd = calloc(nthreads, sizeof *sd)) == NULL) {
		perror("udpblast: calloc");
		exit(1);
	}
	for (i = 0; i < size; i++)
		payload[i] = (uint8_t)i;
	for (t = 0; t < nthreads; t++) {
		sender_open(&sd[t], t);
		/* Split -c; the first threads take the remainder. */
		if (count != 0)
			sd[t].count = count / nthreads +
			    (t < count % nthreads ? 1 : 0);
		if (count != 0 && sd[t].count == 0)
			sd[t].count = ~0ULL;	/* nothing: stop at once */
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	t0 = now();
	deadline = t0 + secs;
	for (t = 0; t < nthreads; t++) {
		if (sd[t].count == ~0ULL) {
			sd[t].end = t0;
			continue;
		}
		if ((err = pthread_create(&sd[t].thread, NULL, sender_run,
		    &sd[t])) != 0) {
			fprintf(stderr, "udpblast: pthread_create: %s\n",
			    strerror(err));
			exit(1);
		}
	}
	t1 = t0;
	for (t = 0; t < nthreads; t++) {
		if (sd[t].count != ~0ULL)
			pthread_join(sd[t].thread, NULL);
		sent += sd[t].sent;
		errors += sd[t].errors;
		if (sd[t].end > t1)
			t1 = sd[t].end;
	}
	if (!quiet)
		fprintf(stderr, "udpblast: %llu packets in %.3f s\n", sent,
		    t1 - t0);
	printf("sent=%llu elapsed=%.6f pps=%.0f errors=%llu flows=%lu\n",
	    sent, t1 - t0, t1 > t0 ? (double)sent / (t1 - t0) : 0.0, errors,
	    nthreads * nsrc * nports);
	return (0);
}
