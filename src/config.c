/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <net/if.h>

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sipnat.h"

/*
 * The configuration file: defaults, reading and checking the INI file into
 * struct config, and printing it back in canonical form (sipnatd -t -v, the
 * golden tests, and scripts/sipnat-routes, which reads that output).
 *
 * inih does the parsing, but it reports only its first syntax error, and it
 * splits a line longer than 199 characters and parses the tail as a line of
 * its own, which also puts its line numbers out of step with the file.  So
 * the file is read into memory once, scanned here line by line the way inih
 * will see it (every malformed line is reported), and then handed to inih
 * through config_read(), which tells the handler which line of the file it
 * is on.  What inih delivers from a line the scan rejected is ignored.
 *
 * Errors are collected, not printed: every one is reported, with its line.
 */

#if !INI_HANDLER_LINENO
#error "build with -DINI_HANDLER_LINENO=1"
#endif

#define CONFIG_MAX_SIZE		(1024 * 1024)	/* a config file, bytes */
#define CONFIG_MAX_USER		32
#define CONFIG_MAX_TIMEOUT	604800		/* a week */
#define CONFIG_MAX_SESSIONS	16777216
#define CONFIG_MIN_MTU		576
#define CONFIG_MIN_FRAG_MEMORY	(64 * 1024)	/* one whole datagram */
#define CONFIG_MAX_FRAG_MEMORY	(1024 * 1024 * 1024)
#define CONFIG_MAX_PRIORITY	32765		/* before the main table */

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof (a)[0])
#endif

enum config_type {
	CONFIG_USER,		/* a user name, or nothing */
	CONFIG_PATH,		/* an absolute path */
	CONFIG_LOGLEVEL,	/* info or debug */
	CONFIG_IFNAME,		/* an interface name */
	CONFIG_IFNAME_OPT,	/* an interface name, or nothing */
	CONFIG_IFLIST,		/* interface names */
	CONFIG_MTU,		/* an int from min to max (or 0 if zero) */
	CONFIG_UINT,		/* an unsigned from min to max */
	CONFIG_TABLE,		/* a routing table number */
	CONFIG_MARK,		/* a firewall mark, decimal or 0x hex */
	CONFIG_SIZE,		/* bytes, with an optional k or m */
	CONFIG_NETWORKS,	/* IPv4 prefixes */
	CONFIG_ADDRESS,		/* an IPv4 address, or nothing */
	CONFIG_LISTEN,		/* IPv4 address:port, or nothing */
	CONFIG_PORTS,		/* low-high */
	CONFIG_FILTERING,
	CONFIG_BOOL,
	CONFIG_SIP_PORTS,	/* port[:normalise|:off], ... */
	CONFIG_ON_ERROR,	/* forward or drop */
	CONFIG_MEDIA_FILTERING,	/* endpoint-independent or address-dependent */
};

/* One key; the table order is the order config_print() uses. */
struct config_key {
	const char		*section;
	const char		*name;
	enum config_type	 type;
	size_t			 off;
	size_t			 size;
	unsigned		 min;
	unsigned		 max;
	int			 zero;		/* 0 is allowed too */
};

#define FIELD(f)	.off = offsetof(struct config, f),		\
			.size = sizeof ((struct config *)0)->f

static const struct config_key config_keys[] = {
	{ .section = "general", .name = "user",
	  .type = CONFIG_USER, FIELD(user) },
	{ .section = "general", .name = "control_socket",
	  .type = CONFIG_PATH, FIELD(control_socket) },
	{ .section = "general", .name = "log_level",
	  .type = CONFIG_LOGLEVEL, FIELD(debug) },

	{ .section = "tun", .name = "name",
	  .type = CONFIG_IFNAME, FIELD(tun_name) },
	{ .section = "tun", .name = "mtu",
	  .type = CONFIG_MTU, FIELD(tun_mtu),
	  .min = CONFIG_MIN_MTU, .max = 65535 },

	{ .section = "lan", .name = "networks",
	  .type = CONFIG_NETWORKS, FIELD(lan) },
	{ .section = "lan", .name = "interfaces",
	  .type = CONFIG_IFLIST, FIELD(lan_interfaces) },

	{ .section = "wan", .name = "interface",
	  .type = CONFIG_IFNAME_OPT, FIELD(wan_interface) },
	{ .section = "wan", .name = "address",
	  .type = CONFIG_ADDRESS, FIELD(wan_addr) },
	{ .section = "wan", .name = "mtu",
	  .type = CONFIG_MTU, FIELD(wan_mtu),
	  .min = CONFIG_MIN_MTU, .max = 65535, .zero = 1 },
	{ .section = "wan", .name = "port_range",
	  .type = CONFIG_PORTS, FIELD(port_lo) },

	{ .section = "nat", .name = "filtering",
	  .type = CONFIG_FILTERING, FIELD(filtering) },
	{ .section = "nat", .name = "inbound_refresh",
	  .type = CONFIG_BOOL, FIELD(inbound_refresh) },
	{ .section = "nat", .name = "mss_clamp",
	  .type = CONFIG_BOOL, FIELD(mss_clamp) },

	{ .section = "timeouts", .name = "udp",
	  .type = CONFIG_UINT, FIELD(to_udp),
	  .min = 1, .max = CONFIG_MAX_TIMEOUT },
	{ .section = "timeouts", .name = "tcp_established",
	  .type = CONFIG_UINT, FIELD(to_tcp_est),
	  .min = 1, .max = CONFIG_MAX_TIMEOUT },
	{ .section = "timeouts", .name = "tcp_transitory",
	  .type = CONFIG_UINT, FIELD(to_tcp_trans),
	  .min = 1, .max = CONFIG_MAX_TIMEOUT },
	{ .section = "timeouts", .name = "icmp",
	  .type = CONFIG_UINT, FIELD(to_icmp),
	  .min = 1, .max = CONFIG_MAX_TIMEOUT },
	{ .section = "timeouts", .name = "fragment",
	  .type = CONFIG_UINT, FIELD(to_frag),
	  .min = 1, .max = 255 },
	{ .section = "timeouts", .name = "sip_dialog",
	  .type = CONFIG_UINT, FIELD(to_sip_dialog),
	  .min = 1, .max = CONFIG_MAX_TIMEOUT },

	{ .section = "limits", .name = "sessions",
	  .type = CONFIG_UINT, FIELD(max_sessions),
	  .min = 1, .max = CONFIG_MAX_SESSIONS },
	{ .section = "limits", .name = "sessions_per_host",
	  .type = CONFIG_UINT, FIELD(max_sessions_per_host),
	  .min = 1, .max = CONFIG_MAX_SESSIONS },
	{ .section = "limits", .name = "pinholes",
	  .type = CONFIG_UINT, FIELD(max_pinholes),
	  .min = 1, .max = CONFIG_MAX_SESSIONS },
	{ .section = "limits", .name = "fragment_memory",
	  .type = CONFIG_SIZE, FIELD(frag_memory),
	  .min = CONFIG_MIN_FRAG_MEMORY, .max = CONFIG_MAX_FRAG_MEMORY },
	{ .section = "limits", .name = "tcp_stream_buffer",
	  .type = CONFIG_SIZE, FIELD(stream_buffer),
	  .min = 4096, .max = 1024 * 1024 },
	{ .section = "limits", .name = "tcp_stream_memory",
	  .type = CONFIG_SIZE, FIELD(stream_memory),
	  .min = 64 * 1024, .max = 1024ULL * 1024 * 1024 },

	{ .section = "sip", .name = "ports",
	  .type = CONFIG_SIP_PORTS, FIELD(sip_ports) },
	{ .section = "sip", .name = "on_error",
	  .type = CONFIG_ON_ERROR, FIELD(sip_drop_errors) },
	{ .section = "sip", .name = "max_message",
	  .type = CONFIG_UINT, FIELD(sip_max_message),
	  .min = 512, .max = 65507 },
	{ .section = "sip", .name = "media_filtering",
	  .type = CONFIG_MEDIA_FILTERING, FIELD(sip_media_eif) },
	{ .section = "sip", .name = "max_dialogs",
	  .type = CONFIG_UINT, FIELD(sip_max_dialogs),
	  .min = 1, .max = CONFIG_MAX_SESSIONS },
	{ .section = "sip", .name = "max_media_per_dialog",
	  .type = CONFIG_UINT, FIELD(sip_max_media),
	  .min = 1, .max = 16 },
	{ .section = "sip", .name = "max_registrations",
	  .type = CONFIG_UINT, FIELD(sip_max_registrations),
	  .min = 1, .max = CONFIG_MAX_SESSIONS },
	{ .section = "sip", .name = "one_way_alarm",
	  .type = CONFIG_UINT, FIELD(sip_one_way_alarm),
	  .min = 0, .max = 3600 },

	{ .section = "metrics", .name = "listen",
	  .type = CONFIG_LISTEN, FIELD(metrics_listen) },

	{ .section = "routes", .name = "table",
	  .type = CONFIG_TABLE, FIELD(route_table) },
	{ .section = "routes", .name = "mark",
	  .type = CONFIG_MARK, FIELD(route_mark) },
	{ .section = "routes", .name = "rule_priority",
	  .type = CONFIG_UINT, FIELD(rule_priority),
	  .min = 1, .max = CONFIG_MAX_PRIORITY },
};
#define CONFIG_NKEYS	((int)nitems(config_keys))

/* What the scan made of one line of the file. */
enum config_line_kind {
	LINE_OTHER,		/* blank, comment, section header */
	LINE_KEY,		/* key = value, for the handler */
	LINE_BAD,		/* reported: ignore what inih makes of it */
	LINE_DONE,		/* the handler has seen it */
};

#define SECTION_NONE	-1	/* before the first header */
#define SECTION_UNKNOWN	-2	/* after a bad header: keys are ignored */

struct config_line {
	enum config_line_kind	 kind;
	int			 section;	/* first key of it, or above */
	size_t			 name;		/* key name: offset in buf */
	size_t			 namelen;
};

/* The state of one config_load(). */
struct config_parse {
	struct config		*conf;
	struct config_errors	*errors;
	int			 nerrors;

	char			*buf;		/* the whole file */
	size_t			 len;
	size_t			 pos;		/* where config_read() is */

	struct config_line	*lines;		/* by line number, from 1 */
	int			 nlines;
	int			 line;		/* the line inih is reading */

	int			 key_line[nitems(config_keys)];
	int			 key_bad[nitems(config_keys)];
	int			 section_line[nitems(config_keys)];
};

static void	config_error(struct config_parse *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static int	config_find_section(const char *);
static int	config_find_key(int, const char *);
static const char *config_comment(const char *, const char *);
static char	*config_lskip(char *);
static void	config_rstrip(char *);
static int	config_slurp(struct config_parse *, const char *);
static void	config_scan(struct config_parse *);
static void	config_scan_line(struct config_parse *, int, char *, int *);
static char	*config_read(char *, int, void *);
static int	config_handler(void *, const char *, const char *,
		    const char *, int);
static int	config_number(const char *, int, unsigned long long *);
static int	config_size(const char *, unsigned long long *);
static int	config_ifname(const char *, size_t, size_t);
static int	config_iflist(char *, size_t, const char *, char *, size_t);
static size_t	config_prefixes(const struct prefix *, int, const char *,
		    char *, size_t);
static int	config_networks(struct config *, const char *, size_t, char *,
		    size_t);
static int	config_ports(struct config *, const char *, char *, size_t);
static int	config_sip_ports(struct config *, const char *, char *,
		    size_t);
static int	config_value(struct config *, const struct config_key *,
		    const char *, char *, size_t);
static void	config_format(const struct config *, const struct config_key *,
		    char *, size_t);
static void	config_check(struct config_parse *);

/*
 * Split "a.b.c.d:port" (both parts required, port not 0); either output
 * may be NULL.  -1 if it is not that.
 */
int
config_listen(const char *v, uint32_t *addr, uint16_t *port)
{
	char			 a[INET_ADDRSTRLEN];
	const char		*colon = strrchr(v, ':');
	unsigned long long	 n;
	uint32_t		 ia;

	if (colon == NULL || (size_t)(colon - v) >= sizeof a)
		return (-1);
	memcpy(a, v, (size_t)(colon - v));
	a[colon - v] = '\0';
	if (inet_pton(AF_INET, a, &ia) != 1 ||
	    config_number(colon + 1, 0, &n) == -1 || n == 0 || n > 65535)
		return (-1);
	if (addr != NULL)
		*addr = ia;
	if (port != NULL)
		*port = (uint16_t)n;
	return (0);
}

/* Fill in the built-in defaults; conf->path is left NULL. */
void
config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);

	snprintf(c->user, sizeof c->user, "nobody");
	snprintf(c->control_socket, sizeof c->control_socket, "%s",
	    SIPNAT_SOCKET);
	c->debug = 0;

	snprintf(c->tun_name, sizeof c->tun_name, "sipnat0");
	c->tun_mtu = 1500;

	c->lan[0].addr = htonl(0x0a000000);
	c->lan[0].mask = htonl(0xff000000);
	c->nlan = 1;

	c->wan_addr = 0;
	c->wan_mtu = 0;
	c->port_lo = 10000;
	c->port_hi = 32767;

	c->filtering = FILTER_ADDRESS_PORT_DEPENDENT;
	c->inbound_refresh = true;
	c->mss_clamp = true;

	c->to_udp = 300;
	c->to_tcp_est = 7440;
	c->to_tcp_trans = 240;
	c->to_icmp = 60;
	c->to_frag = 30;

	c->to_sip_dialog = 7200;

	c->max_sessions = 65536;
	c->max_sessions_per_host = 8192;
	c->max_pinholes = 65536;
	c->frag_memory = 4 * 1024 * 1024;
	c->stream_buffer = 64 * 1024;
	c->stream_memory = 16 * 1024 * 1024;

	c->sip_ports[0].port = 5060;
	c->sip_ports[0].normalise = true;
	c->nsip_ports = 1;
	c->sip_drop_errors = false;
	c->sip_max_message = 16384;
	c->sip_media_eif = true;
	c->sip_max_dialogs = 4096;
	c->sip_max_media = 8;
	c->sip_max_registrations = 4096;
	c->sip_one_way_alarm = 5;

	c->route_table = 7060;
	c->route_mark = 0x5060;
	c->rule_priority = 100;
}

/* Add an error, keeping the list in line order. */
static void
config_error(struct config_parse *cp, int line, const char *fmt, ...)
{
	struct config_error	*ce, *before;
	char			 msg[512];
	va_list			 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	if ((ce = calloc(1, sizeof *ce)) == NULL ||
	    (ce->msg = strdup(msg)) == NULL)
		fatal("%s", __func__);
	ce->line = line;

	TAILQ_FOREACH(before, cp->errors, entry) {
		if (before->line > line)
			break;
	}
	if (before != NULL)
		TAILQ_INSERT_BEFORE(before, ce, entry);
	else
		TAILQ_INSERT_TAIL(cp->errors, ce, entry);
	cp->nerrors++;
}

/* Find a section; it is known by the index of its first key. */
static int
config_find_section(const char *name)
{
	int	i;

	for (i = 0; i < CONFIG_NKEYS; i++) {
		if (strcmp(config_keys[i].section, name) == 0)
			return (i);
	}
	return (-1);
}

/* Find a key in a section. */
static int
config_find_key(int section, const char *name)
{
	const char	*s = config_keys[section].section;
	int		 i;

	for (i = section; i < CONFIG_NKEYS; i++) {
		if (strcmp(config_keys[i].section, s) != 0)
			break;
		if (strcmp(config_keys[i].name, name) == 0)
			return (i);
	}
	return (-1);
}

/*
 * Find the first of chars, or an inline comment (a ';' after white space),
 * as inih does; the end of the string if neither.
 */
static const char *
config_comment(const char *s, const char *chars)
{
	int	was_space = 0;

	for (; *s != '\0'; s++) {
		if (chars != NULL && strchr(chars, *s) != NULL)
			break;
		if (was_space && *s == ';')
			break;
		was_space = isspace((unsigned char)*s);
	}
	return (s);
}

/* Skip leading white space. */
static char *
config_lskip(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return (s);
}

/* Cut trailing white space. */
static void
config_rstrip(char *s)
{
	size_t	n = strlen(s);

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

/* Read the whole file into memory. */
static int
config_slurp(struct config_parse *cp, const char *path)
{
	FILE	*f;
	size_t	 n, size = 0;
	char	*buf = NULL, *nbuf;

	if ((f = fopen(path, "r")) == NULL) {
		config_error(cp, 0, "%s", strerror(errno));
		return (-1);
	}
	cp->len = 0;
	for (;;) {
		if (cp->len == size) {
			size = size == 0 ? 4096 : size * 2;
			if ((nbuf = realloc(buf, size + 1)) == NULL)
				fatal("%s", __func__);
			buf = nbuf;
		}
		n = fread(buf + cp->len, 1, size - cp->len, f);
		cp->len += n;
		if (n == 0)
			break;
		if (cp->len > CONFIG_MAX_SIZE)
			break;
	}
	if (ferror(f)) {
		config_error(cp, 0, "%s", strerror(errno));
		goto fail;
	}
	if (cp->len > CONFIG_MAX_SIZE) {
		config_error(cp, 0, "file larger than %d bytes",
		    CONFIG_MAX_SIZE);
		goto fail;
	}
	fclose(f);
	buf[cp->len] = '\0';
	cp->buf = buf;
	return (0);

fail:
	fclose(f);
	free(buf);
	return (-1);
}

/* Look at every line as inih will, and report what it would trip on. */
static void
config_scan(struct config_parse *cp)
{
	char	 tmp[CONFIG_MAX_LINE + 2];
	size_t	 start, end, n;
	int	 line, section = SECTION_NONE;

	cp->nlines = 0;
	for (n = 0; n < cp->len; n++) {
		if (cp->buf[n] == '\n')
			cp->nlines++;
	}
	if (cp->len > 0 && cp->buf[cp->len - 1] != '\n')
		cp->nlines++;
	if ((cp->lines = calloc(cp->nlines + 1, sizeof *cp->lines)) == NULL)
		fatal("%s", __func__);

	start = 0;
	for (line = 1; line <= cp->nlines; line++) {
		for (end = start; end < cp->len; end++) {
			if (cp->buf[end] == '\n')
				break;
		}
		n = end - start;
		cp->lines[line].kind = LINE_BAD;
		if (memchr(cp->buf + start, '\0', n) != NULL)
			config_error(cp, line, "line contains a NUL byte");
		else if (n - (n > 0 && cp->buf[end - 1] == '\r') >
		    CONFIG_MAX_LINE) {
			config_error(cp, line, "line longer than %d characters",
			    CONFIG_MAX_LINE);
		} else {
			memcpy(tmp, cp->buf + start, n);
			tmp[n] = '\0';
			cp->lines[line].kind = LINE_OTHER;
			config_scan_line(cp, line, tmp, &section);
			if (cp->lines[line].kind == LINE_KEY)
				cp->lines[line].name += start;
		}
		start = end + 1;
	}
}

/*
 * Look at one line (in a copy, without its newline) as inih does; section
 * is the section the line is in.
 *
 * inih reads an indented line after a key as more of that key's value;
 * sipnatd has no multi-line values, so any indented line is refused
 * (except a comment), which is easier to explain than refusing some.
 */
static void
config_scan_line(struct config_parse *cp, int line, char *tmp, int *section)
{
	struct config_line	*l = &cp->lines[line];
	char			*bol = tmp, *s, *end, *rest, sep;
	int			 i;

	if (line == 1 && strncmp(bol, "\xef\xbb\xbf", 3) == 0)
		bol += 3;		/* a UTF-8 byte order mark */
	s = config_lskip(bol);
	config_rstrip(s);

	if (*s == '\0' || *s == ';' || *s == '#')
		return;

	if (s != bol) {
		config_error(cp, line, "unexpected indentation: remove it (an "
		    "indented line would continue the value above)");
		l->kind = LINE_BAD;
		return;
	}

	if (*s == '[') {
		end = (char *)config_comment(s + 1, "]");
		if (*end != ']') {
			config_error(cp, line, "unterminated section header: "
			    "missing \"]\"");
			l->kind = LINE_BAD;
			*section = SECTION_UNKNOWN;
			return;
		}
		*end = '\0';
		rest = config_lskip(end + 1);
		if (*rest != '\0' && *rest != ';' && *rest != '#') {
			config_error(cp, line, "unexpected text after "
			    "section header [%s]", s + 1);
		}
		if ((i = config_find_section(s + 1)) == -1) {
			config_error(cp, line, "unknown section [%s]", s + 1);
			*section = SECTION_UNKNOWN;
			return;
		}
		*section = i;
		if (cp->section_line[i] == 0)
			cp->section_line[i] = line;
		return;
	}

	end = (char *)config_comment(s, "=:");
	if (*end != '=' && *end != ':') {
		config_error(cp, line, "syntax error: expected \"key = value\" "
		    "or \"[section]\"");
		l->kind = LINE_BAD;
		return;
	}
	sep = *end;
	*end = '\0';
	config_rstrip(s);
	if (*s == '\0') {
		config_error(cp, line, "missing key name before \"%c\"", sep);
		l->kind = LINE_BAD;
		return;
	}
	l->kind = LINE_KEY;
	l->section = *section;
	l->name = s - tmp;
	l->namelen = strlen(s);
}

/*
 * Give inih the file like fgets(3) would, keeping count of which line of
 * the file it is on: a long line comes to it in several pieces.
 */
static char *
config_read(char *str, int num, void *arg)
{
	struct config_parse	*cp = arg;
	size_t			 n = 0;
	char			 ch;

	if (cp->pos >= cp->len || num < 2)
		return (NULL);
	if (cp->pos == 0 || cp->buf[cp->pos - 1] == '\n')
		cp->line++;
	while (n < (size_t)num - 1 && cp->pos < cp->len) {
		ch = cp->buf[cp->pos++];
		str[n++] = ch;
		if (ch == '\n')
			break;
	}
	str[n] = '\0';
	return (str);
}

/*
 * inih's handler: one key = value.  The line is our own count: inih's
 * lineno counts the pieces it read, which is wrong after a long line.
 */
static int
config_handler(void *arg, const char *section, const char *name,
    const char *value, int lineno)
{
	struct config_parse	*cp = arg;
	struct config_line	*l;
	const struct config_key	*k;
	char			 cause[256], q;
	int			 line = cp->line, i;

	(void)section;
	(void)lineno;

	if (line < 1 || line > cp->nlines)
		return (1);
	l = &cp->lines[line];
	if (l->kind != LINE_KEY)
		return (1);
	if (strlen(name) != l->namelen ||
	    memcmp(name, cp->buf + l->name, l->namelen) != 0)
		return (1);
	l->kind = LINE_DONE;

	if (l->section == SECTION_UNKNOWN)
		return (1);
	if (l->section == SECTION_NONE) {
		config_error(cp, line, "key \"%s\" outside any section", name);
		return (1);
	}
	if ((i = config_find_key(l->section, name)) == -1) {
		config_error(cp, line, "unknown key \"%s\" in [%s]", name,
		    config_keys[l->section].section);
		return (1);
	}
	k = &config_keys[i];
	if (cp->key_line[i] != 0) {
		config_error(cp, line, "duplicate key \"%s\" in [%s] "
		    "(first at line %d)", name, k->section, cp->key_line[i]);
		return (1);
	}
	cp->key_line[i] = line;

	if (config_value(cp->conf, k, value, cause, sizeof cause) == -1) {
		q = strchr(value, '"') != NULL ? '\'' : '"';
		config_error(cp, line, "invalid value %c%s%c for [%s] %s: %s",
		    q, value, q, k->section, k->name, cause);
		cp->key_bad[i] = 1;
	}
	return (1);
}

/* Read a decimal number, or 0x hex if hex is set; no sign, no spaces. */
static int
config_number(const char *s, int hex, unsigned long long *out)
{
	const char		*p;
	int			 base = 10;
	unsigned long long	 v;

	if (hex && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (*s == '\0')
		return (-1);
	for (p = s; *p != '\0'; p++) {
		if (base == 10 ? !isdigit((unsigned char)*p) :
		    !isxdigit((unsigned char)*p))
			return (-1);
	}
	errno = 0;
	v = strtoull(s, NULL, base);
	if (errno != 0)
		return (-1);
	*out = v;
	return (0);
}

/* Read a size in bytes: a number with an optional k or m (1024-based). */
static int
config_size(const char *s, unsigned long long *out)
{
	char			 num[32];
	size_t			 n = strlen(s);
	unsigned long long	 v, mult = 1;

	if (n > 0 && (s[n - 1] == 'k' || s[n - 1] == 'K')) {
		mult = 1024;
		n--;
	} else if (n > 0 && (s[n - 1] == 'm' || s[n - 1] == 'M')) {
		mult = 1024 * 1024;
		n--;
	}
	if (n == 0 || n >= sizeof num)
		return (-1);
	memcpy(num, s, n);
	num[n] = '\0';
	if (config_number(num, 0, &v) == -1 || v > ULLONG_MAX / mult)
		return (-1);
	*out = v * mult;
	return (0);
}

/* Is this a name Linux takes for an interface, and does it fit? */
static int
config_ifname(const char *s, size_t n, size_t size)
{
	size_t	i;

	if (n == 0 || n >= IFNAMSIZ || n >= size)
		return (0);
	if (strncmp(s, ".", n) == 0 || strncmp(s, "..", n) == 0)
		return (0);
	for (i = 0; i < n; i++) {
		if (s[i] == '/' || s[i] == ':' || s[i] == ',' ||
		    !isgraph((unsigned char)s[i]))
			return (0);
	}
	return (1);
}

/* Read a list of interface names into "a, b, c". */
static int
config_iflist(char *dst, size_t size, const char *s, char *cause,
    size_t causelen)
{
	char	 out[256];
	size_t	 n, used = 0;

	out[0] = '\0';
	for (;;) {
		s += strspn(s, ", \t");
		if (*s == '\0')
			break;
		n = strcspn(s, ", \t");
		if (!config_ifname(s, n, IFNAMSIZ)) {
			snprintf(cause, causelen, "\"%.*s\" is not an "
			    "interface name (at most %d characters, no \"/\" "
			    "or \":\")", (int)n, s, IFNAMSIZ - 1);
			return (-1);
		}
		if (used + n + 3 > sizeof out || used + n + 2 > size) {
			snprintf(cause, causelen, "the list is longer than "
			    "%zu characters", size - 1);
			return (-1);
		}
		used += snprintf(out + used, sizeof out - used, "%s%.*s",
		    used == 0 ? "" : ", ", (int)n, s);
		s += n;
	}
	memcpy(dst, out, used + 1);
	return (0);
}

/* Write prefixes as a.b.c.d/len with sep between; returns the length. */
static size_t
config_prefixes(const struct prefix *p, int n, const char *sep, char *buf,
    size_t len)
{
	char	 addr[INET_ADDRSTRLEN];
	size_t	 used = 0;
	int	 i, w;

	if (len > 0)
		buf[0] = '\0';
	for (i = 0; i < n; i++) {
		inet_ntop(AF_INET, &p[i].addr, addr, sizeof addr);
		w = snprintf(used < len ? buf + used : NULL,
		    used < len ? len - used : 0,
		    "%s%s/%d", i == 0 ? "" : sep, addr,
		    __builtin_popcount(p[i].mask));
		used += w;
	}
	return (used);
}

/*
 * Read the LAN prefixes: a.b.c.d/len, separated by commas or spaces.  They
 * must print back in at most max characters (config_format()).
 */
static int
config_networks(struct config *c, const char *s, size_t max, char *cause,
    size_t causelen)
{
	struct prefix		 lan[CONFIG_MAX_LANS], *p;
	char			 addr[INET_ADDRSTRLEN], other[INET_ADDRSTRLEN];
	const char		*slash;
	unsigned long long	 len;
	size_t			 n;
	uint32_t		 a, m;
	int			 nlan = 0, i;

	for (;;) {
		s += strspn(s, ", \t");
		if (*s == '\0')
			break;
		n = strcspn(s, ", \t");
		slash = memchr(s, '/', n);
		if (slash == NULL || (size_t)(slash - s) >= sizeof addr)
			goto bad;
		memcpy(addr, s, slash - s);
		addr[slash - s] = '\0';
		if (inet_pton(AF_INET, addr, &a) != 1)
			goto bad;
		if (n - (slash - s) - 1 > 2)
			goto bad;
		memcpy(other, slash + 1, n - (slash - s) - 1);
		other[n - (slash - s) - 1] = '\0';
		if (config_number(other, 0, &len) == -1 || len < 1 || len > 32)
			goto bad;
		m = htonl(0xffffffffU << (32 - len));
		if ((a & ~m) != 0) {
			a &= m;
			inet_ntop(AF_INET, &a, addr, sizeof addr);
			snprintf(cause, causelen, "\"%.*s\" has host bits set "
			    "(did you mean %s/%llu?)", (int)n, s, addr, len);
			return (-1);
		}
		if (nlan == CONFIG_MAX_LANS) {
			snprintf(cause, causelen, "more than %d networks",
			    CONFIG_MAX_LANS);
			return (-1);
		}
		for (i = 0; i < nlan; i++) {
			p = &lan[i];
			if ((a & p->mask) != p->addr && (p->addr & m) != a)
				continue;
			inet_ntop(AF_INET, &p->addr, other, sizeof other);
			snprintf(cause, causelen, "\"%.*s\" overlaps %s/%d",
			    (int)n, s, other, __builtin_popcount(p->mask));
			return (-1);
		}
		lan[nlan].addr = a;
		lan[nlan].mask = m;
		nlan++;
		s += n;
	}
	if (config_prefixes(lan, nlan, ",", NULL, 0) > max) {
		snprintf(cause, causelen, "the list is longer than %zu "
		    "characters without spaces", max);
		return (-1);
	}
	memcpy(c->lan, lan, nlan * sizeof lan[0]);
	c->nlan = nlan;
	return (0);

bad:
	snprintf(cause, causelen, "\"%.*s\" is not an IPv4 prefix "
	    "a.b.c.d/len (len from 1 to 32)", (int)n, s);
	return (-1);
}

/* Read the public port range: low-high. */
static int
config_ports(struct config *c, const char *s, char *cause, size_t causelen)
{
	char			 lo[16], hi[16];
	const char		*dash;
	unsigned long long	 vlo, vhi;
	size_t			 n;

	if ((dash = strchr(s, '-')) == NULL)
		goto bad;
	n = dash - s;
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (n >= sizeof lo)
		goto bad;
	memcpy(lo, s, n);
	lo[n] = '\0';
	dash++;
	while (isspace((unsigned char)*dash))
		dash++;
	if (strlen(dash) >= sizeof hi)
		goto bad;
	strcpy(hi, dash);
	if (config_number(lo, 0, &vlo) == -1 ||
	    config_number(hi, 0, &vhi) == -1)
		goto bad;
	if (vlo < 1 || vlo > 65535 || vhi < 1 || vhi > 65535)
		goto bad;
	if (vlo > vhi) {
		snprintf(cause, causelen, "the low port %llu is above the "
		    "high port %llu", vlo, vhi);
		return (-1);
	}
	c->port_lo = vlo;
	c->port_hi = vhi;
	return (0);

bad:
	snprintf(cause, causelen, "expected low-high, two ports from 1 to "
	    "65535");
	return (-1);
}

/*
 * The SIP ports: "5060, 5080:off".  Each is normalise (the helper
 * rewrites) or off (plain NAT: the per-port "disable SIP ALG" switch).
 */
static int
config_sip_ports(struct config *c, const char *s, char *cause,
    size_t causelen)
{
	char			 buf[CONFIG_MAX_LINE + 1], *p, *tok, *mode;
	unsigned long long	 v;
	int			 n = 0, i;

	snprintf(buf, sizeof buf, "%s", s);
	p = buf;
	while ((tok = strsep(&p, ", \t")) != NULL) {
		if (*tok == '\0')
			continue;
		if ((mode = strchr(tok, ':')) != NULL)
			*mode++ = '\0';
		if (config_number(tok, 0, &v) == -1 || v < 1 || v > 65535 ||
		    (mode != NULL && strcmp(mode, "off") != 0 &&
		    strcmp(mode, "normalise") != 0))
			goto bad;
		if (n == CONFIG_MAX_SIP_PORTS) {
			snprintf(cause, causelen, "at most %d ports",
			    CONFIG_MAX_SIP_PORTS);
			return (-1);
		}
		for (i = 0; i < n; i++) {
			if (c->sip_ports[i].port == v) {
				snprintf(cause, causelen, "port %llu is "
				    "listed twice", v);
				return (-1);
			}
		}
		c->sip_ports[n].port = (uint16_t)v;
		c->sip_ports[n].normalise = mode == NULL ||
		    strcmp(mode, "normalise") == 0;
		n++;
	}
	c->nsip_ports = n;
	return (0);
bad:
	snprintf(cause, causelen, "expected ports from 1 to 65535, each "
	    "optionally followed by :normalise or :off");
	return (-1);
}

/* Check and store one value; on error say what was expected. */
static int
config_value(struct config *c, const struct config_key *k, const char *v,
    char *cause, size_t causelen)
{
	char			*field = (char *)c + k->off;
	unsigned long long	 n;
	uint32_t		 a;
	size_t			 len = strlen(v), i;

	if (v[0] == '"' || v[0] == '\'') {
		snprintf(cause, causelen, "quotes would be part of the value: "
		    "remove them");
		return (-1);
	}

	switch (k->type) {
	case CONFIG_USER:
		if (len > CONFIG_MAX_USER || len >= k->size || v[0] == '-')
			goto user;
		for (i = 0; i < len; i++) {
			if (!isalnum((unsigned char)v[i]) && v[i] != '.' &&
			    v[i] != '_' && v[i] != '-')
				goto user;
		}
		memcpy(field, v, len + 1);
		return (0);
	user:
		snprintf(cause, causelen, "expected a user name (at most %d "
		    "letters, digits, \".\", \"_\" or \"-\"), or nothing to "
		    "stay root", CONFIG_MAX_USER);
		return (-1);
	case CONFIG_PATH:
		if (v[0] != '/' || len >= k->size) {
			snprintf(cause, causelen, "expected an absolute path "
			    "of at most %zu characters", k->size - 1);
			return (-1);
		}
		memcpy(field, v, len + 1);
		return (0);
	case CONFIG_LOGLEVEL:
		if (strcmp(v, "info") == 0)
			c->debug = 0;
		else if (strcmp(v, "debug") == 0)
			c->debug = 1;
		else {
			snprintf(cause, causelen, "expected info or debug");
			return (-1);
		}
		return (0);
	case CONFIG_IFNAME:
	case CONFIG_IFNAME_OPT:
		if ((len != 0 || k->type == CONFIG_IFNAME) &&
		    !config_ifname(v, len, k->size)) {
			snprintf(cause, causelen, "expected an interface name "
			    "(at most %zu characters, no \"/\" or \":\")%s",
			    k->size - 1, k->type == CONFIG_IFNAME_OPT ?
			    " or nothing" : "");
			return (-1);
		}
		memcpy(field, v, len + 1);
		return (0);
	case CONFIG_IFLIST:
		return (config_iflist(field, k->size, v, cause, causelen));
	case CONFIG_MTU:
		if (config_number(v, 0, &n) == -1 ||
		    ((n < k->min || n > k->max) && !(k->zero && n == 0))) {
			snprintf(cause, causelen, "expected %sa number from %u "
			    "to %u", k->zero ? "0 (the interface's MTU) or " :
			    "", k->min, k->max);
			return (-1);
		}
		*(int *)field = n;
		return (0);
	case CONFIG_UINT:
		if (config_number(v, 0, &n) == -1 || n < k->min ||
		    n > k->max) {
			snprintf(cause, causelen, "expected a number from %u "
			    "to %u", k->min, k->max);
			return (-1);
		}
		*(unsigned *)field = n;
		return (0);
	case CONFIG_TABLE:
		if (config_number(v, 0, &n) == -1 || n < 1 ||
		    n > UINT32_MAX || (n >= 253 && n <= 255)) {
			snprintf(cause, causelen, "expected a routing table "
			    "from 1 to %u, but not 253, 254 or 255 (the "
			    "kernel's own)", UINT32_MAX);
			return (-1);
		}
		*(unsigned *)field = n;
		return (0);
	case CONFIG_MARK:
		if (config_number(v, 1, &n) == -1 || n < 1 ||
		    n > UINT32_MAX) {
			snprintf(cause, causelen, "expected a non-zero 32-bit "
			    "mark, decimal or 0x hex");
			return (-1);
		}
		*(unsigned *)field = n;
		return (0);
	case CONFIG_SIZE:
		if (config_size(v, &n) == -1 || n < k->min || n > k->max) {
			snprintf(cause, causelen, "expected a number of bytes "
			    "from %uk to %um, with an optional k or m suffix",
			    k->min / 1024, k->max / 1024 / 1024);
			return (-1);
		}
		*(size_t *)field = n;
		return (0);
	case CONFIG_NETWORKS:
		return (config_networks(c, v,
		    CONFIG_MAX_LINE - strlen(k->name) - 3, cause, causelen));
	case CONFIG_ADDRESS:
		a = 0;
		if (len != 0 && inet_pton(AF_INET, v, &a) != 1) {
			snprintf(cause, causelen, "expected an IPv4 address "
			    "a.b.c.d, or nothing");
			return (-1);
		}
		n = ntohl(a) >> 24;
		if (len != 0 && (n == 0 || n == 127 || n >= 224)) {
			snprintf(cause, causelen, "cannot be the public "
			    "address: it is in 0.0.0.0/8, 127.0.0.0/8 or "
			    "224.0.0.0/3");
			return (-1);
		}
		*(uint32_t *)field = a;
		return (0);
	case CONFIG_LISTEN:
		if (len != 0 && (len >= k->size ||
		    config_listen(v, NULL, NULL) == -1)) {
			snprintf(cause, causelen, "expected an IPv4 address "
			    "and port, a.b.c.d:port, or nothing");
			return (-1);
		}
		memcpy(field, v, len + 1);
		return (0);
	case CONFIG_PORTS:
		return (config_ports(c, v, cause, causelen));
	case CONFIG_FILTERING:
		if (strcmp(v, "endpoint-independent") == 0)
			c->filtering = FILTER_ENDPOINT_INDEPENDENT;
		else if (strcmp(v, "address-and-port-dependent") == 0)
			c->filtering = FILTER_ADDRESS_PORT_DEPENDENT;
		else {
			snprintf(cause, causelen, "expected endpoint-"
			    "independent or address-and-port-dependent");
			return (-1);
		}
		return (0);
	case CONFIG_SIP_PORTS:
		return (config_sip_ports(c, v, cause, causelen));
	case CONFIG_ON_ERROR:
		if (strcmp(v, "forward") == 0)
			c->sip_drop_errors = false;
		else if (strcmp(v, "drop") == 0)
			c->sip_drop_errors = true;
		else {
			snprintf(cause, causelen, "expected forward or drop");
			return (-1);
		}
		return (0);
	case CONFIG_MEDIA_FILTERING:
		if (strcmp(v, "endpoint-independent") == 0)
			c->sip_media_eif = true;
		else if (strcmp(v, "address-dependent") == 0)
			c->sip_media_eif = false;
		else {
			snprintf(cause, causelen, "expected endpoint-"
			    "independent or address-dependent");
			return (-1);
		}
		return (0);
	case CONFIG_BOOL:
		if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 ||
		    strcmp(v, "on") == 0)
			*(bool *)field = true;
		else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 ||
		    strcmp(v, "off") == 0)
			*(bool *)field = false;
		else {
			snprintf(cause, causelen, "expected yes or no");
			return (-1);
		}
		return (0);
	}
	snprintf(cause, causelen, "unknown type");
	return (-1);
}

/* Check what no single key can: keys that depend on each other. */
static void
config_check(struct config_parse *cp)
{
	struct config	*c = cp->conf;
	char		 addr[INET_ADDRSTRLEN];
	int		 iface, wan, nets, ports, line;

	iface = config_find_key(config_find_section("wan"), "interface");
	wan = config_find_key(config_find_section("wan"), "address");
	nets = config_find_key(config_find_section("lan"), "networks");
	ports = config_find_key(config_find_section("wan"), "port_range");

	if (c->wan_addr == 0 && c->wan_interface[0] == '\0' &&
	    !cp->key_bad[iface] && !cp->key_bad[wan]) {
		line = cp->section_line[config_find_section("wan")];
		config_error(cp, line, "[wan] needs address or interface");
	}
	if (c->nlan == 0 && !cp->key_bad[nets])
		config_error(cp, cp->key_line[nets], "[lan] networks must not "
		    "be empty");
	if (c->port_lo == 0 && !cp->key_bad[ports])
		config_error(cp, cp->key_line[ports], "[wan] port_range must "
		    "not contain port 0");
	if (c->wan_addr != 0 && !cp->key_bad[wan] && !cp->key_bad[nets] &&
	    config_is_lan(c, c->wan_addr)) {
		inet_ntop(AF_INET, &c->wan_addr, addr, sizeof addr);
		config_error(cp, cp->key_line[wan], "[wan] address %s is "
		    "inside [lan] networks", addr);
	}
}

/*
 * Load a file over the defaults into c (c->path is allocated, even on
 * failure: config_free() it).  Every error found is added to errors, in
 * line order; returns -1 if there was any.
 */
int
config_load(struct config *c, const char *path, struct config_errors *errors)
{
	struct config_parse	 cp;
	int			 r;

	config_defaults(c);
	if ((c->path = strdup(path)) == NULL)
		fatal("%s", __func__);

	memset(&cp, 0, sizeof cp);
	cp.conf = c;
	cp.errors = errors;
	if (config_slurp(&cp, path) == -1)
		return (-1);

	config_scan(&cp);
	r = ini_parse_stream(config_read, &cp, config_handler, &cp);
	if (r != 0 && cp.nerrors == 0)
		config_error(&cp, 0, "inih found an error at its line %d", r);
	config_check(&cp);

	free(cp.lines);
	free(cp.buf);
	return (cp.nerrors == 0 ? 0 : -1);
}

/* Print errors as path:line: message, in line order. */
void
config_print_errors(const char *path, struct config_errors *errors)
{
	struct config_error	*ce;

	TAILQ_FOREACH(ce, errors, entry) {
		if (ce->line == 0)
			fprintf(stderr, "%s: %s\n", path, ce->msg);
		else
			fprintf(stderr, "%s:%d: %s\n", path, ce->line, ce->msg);
	}
}

/* Free the errors; the list is left empty. */
void
config_free_errors(struct config_errors *errors)
{
	struct config_error	*ce;

	while ((ce = TAILQ_FIRST(errors)) != NULL) {
		TAILQ_REMOVE(errors, ce, entry);
		free(ce->msg);
		free(ce);
	}
}

/* Write one value the way the parser reads it. */
static void
config_format(const struct config *c, const struct config_key *k, char *buf,
    size_t len)
{
	const char	*field = (const char *)c + k->off;
	size_t		 n;
	int		 i;

	buf[0] = '\0';
	switch (k->type) {
	case CONFIG_USER:
	case CONFIG_PATH:
	case CONFIG_IFNAME:
	case CONFIG_IFNAME_OPT:
	case CONFIG_IFLIST:
	case CONFIG_LISTEN:
		snprintf(buf, len, "%.*s", (int)k->size, field);
		break;
	case CONFIG_LOGLEVEL:
		snprintf(buf, len, "%s", c->debug ? "debug" : "info");
		break;
	case CONFIG_MTU:
		snprintf(buf, len, "%d", *(const int *)field);
		break;
	case CONFIG_UINT:
	case CONFIG_TABLE:
		snprintf(buf, len, "%u", *(const unsigned *)field);
		break;
	case CONFIG_MARK:
		snprintf(buf, len, "0x%x", *(const unsigned *)field);
		break;
	case CONFIG_SIZE:
		snprintf(buf, len, "%zu", *(const size_t *)field);
		break;
	case CONFIG_NETWORKS:
		/* Without spaces if need be, so that the line reads back. */
		n = config_prefixes(c->lan, c->nlan, ", ", buf, len);
		if (strlen(k->name) + 3 + n > CONFIG_MAX_LINE)
			config_prefixes(c->lan, c->nlan, ",", buf, len);
		break;
	case CONFIG_ADDRESS:
		if (c->wan_addr != 0)
			inet_ntop(AF_INET, &c->wan_addr, buf, len);
		break;
	case CONFIG_PORTS:
		snprintf(buf, len, "%u-%u", c->port_lo, c->port_hi);
		break;
	case CONFIG_FILTERING:
		snprintf(buf, len, "%s",
		    c->filtering == FILTER_ENDPOINT_INDEPENDENT ?
		    "endpoint-independent" : "address-and-port-dependent");
		break;
	case CONFIG_BOOL:
		snprintf(buf, len, "%s", *(const bool *)field ? "yes" : "no");
		break;
	case CONFIG_SIP_PORTS:
		for (i = 0; i < c->nsip_ports; i++) {
			n = strlen(buf);
			snprintf(buf + n, len - n, "%s%u%s", i ? ", " : "",
			    c->sip_ports[i].port,
			    c->sip_ports[i].normalise ? "" : ":off");
		}
		break;
	case CONFIG_ON_ERROR:
		snprintf(buf, len, "%s", c->sip_drop_errors ? "drop" :
		    "forward");
		break;
	case CONFIG_MEDIA_FILTERING:
		snprintf(buf, len, "%s", c->sip_media_eif ?
		    "endpoint-independent" : "address-dependent");
		break;
	}
}

/*
 * Print the configuration as canonical INI: every section and key in the
 * order of conf/sipnat.ini, no comments, "key = value" or "key =" when
 * empty, which reads back as the same configuration.  Lists are separated
 * by ", " (the LAN networks by "," if the line would be too long).
 * scripts/sipnat-routes reads this output.
 */
void
config_print(const struct config *c, FILE *f)
{
	const struct config_key	*k;
	const char		*section = NULL;
	char			 value[512];
	int			 i;

	for (i = 0; i < CONFIG_NKEYS; i++) {
		k = &config_keys[i];
		if (section == NULL || strcmp(section, k->section) != 0) {
			if (section != NULL)
				fputc('\n', f);
			fprintf(f, "[%s]\n", k->section);
			section = k->section;
		}
		config_format(c, k, value, sizeof value);
		if (value[0] == '\0')
			fprintf(f, "%s =\n", k->name);
		else
			fprintf(f, "%s = %s\n", k->name, value);
	}
}

/* Is this address (network byte order) inside one of the LAN prefixes? */
int
config_is_lan(const struct config *c, uint32_t addr)
{
	int	i;

	for (i = 0; i < c->nlan; i++) {
		if ((addr & c->lan[i].mask) == c->lan[i].addr)
			return (1);
	}
	return (0);
}

/* Free what config_load() allocated inside c (not c itself). */
void
config_free(struct config *c)
{
	free(c->path);
	c->path = NULL;
}
