/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <linux/if.h>
#include <linux/if_tun.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sipnat.h"

/* The TUN device: bare IPv4 packets in both directions. */

static int	tun_fd = -1;

/* Format a cause for the caller. */
static int
tun_fail(char **cause, const char *what, const char *name)
{
	if (asprintf(cause, "%s %s: %s", what, name, strerror(errno)) == -1)
		*cause = NULL;
	return (-1);
}

/*
 * Open (or attach to) the TUN device name, set its MTU and bring it up.
 * Returns the non-blocking descriptor, or -1 with a cause.
 */
int
tun_open(const char *name, int mtu, char **cause)
{
	struct ifreq	ifr;
	int		fd, s;

	if ((fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)) == -1)
		return (tun_fail(cause, "open", "/dev/net/tun"));
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) == -1) {
		close(fd);
		return (tun_fail(cause, "TUNSETIFF", name));
	}
	if ((s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		close(fd);
		return (tun_fail(cause, "socket for", name));
	}
	ifr.ifr_mtu = mtu;
	if (ioctl(s, SIOCSIFMTU, &ifr) == -1)
		goto fail;
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == -1)
		goto fail;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) == -1)
		goto fail;
	close(s);
	tun_fd = fd;
	return (fd);
fail:
	tun_fail(cause, "configure", name);
	close(s);
	close(fd);
	return (-1);
}

/* Use an already open descriptor (tests, and after a restart). */
void
tun_set_fd(int fd)
{
	tun_fd = fd;
}

/* Write one packet into the kernel. */
int
tun_write(const uint8_t *buf, size_t len)
{
	if (write(tun_fd, buf, len) != (ssize_t)len)
		return (-1);
	return (0);
}
