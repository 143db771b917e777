/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/queue.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sdp.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_protos.h>
#include <sofia-sip/su_alloc.h>

#include "alg.h"

/*
 * The SIP helper, for SIP over UDP.  sofia-sip parses; this file decides
 * what names the phone's inside address and puts the public mapping in
 * its place (LAN to WAN), or the other way round (WAN to LAN).  Headers it
 * does not change are sent byte for byte as they came.  Media ports in
 * SDP get public mappings and pinholes owned by the dialog, before the
 * message leaves; a successful REGISTER keeps the phone's mapping open
 * for the provider for as long as the registration lasts.
 */

#define SIPNAT_SIP_PORT	5060
#define SIP_DIALOG_BUCKETS	1024
#define SIP_MAX_MEDIA		16
#define SIP_REG_GRACE		32	/* seconds past Expires */
#define SIP_REG_DEFAULT		3600
#define SIP_REG_PENDING		32	/* 64 * T1: a REGISTER's answer */
#define SIP_STRAY_RATE		100	/* stray packets checked a second */

enum sip_counter {
	SIP_MSG_OUT,
	SIP_MSG_IN,
	SIP_REWRITTEN,
	SIP_UNTOUCHED_PUBLIC,
	SIP_UNTOUCHED_ICE,
	SIP_KEEPALIVE,
	SIP_PARSE_ERROR,
	SIP_OVERSIZED,
	SIP_DROPPED,
	SIP_SDP_ERROR,
	SIP_TOO_BIG,
	SIP_DIALOGS,
	SIP_DIALOGS_ENDED,
	SIP_DIALOG_TIMEOUT,
	SIP_DIALOG_LIMIT,
	SIP_MEDIA,
	SIP_MEDIA_LIMIT,
	SIP_MEDIA_MOVED,
	SIP_REGISTERED,
	SIP_UNREGISTERED,
	SIP_REG_EXPIRED,
	SIP_REG_LIMIT,
	SIP_NO_MAPPING,
	SIP_ALARM_ONE_WAY,
	SIP_DIALOG_NO_BYE,
	SIP_MISSED_REFRESH,
	SIP_COUNTER_MAX
};

static const char *sip_counter_names[SIP_COUNTER_MAX] = {
	[SIP_MSG_OUT] = "sip.messages.to_wan",
	[SIP_MSG_IN] = "sip.messages.to_lan",
	[SIP_REWRITTEN] = "sip.messages.rewritten",
	[SIP_UNTOUCHED_PUBLIC] = "sip.untouched.already_public",
	[SIP_UNTOUCHED_ICE] = "sip.untouched.ice",
	[SIP_KEEPALIVE] = "sip.keepalives",
	[SIP_PARSE_ERROR] = "sip.errors.parse",
	[SIP_OVERSIZED] = "sip.errors.oversized",
	[SIP_DROPPED] = "sip.errors.dropped",
	[SIP_SDP_ERROR] = "sip.errors.sdp",
	[SIP_TOO_BIG] = "sip.errors.rewrite_too_big",
	[SIP_DIALOGS] = "sip.dialogs.created",
	[SIP_DIALOGS_ENDED] = "sip.dialogs.ended",
	[SIP_DIALOG_TIMEOUT] = "sip.dialogs.timed_out",
	[SIP_DIALOG_LIMIT] = "sip.limit.dialogs",
	[SIP_MEDIA] = "sip.media.streams",
	[SIP_MEDIA_LIMIT] = "sip.limit.media",
	[SIP_MEDIA_MOVED] = "sip.media.moved",
	[SIP_REGISTERED] = "sip.registrations.accepted",
	[SIP_UNREGISTERED] = "sip.registrations.removed",
	[SIP_REG_EXPIRED] = "sip.registrations.expired",
	[SIP_REG_LIMIT] = "sip.limit.registrations",
	[SIP_NO_MAPPING] = "sip.errors.no_mapping",
	[SIP_ALARM_ONE_WAY] = "sip.alarms.one_way_audio",
	[SIP_DIALOG_NO_BYE] = "sip.alarms.ended_without_bye",
	[SIP_MISSED_REFRESH] = "sip.alarms.missed_session_refresh",
};

enum sip_state {
	SIP_CALLING,		/* INVITE sent, no answer yet */
	SIP_EARLY,		/* a provisional answer */
	SIP_CONFIRMED,		/* 2xx */
};

static const char *sip_state_names[] = {
	[SIP_CALLING] = "calling",
	[SIP_EARLY] = "early",
	[SIP_CONFIRMED] = "confirmed",
};

/*
 * One media stream (m= line) of a dialog: its public ports stay put.  Its
 * RTP is watched each way for quality and for one-way audio.
 */
struct sip_media {
	struct sip_dialog	*d;
	struct nat_mapping	*rtp;
	struct nat_mapping	*rtcp;
	uint32_t		 rem_addr;	/* from the far end's SDP */
	uint16_t		 rem_port;
	char			 type[16];
	struct rtp_stats	 rtp_stats[2];	/* by enum nat_dir */
	uint64_t		 filtered;	/* refused by the filter */
	uint32_t		 filtered_from;
	uint64_t		 stray;		/* the far end's, elsewhere */
	uint16_t		 stray_port;
	uint64_t		 rtp_on_rtcp;	/* RTP at the RTCP port */
	bool			 alarm[2];	/* one-way audio, by dir */
	bool			 held;		/* on hold: one way is fine */
};

/* What happened to a call, for sipnatctl call: a ring of lines. */
#define SIP_EVENTS		32
#define SIP_EVENT_LEN		120
struct sip_call_ev {
	uint64_t		 when;
	char			 text[SIP_EVENT_LEN];
};

struct sip_dialog {
	LIST_ENTRY(sip_dialog)	 entry;		/* hash bucket */
	LIST_ENTRY(sip_dialog)	 all;
	char			*call_id;
	char			*from;
	char			*to;
	uint32_t		 phone;		/* inside address */
	uint8_t			 sig_proto;	/* its signalling mapping */
	uint16_t		 sig_in_port;
	uint16_t		 sig_pub_port;
	bool			 outgoing;	/* the phone called */
	enum sip_state		 state;
	uint64_t		 created;
	uint64_t		 confirmed;	/* when a 2xx came */
	uint64_t		 last;		/* last signalling */
	char			 last_sig[64];	/* what it was */
	unsigned		 session_expires; /* RFC 4028, 0: none */
	uint64_t		 refreshed;	/* last INVITE/UPDATE or 2xx */
	bool			 refresh_alarm;
	struct nat_owner	 owner;		/* its pinholes */
	unsigned		 nmedia;
	struct sip_media	 media[SIP_MAX_MEDIA];
	struct sip_call_ev	 events[SIP_EVENTS];
	unsigned		 nevents;	/* ever added */
};

struct sip_reg {
	LIST_ENTRY(sip_reg)	 entry;
	char			*call_id;
	char			*aor;
	uint32_t		 registrar;
	struct nat_mapping	*map;
	struct nat_pinhole	*pinhole;	/* NULL until a 2xx */
	uint64_t		 expires;	/* 0 until a 2xx */
	uint64_t		 sent;		/* the last REGISTER */
	bool			 removing;	/* it asked for Expires 0 */
};

/* What one message handler works with. */
struct sip_ctx {
	struct alg_pkt		*ap;
	msg_t			*msg;
	sip_t			*sip;
	su_home_t		*home;
	struct nat_mapping	*map;		/* the signalling mapping */
	uint8_t			 proto;		/* its transport */
	uint32_t		 in_addr;
	char			 in_str[INET_ADDRSTRLEN];
	char			 pub_str[INET_ADDRSTRLEN];
	uint32_t		 remote;	/* the WAN peer */
	bool			 changed;
	bool			 saw_public;
	/* Events before the message's dialog is known. */
	char			 pending[8][SIP_EVENT_LEN];
	unsigned		 npending;
};

static struct {
	struct config_sip_port	 ports[CONFIG_MAX_SIP_PORTS];
	int			 nports;
	bool			 drop_errors;
	size_t			 max_message;
	bool			 media_eif;
	unsigned		 max_dialogs;
	unsigned		 max_media;
	unsigned		 max_regs;
	unsigned		 dialog_timeout;
	unsigned		 one_way_alarm;	/* seconds, 0: off */
	uint32_t		 pub;
	unsigned		 stray_tokens;	/* stray checks left */
	LIST_HEAD(, sip_dialog)	 buckets[SIP_DIALOG_BUCKETS];
	LIST_HEAD(, sip_dialog)	 dialogs;
	unsigned		 ndialogs;
	LIST_HEAD(, sip_reg)	 regs;
	unsigned		 nregs;
	uint64_t		 counters[SIP_COUNTER_MAX];
	uint8_t			 out[SIPNAT_MAX_PKT];
} sip;

#define sip_count(c)	(sip.counters[(c)]++)

static void	sip_dialog_end(struct sip_dialog *);
static void	sip_media_watch(void *, const struct pkt *, int, bool);
static void	sip_rtcp_watch(void *, const struct pkt *, int, bool);
static void	sip_session_timer(struct sip_dialog *, sip_t *);
static void	sip_message_name(sip_t *, char *, size_t);

/* Is this port one the helper rewrites on? */
static bool
sip_port_normalised(uint16_t port)
{
	int	i;

	for (i = 0; i < sip.nports; i++)
		if (sip.ports[i].port == port)
			return (sip.ports[i].normalise);
	return (false);
}

/* Cheap match: UDP or TCP to or from a SIP port set to normalise. */
static bool
sip_match(const struct pkt *p, enum nat_dir dir)
{
	if ((p->proto != IPPROTO_UDP && p->proto != IPPROTO_TCP) ||
	    sip.nports == 0)
		return (false);
	return (sip_port_normalised(p->dport) ||
	    sip_port_normalised(p->sport));
}

/* Take the [sip] settings; runs at start and on every reload. */
static int
sip_configure(const struct config *c, char **cause)
{
	memcpy(sip.ports, c->sip_ports, sizeof sip.ports);
	sip.nports = c->nsip_ports;
	sip.drop_errors = c->sip_drop_errors;
	sip.max_message = c->sip_max_message;
	sip.media_eif = c->sip_media_eif;
	sip.max_dialogs = c->sip_max_dialogs;
	sip.max_media = c->sip_max_media < SIP_MAX_MEDIA ?
	    c->sip_max_media : SIP_MAX_MEDIA;
	sip.max_regs = c->sip_max_registrations;
	sip.dialog_timeout = c->to_sip_dialog;
	sip.one_way_alarm = c->sip_one_way_alarm;
	sip.pub = c->wan_addr;
	return (0);
}

/* A string hash for Call-IDs (FNV-1a). */
static unsigned
sip_hash(const char *s)
{
	uint32_t	h = 2166136261u;

	while (*s != '\0') {
		h ^= (uint8_t)*s++;
		h *= 16777619u;
	}
	return (h % SIP_DIALOG_BUCKETS);
}

/* The dialog with this Call-ID. */
static struct sip_dialog *
sip_dialog_find(const char *call_id)
{
	struct sip_dialog	*d;

	LIST_FOREACH(d, &sip.buckets[sip_hash(call_id)], entry)
		if (strcmp(d->call_id, call_id) == 0)
			return (d);
	return (NULL);
}

/* Add a line to a dialog's events (and to the debug log). */
static void
sip_call_event(struct sip_dialog *d, const char *fmt, ...)
{
	struct sip_call_ev	*e = &d->events[d->nevents++ % SIP_EVENTS];
	va_list			 ap;

	va_start(ap, fmt);
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	va_end(ap);
	e->when = nat_now();
	log_debug("sip: call %s: %s", d->call_id, e->text);
}

/* Note an event of the message being handled, for its dialog. */
static void
sip_note(struct sip_ctx *x, const char *fmt, ...)
{
	va_list	ap;

	if (x->npending == nitems(x->pending))
		return;
	va_start(ap, fmt);
	vsnprintf(x->pending[x->npending++], SIP_EVENT_LEN, fmt, ap);
	va_end(ap);
}

/* Give the message's events to its dialog, or to the debug log. */
static void
sip_notes_flush(struct sip_ctx *x, struct sip_dialog *d)
{
	unsigned	i;

	for (i = 0; i < x->npending; i++) {
		if (d != NULL)
			sip_call_event(d, "%s", x->pending[i]);
		else
			log_debug("sip: %s: %s", x->sip->sip_call_id->i_id,
			    x->pending[i]);
	}
	x->npending = 0;
}

/* Print a URL (From, To) into a new string. */
static char *
sip_url_string(su_home_t *home, const url_t *url)
{
	char	*s, *copy;

	if (url == NULL || (s = url_as_string(home, url)) == NULL)
		return (strdup("-"));
	copy = strdup(s);
	su_free(home, s);
	return (copy);
}

/* Start tracking a dialog at its INVITE. */
static struct sip_dialog *
sip_dialog_new(struct sip_ctx *x)
{
	struct sip_dialog	*d;
	const char		*cid = x->sip->sip_call_id->i_id;

	if (sip.ndialogs >= sip.max_dialogs) {
		sip_count(SIP_DIALOG_LIMIT);
		return (NULL);
	}
	if ((d = calloc(1, sizeof *d)) == NULL)
		return (NULL);
	d->call_id = strdup(cid);
	d->from = sip_url_string(x->home, x->sip->sip_from->a_url);
	d->to = sip_url_string(x->home, x->sip->sip_to->a_url);
	if (d->call_id == NULL || d->from == NULL || d->to == NULL) {
		free(d->call_id);
		free(d->from);
		free(d->to);
		free(d);
		return (NULL);
	}
	d->phone = x->in_addr;
	d->sig_proto = x->map->proto;
	d->sig_in_port = x->map->in_port;
	d->sig_pub_port = x->map->pub_port;
	d->outgoing = x->ap->dir == DIR_OUT;
	d->state = SIP_CALLING;
	d->created = d->last = nat_now();
	nat_owner_init(&d->owner);
	LIST_INSERT_HEAD(&sip.buckets[sip_hash(cid)], d, entry);
	LIST_INSERT_HEAD(&sip.dialogs, d, all);
	sip.ndialogs++;
	sip_count(SIP_DIALOGS);
	log_debug("sip: dialog %s started (%s)", cid,
	    d->outgoing ? "outgoing" : "incoming");
	return (d);
}

/* End a media mapping's sessions and let the dialog's hold go. */
static void
sip_media_end(struct nat_mapping *m)
{
	if (m == NULL)
		return;
	nat_mapping_watch(m, NULL, NULL);
	nat_mapping_flush(m);	/* the dialog's hold keeps m */
	nat_mapping_release(m);
}

/* End a dialog: its pinholes close now, its media mappings are let go. */
static void
sip_dialog_end(struct sip_dialog *d)
{
	unsigned	i;

	log_debug("sip: dialog %s ended", d->call_id);
	if (!LIST_EMPTY(&d->owner.pinholes))
		sip_call_event(d, "closed its pinholes");
	nat_owner_close(&d->owner);
	/* Media stops with the call: its sessions end too, not just the
	 * pinholes, or a source already let in could go on sending. */
	for (i = 0; i < d->nmedia; i++) {
		sip_media_end(d->media[i].rtp);
		sip_media_end(d->media[i].rtcp);
	}
	LIST_REMOVE(d, entry);
	LIST_REMOVE(d, all);
	sip.ndialogs--;
	sip_count(SIP_DIALOGS_ENDED);
	free(d->call_id);
	free(d->from);
	free(d->to);
	free(d);
}

/* The port a URL or Via names, with SIP's default. */
static uint16_t
sip_port_of(const char *port)
{
	unsigned long	v;
	char		*end;

	if (port == NULL || *port == '\0')
		return (SIPNAT_SIP_PORT);
	v = strtoul(port, &end, 10);
	if (*end != '\0' || v == 0 || v > 65535)
		return (0);
	return ((uint16_t)v);
}

/*
 * The public port for an inside port of the phone.  The port the message
 * came from has its mapping already; another port (a Contact or Via port
 * the phone listens on) gets one, with a pinhole for the peer's address
 * so that its requests and answers can come in.
 */
static uint16_t
sip_public_port(struct sip_ctx *x, uint16_t port)
{
	struct nat_mapping	*m;
	enum nat_refusal	 why;

	if (port == x->map->in_port)
		return (x->map->pub_port);
	if ((m = nat_mapping_find(x->proto, x->in_addr, port)) != NULL)
		return (m->pub_port);
	if ((m = nat_mapping_get(x->proto, x->in_addr, port, &why)) ==
	    NULL) {
		sip_count(SIP_NO_MAPPING);
		return (0);
	}
	if (nat_pinhole_open(m, NULL, x->remote, 0,
	    nat_now() + sip.dialog_timeout) == NULL) {
		nat_mapping_gc(m);
		return (0);
	}
	return (m->pub_port);
}

/* The inside port behind a public port of this phone, or 0. */
static uint16_t
sip_inside_port(struct sip_ctx *x, uint16_t port)
{
	struct nat_mapping	*m;

	if ((m = nat_mapping_public(x->proto, port)) == NULL ||
	    m->in_addr != x->in_addr)
		return (0);
	return (m->in_port);
}

/* Format a port into the message's memory. */
static char *
sip_port_str(struct sip_ctx *x, uint16_t port)
{
	char	buf[8];

	snprintf(buf, sizeof buf, "%u", port);
	return (su_strdup(x->home, buf));
}

/*
 * Rewrite a host and port pair (a URL's or a Via's) if it names the
 * phone (LAN to WAN) or the phone's public mapping (WAN to LAN).  The
 * header is cleared so it is encoded again; returns true if changed.
 */
static bool
sip_rewrite_hostport(struct sip_ctx *x, msg_header_t *h, char const **host,
    char const **port)
{
	const char	*name;
	uint16_t	 p, q;

	if (*host == NULL)
		return (false);
	if (x->ap->dir == DIR_OUT) {
		if (strcmp(*host, x->pub_str) == 0)
			x->saw_public = true;
		if (strcmp(*host, x->in_str) != 0)
			return (false);
		if ((p = sip_port_of(*port)) == 0 ||
		    (q = sip_public_port(x, p)) == 0)
			return (false);
		msg_fragment_clear_chain(h);
		*host = su_strdup(x->home, x->pub_str);
		*port = sip_port_str(x, q);
	} else {
		if (strcmp(*host, x->pub_str) != 0)
			return (false);
		if ((p = sip_port_of(*port)) == 0 ||
		    (q = sip_inside_port(x, p)) == 0)
			return (false);
		msg_fragment_clear_chain(h);
		*host = su_strdup(x->home, x->in_str);
		*port = sip_port_str(x, q);
	}
	name = h->sh_class != NULL && h->sh_class->hc_name != NULL &&
	    *h->sh_class->hc_name != '\0' ? h->sh_class->hc_name :
	    "Request-URI";
	sip_note(x, "rewrote %s %s:%u -> %s:%s", name,
	    x->ap->dir == DIR_OUT ? x->in_str : x->pub_str, p, *host, *port);
	x->changed = true;
	return (true);
}

/* Rewrite the URL of a header if it names the phone or its mapping. */
static void
sip_rewrite_url(struct sip_ctx *x, msg_header_t *h, url_t *url)
{
	if (url == NULL || url->url_type == url_sips)
		return;
	sip_rewrite_hostport(x, h, &url->url_host, &url->url_port);
}

/* Every entry of a Route or Record-Route chain. */
static void
sip_rewrite_routes(struct sip_ctx *x, sip_route_t *r)
{
	for (; r != NULL; r = r->r_next)
		sip_rewrite_url(x, (msg_header_t *)r, r->r_url);
}

/*
 * The top Via is the phone's (LAN to WAN requests) or ours to translate
 * back (WAN to LAN responses).  Its branch, received and rport stay.
 */
static void
sip_rewrite_via(struct sip_ctx *x)
{
	sip_via_t	*v = x->sip->sip_via;

	if (strcasecmp(v->v_protocol, x->proto == IPPROTO_TCP ?
	    "SIP/2.0/TCP" : "SIP/2.0/UDP") != 0)
		return;
	sip_rewrite_hostport(x, (msg_header_t *)v, &v->v_host, &v->v_port);
}

/* Find an SDP attribute by name. */
static sdp_attribute_t *
sip_sdp_attr(sdp_attribute_t *a, const char *name)
{
	for (; a != NULL; a = a->a_next)
		if (strcasecmp(a->a_name, name) == 0)
			return (a);
	return (NULL);
}

/* Does the SDP carry ICE candidates anywhere? */
static bool
sip_sdp_has_ice(sdp_session_t *sdp)
{
	sdp_media_t	*m;

	if (sip_sdp_attr(sdp->sdp_attributes, "candidate") != NULL)
		return (true);
	for (m = sdp->sdp_media; m != NULL; m = m->m_next)
		if (sip_sdp_attr(m->m_attributes, "candidate") != NULL)
			return (true);
	return (false);
}

/*
 * Public ports for a media stream.  The first offer allocates an even RTP
 * port and the next one for RTCP, with pinholes owned by the dialog; later
 * offers keep the same public ports, moving the mappings if the phone
 * moved to another inside port (hold and resume on a new port).
 */
static int
sip_media_map(struct sip_ctx *x, struct sip_dialog *d, unsigned i,
    uint16_t rtp, uint16_t rtcp, uint16_t *q_rtp, uint16_t *q_rtcp)
{
	struct sip_media	*sm;
	enum nat_refusal	 why;
	uint32_t		 rem = sip.media_eif ? 0 : x->remote;

	if (i >= sip.max_media) {
		sip_count(SIP_MEDIA_LIMIT);
		return (-1);
	}
	sm = &d->media[i];
	if (sm->rtp != NULL) {
		if (sm->rtp->in_port != rtp || sm->rtcp->in_port != rtcp)
			sip_count(SIP_MEDIA_MOVED);
		if ((sm->rtp->in_port != rtp &&
		    nat_mapping_rebind(sm->rtp, rtp) == -1) ||
		    (sm->rtcp->in_port != rtcp &&
		    nat_mapping_rebind(sm->rtcp, rtcp) == -1)) {
			sip_count(SIP_NO_MAPPING);
			return (-1);
		}
	} else {
		if (nat_mapping_get_pair(IPPROTO_UDP, x->in_addr, rtp, rtcp,
		    &sm->rtp, &sm->rtcp, &why) == -1) {
			sm->rtp = sm->rtcp = NULL;
			sip_count(SIP_NO_MAPPING);
			return (-1);
		}
		/* The dialog holds its streams' mappings until it ends. */
		nat_mapping_hold(sm->rtp);
		nat_mapping_hold(sm->rtcp);
		sm->d = d;
		nat_mapping_watch(sm->rtp, sip_media_watch, sm);
		nat_mapping_watch(sm->rtcp, sip_rtcp_watch, sm);
		nat_pinhole_open(sm->rtp, &d->owner, rem, 0, 0);
		nat_pinhole_open(sm->rtcp, &d->owner, rem, 0, 0);
		sip_note(x, "opened pinholes to public ports %u and %u for %s",
		    sm->rtp->pub_port, sm->rtcp->pub_port, rem == 0 ?
		    "any source" : "the signalling peer");
		if (i >= d->nmedia)
			d->nmedia = i + 1;
		sip_count(SIP_MEDIA);
	}
	*q_rtp = sm->rtp->pub_port;
	*q_rtcp = sm->rtcp->pub_port;
	return (0);
}

/* Rewrite an a=rtcp value ("port [IN IP4 addr]") for the public side. */
static void
sip_sdp_rtcp(struct sip_ctx *x, sdp_attribute_t *a, uint16_t q)
{
	const char	*rest;
	char		 buf[128];

	rest = a->a_value == NULL ? "" : a->a_value + strspn(a->a_value,
	    "0123456789");
	if (strstr(rest, x->in_str) != NULL)
		snprintf(buf, sizeof buf, "%u IN IP4 %s", q, x->pub_str);
	else
		snprintf(buf, sizeof buf, "%u%s", q, rest);
	a->a_value = su_strdup(x->home, buf);
}

/*
 * An SDP leaving the LAN: the phone's address becomes the public one and
 * each of its media streams gets its public ports.  A stream on hold with
 * c=0.0.0.0 keeps its ports; streams naming other hosts stay as they are.
 */
static bool
sip_sdp_out(struct sip_ctx *x, sdp_session_t *sdp, struct sip_dialog *d)
{
	sdp_connection_t	*c;
	sdp_attribute_t		*a;
	sdp_media_t		*m;
	uint16_t		 rtp, rtcp, q_rtp, q_rtcp;
	unsigned		 i;
	bool			 touched = false, sess_inside = false;
	bool			 inside, hold;

	if (sdp->sdp_origin != NULL && (c = sdp->sdp_origin->o_address) !=
	    NULL && c->c_address != NULL && strcmp(c->c_address,
	    x->in_str) == 0) {
		c->c_address = x->pub_str;
		sip_note(x, "rewrote SDP o= %s -> %s", x->in_str, x->pub_str);
		touched = true;
	}
	if ((c = sdp->sdp_connection) != NULL && c->c_address != NULL) {
		if (strcmp(c->c_address, x->pub_str) == 0)
			x->saw_public = true;
		if (strcmp(c->c_address, x->in_str) == 0) {
			c->c_address = x->pub_str;
			sip_note(x, "rewrote SDP c= %s -> %s", x->in_str,
			    x->pub_str);
			sess_inside = touched = true;
		}
	}
	for (m = sdp->sdp_media, i = 0; m != NULL; m = m->m_next, i++) {
		if (m->m_port == 0 || m->m_port > 65534)
			continue;
		c = m->m_connections != NULL ? m->m_connections :
		    sdp->sdp_connection;
		if (c == NULL || c->c_address == NULL)
			continue;
		hold = strcmp(c->c_address, "0.0.0.0") == 0;
		inside = m->m_connections != NULL ?
		    strcmp(c->c_address, x->in_str) == 0 : sess_inside;
		if (!inside && !hold)
			continue;
		if (m->m_connections != NULL && inside)
			m->m_connections->c_address = x->pub_str;
		rtp = (uint16_t)m->m_port;
		a = sip_sdp_attr(m->m_attributes, "rtcp");
		rtcp = a != NULL && a->a_value != NULL ?
		    (uint16_t)strtoul(a->a_value, NULL, 10) : 0;
		if (rtcp == 0)
			rtcp = rtp + 1;
		if (d == NULL ||
		    sip_media_map(x, d, i, rtp, rtcp, &q_rtp, &q_rtcp) == -1)
			continue;
		snprintf(d->media[i].type, sizeof d->media[i].type, "%s",
		    m->m_type_name != NULL ? m->m_type_name : "media");
		if (m->m_rtpmaps != NULL && m->m_rtpmaps->rm_rate != 0)
			d->media[i].rtp_stats[DIR_OUT].rate =
			    d->media[i].rtp_stats[DIR_IN].rate =
			    (uint32_t)m->m_rtpmaps->rm_rate;
		d->media[i].held = hold || m->m_mode != sdp_sendrecv;
		sip_note(x, "rewrote SDP m=%s %u -> %u (RTCP %u -> %u)%s",
		    d->media[i].type, rtp, q_rtp, rtcp, q_rtcp,
		    d->media[i].held ? ", on hold" : "");
		m->m_port = q_rtp;
		if (a != NULL)
			sip_sdp_rtcp(x, a, q_rtcp);
		touched = true;
	}
	return (touched);
}

/* An SDP from the WAN: not rewritten, but the far end's media noted. */
static void
sip_sdp_in(struct sip_ctx *x, sdp_session_t *sdp, struct sip_dialog *d)
{
	sdp_connection_t	*c;
	sdp_media_t		*m;
	unsigned		 i;
	struct in_addr		 ina;

	if (d == NULL)
		return;
	for (m = sdp->sdp_media, i = 0; m != NULL && i < SIP_MAX_MEDIA;
	    m = m->m_next, i++) {
		c = m->m_connections != NULL ? m->m_connections :
		    sdp->sdp_connection;
		if (c == NULL || c->c_address == NULL ||
		    inet_pton(AF_INET, c->c_address, &ina) != 1)
			continue;
		d->media[i].rem_addr = ina.s_addr;
		d->media[i].rem_port = (uint16_t)m->m_port;
		d->media[i].held = ina.s_addr == 0 || m->m_mode != sdp_sendrecv;
		if (m->m_rtpmaps != NULL && m->m_rtpmaps->rm_rate != 0 &&
		    d->media[i].rtp_stats[DIR_IN].rate == 0)
			d->media[i].rtp_stats[DIR_OUT].rate =
			    d->media[i].rtp_stats[DIR_IN].rate =
			    (uint32_t)m->m_rtpmaps->rm_rate;
		sip_note(x, "the far end's %s is %s:%u",
		    m->m_type_name != NULL ? m->m_type_name : "media",
		    c->c_address, (unsigned)m->m_port);
		/* Strict media filtering: only the far end may send. */
		if (!sip.media_eif && i < d->nmedia &&
		    d->media[i].rtp != NULL && ina.s_addr != 0) {
			nat_pinhole_open(d->media[i].rtp, &d->owner,
			    ina.s_addr, 0, 0);
			nat_pinhole_open(d->media[i].rtcp, &d->owner,
			    ina.s_addr, 0, 0);
		}
	}
}

/* Skip a run of characters from set; returns how many. */
static size_t
sip_span(const char *p, const char *end, const char *set)
{
	const char	*q = p;

	while (q < end && *q != '\0' && strchr(set, *q) != NULL)
		q++;
	return ((size_t)(q - p));
}

/*
 * Is an m= line (after "m=", up to its end) well formed (RFC 4566)?
 * media SP port ["/" count] SP proto 1*(SP fmt), where proto is tokens
 * joined by "/".  sofia-sip's parser loops without end on some others
 * (a port run into the protocol, a format starting with "/", ":", "<" or
 * "@"), so only these are parsed.
 */
static bool
sip_sdp_mline_ok(const char *p, const char *end)
{
	static const char	 tok[] = "abcdefghijklmnopqrstuvwxyz"
				     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				     "!#$%&'*+-.^_`{|}~";
	static const char	 dig[] = "0123456789";
	size_t			 n;

	if ((n = sip_span(p, end, tok)) == 0 || p + n >= end || p[n] != ' ')
		return (false);
	p += n + 1;
	if ((n = sip_span(p, end, dig)) == 0 || n > 5)
		return (false);
	p += n;
	if (p < end && *p == '/') {
		if ((n = sip_span(++p, end, dig)) == 0 || n > 5)
			return (false);
		p += n;
	}
	if (p >= end || *p++ != ' ')
		return (false);
	do {
		if ((n = sip_span(p, end, tok)) == 0)
			return (false);
		p += n;
	} while (p < end && *p == '/' && p++ != NULL);
	if (p >= end)
		return (false);
	for (; p < end; p += n) {
		if (*p != ' ' || (n = sip_span(++p, end, tok)) == 0)
			return (false);
	}
	return (true);
}

/*
 * Is an SDP body safe to give sofia-sip's SDP parser?  It loops without
 * end, allocating, on bytes above 0x7f in a token and on some malformed
 * m= lines (both found by fuzzing), and stops silently at a NUL.  It also
 * ends a line at a lone CR, where a check that splits on LF alone would
 * let an m= line through unchecked (found by fuzzing too): so lines end
 * with LF or CRLF only, and each one is "x=value" (RFC 4566).
 * Non-ASCII text is allowed only in the free-text lines (s=, i=, u=, e=,
 * p=); control characters other than tab nowhere.
 */
static bool
sip_sdp_safe(const char *p, size_t len)
{
	const char	*line = p, *end = p + len, *eol, *last;
	size_t		 i;
	bool		 text;

	while (line < end) {
		if ((eol = memchr(line, '\n', (size_t)(end - line))) == NULL)
			eol = end;
		last = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
		if (last > line && (last - line < 2 || line[1] != '=' ||
		    line[0] < 'a' || line[0] > 'z'))
			return (false);
		text = last > line && strchr("siuep", line[0]) != NULL;
		for (i = 0; line + i < last; i++) {
			unsigned char	c = (unsigned char)line[i];

			if (c == '\t')
				continue;
			if (c < 0x20 || c == 0x7f || (c > 0x7f && !text))
				return (false);
		}
		if (line[0] == 'm' && last > line &&
		    !sip_sdp_mline_ok(line + 2, last))
			return (false);
		line = eol + 1;
	}
	return (true);
}

/* Parse, rewrite and replace the body if it is SDP. */
static void
sip_body(struct sip_ctx *x, struct sip_dialog *d)
{
	sip_t		*s = x->sip;
	sdp_parser_t	*pa;
	sdp_printer_t	*pr;
	sdp_session_t	*sdp;
	sip_payload_t	*pl;
	const char	*body;

	if (s->sip_payload == NULL || s->sip_payload->pl_len == 0 ||
	    s->sip_content_type == NULL || s->sip_content_type->c_type == NULL ||
	    strcasecmp(s->sip_content_type->c_type, "application/sdp") != 0)
		return;
	if (!sip_sdp_safe(s->sip_payload->pl_data, s->sip_payload->pl_len)) {
		sip_count(SIP_SDP_ERROR);
		return;
	}
	pa = sdp_parse(x->home, s->sip_payload->pl_data,
	    (int)s->sip_payload->pl_len, sdp_f_mode_manual);
	if ((sdp = sdp_session(pa)) == NULL) {
		sip_count(SIP_SDP_ERROR);
		sdp_parser_free(pa);
		return;
	}
	if (x->ap->dir == DIR_IN) {
		sip_sdp_in(x, sdp, d);
		sdp_parser_free(pa);
		return;
	}
	if (d == NULL) {
		/*
		 * No dialog (the limit, or SDP outside an INVITE's dialog):
		 * no media ports to give, so name no public address either.
		 */
		sdp_parser_free(pa);
		return;
	}
	if (sip_sdp_has_ice(sdp)) {
		/* ICE found its own way through: leave its SDP alone. */
		sip_count(SIP_UNTOUCHED_ICE);
		sip_note(x, "left the SDP untouched: ICE candidates");
		sdp_parser_free(pa);
		return;
	}
	if (!sip_sdp_out(x, sdp, d)) {
		sdp_parser_free(pa);
		return;
	}
	pr = sdp_print(x->home, sdp, NULL, 0, sdp_f_mode_manual);
	if ((body = sdp_message(pr)) != NULL) {
		/* Copy out: the printer's memory goes with it. */
		pl = sip_payload_create(x->home, body, strlen(body));
		if (pl != NULL) {
			msg_header_replace(x->msg, (msg_pub_t *)s,
			    (msg_header_t *)s->sip_payload, (msg_header_t *)pl);
			if (s->sip_content_length != NULL) {
				msg_fragment_clear_chain(
				    (msg_header_t *)s->sip_content_length);
				s->sip_content_length->l_length = pl->pl_len;
			}
			x->changed = true;
		}
	} else
		sip_count(SIP_SDP_ERROR);
	sdp_printer_free(pr);
	sdp_parser_free(pa);
}

/* The registration with this Call-ID. */
static struct sip_reg *
sip_reg_find(const char *call_id)
{
	struct sip_reg	*r;

	LIST_FOREACH(r, &sip.regs, entry)
		if (strcmp(r->call_id, call_id) == 0)
			return (r);
	return (NULL);
}

/* The registration of an AOR on a mapping (a phone that rebooted keeps
 * its AOR and port but takes a new Call-ID). */
static struct sip_reg *
sip_reg_find_aor(const struct nat_mapping *m, const char *aor)
{
	struct sip_reg	*r;

	LIST_FOREACH(r, &sip.regs, entry)
		if (r->map == m && strcmp(r->aor, aor) == 0)
			return (r);
	return (NULL);
}

/* Does this REGISTER ask to remove its binding (Expires 0, or "*")? */
static bool
sip_register_removes(struct sip_ctx *x)
{
	sip_t		*s = x->sip;
	sip_contact_t	*c;

	for (c = s->sip_contact; c != NULL; c = c->m_next) {
		if (c->m_url->url_type == url_any)
			return (true);
		if (c->m_expires != NULL)
			return (strtoul(c->m_expires, NULL, 10) == 0);
	}
	return (s->sip_expires != NULL && s->sip_expires->ex_delta == 0);
}

/* Forget a registration and let its mapping go. */
static void
sip_reg_free(struct sip_reg *r)
{
	if (r->pinhole != NULL)
		nat_pinhole_close(r->pinhole);
	nat_mapping_release(r->map);
	LIST_REMOVE(r, entry);
	sip.nregs--;
	free(r->call_id);
	free(r->aor);
	free(r);
}

/* A REGISTER leaving the LAN: remember it until its answer comes. */
static void
sip_register_out(struct sip_ctx *x)
{
	struct sip_reg	*r;
	const char	*cid = x->sip->sip_call_id->i_id;
	char		*aor;
	sip_contact_t	*c;
	uint16_t	 port = x->map->in_port, p;
	struct nat_mapping *m = x->map;

	/* The contact the phone listens on: usually the port it sent from. */
	for (c = x->sip->sip_contact; c != NULL; c = c->m_next) {
		if (c->m_url->url_host != NULL &&
		    (strcmp(c->m_url->url_host, x->pub_str) == 0 ||
		    strcmp(c->m_url->url_host, x->in_str) == 0)) {
			p = sip_port_of(c->m_url->url_port);
			if (strcmp(c->m_url->url_host, x->pub_str) == 0)
				p = sip_inside_port(x, p);
			if (p != 0)
				port = p;
			break;
		}
	}
	if (port != x->map->in_port &&
	    (m = nat_mapping_find(x->proto, x->in_addr, port)) == NULL)
		m = x->map;
	aor = sip_url_string(x->home, x->sip->sip_to->a_url);
	if (aor == NULL)
		return;
	if ((r = sip_reg_find(cid)) != NULL ||
	    (r = sip_reg_find_aor(m, aor)) != NULL) {
		free(aor);
		if (strcmp(r->call_id, cid) != 0) {
			if ((aor = strdup(cid)) == NULL)
				return;
			free(r->call_id);
			r->call_id = aor;
		}
		r->registrar = x->remote;
		r->sent = nat_now();
		r->removing = sip_register_removes(x);
		return;
	}
	if (sip.nregs >= sip.max_regs) {
		sip_count(SIP_REG_LIMIT);
		free(aor);
		return;
	}
	if ((r = calloc(1, sizeof *r)) == NULL) {
		free(aor);
		return;
	}
	r->call_id = strdup(cid);
	r->aor = aor;
	if (r->call_id == NULL) {
		free(r->aor);
		free(r);
		return;
	}
	r->registrar = x->remote;
	r->sent = nat_now();
	r->removing = sip_register_removes(x);
	r->map = m;
	nat_mapping_hold(m);
	LIST_INSERT_HEAD(&sip.regs, r, entry);
	sip.nregs++;
}

/*
 * The registrar's answer coming in.  A 2xx grants Expires seconds (the
 * Contact's expires for our contact, else the Expires header): keep the
 * mapping and a pinhole for the registrar open that long, whatever the
 * UDP timeout, so its INVITEs reach the phone.  Expires 0 lets go.
 */
static void
sip_register_in(struct sip_ctx *x)
{
	sip_t		*s = x->sip;
	struct sip_reg	*r;
	sip_contact_t	*c;
	unsigned long	 granted = SIP_REG_DEFAULT;
	bool		 found = false;

	if ((r = sip_reg_find(s->sip_call_id->i_id)) == NULL)
		return;
	if (s->sip_status->st_status < 200)
		return;
	if (s->sip_status->st_status >= 300) {
		if (r->pinhole == NULL)
			sip_reg_free(r);
		return;
	}
	/* Our binding removed: gone, whatever other bindings say. */
	if (r->removing) {
		sip_count(SIP_UNREGISTERED);
		sip_reg_free(r);
		return;
	}
	if (s->sip_expires != NULL)
		granted = s->sip_expires->ex_delta;
	for (c = s->sip_contact; c != NULL; c = c->m_next) {
		if (c->m_url->url_host == NULL ||
		    strcmp(c->m_url->url_host, x->pub_str) != 0 ||
		    sip_port_of(c->m_url->url_port) != r->map->pub_port)
			continue;
		found = true;
		if (c->m_expires != NULL)
			granted = strtoul(c->m_expires, NULL, 10);
	}
	/* Bindings listed, ours not among them: not registered. */
	if (granted == 0 || (!found && s->sip_contact != NULL)) {
		sip_count(SIP_UNREGISTERED);
		sip_reg_free(r);
		return;
	}
	r->expires = nat_now() + granted;
	if (r->pinhole == NULL)
		r->pinhole = nat_pinhole_open(r->map, NULL, r->registrar, 0,
		    0);
	sip_count(SIP_REGISTERED);
	log_debug("sip: %s registered for %lu s", r->aor, granted);
}

/*
 * Follow a dialog's life from its requests and answers: INVITE starts
 * one, a provisional answer makes it early, 2xx confirms it; BYE, CANCEL
 * or a failure of the first INVITE ends it at once.
 */
static struct sip_dialog *
sip_dialog_track(struct sip_ctx *x)
{
	sip_t			*s = x->sip;
	struct sip_dialog	*d;
	int			 status, method;
	char			 what[40];

	sip_message_name(s, what, sizeof what);
	d = sip_dialog_find(s->sip_call_id->i_id);
	if (d != NULL) {
		d->last = nat_now();
		snprintf(d->last_sig, sizeof d->last_sig, "%s from the %s",
		    what, x->ap->dir == DIR_OUT ? "phone" : "far end");
	}
	if (s->sip_request != NULL) {
		method = s->sip_request->rq_method;
		if (method == sip_method_invite && d == NULL &&
		    (d = sip_dialog_new(x)) != NULL)
			snprintf(d->last_sig, sizeof d->last_sig, "%s from "
			    "the %s", what, x->ap->dir == DIR_OUT ? "phone" :
			    "far end");
		if (d != NULL && (method == sip_method_bye ||
		    method == sip_method_cancel)) {
			sip_dialog_end(d);
			return (NULL);
		}
		if (d != NULL && (method == sip_method_invite ||
		    method == sip_method_update))
			sip_session_timer(d, s);
		return (d);
	}
	if (d == NULL || s->sip_cseq->cs_method != sip_method_invite)
		return (d);
	status = s->sip_status->st_status;
	if (status >= 300 && d->state != SIP_CONFIRMED) {
		sip_dialog_end(d);
		return (NULL);
	}
	if (status >= 200 && status < 300) {
		if (d->state != SIP_CONFIRMED)
			d->confirmed = nat_now();
		d->state = SIP_CONFIRMED;
		sip_session_timer(d, s);
	} else if (status > 100 && status < 200 && d->state == SIP_CALLING)
		d->state = SIP_EARLY;
	return (d);
}

/* "INVITE", or "200 (INVITE)" for an answer. */
static void
sip_message_name(sip_t *s, char *buf, size_t len)
{
	if (s->sip_request != NULL)
		snprintf(buf, len, "%s", s->sip_request->rq_method_name);
	else
		snprintf(buf, len, "%d (%s)", s->sip_status->st_status,
		    s->sip_cseq->cs_method_name);
}

/*
 * A session timer (RFC 4028) set or refreshed by an INVITE, an UPDATE or
 * their 2xx: the dialog should see another within Session-Expires.
 */
static void
sip_session_timer(struct sip_dialog *d, sip_t *s)
{
	if (s->sip_session_expires == NULL)
		return;
	d->session_expires = (unsigned)s->sip_session_expires->x_delta;
	d->refreshed = nat_now();
	d->refresh_alarm = false;
}

/* A message leaving the LAN. */
static void
sip_out(struct sip_ctx *x)
{
	sip_t			*s = x->sip;
	sip_contact_t		*c;
	struct sip_dialog	*d;
	char			 what[40];

	sip_message_name(s, what, sizeof what);
	sip_note(x, "phone sent %s", what);
	if (s->sip_request != NULL)
		sip_rewrite_via(x);
	for (c = s->sip_contact; c != NULL; c = c->m_next)
		sip_rewrite_url(x, (msg_header_t *)c, c->m_url);
	sip_rewrite_routes(x, s->sip_record_route);
	sip_rewrite_routes(x, s->sip_route);
	if (s->sip_request != NULL &&
	    s->sip_request->rq_method == sip_method_register)
		sip_register_out(x);
	d = sip_dialog_track(x);
	sip_body(x, d);
	if (x->saw_public && !x->changed)
		sip_note(x, "left untouched: it names the public address "
		    "already");
	sip_notes_flush(x, d);
}

/* A message coming in from the WAN. */
static void
sip_in(struct sip_ctx *x)
{
	sip_t			*s = x->sip;
	sip_contact_t		*c;
	struct sip_dialog	*d;
	char			 what[40];

	sip_message_name(s, what, sizeof what);
	sip_note(x, "far end sent %s", what);
	if (s->sip_request != NULL)
		sip_rewrite_url(x, (msg_header_t *)s->sip_request,
		    s->sip_request->rq_url);
	else
		sip_rewrite_via(x);
	sip_rewrite_routes(x, s->sip_record_route);
	sip_rewrite_routes(x, s->sip_route);
	if (s->sip_status != NULL &&
	    s->sip_cseq->cs_method == sip_method_register) {
		sip_register_in(x);
		for (c = s->sip_contact; c != NULL; c = c->m_next)
			sip_rewrite_url(x, (msg_header_t *)c, c->m_url);
	}
	d = sip_dialog_track(x);
	sip_body(x, d);
	if (x->saw_public && !x->changed)
		sip_note(x, "left untouched: it names the public address "
		    "already");
	sip_notes_flush(x, d);
}

/* Is the payload nothing but CRLF (a keep-alive, RFC 5626)? */
static bool
sip_is_keepalive(const uint8_t *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		if (p[i] != '\r' && p[i] != '\n')
			return (false);
	return (true);
}

/* Encode the edited message into out; its length, or -1. */
static ssize_t
sip_emit(struct sip_ctx *x, uint8_t *out, size_t size)
{
	msg_iovec_t	iov[256];
	isize_t		n;
	size_t		len = 0, i;

	if (msg_serialize(x->msg, (msg_pub_t *)x->sip) == -1 ||
	    msg_prepare(x->msg) == -1)
		return (-1);
	n = msg_iovec(x->msg, iov, 256);
	if (n == 0 || n > 256)
		return (-1);
	for (i = 0; i < (size_t)n; i++) {
		if (len + iov[i].mv_len > size)
			return (-1);
		memcpy(out + len, iov[i].mv_base, iov[i].mv_len);
		len += iov[i].mv_len;
	}
	return ((ssize_t)len);
}

/* A message that could not be handled: forward as is, or drop. */
static enum alg_verdict
sip_bad(enum sip_counter why)
{
	sip_count(why);
	if (sip.drop_errors) {
		sip_count(SIP_DROPPED);
		return (ALG_DROP);
	}
	return (ALG_PASS);
}

/* Does the parsed message have what every SIP message must have? */
static bool
sip_complete(msg_t *msg, sip_t *s)
{
	if (msg_has_error(msg) || !msg_is_complete(msg) ||
	    msg_get_flags(msg, MSG_FLG_TRUNC | MSG_FLG_TOOLARGE) != 0)
		return (false);
	if (s == NULL || s->sip_via == NULL || s->sip_from == NULL ||
	    s->sip_to == NULL || s->sip_call_id == NULL ||
	    s->sip_cseq == NULL || s->sip_separator == NULL)
		return (false);
	return (s->sip_request != NULL || s->sip_status != NULL);
}

/*
 * Parse one whole message and rewrite it into out (at most *outlen
 * bytes).  Returns 1 if rewritten (*outlen its length), 0 if it stays as
 * it is, -1 if it could not be handled (*why says why).
 */
static int
sip_message(struct alg_pkt *ap, const uint8_t *data, size_t len,
    uint8_t *out, size_t *outlen, enum sip_counter *why)
{
	struct sip_ctx	 x;
	struct in_addr	 ia;
	ssize_t		 n;
	int		 r = 0;

	memset(&x, 0, sizeof x);
	x.ap = ap;
	x.map = ap->s->map;
	x.proto = ap->p->proto;
	x.in_addr = x.map->in_addr;
	x.remote = ap->dir == DIR_OUT ? ap->p->dst : ap->p->src;
	ia.s_addr = x.in_addr;
	inet_ntop(AF_INET, &ia, x.in_str, sizeof x.in_str);
	ia.s_addr = ap->pub;
	inet_ntop(AF_INET, &ia, x.pub_str, sizeof x.pub_str);

	*why = SIP_PARSE_ERROR;
	x.msg = msg_make(sip_default_mclass(), MSG_FLG_EXTRACT_COPY,
	    (const char *)data, (ssize_t)len);
	if (x.msg == NULL)
		return (-1);
	x.sip = sip_object(x.msg);
	if (!sip_complete(x.msg, x.sip)) {
		msg_destroy(x.msg);
		return (-1);
	}
	x.home = msg_home(x.msg);

	if (ap->dir == DIR_OUT)
		sip_out(&x);
	else
		sip_in(&x);

	if (x.changed) {
		if ((n = sip_emit(&x, out, *outlen)) == -1) {
			msg_destroy(x.msg);
			*why = SIP_TOO_BIG;
			return (-1);
		}
		*outlen = (size_t)n;
		sip_count(SIP_REWRITTEN);
		r = 1;
	} else if (x.saw_public)
		sip_count(SIP_UNTOUCHED_PUBLIC);
	msg_destroy(x.msg);
	return (r);
}

/* The handler for SIP over UDP: parse, rewrite, put back. */
static enum alg_verdict
sip_handle(struct alg_pkt *ap)
{
	enum sip_counter	 why;
	uint8_t			*data;
	size_t			 len, outlen = sizeof sip.out;

	data = nat_payload(ap, &len);
	sip_count(ap->dir == DIR_OUT ? SIP_MSG_OUT : SIP_MSG_IN);
	if (data == NULL || sip_is_keepalive(data, len)) {
		sip_count(SIP_KEEPALIVE);
		return (ALG_PASS);
	}
	if (len > sip.max_message)
		return (sip_bad(SIP_OVERSIZED));
	switch (sip_message(ap, data, len, sip.out, &outlen, &why)) {
	case -1:
		return (sip_bad(why));
	case 1:
		if (nat_payload_replace(ap, sip.out, outlen) == -1)
			return (sip_bad(SIP_TOO_BIG));
		break;
	}
	return (ALG_PASS);
}

/* The value of a Content-Length header ("l" compact) in a head, or -1. */
static long
sip_head_length(const uint8_t *p, size_t len)
{
	const uint8_t	*end = p + len, *eol, *v;
	size_t		 nlen;
	long		 cl;

	while (p < end) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		v = memchr(p, ':', (size_t)(eol - p));
		if (v != NULL) {
			nlen = (size_t)(v - p);
			while (nlen > 0 && (p[nlen - 1] == ' ' ||
			    p[nlen - 1] == '\t'))
				nlen--;
			if ((nlen == 14 && strncasecmp((const char *)p,
			    "Content-Length", 14) == 0) ||
			    (nlen == 1 && (*p == 'l' || *p == 'L'))) {
				for (v++; v < eol && (*v == ' ' || *v == '\t');
				    v++)
					;
				if (v == eol || *v < '0' || *v > '9')
					return (-1);
				for (cl = 0; v < eol && *v >= '0' && *v <= '9';
				    v++) {
					cl = cl * 10 + (*v - '0');
					if (cl > SIPNAT_MAX_PKT)
						return (-1);
				}
				return (cl);
			}
		}
		p = eol + 1;
	}
	return (-1);
}

/*
 * Do the bytes start like a SIP message: "SIP/2.0 " (a response) or a
 * method token and a space (a request)?  False also when too few.
 */
static bool
sip_start_line(const uint8_t *p, size_t len)
{
	static const char	tok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789"
				    "-.!%*_+`'~";
	size_t			n;

	if (len >= 8 && memcmp(p, "SIP/2.0 ", 8) == 0)
		return (true);
	for (n = 0; n < len && n < 32 && p[n] != '\0' &&
	    strchr(tok, p[n]) != NULL; n++)
		;
	return (n > 0 && n < len && p[n] == ' ');
}

/*
 * The stream handler for SIP over TCP: take the first whole message of
 * the bytes (RFC 3261 18.3: its head, then Content-Length bytes of body)
 * and rewrite it like a datagram.  CRLF keep-alives between messages
 * pass as they are.
 */
static ssize_t
sip_stream(struct alg_pkt *ap, const uint8_t *data, size_t len,
    uint8_t *out, size_t *outlen)
{
	enum sip_counter	 why;
	const uint8_t		*eoh;
	size_t			 k, head, total, scan;
	long			 cl;

	for (k = 0; k < len && (data[k] == '\r' || data[k] == '\n'); k++)
		;
	if (k > 0) {
		if (k > *outlen)
			return (-1);
		memcpy(out, data, k);
		*outlen = k;
		sip_count(SIP_KEEPALIVE);
		return ((ssize_t)k);
	}
	/* A stream picked up mid-message is no use: pass it on. */
	if (!sip_start_line(data, len))
		return (len < 32 ? 0 : -1);
	scan = len < sip.max_message ? len : sip.max_message;
	if ((eoh = memmem(data, scan, "\r\n\r\n", 4)) == NULL) {
		if (len < sip.max_message)
			return (0);
		sip_count(SIP_OVERSIZED);
		return (-1);
	}
	head = (size_t)(eoh - data) + 4;
	if ((cl = sip_head_length(data, head)) == -1) {
		/* Without it a stream cannot be framed (RFC 3261 18.3). */
		sip_count(SIP_PARSE_ERROR);
		return (-1);
	}
	total = head + (size_t)cl;
	if (len < total)
		return (0);
	sip_count(ap->dir == DIR_OUT ? SIP_MSG_OUT : SIP_MSG_IN);
	if (total > sip.max_message) {
		why = SIP_OVERSIZED;
		goto bad;
	}
	switch (sip_message(ap, data, total, out, outlen, &why)) {
	case -1:
		goto bad;
	case 1:
		return ((ssize_t)total);
	}
	goto same;
bad:
	if (sip_bad(why) == ALG_DROP) {
		*outlen = 0;
		return ((ssize_t)total);
	}
same:
	if (total > *outlen)
		return (-1);
	memcpy(out, data, total);
	*outlen = total;
	return ((ssize_t)total);
}

/* A packet of a stream's RTP mapping (nat.c watches it for us). */
static void
sip_media_watch(void *arg, const struct pkt *p, int dir, bool admitted)
{
	struct sip_media	*sm = arg;

	if (!admitted) {
		sm->filtered++;
		sm->filtered_from = p->src;
		return;
	}
	if (p->proto != IPPROTO_UDP || p->l4 == NULL || p->l4len < 8)
		return;
	rtp_stats_packet(&sm->rtp_stats[dir], p->l4 + 8, p->l4len - 8,
	    nat_now_us());
}

/*
 * A packet on a stream's RTCP mapping: RTP there (version 2, not an RTCP
 * packet type) means the far end sends its media to the wrong port.
 */
static void
sip_rtcp_watch(void *arg, const struct pkt *p, int dir, bool admitted)
{
	struct sip_media	*sm = arg;
	const uint8_t		*u;

	if (!admitted || dir != DIR_IN || p->proto != IPPROTO_UDP ||
	    p->l4 == NULL || p->l4len < 8 + 12)
		return;
	u = p->l4 + 8;
	if ((u[0] >> 6) == 2 && (u[1] < 192 || u[1] > 223))
		sm->rtp_on_rtcp++;
}

/*
 * A packet for a public port with no mapping: if it comes from a call's
 * far end, it sends media where the SDP did not say (rate limited: this
 * runs on packets that are dropped anyway).
 */
static void
sip_stray(const struct pkt *p)
{
	struct sip_dialog	*d;
	struct sip_media	*sm;
	unsigned		 i;

	if (p->proto != IPPROTO_UDP || sip.stray_tokens == 0)
		return;
	sip.stray_tokens--;
	LIST_FOREACH(d, &sip.dialogs, all) {
		for (i = 0; i < d->nmedia; i++) {
			sm = &d->media[i];
			if (sm->rtp != NULL && sm->rem_addr == p->src &&
			    (sm->rem_port == p->sport || sm->rem_port == 0)) {
				sm->stray++;
				sm->stray_port = p->dport;
				return;
			}
		}
	}
}

/* addr:port into buf. */
static const char *
sip_endpoint(char *buf, size_t len, uint32_t addr, uint16_t port)
{
	char		a[INET_ADDRSTRLEN];
	struct in_addr	ia = { .s_addr = addr };

	inet_ntop(AF_INET, &ia, a, sizeof a);
	snprintf(buf, len, "%s:%u", a, port);
	return (buf);
}

/* Why RTP of a stream does not flow in direction dir, as far as we see. */
static void
sip_one_way_cause(const struct sip_media *sm, int dir, char *buf,
    size_t len)
{
	const struct rtp_stats	*r = &sm->rtp_stats[dir];
	char			 a[32];
	struct in_addr		 ia;

	if (dir == DIR_OUT) {
		sip_endpoint(a, sizeof a, sm->rtp->in_addr, sm->rtp->in_port);
		if (r->packets == 0)
			snprintf(buf, len, "the phone never sent from %s", a);
		else
			snprintf(buf, len, "the phone stopped sending from %s",
			    a);
		return;
	}
	if (sm->stray > 0)
		snprintf(buf, len, "the far end sends to public port %u, not "
		    "to %u as the SDP says", sm->stray_port,
		    sm->rtp->pub_port);
	else if (sm->rtp_on_rtcp > 0)
		snprintf(buf, len, "the far end sends RTP to the RTCP port %u, "
		    "not to %u as the SDP says", sm->rtcp->pub_port,
		    sm->rtp->pub_port);
	else if (sm->filtered > 0) {
		ia.s_addr = sm->filtered_from;
		inet_ntop(AF_INET, &ia, a, sizeof a);
		snprintf(buf, len, "the filter dropped %llu packets from %s",
		    (unsigned long long)sm->filtered, a);
	} else if (r->packets == 0)
		snprintf(buf, len, "nothing ever arrived at public port %u",
		    sm->rtp->pub_port);
	else
		snprintf(buf, len, "nothing arrives at public port %u any "
		    "more", sm->rtp->pub_port);
}

/*
 * One-way audio: the call is up, RTP flows one way and has not come the
 * other way for sip.one_way_alarm seconds.  Warn once, with the cause we
 * can see, and say when it recovers.  Streams on hold are left alone.
 */
static void
sip_media_check(struct sip_dialog *d, struct sip_media *sm, uint64_t now)
{
	uint64_t		 n = (uint64_t)sip.one_way_alarm * 1000000;
	uint64_t		 now_us = nat_now_us();
	const struct rtp_stats	*miss, *flow;
	char			 cause[160];
	int			 dir;
	bool			 missing, flowing;

	if (sm->rtp == NULL || sm->held || d->state != SIP_CONFIRMED ||
	    d->confirmed + sip.one_way_alarm > now)
		return;
	for (dir = DIR_OUT; dir <= DIR_IN; dir++) {
		miss = &sm->rtp_stats[dir];
		flow = &sm->rtp_stats[dir == DIR_OUT ? DIR_IN : DIR_OUT];
		missing = miss->packets == 0 || miss->last_us + n <= now_us;
		flowing = flow->packets > 0 && flow->first_us + n <= now_us &&
		    flow->last_us + 2000000 > now_us;
		if (missing && flowing && !sm->alarm[dir]) {
			sm->alarm[dir] = true;
			sip_count(SIP_ALARM_ONE_WAY);
			sip_one_way_cause(sm, dir, cause, sizeof cause);
			log_warnx("sip: one-way audio on call %s (%s): nothing "
			    "from the %s reaches the %s for %u s: %s",
			    d->call_id, sm->type, dir == DIR_IN ? "far end" :
			    "phone", dir == DIR_IN ? "phone" : "far end",
			    sip.one_way_alarm, cause);
			sip_call_event(d, "ALARM one-way audio (%s): no %s "
			    "RTP: %s", sm->type, dir == DIR_IN ? "inbound" : "outbound",
			    cause);
		} else if (!missing && sm->alarm[dir]) {
			sm->alarm[dir] = false;
			log_info("sip: call %s (%s): %s RTP flows again",
			    d->call_id, sm->type, dir == DIR_IN ? "inbound" :
			    "outbound");
			sip_call_event(d, "%s RTP flows again", dir == DIR_IN ?
			    "inbound" : "outbound");
		}
	}
}

/* A confirmed call's session timer ran out without a refresh. */
static void
sip_refresh_check(struct sip_dialog *d, uint64_t now)
{
	if (d->state != SIP_CONFIRMED || d->session_expires == 0 ||
	    d->refresh_alarm || d->refreshed + d->session_expires > now)
		return;
	d->refresh_alarm = true;
	sip_count(SIP_MISSED_REFRESH);
	log_warnx("sip: call %s missed its session refresh: Session-Expires "
	    "%u s, last refresh %llu s ago; last signalling: %s", d->call_id,
	    d->session_expires, (unsigned long long)(now - d->refreshed),
	    d->last_sig);
	sip_call_event(d, "ALARM no session refresh within "
	    "Session-Expires %u s", d->session_expires);
}

/* The last packet seen on any session of a mapping. */
static uint64_t
sip_mapping_last(const struct nat_mapping *m)
{
	const struct nat_session	*s;
	uint64_t			 last = 0;

	if (m == NULL)
		return (0);
	LIST_FOREACH(s, &m->sessions, entry)
		if (s->last > last)
			last = s->last;
	return (last);
}

/*
 * Once a second: dialogs idle (no signalling and no media) for the
 * dialog timeout end; registrations past their Expires end.
 */
static void
sip_tick(uint64_t now)
{
	struct sip_dialog	*d, *dn;
	struct sip_reg		*r, *rn;
	uint64_t		 last;
	unsigned		 i;

	sip.stray_tokens = SIP_STRAY_RATE;
	for (d = LIST_FIRST(&sip.dialogs); d != NULL; d = dn) {
		dn = LIST_NEXT(d, all);
		last = d->last;
		for (i = 0; i < d->nmedia; i++) {
			if (sip_mapping_last(d->media[i].rtp) > last)
				last = sip_mapping_last(d->media[i].rtp);
			if (sip.one_way_alarm != 0)
				sip_media_check(d, &d->media[i], now);
		}
		sip_refresh_check(d, now);
		if (last + sip.dialog_timeout <= now) {
			/* Calls end by BYE: this one was dropped. */
			log_warnx("sip: call %s ended without BYE: no "
			    "signalling or media for %u s; last signalling: "
			    "%s, %llu s ago", d->call_id, sip.dialog_timeout,
			    d->last_sig, (unsigned long long)(now - d->last));
			sip_count(SIP_DIALOG_TIMEOUT);
			sip_count(SIP_DIALOG_NO_BYE);
			sip_dialog_end(d);
		}
	}
	for (r = LIST_FIRST(&sip.regs); r != NULL; r = rn) {
		rn = LIST_NEXT(r, entry);
		/* A REGISTER never answered goes after 64 * T1. */
		if ((r->expires != 0 && r->expires + SIP_REG_GRACE <= now) ||
		    (r->expires == 0 && r->pinhole == NULL &&
		    r->sent + SIP_REG_PENDING <= now)) {
			if (r->expires != 0)
				sip_count(SIP_REG_EXPIRED);
			sip_reg_free(r);
		}
	}
}

/* Is this port one of the SIP ports (normalised or not)? */
static bool
sip_port_listed(uint16_t port)
{
	int	i;

	for (i = 0; i < sip.nports; i++)
		if (sip.ports[i].port == port)
			return (true);
	return (false);
}

/* Capture filter "sip": UDP or TCP to or from a SIP port. */
static bool
sip_capture_sip(const struct pkt *p, void *arg)
{
	return ((p->proto == IPPROTO_UDP || p->proto == IPPROTO_TCP) &&
	    (sip_port_listed(p->sport) || sip_port_listed(p->dport)));
}

/* Does a packet have this endpoint as its source or destination? */
static bool
sip_pkt_has(const struct pkt *p, uint32_t addr, uint16_t port)
{
	return ((p->src == addr && p->sport == port) ||
	    (p->dst == addr && p->dport == port));
}

/* Does a packet belong to a mapping, on either side of it? */
static bool
sip_pkt_on(const struct pkt *p, const struct nat_mapping *m)
{
	return (m != NULL && p->proto == m->proto &&
	    (sip_pkt_has(p, m->in_addr, m->in_port) ||
	    sip_pkt_has(p, sip.pub, m->pub_port)));
}

/*
 * What a "call" capture knows of its call: the Call-ID, and the phone's
 * signalling once seen, kept past the end of the dialog so that the BYE
 * and its answer are captured both sides too.
 */
struct sip_capture_arg {
	char		*call_id;
	bool		 known;
	uint8_t		 proto;
	uint32_t	 phone;
	uint16_t	 in_port;
	uint16_t	 pub_port;
};

/* Free a "call" capture's argument. */
static void
sip_capture_free(void *arg)
{
	struct sip_capture_arg	*a = arg;

	free(a->call_id);
	free(a);
}

/*
 * Capture filter "call CALL-ID": the phone's signalling (its mapping, so
 * other calls of the phone too) and the call's media, both sides.
 */
static bool
sip_capture_call(const struct pkt *p, void *arg)
{
	struct sip_capture_arg	*a = arg;
	const struct sip_dialog	*d;
	unsigned		 i;

	if (!pkt_has_ports(p->proto))
		return (false);
	if ((d = sip_dialog_find(a->call_id)) != NULL) {
		a->known = true;
		a->proto = d->sig_proto;
		a->phone = d->phone;
		a->in_port = d->sig_in_port;
		a->pub_port = d->sig_pub_port;
	}
	if (a->known && p->proto == a->proto &&
	    (sip_pkt_has(p, a->phone, a->in_port) ||
	    sip_pkt_has(p, sip.pub, a->pub_port)))
		return (true);
	if (d == NULL)
		return (false);
	for (i = 0; i < d->nmedia; i++)
		if (sip_pkt_on(p, d->media[i].rtp) ||
		    sip_pkt_on(p, d->media[i].rtcp))
			return (true);
	return (false);
}

/*
 * The capture filters this helper offers: "sip", and "call CALL-ID" for a
 * call that exists.
 */
static int
sip_capture(const char *mode, const char *arg, capture_filter_cb *cb,
    void **cb_arg, void (**cb_free)(void *))
{
	struct sip_capture_arg	*a;

	if (strcmp(mode, "sip") == 0 && arg == NULL) {
		*cb = sip_capture_sip;
		*cb_arg = NULL;
		*cb_free = NULL;
		return (0);
	}
	if (strcmp(mode, "call") == 0 && arg != NULL &&
	    sip_dialog_find(arg) != NULL) {
		if ((a = calloc(1, sizeof *a)) == NULL ||
		    (a->call_id = strdup(arg)) == NULL) {
			free(a);
			return (-1);
		}
		*cb_arg = a;
		*cb = sip_capture_call;
		*cb_free = sip_capture_free;
		return (0);
	}
	return (-1);
}

/* Free everything at exit. */
static void
sip_shutdown(void)
{
	while (!LIST_EMPTY(&sip.dialogs))
		sip_dialog_end(LIST_FIRST(&sip.dialogs));
	while (!LIST_EMPTY(&sip.regs))
		sip_reg_free(LIST_FIRST(&sip.regs));
}

/* Counters and gauges for sipnatctl stats. */
static void
sip_stats(alg_stat_cb cb, void *arg)
{
	int	i;

	for (i = 0; i < SIP_COUNTER_MAX; i++)
		cb(sip_counter_names[i], sip.counters[i], false, arg);
	cb("sip.dialogs", sip.ndialogs, true, arg);
	cb("sip.registrations", sip.nregs, true, arg);
}

/* Append a JSON string (Call-IDs and URIs come from the network). */
static void
sip_json_str(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			evbuffer_add_printf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			evbuffer_add_printf(out, "\\u%04x", (unsigned char)*s);
		else
			evbuffer_add(out, s, 1);
	}
	evbuffer_add(out, "\"", 1);
}

/* sipnatctl registrations */
static void
sip_cmd_registrations(int argc, char **argv, bool json, struct evbuffer *out)
{
	struct sip_reg	*r;
	char		 in[32], pub[32];
	uint64_t	 now = nat_now();
	long		 left;
	bool		 first = true;

	if (json)
		evbuffer_add_printf(out, "{\"registrations\":[");
	else
		evbuffer_add_printf(out, "%-32s %-21s %-21s %s\n", "AOR",
		    "INSIDE", "PUBLIC", "EXPIRES");
	LIST_FOREACH(r, &sip.regs, entry) {
		if (r->pinhole == NULL)
			continue;
		sip_endpoint(in, sizeof in, r->map->in_addr, r->map->in_port);
		sip_endpoint(pub, sizeof pub, sip.pub,
		    r->map->pub_port);
		left = r->expires > now ? (long)(r->expires - now) : 0;
		if (json) {
			evbuffer_add_printf(out, "%s{\"aor\":", first ? "" : ",");
			sip_json_str(out, r->aor);
			evbuffer_add_printf(out, ",\"inside\":\"%s\","
			    "\"public\":\"%s\",\"expires_in\":%ld}", in, pub,
			    left);
		} else
			evbuffer_add_printf(out, "%-32s %-21s %-21s %ld\n",
			    r->aor, in, pub, left);
		first = false;
	}
	if (json)
		evbuffer_add_printf(out, "]}\n");
}

/* One direction of a stream's RTP, as JSON. */
static void
sip_json_rtp(struct evbuffer *out, const char *name, const struct rtp_stats *r)
{
	evbuffer_add_printf(out, "\"%s\":{\"packets\":%llu,\"bytes\":%llu,"
	    "\"expected\":%llu,\"lost\":%llu,\"reordered\":%u,"
	    "\"jitter_ms\":%.2f}", name, (unsigned long long)r->packets,
	    (unsigned long long)r->bytes,
	    (unsigned long long)rtp_stats_expected(r),
	    (unsigned long long)rtp_stats_lost(r), r->reordered,
	    rtp_stats_jitter_ms(r));
}

/* One direction of a stream's RTP, for people. */
static void
sip_text_rtp(struct evbuffer *out, const char *name, const struct rtp_stats *r)
{
	evbuffer_add_printf(out, "      %-8s %llu packets, %llu bytes, lost "
	    "%llu of %llu, reordered %u, jitter %.1f ms\n", name,
	    (unsigned long long)r->packets, (unsigned long long)r->bytes,
	    (unsigned long long)rtp_stats_lost(r),
	    (unsigned long long)rtp_stats_expected(r), r->reordered,
	    rtp_stats_jitter_ms(r));
}

/* One media stream of a call, human or JSON. */
static void
sip_show_media(struct evbuffer *out, const struct sip_media *sm, bool json,
    bool first)
{
	char		in[32], pub[32], rem[32];
	const struct rtp_stats *o = &sm->rtp_stats[DIR_OUT];
	const struct rtp_stats *i = &sm->rtp_stats[DIR_IN];

	sip_endpoint(in, sizeof in, sm->rtp->in_addr, sm->rtp->in_port);
	sip_endpoint(pub, sizeof pub, sip.pub, sm->rtp->pub_port);
	sip_endpoint(rem, sizeof rem, sm->rem_addr, sm->rem_port);
	if (json) {
		evbuffer_add_printf(out, "%s{\"type\":\"%s\",\"inside\":\"%s\","
		    "\"public\":\"%s\",\"remote\":\"%s\",\"rtcp_public\":%u,"
		    "\"packets_out\":%llu,\"packets_in\":%llu,\"on_hold\":%s,"
		    "\"one_way_alarm\":%s,\"filtered\":%llu,"
		    "\"stray\":%llu,\"stray_port\":%u,",
		    first ? "" : ",", sm->type, in, pub, rem,
		    sm->rtcp->pub_port, (unsigned long long)o->packets,
		    (unsigned long long)i->packets, sm->held ? "true" : "false",
		    sm->alarm[DIR_IN] ? "\"inbound\"" : sm->alarm[DIR_OUT] ?
		    "\"outbound\"" : "null", (unsigned long long)sm->filtered,
		    (unsigned long long)sm->stray, sm->stray_port);
		sip_json_rtp(out, "out", o);
		evbuffer_add(out, ",", 1);
		sip_json_rtp(out, "in", i);
		evbuffer_add(out, "}", 1);
		return;
	}
	evbuffer_add_printf(out, "    %-6s inside %-21s public %-21s "
	    "remote %-21s out %llu in %llu loss %llu/%llu jitter %.1f/%.1f "
	    "ms%s%s\n", sm->type, in, pub, rem,
	    (unsigned long long)o->packets, (unsigned long long)i->packets,
	    (unsigned long long)rtp_stats_lost(o),
	    (unsigned long long)rtp_stats_lost(i), rtp_stats_jitter_ms(o),
	    rtp_stats_jitter_ms(i), sm->held ? " (on hold)" : "",
	    sm->alarm[DIR_IN] ? " ONE-WAY: no inbound" : sm->alarm[DIR_OUT] ?
	    " ONE-WAY: no outbound" : "");
}

/* A call's head: Call-ID, state, direction, parties, age. */
static void
sip_show_call(struct evbuffer *out, const struct sip_dialog *d, bool json)
{
	if (!json) {
		evbuffer_add_printf(out, "%s %s %s %s -> %s\n", d->call_id,
		    sip_state_names[d->state], d->outgoing ? "outgoing" :
		    "incoming", d->from, d->to);
		return;
	}
	evbuffer_add_printf(out, "{\"call_id\":");
	sip_json_str(out, d->call_id);
	evbuffer_add_printf(out, ",\"state\":\"%s\",\"direction\":\"%s\","
	    "\"from\":", sip_state_names[d->state], d->outgoing ? "outgoing" :
	    "incoming");
	sip_json_str(out, d->from);
	evbuffer_add_printf(out, ",\"to\":");
	sip_json_str(out, d->to);
	evbuffer_add_printf(out, ",\"age\":%llu,\"last_signalling\":",
	    (unsigned long long)(nat_now() - d->created));
	sip_json_str(out, d->last_sig);
	evbuffer_add_printf(out, ",\"session_expires\":%u,\"media\":[",
	    d->session_expires);
}

/* A call's media streams. */
static void
sip_show_streams(struct evbuffer *out, const struct sip_dialog *d,
    bool json)
{
	unsigned	i;
	bool		first = true;

	for (i = 0; i < d->nmedia; i++) {
		if (d->media[i].rtp == NULL)
			continue;
		sip_show_media(out, &d->media[i], json, first);
		first = false;
	}
	if (json)
		evbuffer_add(out, "]", 1);
}

/* sipnatctl calls */
static void
sip_cmd_calls(int argc, char **argv, bool json, struct evbuffer *out)
{
	struct sip_dialog	*d;
	bool			 first = true;

	if (json)
		evbuffer_add_printf(out, "{\"calls\":[");
	LIST_FOREACH(d, &sip.dialogs, all) {
		if (json && !first)
			evbuffer_add(out, ",", 1);
		sip_show_call(out, d, json);
		sip_show_streams(out, d, json);
		if (json)
			evbuffer_add(out, "}", 1);
		first = false;
	}
	if (json)
		evbuffer_add_printf(out, "]}\n");
	else if (first)
		evbuffer_add_printf(out, "no calls\n");
}

/* sipnatctl call CALL-ID: one call in full, with its events. */
static void
sip_cmd_call(int argc, char **argv, bool json, struct evbuffer *out)
{
	const struct sip_dialog		*d;
	const struct sip_media		*sm;
	const struct sip_call_ev	*e;
	unsigned			 i, n, first;

	if (argc != 2) {
		evbuffer_add_printf(out, json ? "{\"error\":\"usage: call "
		    "CALL-ID\"}\n" : "usage: call CALL-ID\n");
		return;
	}
	if ((d = sip_dialog_find(argv[1])) == NULL) {
		evbuffer_add_printf(out, json ?
		    "{\"error\":\"no such call\"}\n" : "no such call\n");
		return;
	}
	n = d->nevents < SIP_EVENTS ? d->nevents : SIP_EVENTS;
	first = d->nevents - n;
	sip_show_call(out, d, json);
	if (!json) {
		evbuffer_add_printf(out, "  age %llu s, last signalling: %s",
		    (unsigned long long)(nat_now() - d->created), d->last_sig);
		if (d->session_expires != 0)
			evbuffer_add_printf(out, ", Session-Expires %u s, "
			    "refreshed %llu s ago", d->session_expires,
			    (unsigned long long)(nat_now() - d->refreshed));
		evbuffer_add_printf(out, "\n  media:\n");
		for (i = 0; i < d->nmedia; i++) {
			if (d->media[i].rtp == NULL)
				continue;
			sip_show_media(out, &d->media[i], false, i == 0);
			sm = &d->media[i];
			sip_text_rtp(out, "out", &sm->rtp_stats[DIR_OUT]);
			sip_text_rtp(out, "in", &sm->rtp_stats[DIR_IN]);
		}
		evbuffer_add_printf(out, "  events:\n");
	} else {
		sip_show_streams(out, d, true);
		evbuffer_add_printf(out, ",\"events\":[");
	}
	for (i = first; i < d->nevents; i++) {
		e = &d->events[i % SIP_EVENTS];
		if (json) {
			evbuffer_add_printf(out, "%s{\"age\":%llu,\"text\":",
			    i == first ? "" : ",",
			    (unsigned long long)(nat_now() - e->when));
			sip_json_str(out, e->text);
			evbuffer_add(out, "}", 1);
		} else
			evbuffer_add_printf(out, "    -%llus %s\n",
			    (unsigned long long)(nat_now() - e->when), e->text);
	}
	if (json)
		evbuffer_add_printf(out, "]}\n");
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void
sip_metrics_label(struct evbuffer *out, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(out, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

/* One family of per-stream series: what(sm, dir) for each live stream. */
static void
sip_metrics_family(struct evbuffer *out, const char *name, const char *help,
    double (*what)(const struct sip_media *, int))
{
	const struct sip_dialog	*d;
	unsigned		 i;
	int			 dir;

	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help,
	    name);
	LIST_FOREACH(d, &sip.dialogs, all) {
		for (i = 0; i < d->nmedia; i++) {
			if (d->media[i].rtp == NULL)
				continue;
			for (dir = DIR_OUT; dir <= DIR_IN; dir++) {
				evbuffer_add_printf(out, "%s{call_id=\"", name);
				sip_metrics_label(out, d->call_id);
				evbuffer_add_printf(out, "\",stream=\"%u\","
				    "media=\"%s\",direction=\"%s\"} %.6g\n", i,
				    d->media[i].type, dir == DIR_OUT ? "out" :
				    "in", what(&d->media[i], dir));
			}
		}
	}
}

static double
sip_m_packets(const struct sip_media *sm, int dir)
{
	return ((double)sm->rtp_stats[dir].packets);
}

static double
sip_m_lost(const struct sip_media *sm, int dir)
{
	return ((double)rtp_stats_lost(&sm->rtp_stats[dir]));
}

static double
sip_m_jitter(const struct sip_media *sm, int dir)
{
	return (rtp_stats_jitter_ms(&sm->rtp_stats[dir]) / 1000.0);
}

static double
sip_m_alarm(const struct sip_media *sm, int dir)
{
	return (sm->alarm[dir] ? 1 : 0);
}

/* The calls' media quality, per stream and direction. */
static void
sip_metrics(struct evbuffer *out)
{
	sip_metrics_family(out, "sipnat_rtp_packets", "RTP packets seen",
	    sip_m_packets);
	sip_metrics_family(out, "sipnat_rtp_lost", "RTP packets lost "
	    "(RFC 3550 A.3)", sip_m_lost);
	sip_metrics_family(out, "sipnat_rtp_jitter_seconds", "RTP "
	    "interarrival jitter (RFC 3550 A.8)", sip_m_jitter);
	sip_metrics_family(out, "sipnat_rtp_one_way_alarm", "1 while RTP "
	    "does not arrive this way", sip_m_alarm);
}

static const struct alg_cmd sip_cmds[] = {
	{
		.name = "registrations",
		.usage = "registrations",
		.exec = sip_cmd_registrations,
	},
	{
		.name = "calls",
		.usage = "calls",
		.exec = sip_cmd_calls,
	},
	{
		.name = "call",
		.usage = "call CALL-ID",
		.exec = sip_cmd_call,
	},
	{ .name = NULL }
};

const struct alg alg_sip = {
	.name = "sip",
	.match = sip_match,
	.handle = sip_handle,
	.stream = sip_stream,
	.configure = sip_configure,
	.tick = sip_tick,
	.stray = sip_stray,
	.capture = sip_capture,
	.metrics = sip_metrics,
	.shutdown = sip_shutdown,
	.stats = sip_stats,
	.cmds = sip_cmds,
};
