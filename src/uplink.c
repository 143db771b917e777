/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sipnat.h"

/*
 * The uplink: a send-only IPPROTO_RAW socket (IP_HDRINCL implied).  The
 * kernel routes each packet as if the box sent it.  Packets are copied
 * into a batch and sent with one sendmmsg() per batch: a syscall costs
 * about a microsecond here, so batching doubles the packet rate.
 */

#define UPLINK_BATCH	64
#define UPLINK_SLOT	SIPNAT_MAX_PKT

static struct {
	int			 fd;
	unsigned		 n;
	struct mmsghdr		 msg[UPLINK_BATCH];
	struct iovec		 iov[UPLINK_BATCH];
	struct sockaddr_in	 to[UPLINK_BATCH];
	uint8_t			 buf[UPLINK_BATCH][UPLINK_SLOT];
} u = { .fd = -1 };

/* Open the raw socket; returns it, or -1 with a cause. */
int
uplink_open(char **cause)
{
	int	fd, sz = 4 * 1024 * 1024;

	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (fd == -1) {
		if (asprintf(cause, "raw socket: %s", strerror(errno)) == -1)
			*cause = NULL;
		return (-1);
	}
	/* Bursts from the TUN must not meet ENOBUFS. */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	u.fd = fd;
	return (fd);
}

/* Use an already open descriptor. */
void
uplink_set_fd(int fd)
{
	u.fd = fd;
}

/* Queue a packet for the next sendmmsg; sends when the batch is full. */
int
uplink_send(const uint8_t *pkt, size_t len)
{
	unsigned	i;

	if (len > UPLINK_SLOT || len < IP_HDR_MIN)
		return (-1);
	if (u.n == UPLINK_BATCH)
		uplink_flush();
	i = u.n++;
	memcpy(u.buf[i], pkt, len);
	u.iov[i].iov_base = u.buf[i];
	u.iov[i].iov_len = len;
	memset(&u.to[i], 0, sizeof u.to[i]);
	u.to[i].sin_family = AF_INET;
	memcpy(&u.to[i].sin_addr, pkt + 16, 4);
	memset(&u.msg[i], 0, sizeof u.msg[i]);
	u.msg[i].msg_hdr.msg_name = &u.to[i];
	u.msg[i].msg_hdr.msg_namelen = sizeof u.to[i];
	u.msg[i].msg_hdr.msg_iov = &u.iov[i];
	u.msg[i].msg_hdr.msg_iovlen = 1;
	return (0);
}

/*
 * Send what is queued.  sendmmsg stops at the first packet the kernel
 * refuses: count it and carry on with the rest.
 */
void
uplink_flush(void)
{
	unsigned	done = 0, i;
	int		r;

	while (done < u.n) {
		r = sendmmsg(u.fd, u.msg + done, u.n - done, 0);
		if (r > 0) {
			stat_add(STAT_PKT_OUT_WAN, (unsigned)r);
			for (i = done; i < done + (unsigned)r; i++)
				stat_add(STAT_BYTES_OUT_WAN, u.iov[i].iov_len);
			done += (unsigned)r;
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		log_debug("%s: %s", __func__, strerror(errno));
		stat_inc(STAT_DROP_UPLINK);
		done++;
	}
	u.n = 0;
}

/*
 * The first IPv4 address and the MTU of an interface, for a config that
 * names the uplink interface instead of the address.
 */
int
uplink_iface(const char *name, uint32_t *addr, int *mtu, char **cause)
{
	struct ifaddrs	*ifa, *i;
	struct ifreq	 ifr;
	int		 s, found = 0;

	if (getifaddrs(&ifa) == -1) {
		if (asprintf(cause, "getifaddrs: %s", strerror(errno)) == -1)
			*cause = NULL;
		return (-1);
	}
	for (i = ifa; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
		    strcmp(i->ifa_name, name) != 0)
			continue;
		if (addr != NULL)
			*addr = ((struct sockaddr_in *)(void *)i->ifa_addr)->
			    sin_addr.s_addr;
		found = 1;
		break;
	}
	freeifaddrs(ifa);
	if (!found && addr != NULL) {
		if (asprintf(cause, "interface %s has no IPv4 address",
		    name) == -1)
			*cause = NULL;
		return (-1);
	}
	if (mtu == NULL)
		return (0);
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if ((s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    ioctl(s, SIOCGIFMTU, &ifr) == -1) {
		if (asprintf(cause, "MTU of %s: %s", name,
		    strerror(errno)) == -1)
			*cause = NULL;
		if (s != -1)
			close(s);
		return (-1);
	}
	close(s);
	*mtu = ifr.ifr_mtu;
	return (0);
}
