/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alg.h"

/*
 * Packet capture to a pcap file (the classic libpcap format, raw IPv4
 * link type), readable by tcpdump, tshark and Wireshark.  sipnatd.c hands
 * every packet here as it reads it and as it sends it, so a capture holds
 * both sides of each translation.  A filter (a helper's, such as "the SIP
 * ports" or "one call") picks the packets; none takes them all.
 */

#define PCAP_MAGIC		0xa1b2c3d4u	/* microsecond timestamps */
#define PCAP_LINKTYPE_RAW	101		/* IPv4 or IPv6, no header */
#define CAPTURE_MAX_BYTES	(1024ULL * 1024 * 1024)

static struct {
	FILE			*f;
	char			 path[256];
	char			 what[128];
	capture_filter_cb	 filter;
	void			*arg;
	void			(*arg_free)(void *);
	uint64_t		 packets;
	uint64_t		 bytes;
} cap;

/* Stop a capture: flush and close the file. */
void
capture_stop(void)
{
	if (cap.f == NULL)
		return;
	fclose(cap.f);
	log_info("capture: %s: %llu packets", cap.path,
	    (unsigned long long)cap.packets);
	if (cap.arg_free != NULL)
		cap.arg_free(cap.arg);
	memset(&cap, 0, sizeof cap);
}

/* Write a little-endian pcap header field set. */
static int
capture_header(FILE *f)
{
	uint32_t	h32[4] = { PCAP_MAGIC, 0, 0, SIPNAT_MAX_PKT };
	uint16_t	ver[2] = { 2, 4 };
	uint32_t	link = PCAP_LINKTYPE_RAW;

	if (fwrite(&h32[0], 4, 1, f) != 1 || fwrite(ver, 2, 2, f) != 2 ||
	    fwrite(&h32[1], 4, 3, f) != 3 || fwrite(&link, 4, 1, f) != 1)
		return (-1);
	return (0);
}

/*
 * Start capturing to a new file (an existing one is not overwritten: the
 * daemon may run as root).  filter NULL takes every packet; arg_free frees
 * arg when the capture ends.  -1 with a cause if it cannot.
 */
int
capture_start(const char *path, const char *what, capture_filter_cb filter,
    void *arg, void (*arg_free)(void *), char **cause)
{
	int	fd;
	FILE	*f;

	if (cap.f != NULL) {
		if (asprintf(cause, "a capture to %s is running", cap.path) ==
		    -1)
			*cause = NULL;
		return (-1);
	}
	if (path[0] != '/' || strlen(path) >= sizeof cap.path) {
		if (asprintf(cause, "%s: the path must be absolute",
		    path) == -1)
			*cause = NULL;
		return (-1);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0640);
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		if (asprintf(cause, "%s: %s", path, strerror(errno)) == -1)
			*cause = NULL;
		if (fd != -1)
			close(fd);
		return (-1);
	}
	if (capture_header(f) == -1) {
		if (asprintf(cause, "%s: %s", path, strerror(errno)) == -1)
			*cause = NULL;
		fclose(f);
		unlink(path);
		return (-1);
	}
	cap.f = f;
	snprintf(cap.path, sizeof cap.path, "%s", path);
	snprintf(cap.what, sizeof cap.what, "%s", what);
	cap.filter = filter;
	cap.arg = arg;
	cap.arg_free = arg_free;
	log_info("capture: %s started (%s)", path, what);
	return (0);
}

/* Is a capture running?  (Its file, what it takes, packets so far.) */
bool
capture_status(const char **path, const char **what, uint64_t *packets)
{
	if (cap.f == NULL)
		return (false);
	*path = cap.path;
	*what = cap.what;
	*packets = cap.packets;
	return (true);
}

/* Once a second: what was captured reaches the file. */
void
capture_flush(void)
{
	if (cap.f != NULL && fflush(cap.f) == EOF) {
		log_warn("capture: %s", cap.path);
		capture_stop();
	}
}

/* A packet read or about to be sent: into the file if the filter wants. */
void
capture_packet(const uint8_t *buf, size_t len)
{
	struct timespec	ts;
	struct pkt	p;
	uint32_t	rec[4];

	if (cap.f == NULL)
		return;
	if (cap.filter != NULL && (pkt_parse(&p, (uint8_t *)buf, len) !=
	    PKT_OK || !cap.filter(&p, cap.arg)))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	rec[0] = (uint32_t)ts.tv_sec;
	rec[1] = (uint32_t)(ts.tv_nsec / 1000);
	rec[2] = rec[3] = (uint32_t)len;
	if (fwrite(rec, sizeof rec, 1, cap.f) != 1 ||
	    fwrite(buf, len, 1, cap.f) != 1) {
		log_warn("capture: %s", cap.path);
		capture_stop();
		return;
	}
	cap.packets++;
	cap.bytes += len;
	if (cap.bytes > CAPTURE_MAX_BYTES) {
		log_warnx("capture: %s reached %llu bytes, stopped", cap.path,
		    CAPTURE_MAX_BYTES);
		capture_stop();
	}
}
