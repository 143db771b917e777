/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <arpa/inet.h>

#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alg.h"

/* main: options, config check, set-up, privilege drop, the event loop. */

struct config		*conf;

static struct event_base *base;
static int		 tun_fd = -1;
static const char	*conf_path = SIPNAT_CONF;

/* The uplink, with a capture of what goes out. */
static int
io_uplink(const uint8_t *buf, size_t len)
{
	capture_packet(buf, len);
	return (uplink_send(buf, len));
}

/* The TUN, with a capture of what goes in. */
static int
io_tun(const uint8_t *buf, size_t len)
{
	capture_packet(buf, len);
	return (tun_write(buf, len));
}

static const struct nat_io sipnatd_io = {
	.to_wan = io_uplink,
	.to_lan = io_tun,
	.to_lan_routed = io_uplink,
};

static __attribute__((noreturn)) void usage(void);

/* Print usage and exit. */
static void
usage(void)
{
	fprintf(stderr, "usage: sipnatd [-dfhtvV] [-c file]\n");
	exit(1);
}

/* Seconds on the monotonic clock. */
static uint64_t
monotonic(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec);
}

/*
 * Read a config file; on errors report them as file:line: message, on
 * stderr at start-up and in the log on reload (stderr may be gone).
 */
static struct config *
load(const char *path, int reload)
{
	struct config_errors	 errs;
	struct config_error	*e;
	struct config		*c;

	TAILQ_INIT(&errs);
	if ((c = calloc(1, sizeof *c)) == NULL)
		fatal("%s", __func__);
	if (config_load(c, path, &errs) == -1) {
		if (!reload)
			config_print_errors(path, &errs);
		TAILQ_FOREACH(e, &errs, entry) {
			if (reload && e->line > 0)
				log_warnx("%s:%d: %s", path, e->line, e->msg);
			else if (reload)
				log_warnx("%s: %s", path, e->msg);
		}
		config_free_errors(&errs);
		config_free(c);
		free(c);
		return (NULL);
	}
	return (c);
}

/* Fill in the address and MTU a config takes from the WAN interface. */
static int
resolve_wan(struct config *c, char **cause)
{
	uint32_t	*addr = c->wan_addr == 0 ? &c->wan_addr : NULL;
	int		*mtu = c->wan_mtu == 0 ? &c->wan_mtu : NULL;

	if (addr == NULL && mtu == NULL)
		return (0);
	if (c->wan_interface[0] == '\0') {
		c->wan_mtu = 1500;
		return (0);
	}
	return (uplink_iface(c->wan_interface, addr, mtu, cause));
}

/*
 * Settings that need a restart (devices, sockets, address, port range):
 * keep the running value and say so when a reload tries to change them.
 */
static void
keep_restart_only(const struct config *old, struct config *new)
{
#define KEEP_STR(f, name) do {						\
	if (strcmp(old->f, new->f) != 0)				\
		log_warnx("reload: %s changed: needs a restart", name);	\
	memcpy(new->f, old->f, sizeof new->f);				\
} while (0)
#define KEEP_NUM(f, name, zero_ok) do {					\
	if (old->f != new->f && !((zero_ok) && new->f == 0))		\
		log_warnx("reload: %s changed: needs a restart", name);	\
	new->f = old->f;						\
} while (0)
	KEEP_STR(user, "general.user");
	KEEP_STR(control_socket, "general.control_socket");
	KEEP_STR(tun_name, "tun.name");
	KEEP_STR(wan_interface, "wan.interface");
	KEEP_NUM(tun_mtu, "tun.mtu", 0);
	KEEP_NUM(wan_addr, "wan.address", 1);
	KEEP_NUM(wan_mtu, "wan.mtu", 1);
	KEEP_NUM(port_lo, "wan.port_range", 0);
	KEEP_NUM(port_hi, "wan.port_range", 0);
	KEEP_NUM(frag_memory, "limits.fragment_memory", 0);
	KEEP_STR(metrics_listen, "metrics.listen");
#undef KEEP_STR
#undef KEEP_NUM
}

/*
 * Re-read the config.  If it is valid, apply what can change live
 * (timeouts, limits, filtering, log level) without losing a session;
 * if not, keep the running one.  Returns -1 with a cause on failure.
 */
int
sipnatd_reload(char **cause)
{
	struct config	*new, *old = conf;

	stat_inc(STAT_RELOADS);
	if ((new = load(conf_path, 1)) == NULL) {
		stat_inc(STAT_RELOAD_FAILED);
		if (asprintf(cause, "%s has errors, keeping the running "
		    "configuration", conf_path) == -1)
			*cause = NULL;
		log_warnx("reload: %s has errors, keeping the running "
		    "configuration", conf_path);
		return (-1);
	}
	keep_restart_only(old, new);
	if (alg_configure(new, cause) == -1) {
		stat_inc(STAT_RELOAD_FAILED);
		alg_configure(old, NULL);
		config_free(new);
		free(new);
		return (-1);
	}
	conf = new;
	nat_configure(conf);
	log_set_debug(conf->debug);
	config_free(old);
	free(old);
	log_info("reload: %s applied", conf_path);
	return (0);
}

/* The TUN is readable: drain it, then send the uplink batch. */
static void
tun_read_cb(int fd, short events, void *arg)
{
	static uint8_t	buf[SIPNAT_MAX_PKT];
	ssize_t		n;

	nat_set_now(monotonic());
	for (;;) {
		n = read(fd, buf, sizeof buf);
		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && errno != EAGAIN) {
				/* The device is gone: nothing more will come. */
				log_warn("%s: read from the TUN", __func__);
				event_base_loopbreak(base);
			}
			break;
		}
		capture_packet(buf, (size_t)n);
		nat_input(buf, (size_t)n);
	}
	uplink_flush();
}

/* Once a second: timers. */
static void
tick_cb(int fd, short events, void *arg)
{
	nat_tick(monotonic());
	uplink_flush();
	capture_flush();
}

/* SIGHUP reloads, SIGTERM and SIGINT stop. */
static void
signal_cb(int sig, short events, void *arg)
{
	char	*cause = NULL;

	switch (sig) {
	case SIGHUP:
		if (sipnatd_reload(&cause) == -1)
			free(cause);
		break;
	case SIGTERM:
	case SIGINT:
		log_info("exiting on signal %d", sig);
		event_base_loopbreak(base);
		break;
	}
}

/* Become the configured user, once the devices are open. */
static void
drop_privileges(const char *user)
{
	struct passwd	*pw;

	if (user[0] == '\0')
		return;
	if ((pw = getpwnam(user)) == NULL)
		fatalx("unknown user %s", user);
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("cannot drop privileges to %s", user);
	log_debug("running as %s", user);
}

/* Open everything, drop root and run the loop. */
static void
run(int foreground)
{
	struct event	*ev_tun, *ev_tick, *ev_hup, *ev_term, *ev_int;
	struct timeval	 one = { 1, 0 };
	char		*cause = NULL;
	char		 addr[INET_ADDRSTRLEN];

	if (resolve_wan(conf, &cause) == -1)
		fatalx("%s", cause);
	if ((tun_fd = tun_open(conf->tun_name, conf->tun_mtu, &cause)) == -1)
		fatalx("%s", cause);
	if (uplink_open(&cause) == -1)
		fatalx("%s", cause);
	if (!foreground && daemon(0, 0) == -1)
		fatal("daemon");
	signal(SIGPIPE, SIG_IGN);
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (control_init(base, conf->control_socket, &cause) == -1)
		fatalx("%s", cause);
	if (metrics_init(base, conf->metrics_listen, &cause) == -1)
		fatalx("%s", cause);
	nat_set_now(monotonic());
	if (nat_init(conf, &sipnatd_io) == -1)
		fatalx("cannot allocate the NAT table");
	if (alg_configure(conf, &cause) == -1)
		fatalx("%s", cause);
	drop_privileges(conf->user);

	ev_tun = event_new(base, tun_fd, EV_READ | EV_PERSIST, tun_read_cb,
	    NULL);
	ev_tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	ev_hup = evsignal_new(base, SIGHUP, signal_cb, NULL);
	ev_term = evsignal_new(base, SIGTERM, signal_cb, NULL);
	ev_int = evsignal_new(base, SIGINT, signal_cb, NULL);
	if (ev_tun == NULL || ev_tick == NULL || ev_hup == NULL ||
	    ev_term == NULL || ev_int == NULL)
		fatalx("event_new failed");
	event_add(ev_tun, NULL);
	event_add(ev_tick, &one);
	evsignal_add(ev_hup, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);

	inet_ntop(AF_INET, &conf->wan_addr, addr, sizeof addr);
	log_info("started on %s, public address %s, ports %u-%u, uplink "
	    "MTU %d", conf->tun_name, addr, conf->port_lo, conf->port_hi,
	    conf->wan_mtu);
	event_base_dispatch(base);

	capture_stop();
	metrics_cleanup();
	control_cleanup();
	event_free(ev_tun);
	event_free(ev_tick);
	event_free(ev_hup);
	event_free(ev_term);
	event_free(ev_int);
	event_base_free(base);
	alg_shutdown();
	nat_table_free();
	frag_free();
}

int
main(int argc, char **argv)
{
	int	ch, check = 0, verbose = 0, foreground = 0, debug = 0;

	while ((ch = getopt(argc, argv, "c:dfhtvV")) != -1) {
		switch (ch) {
		case 'c':
			conf_path = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'f':
			foreground = 1;
			break;
		case 't':
			check = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'V':
			printf("sipnatd %s\n", SIPNAT_VERSION);
			return (0);
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	if ((conf = load(conf_path, 0)) == NULL)
		return (1);
	if (check) {
		if (verbose)
			config_print(conf, stdout);
		printf("configuration OK\n");
		return (0);
	}
	log_init(foreground, debug || conf->debug);
	run(foreground);
	config_free(conf);
	free(conf);
	return (0);
}
