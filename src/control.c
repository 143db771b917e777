/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "alg.h"

#ifndef __unused
#define __unused __attribute__((__unused__))
#endif

/*
 * The control socket: a client sends one line, "[json] COMMAND [ARGS...]",
 * gets the answer as text and the connection is closed.  Everything a
 * client can make the daemon hold is bounded: the line, the number of
 * clients and how long each may sit idle.  Errors are always one plain
 * "error: ..." line, in JSON mode too, so sipnatctl can tell them apart.
 */

#define CONTROL_LINE_MAX	1024	/* bytes, without the newline */
#define CONTROL_ARGS_MAX	32
#define CONTROL_CLIENTS_MAX	32
#define CONTROL_TIMEOUT		5	/* seconds idle before a drop */
#define CONTROL_BACKLOG		16
#define CONTROL_ACCEPT_PAUSE	1	/* seconds, after accept fails */
#define CONTROL_DRAIN_MAX	65536	/* bytes thrown away before close */

/* A client of the control socket, reading its line or sending its answer. */
struct control_client {
	int			 fd;
	struct event		*ev;
	bool			 writing;
	char			 line[CONTROL_LINE_MAX + 2];
	size_t			 len;
	struct evbuffer		*out;
	LIST_ENTRY(control_client) entry;
};
LIST_HEAD(control_clients, control_client);

/* One parsed request, handed to a command. */
struct control_req {
	bool			 json;
	int			 argc;
	char			**argv;		/* argv[0] is the command */
	struct evbuffer		*out;
};

/* A command: the table of these is the whole protocol. */
struct control_cmd {
	const char		*name;
	const char		*usage;		/* the arguments */
	const char		*help;
	int			 args_min;
	int			 args_max;
	void			(*exec)(struct control_req *);
};

/* The state of one session row, for control_sessions_cb. */
struct control_walk {
	struct control_req	*req;
	uint64_t		 now;
	u_int			 n;
	int			 state_width;
};

static struct event_base	*control_base;
static struct evconnlistener	*control_listener;
static struct event		*control_pause_ev;
static char			*control_path;
static struct control_clients	 control_clients =
				     LIST_HEAD_INITIALIZER(control_clients);
static u_int			 control_nclients;

static void	control_cause(char **, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	control_error(struct evbuffer *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	control_json_string(struct evbuffer *, const char *);
static const char *control_proto_name(uint8_t, char *, size_t);
static const char *control_addr(uint32_t, uint16_t, char *, size_t);
static const struct control_cmd *control_find(const char *);
static int	control_check_stale(const char *, char **);
static void	control_close_listener(void);
static void	control_accept_cb(struct evconnlistener *, evutil_socket_t,
		    struct sockaddr *, int, void *);
static void	control_accept_error_cb(struct evconnlistener *, void *);
static void	control_pause_cb(evutil_socket_t, short, void *);
static void	control_close(int);
static void	control_refuse(int);
static void	control_client_free(struct control_client *);
static int	control_client_wait(struct control_client *, short);
static void	control_client_cb(evutil_socket_t, short, void *);
static void	control_client_read(struct control_client *);
static void	control_client_answer(struct control_client *);
static void	control_client_flush(struct control_client *);

static void	control_help(struct control_req *);
static void	control_reload(struct control_req *);
static void	control_sessions(struct control_req *);
static void	control_sessions_cb(struct nat_session *, void *);
static void	control_stats_add(struct control_req *, const char *, uint64_t,
		    bool);
static void	control_stats(struct control_req *);
static void	control_capture(struct control_req *);

static const struct control_cmd control_cmds[] = {
	{
		.name = "help",
		.usage = "[COMMAND]",
		.help = "list the commands, or show one",
		.args_min = 0,
		.args_max = 1,
		.exec = control_help,
	},
	{
		.name = "reload",
		.usage = "",
		.help = "read the configuration file again",
		.args_min = 0,
		.args_max = 0,
		.exec = control_reload,
	},
	{
		.name = "sessions",
		.usage = "",
		.help = "list the NAT sessions",
		.args_min = 0,
		.args_max = 0,
		.exec = control_sessions,
	},
	{
		.name = "stats",
		.usage = "",
		.help = "show the counters and gauges",
		.args_min = 0,
		.args_max = 0,
		.exec = control_stats,
	},
	{
		.name = "capture",
		.usage = "[start FILE [all | sip | call CALL-ID] | stop]",
		.help = "write packets as received and as sent to a pcap file",
		.args_min = 0,
		.args_max = 4,
		.exec = control_capture,
	},
};
#define CONTROL_NCMDS (sizeof control_cmds / sizeof control_cmds[0])

/* Fill a cause with a malloc'd message. */
static void
control_cause(char **cause, const char *fmt, ...)
{
	char	buf[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (cause != NULL)
		*cause = strdup(buf);
}

/* Add an "error: ..." line to an answer. */
static void
control_error(struct evbuffer *out, const char *fmt, ...)
{
	va_list	ap;

	evbuffer_add_printf(out, "error: ");
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\n", 1);
}

/*
 * Add a string in double quotes with JSON escapes; bytes that are not
 * valid UTF-8 become U+FFFD so the output always parses.
 */
static void
control_json_string(struct evbuffer *out, const char *s)
{
	const u_char	*p = (const u_char *)s;
	u_int		 n, i, cp;

	evbuffer_add(out, "\"", 1);
	while (*p != '\0') {
		if (*p == '"' || *p == '\\') {
			evbuffer_add_printf(out, "\\%c", *p);
			p++;
			continue;
		}
		if (*p < 0x20 || *p == 0x7f) {
			switch (*p) {
			case '\n':
				evbuffer_add(out, "\\n", 2);
				break;
			case '\r':
				evbuffer_add(out, "\\r", 2);
				break;
			case '\t':
				evbuffer_add(out, "\\t", 2);
				break;
			default:
				evbuffer_add_printf(out, "\\u%04x", *p);
				break;
			}
			p++;
			continue;
		}
		if (*p < 0x80) {
			evbuffer_add(out, p, 1);
			p++;
			continue;
		}

		/* A multibyte sequence: check it is well-formed UTF-8. */
		if (*p >= 0xc2 && *p <= 0xdf) {
			n = 1;
			cp = *p & 0x1f;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			n = 2;
			cp = *p & 0x0f;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			n = 3;
			cp = *p & 0x07;
		} else {
			evbuffer_add(out, "\\ufffd", 6);
			p++;
			continue;
		}
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				break;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if (i <= n ||
		    (n == 2 && cp < 0x800) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff)) {
			evbuffer_add(out, "\\ufffd", 6);
			p++;
			continue;
		}
		evbuffer_add(out, p, n + 1);
		p += n + 1;
	}
	evbuffer_add(out, "\"", 1);
}

/* The name of an IP protocol, as the tables show it. */
static const char *
control_proto_name(uint8_t proto, char *buf, size_t len)
{
	switch (proto) {
	case IPPROTO_UDP:
		return ("udp");
	case IPPROTO_TCP:
		return ("tcp");
	case IPPROTO_ICMP:
		return ("icmp");
	}
	snprintf(buf, len, "%u", proto);
	return (buf);
}

/* Format addr:port; the address in network order, the port in host. */
static const char *
control_addr(uint32_t addr, uint16_t port, char *buf, size_t len)
{
	struct in_addr	ia;
	char		a[INET_ADDRSTRLEN];

	ia.s_addr = addr;
	if (inet_ntop(AF_INET, &ia, a, sizeof a) == NULL)
		snprintf(a, sizeof a, "?");
	snprintf(buf, len, "%s:%u", a, port);
	return (buf);
}

/* Add one session, as a row or as a JSON object. */
static void
control_sessions_cb(struct nat_session *s, void *arg)
{
	struct control_walk	*w = arg;
	struct evbuffer		*out = w->req->out;
	struct nat_mapping	*m = s->map;
	char			 proto[8], in[32], pub[32], rem[32];
	const char		*state, *name;
	uint32_t		 wan;
	uint64_t		 idle;

	if (m == NULL)
		return;
	wan = (conf != NULL) ? conf->wan_addr : 0;
	name = control_proto_name(m->proto, proto, sizeof proto);
	control_addr(m->in_addr, m->in_port, in, sizeof in);
	control_addr(wan, m->pub_port, pub, sizeof pub);
	control_addr(s->rem_addr, s->rem_port, rem, sizeof rem);
	if (m->proto == IPPROTO_TCP)
		state = nat_tcp_state_name(s->tcp_state);
	else
		state = "-";
	if (state == NULL)
		state = "?";
	idle = (w->now > s->last) ? w->now - s->last : 0;

	if (!w->req->json) {
		evbuffer_add_printf(out,
		    "%-5s %-21s %-21s %-21s %-*s %6" PRIu64 " %10" PRIu64
		    " %10" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n",
		    name, in, pub, rem, w->state_width, state, idle,
		    s->pkts[DIR_OUT], s->pkts[DIR_IN],
		    s->bytes[DIR_OUT], s->bytes[DIR_IN]);
		w->n++;
		return;
	}

	if (w->n++ != 0)
		evbuffer_add(out, ",", 1);
	evbuffer_add_printf(out, "{\"proto\":");
	control_json_string(out, name);
	evbuffer_add_printf(out, ",\"inside\":\"%s\",\"public\":\"%s\","
	    "\"remote\":\"%s\",\"state\":", in, pub, rem);
	control_json_string(out, state);
	evbuffer_add_printf(out, ",\"idle\":%" PRIu64 ",\"packets_out\":%"
	    PRIu64 ",\"packets_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
	    ",\"bytes_in\":%" PRIu64 "}", idle, s->pkts[DIR_OUT],
	    s->pkts[DIR_IN], s->bytes[DIR_OUT], s->bytes[DIR_IN]);
}

/* The sessions command: every NAT session. */
static void
control_sessions(struct control_req *req)
{
	struct control_walk	 w;
	const char		*name;
	int			 st;
	size_t			 len;

	memset(&w, 0, sizeof w);
	w.req = req;
	w.now = nat_now();

	if (req->json) {
		evbuffer_add_printf(req->out, "{\"sessions\":[");
		nat_table_walk(control_sessions_cb, &w);
		evbuffer_add_printf(req->out, "]}\n");
		return;
	}

	w.state_width = 5;
	for (st = TCP_NONE; st <= TCP_CLOSING; st++) {
		name = nat_tcp_state_name(st);
		if (name != NULL && (len = strlen(name)) > (size_t)w.state_width)
			w.state_width = len;
	}
	evbuffer_add_printf(req->out,
	    "%-5s %-21s %-21s %-21s %-*s %6s %10s %10s %12s %12s\n",
	    "PROTO", "INSIDE", "PUBLIC", "REMOTE", w.state_width, "STATE",
	    "IDLE", "PKTS-OUT", "PKTS-IN", "BYTES-OUT", "BYTES-IN");
	nat_table_walk(control_sessions_cb, &w);
}

/* Add one name and value to the stats answer. */
static void
control_stats_add(struct control_req *req, const char *name, uint64_t value,
    bool first)
{
	if (!req->json) {
		evbuffer_add_printf(req->out, "%s %" PRIu64 "\n", name, value);
		return;
	}
	if (!first)
		evbuffer_add(req->out, ",", 1);
	control_json_string(req->out, name);
	evbuffer_add_printf(req->out, ":%" PRIu64, value);
}

/* A helper's counter for the stats command. */
static void
control_stats_alg_cb(const char *name, uint64_t value, bool gauge,
    void *arg)
{
	control_stats_add(arg, name, value, false);
}

/* A helper's command in the help list. */
static void
control_help_alg_cb(const struct alg_cmd *c, void *arg)
{
	struct control_req	*req = arg;

	if (req->json)
		return;
	evbuffer_add_printf(req->out, "%-20s %s\n", c->usage,
	    "(helper command)");
}

/* The stats command: every counter, then the gauges. */
static void
control_stats(struct control_req *req)
{
	int	s;

	if (req->json)
		evbuffer_add_printf(req->out, "{\"stats\":{");
	for (s = 0; s < STAT_MAX; s++)
		control_stats_add(req, stat_name(s), stats[s], s == 0);
	control_stats_add(req, "sessions", nat_session_count(), false);
	control_stats_add(req, "mappings", nat_mapping_count(), false);
	control_stats_add(req, "fragments.pending", frag_pending(), false);
	control_stats_add(req, "pinholes", nat_pinhole_count(), false);
	alg_stats(control_stats_alg_cb, req);
	if (req->json)
		evbuffer_add_printf(req->out, "}}\n");
}

/*
 * The capture command: start FILE [MODE [ARG]] (all packets, or a mode a
 * helper offers), stop, or nothing to see what runs.
 */
static void
control_capture(struct control_req *req)
{
	const char		*path, *what, *mode = "all", *arg = NULL;
	capture_filter_cb	 cb = NULL;
	void			*cb_arg = NULL;
	void			(*cb_free)(void *) = NULL;
	char			*cause = NULL, desc[128];
	uint64_t		 n;

	if (req->argc == 1) {
		if (!capture_status(&path, &what, &n))
			evbuffer_add_printf(req->out, req->json ?
			    "{\"capture\":null}\n" : "no capture\n");
		else if (req->json) {
			evbuffer_add_printf(req->out, "{\"capture\":{\"file\":");
			control_json_string(req->out, path);
			evbuffer_add_printf(req->out, ",\"filter\":");
			control_json_string(req->out, what);
			evbuffer_add_printf(req->out, ",\"packets\":%llu}}\n",
			    (unsigned long long)n);
		} else
			evbuffer_add_printf(req->out, "capture to %s (%s): %llu "
			    "packets\n", path, what, (unsigned long long)n);
		return;
	}
	if (strcmp(req->argv[1], "stop") == 0 && req->argc == 2) {
		if (!capture_status(&path, &what, &n)) {
			control_error(req->out, "no capture is running");
			return;
		}
		evbuffer_add_printf(req->out, req->json ? "{\"capture\":"
		    "\"stopped\",\"packets\":%llu}\n" : "capture stopped: %llu "
		    "packets\n", (unsigned long long)n);
		capture_stop();
		return;
	}
	if (strcmp(req->argv[1], "start") != 0 || req->argc < 3) {
		control_error(req->out, "usage: capture [start FILE [all | sip "
		    "| call CALL-ID] | stop]");
		return;
	}
	if (req->argc >= 4)
		mode = req->argv[3];
	if (req->argc >= 5)
		arg = req->argv[4];
	if (strcmp(mode, "all") != 0 &&
	    alg_capture(mode, arg, &cb, &cb_arg, &cb_free) == -1) {
		control_error(req->out, "capture: unknown filter or call "
		    "(all, sip, call CALL-ID)");
		return;
	}
	snprintf(desc, sizeof desc, "%s%s%s", mode, arg != NULL ? " " : "",
	    arg != NULL ? arg : "");
	if (capture_start(req->argv[2], desc, cb, cb_arg, cb_free,
	    &cause) == -1) {
		if (cb_free != NULL)
			cb_free(cb_arg);
		control_error(req->out, "capture: %s", cause != NULL ? cause :
		    "cannot start");
		free(cause);
		return;
	}
	evbuffer_add_printf(req->out, req->json ? "{\"capture\":\"started\"}\n" :
	    "capture started\n");
}

/* The reload command: read the configuration again. */
static void
control_reload(struct control_req *req)
{
	char		*cause = NULL;
	const char	*msg;

	if (sipnatd_reload(&cause) == 0) {
		if (req->json)
			evbuffer_add_printf(req->out, "{\"reload\":\"ok\"}\n");
		else
			evbuffer_add_printf(req->out, "reload OK\n");
		free(cause);
		return;
	}
	msg = (cause != NULL) ? cause : "unknown error";
	log_warnx("%s: reload failed: %s", __func__, msg);
	if (req->json) {
		evbuffer_add_printf(req->out,
		    "{\"reload\":\"failed\",\"error\":");
		control_json_string(req->out, msg);
		evbuffer_add_printf(req->out, "}\n");
	} else
		evbuffer_add_printf(req->out, "reload failed: %s\n", msg);
	free(cause);
}

/* Find a command by name. */
static const struct control_cmd *
control_find(const char *name)
{
	size_t	i;

	for (i = 0; i < CONTROL_NCMDS; i++) {
		if (strcmp(control_cmds[i].name, name) == 0)
			return (&control_cmds[i]);
	}
	return (NULL);
}

/* The help command: the commands with their arguments. */
static void
control_help(struct control_req *req)
{
	const struct control_cmd	*cmd;
	char				 usage[64];
	size_t				 i;
	bool				 first = true;

	if (req->argc > 1 && control_find(req->argv[1]) == NULL) {
		control_error(req->out, "unknown command \"%s\"", req->argv[1]);
		return;
	}

	if (req->json)
		evbuffer_add_printf(req->out, "{\"commands\":[");
	for (i = 0; i < CONTROL_NCMDS; i++) {
		cmd = &control_cmds[i];
		if (req->argc > 1 && strcmp(cmd->name, req->argv[1]) != 0)
			continue;
		snprintf(usage, sizeof usage, "%s%s%s", cmd->name,
		    *cmd->usage != '\0' ? " " : "", cmd->usage);
		if (!req->json) {
			evbuffer_add_printf(req->out, "%-20s %s\n", usage,
			    cmd->help);
			continue;
		}
		if (!first)
			evbuffer_add(req->out, ",", 1);
		first = false;
		evbuffer_add_printf(req->out, "{\"name\":");
		control_json_string(req->out, cmd->name);
		evbuffer_add_printf(req->out, ",\"usage\":");
		control_json_string(req->out, usage);
		evbuffer_add_printf(req->out, ",\"description\":");
		control_json_string(req->out, cmd->help);
		evbuffer_add_printf(req->out, "}");
	}
	if (req->argc == 1)
		alg_cmd_foreach(control_help_alg_cb, req);
	if (req->json)
		evbuffer_add_printf(req->out, "]}\n");
}

/* Parse one request line and add the answer to out. */
void
control_command(const char *line, struct evbuffer *out)
{
	const struct control_cmd	*cmd;
	const struct alg_cmd		*acmd;
	struct control_req		 req;
	struct evbuffer			*name;
	char				*copy, *next, *tok;
	char				*argv[CONTROL_ARGS_MAX];
	int				 argc = 0;
	bool				 json = false;

	if (strlen(line) > CONTROL_LINE_MAX) {
		control_error(out, "line too long (more than %d bytes)",
		    CONTROL_LINE_MAX);
		return;
	}
	if ((copy = strdup(line)) == NULL) {
		control_error(out, "out of memory");
		return;
	}

	next = copy;
	while ((tok = strsep(&next, " \t\r\n")) != NULL) {
		if (*tok == '\0')
			continue;
		if (argc == 0 && !json && strcmp(tok, "json") == 0) {
			json = true;
			continue;
		}
		if (argc == CONTROL_ARGS_MAX) {
			control_error(out, "too many arguments (more than %d)",
			    CONTROL_ARGS_MAX - 1);
			goto out;
		}
		argv[argc++] = tok;
	}
	if (argc == 0) {
		control_error(out, "no command (try \"help\")");
		goto out;
	}

	if ((cmd = control_find(argv[0])) == NULL &&
	    (acmd = alg_cmd_find(argv[0])) != NULL) {
		acmd->exec(argc, argv, json, out);
		goto out;
	}
	if (cmd == NULL) {
		/* Quote the name the way JSON would: it is untrusted. */
		if ((name = evbuffer_new()) == NULL) {
			control_error(out, "out of memory");
			goto out;
		}
		control_json_string(name, argv[0]);
		evbuffer_add(name, "", 1);
		control_error(out, "unknown command %s",
		    (char *)evbuffer_pullup(name, -1));
		evbuffer_free(name);
		goto out;
	}
	if (argc - 1 < cmd->args_min || argc - 1 > cmd->args_max) {
		control_error(out, "usage: %s%s%s", cmd->name,
		    *cmd->usage != '\0' ? " " : "", cmd->usage);
		goto out;
	}

	memset(&req, 0, sizeof req);
	req.json = json;
	req.argc = argc;
	req.argv = argv;
	req.out = out;
	cmd->exec(&req);

out:
	free(copy);
}

/*
 * Close a client's socket.  Closing with unread input makes the peer's
 * next read fail with ECONNRESET, so read what is already there first.
 */
static void
control_close(int fd)
{
	char	buf[4096];
	size_t	total = 0;
	ssize_t	n;

	while (total < CONTROL_DRAIN_MAX &&
	    (n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
		total += n;
	close(fd);
}

/* Drop a client. */
static void
control_client_free(struct control_client *c)
{
	LIST_REMOVE(c, entry);
	control_nclients--;
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->out != NULL)
		evbuffer_free(c->out);
	control_close(c->fd);
	free(c);
}

/* Wait for a client to be readable or writable, for a while. */
static int
control_client_wait(struct control_client *c, short what)
{
	struct timeval	tv = { .tv_sec = CONTROL_TIMEOUT };

	if (c->ev != NULL)
		event_free(c->ev);
	c->ev = event_new(control_base, c->fd, what, control_client_cb, c);
	if (c->ev == NULL || event_add(c->ev, &tv) != 0) {
		log_warnx("%s: cannot add event", __func__);
		control_client_free(c);
		return (-1);
	}
	return (0);
}

/* Send what is left of the answer; drop the client once it is all out. */
static void
control_client_flush(struct control_client *c)
{
	struct evbuffer_iovec	v;
	ssize_t			n;

	while (evbuffer_get_length(c->out) != 0) {
		if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1)
			break;
		n = send(c->fd, v.iov_base, v.iov_len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				control_client_wait(c, EV_WRITE);
				return;
			}
			log_debug("%s: send: %s", __func__, strerror(errno));
			break;
		}
		evbuffer_drain(c->out, n);
	}
	control_client_free(c);
}

/* Run the client's line and start sending the answer. */
static void
control_client_answer(struct control_client *c)
{
	char	*nl;
	size_t	 len = c->len;

	c->writing = true;
	if ((nl = memchr(c->line, '\n', c->len)) != NULL)
		len = nl - c->line;
	c->line[len] = '\0';
	if (strlen(c->line) != len)
		control_error(c->out, "bad character in line");
	else {
		log_debug("%s: %s", __func__, c->line);
		control_command(c->line, c->out);
	}
	control_client_flush(c);
}

/* Read what the client has sent, until a whole line. */
static void
control_client_read(struct control_client *c)
{
	ssize_t	n;

	/* Room for the longest line, its newline, and one byte more. */
	n = recv(c->fd, c->line + c->len, CONTROL_LINE_MAX + 1 - c->len, 0);
	if (n == -1) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
			control_client_wait(c, EV_READ);
			return;
		}
		log_debug("%s: recv: %s", __func__, strerror(errno));
		control_client_free(c);
		return;
	}
	if (n == 0) {
		/* End of file: a last line without a newline still counts. */
		if (c->len == 0) {
			control_client_free(c);
			return;
		}
		control_client_answer(c);
		return;
	}
	c->len += n;

	if (memchr(c->line, '\n', c->len) != NULL) {
		if ((char *)memchr(c->line, '\n', c->len) - c->line >
		    CONTROL_LINE_MAX)
			goto too_long;
		control_client_answer(c);
		return;
	}
	if (c->len > CONTROL_LINE_MAX)
		goto too_long;
	control_client_wait(c, EV_READ);
	return;

too_long:
	c->writing = true;
	control_error(c->out, "line too long (more than %d bytes)",
	    CONTROL_LINE_MAX);
	control_client_flush(c);
}

/* A client is ready, or has been idle too long. */
static void
control_client_cb(__unused evutil_socket_t fd, short what, void *arg)
{
	struct control_client	*c = arg;

	if (what & EV_TIMEOUT) {
		log_debug("%s: client idle for %d seconds, dropped", __func__,
		    CONTROL_TIMEOUT);
		control_client_free(c);
		return;
	}
	if (c->writing)
		control_client_flush(c);
	else
		control_client_read(c);
}

/* Turn a client away when there are too many. */
static void
control_refuse(int fd)
{
	static const char	msg[] = "error: too many clients\n";

	log_warnx("%s: too many control clients (%d)", __func__,
	    CONTROL_CLIENTS_MAX);
	(void)send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	control_close(fd);
}

/* A new client on the control socket. */
static void
control_accept_cb(__unused struct evconnlistener *l, evutil_socket_t fd,
    __unused struct sockaddr *sa, __unused int salen, __unused void *arg)
{
	struct control_client	*c;

	if (control_nclients >= CONTROL_CLIENTS_MAX) {
		control_refuse(fd);
		return;
	}
	if ((c = calloc(1, sizeof *c)) == NULL ||
	    (c->out = evbuffer_new()) == NULL) {
		log_warnx("%s: out of memory", __func__);
		free(c);
		close(fd);
		return;
	}
	c->fd = fd;
	LIST_INSERT_HEAD(&control_clients, c, entry);
	control_nclients++;
	control_client_wait(c, EV_READ);
}

/* accept failed: with no file descriptors left, pause for a moment. */
static void
control_accept_error_cb(struct evconnlistener *l, __unused void *arg)
{
	struct timeval	tv = { .tv_sec = CONTROL_ACCEPT_PAUSE };
	int		error = EVUTIL_SOCKET_ERROR();

	log_warnx("%s: accept: %s", __func__, strerror(error));
	if (error != EMFILE && error != ENFILE && error != ENOBUFS &&
	    error != ENOMEM)
		return;
	if (control_pause_ev == NULL)
		return;
	evconnlistener_disable(l);
	evtimer_add(control_pause_ev, &tv);
}

/* Accept again after a pause. */
static void
control_pause_cb(__unused evutil_socket_t fd, __unused short what,
    __unused void *arg)
{
	if (control_listener != NULL)
		evconnlistener_enable(control_listener);
}

/* Remove a socket left by a daemon that is gone; refuse a live one. */
static int
control_check_stale(const char *path, char **cause)
{
	struct sockaddr_un	sun;
	struct stat		sb;
	int			fd, error;

	if (lstat(path, &sb) != 0) {
		if (errno == ENOENT)
			return (0);
		control_cause(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (!S_ISSOCK(sb.st_mode)) {
		control_cause(cause, "%s: exists and is not a socket", path);
		return (-1);
	}

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		control_cause(cause, "socket: %s", strerror(errno));
		return (-1);
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		control_cause(cause, "%s: in use by another daemon", path);
		return (-1);
	}
	error = errno;
	close(fd);
	if (error != ECONNREFUSED && error != ENOENT) {
		control_cause(cause, "%s: %s", path, strerror(error));
		return (-1);
	}

	if (unlink(path) != 0 && errno != ENOENT) {
		control_cause(cause, "unlink %s: %s", path, strerror(errno));
		return (-1);
	}
	log_debug("%s: removed stale %s", __func__, path);
	return (0);
}

/* Close the listening socket and remove its path. */
static void
control_close_listener(void)
{
	if (control_listener != NULL) {
		evconnlistener_free(control_listener);
		control_listener = NULL;
	}
	if (control_pause_ev != NULL) {
		event_free(control_pause_ev);
		control_pause_ev = NULL;
	}
	if (control_path != NULL) {
		unlink(control_path);
		free(control_path);
		control_path = NULL;
	}
}

/* Listen on the control socket; on a second call, move to a new path. */
int
control_init(struct event_base *base, const char *path, char **cause)
{
	struct sockaddr_un	 sun;
	struct evconnlistener	*l;
	struct event		*pause_ev;
	char			*copy;
	mode_t			 mask;
	int			 fd;

	if (control_listener != NULL && control_path != NULL &&
	    strcmp(control_path, path) == 0)
		return (0);

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (*path == '\0') {
		control_cause(cause, "no control socket path");
		return (-1);
	}
	if (strlen(path) >= sizeof sun.sun_path) {
		control_cause(cause, "%s: control socket path too long", path);
		return (-1);
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (control_check_stale(path, cause) != 0)
		return (-1);

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		control_cause(cause, "socket: %s", strerror(errno));
		return (-1);
	}
	mask = umask(S_IXUSR | S_IXGRP | S_IRWXO);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		umask(mask);
		control_cause(cause, "bind %s: %s", path, strerror(errno));
		close(fd);
		return (-1);
	}
	umask(mask);
	if (chmod(path, 0660) == -1) {
		control_cause(cause, "chmod %s: %s", path, strerror(errno));
		goto fail;
	}

	if ((copy = strdup(path)) == NULL) {
		control_cause(cause, "out of memory");
		goto fail;
	}
	if ((pause_ev = evtimer_new(base, control_pause_cb, NULL)) == NULL) {
		control_cause(cause, "cannot create event");
		free(copy);
		goto fail;
	}
	l = evconnlistener_new(base, control_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, CONTROL_BACKLOG, fd);
	if (l == NULL) {
		control_cause(cause, "listen %s: %s", path, strerror(errno));
		event_free(pause_ev);
		free(copy);
		goto fail;
	}
	evconnlistener_set_error_cb(l, control_accept_error_cb);

	control_close_listener();
	control_base = base;
	control_listener = l;
	control_pause_ev = pause_ev;
	control_path = copy;
	log_debug("%s: listening on %s", __func__, path);
	return (0);

fail:
	close(fd);
	unlink(path);
	return (-1);
}

/* Stop listening, drop every client and remove the socket. */
void
control_cleanup(void)
{
	struct control_client	*c;

	while ((c = LIST_FIRST(&control_clients)) != NULL)
		control_client_free(c);
	control_close_listener();
}
