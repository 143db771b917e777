/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <netinet/in.h>
#include <string.h>

#include "alg.h"

/*
 * The translation engine: every packet read from the TUN comes through
 * nat_input().  Packets from the LAN get the public source address and
 * port and leave on the uplink; packets to the public address get the
 * inside destination back and go into the TUN; ICMP errors are translated
 * with the packet they quote (RFC 5508).  Checksums are updated in place.
 */

#define ICMP_UNREACH		3
#define ICMP_UNREACH_NEEDFRAG	4
#define ICMP_UNREACH_ADMIN	13
#define ICMP_ECHOREPLY		0
#define ICMP_ECHO		8
#define ICMP_RATE		100	/* errors sipnatd makes, per second */
#define ICMP_QUOTE		548	/* quoted bytes: a 576-byte error */

static struct {
	const struct nat_io	*io;
	const struct config	*conf;
	uint32_t		 pub;
	unsigned		 wan_mtu;
	enum filtering		 filtering;
	bool			 mss_clamp;
	unsigned		 icmp_tokens;
	uint8_t			 icmp[IP_HDR_MIN + 8 + ICMP_QUOTE];
	uint8_t			 edit[SIPNAT_MAX_PKT];
	struct stream_io	 sio;
} n;

static void	nat_inbound(struct pkt *);
static void	nat_out_send(struct pkt *, struct nat_session *);
static void	nat_in_send(struct pkt *, struct nat_session *);
static unsigned	nat_stream_mtu(enum nat_dir);
static void	nat_stream_to_receiver(struct pkt *, struct nat_session *,
		    enum nat_dir);
static void	nat_stream_to_sender(struct pkt *, enum nat_dir);

/* Set up the table and fragment buffers for a configuration. */
int
nat_init(const struct config *c, const struct nat_io *io)
{
	memset(&n, 0, sizeof n);
	n.io = io;
	n.icmp_tokens = ICMP_RATE;
	if (nat_table_init(c, nat_now()) == -1)
		return (-1);
	if (frag_init(c->frag_memory, c->to_frag) == -1)
		return (-1);
	nat_configure(c);
	return (0);
}

/* Apply a (re)loaded configuration's live settings. */
void
nat_configure(const struct config *c)
{
	n.conf = c;
	n.pub = c->wan_addr;
	n.wan_mtu = (unsigned)c->wan_mtu;
	n.filtering = c->filtering;
	n.mss_clamp = c->mss_clamp;
	nat_table_configure(c);
	frag_configure(c->frag_memory, c->to_frag);
	n.sio.pub = c->wan_addr;
	n.sio.mtu = nat_stream_mtu;
	n.sio.to_receiver = nat_stream_to_receiver;
	n.sio.to_sender = nat_stream_to_sender;
	stream_configure(c->stream_buffer, c->stream_memory, &n.sio);
}

/* Once a second: expire sessions and fragments, refill ICMP tokens. */
void
nat_tick(uint64_t now)
{
	nat_table_expire(now);
	frag_expire(now);
	stream_tick(now);
	alg_tick(now);
	n.icmp_tokens = ICMP_RATE;
}

/* Hand a packet to the uplink, counting the outcome. */
static int
nat_emit_wan(const uint8_t *buf, size_t len, void *arg)
{
	/* The uplink counts what the kernel really took. */
	if (n.io->to_wan(buf, len) == -1) {
		stat_inc(STAT_DROP_UPLINK);
		return (-1);
	}
	return (0);
}

/* Send to the WAN, fragmenting what the uplink MTU cannot carry. */
static void
nat_send_wan(struct pkt *p)
{
	if (p->len <= n.wan_mtu) {
		nat_emit_wan(p->buf, p->len, NULL);
		return;
	}
	/*
	 * Too big with DF set was answered before translation; a packet
	 * that only grew under a helper is cut regardless: we made it big.
	 */
	if (frag_output(p->buf, p->len, n.wan_mtu, nat_emit_wan, NULL) == -1)
		stat_inc(STAT_DROP_UPLINK);
}

/* Send a LAN-bound packet whose source is the public address. */
static int
nat_lan_routed(const uint8_t *buf, size_t len)
{
	if (n.io->to_lan_routed != NULL)
		return (n.io->to_lan_routed(buf, len));
	return (n.io->to_lan(buf, len));
}

/*
 * Deliver a packet to the LAN.  A packet from a remote host goes into the
 * TUN for the kernel to route; the kernel decremented the TTL on the way
 * into the TUN and will again on the way out, so give one back: a NAT hop
 * should cost one, like a router.  A packet from the public address itself
 * (hairpinned, or an error sipnatd made) goes out of the raw socket: the
 * kernel's reverse path check refuses a local source arriving on the TUN.
 */
static void
nat_send_lan(struct pkt *p)
{
	uint8_t	ttl = p->buf[8];
	int	r;

	if (p->src == n.pub)
		r = nat_lan_routed(p->buf, p->len);
	else {
		if (ttl < 255)
			pkt_set_ttl(p, ttl + 1);
		r = n.io->to_lan(p->buf, p->len);
	}
	if (r == -1) {
		stat_inc(STAT_DROP_TUN);
		return;
	}
	stat_inc(STAT_PKT_OUT_LAN);
	stat_add(STAT_BYTES_OUT_LAN, p->len);
}

/*
 * A packet for the gateway itself that the NAT rules brought here: an
 * echo reply to the gateway's own ping whose id falls in the NAT range.
 * Back into the TUN, unchanged: unmarked, the kernel delivers it locally.
 */
static void
nat_to_gateway(struct pkt *p)
{
	if (n.io->to_lan(p->buf, p->len) == -1) {
		stat_inc(STAT_DROP_TUN);
		return;
	}
	stat_inc(STAT_TO_GATEWAY);
}

/*
 * Answer a LAN packet with an ICMP error from the public address:
 * fragmentation needed (mtu set) or administratively prohibited.  Never
 * about an ICMP error or a later fragment, and rate limited.
 */
static void
nat_icmp_to_lan(const struct pkt *p, uint8_t type, uint8_t code,
    uint16_t mtu)
{
	uint8_t		*ip = n.icmp, *icmp = n.icmp + IP_HDR_MIN;
	size_t		 quote = p->len < ICMP_QUOTE ? p->len : ICMP_QUOTE;
	size_t		 len = IP_HDR_MIN + 8 + quote;
	uint16_t	 w;

	if (p->proto == IPPROTO_ICMP && pkt_icmp_is_error(p->icmp_type))
		return;
	if ((p->buf[6] & 0x1f) != 0 || p->buf[7] != 0)
		return;
	if (n.icmp_tokens == 0)
		return;
	n.icmp_tokens--;
	memset(ip, 0, IP_HDR_MIN + 8);
	ip[0] = 0x45;
	ip[1] = 0xc0;
	w = htons((uint16_t)len);
	memcpy(ip + 2, &w, 2);
	ip[8] = 64;
	ip[9] = IPPROTO_ICMP;
	memcpy(ip + 12, &n.pub, 4);
	memcpy(ip + 16, &p->src, 4);
	w = cksum(ip, IP_HDR_MIN, 0);
	memcpy(ip + 10, &w, 2);
	icmp[0] = type;
	icmp[1] = code;
	w = htons(mtu);
	memcpy(icmp + 6, &w, 2);
	memcpy(icmp + 8, p->buf, quote);
	w = cksum(icmp, 8 + quote, 0);
	memcpy(icmp + 2, &w, 2);
	if (nat_lan_routed(ip, len) == -1) {
		stat_inc(STAT_DROP_TUN);
		return;
	}
	stat_inc(STAT_ICMP_SENT);
}

/* Count a refused new flow and tell the LAN host (RFC 5508 REQ-8). */
static void
nat_refuse(const struct pkt *p, enum nat_refusal why)
{
	stat_inc(why == NAT_REFUSED_PORT ? STAT_DROP_NO_PORT : STAT_DROP_LIMIT);
	nat_icmp_to_lan(p, ICMP_UNREACH, ICMP_UNREACH_ADMIN, 0);
}

/* Recompute an ICMP message's checksum after its quote changed. */
static void
nat_icmp_recksum(struct pkt *p)
{
	uint16_t	w;

	p->l4[2] = p->l4[3] = 0;
	w = cksum(p->l4, p->l4len, 0);
	memcpy(p->l4 + 2, &w, 2);
}

/*
 * An ICMP error from a LAN host about a packet that came in through us:
 * the quoted packet runs remote -> inside, and becomes remote -> public.
 */
static void
nat_icmp_error_out(struct pkt *p)
{
	struct nat_session	*s;
	struct pkt		 q;
	uint16_t		 rport;

	if (pkt_parse_inner(&q, p->l4 + 8, p->l4len - 8) != PKT_OK) {
		stat_inc(STAT_DROP_MALFORMED);
		return;
	}
	rport = q.proto == IPPROTO_ICMP ? 0 : q.sport;
	s = nat_session_out(q.proto, q.dst, q.dport, q.src, rport);
	if (s == NULL || q.src != p->dst) {
		stat_inc(STAT_DROP_ICMP_UNMATCHED);
		return;
	}
	pkt_set_dst(&q, n.pub, s->map->pub_port);
	nat_icmp_recksum(p);
	pkt_set_src(p, n.pub, 0);
	stat_inc(STAT_ICMP_ERR_OUT);
	nat_send_wan(p);
}

/*
 * An ICMP error from the WAN about a packet we sent: the quoted packet
 * runs public -> remote, and becomes inside -> remote (RFC 5508 REQ-3).
 * Errors never end a session.
 */
static void
nat_icmp_error_in(struct pkt *p)
{
	struct nat_session	*s;
	struct nat_mapping	*m;
	struct pkt		 q;
	uint16_t		 rport;

	if (pkt_parse_inner(&q, p->l4 + 8, p->l4len - 8) != PKT_OK) {
		stat_inc(STAT_DROP_MALFORMED);
		return;
	}
	rport = q.proto == IPPROTO_ICMP ? 0 : q.dport;
	s = nat_session_in(q.proto, q.sport, q.dst, rport);
	if (s == NULL || q.src != n.pub) {
		stat_inc(STAT_DROP_ICMP_UNMATCHED);
		return;
	}
	m = s->map;
	pkt_set_src(&q, m->in_addr, m->in_port);
	nat_icmp_recksum(p);
	pkt_set_dst(p, m->in_addr, 0);
	stat_inc(STAT_ICMP_ERR_IN);
	nat_send_lan(p);
}

/*
 * The payload a helper reads: after the UDP header.  (TCP streams are
 * the helper's own business.)
 */
uint8_t *
nat_payload(const struct alg_pkt *ap, size_t *len)
{
	const struct pkt	*p = ap->p;

	if (p->proto != IPPROTO_UDP || p->l4 == NULL || p->l4len < 8) {
		*len = 0;
		return (NULL);
	}
	*len = p->l4len - 8;
	return (p->l4 + 8);
}

/*
 * Replace a UDP packet's payload: the packet is rebuilt in a buffer of
 * the core's with the IP and UDP lengths set; the checksum is computed
 * after translation.  Returns -1 if it would not fit in a datagram.
 */
int
nat_payload_replace(struct alg_pkt *ap, const uint8_t *data, size_t len)
{
	struct pkt	*p = ap->p;
	size_t		 hdr = p->hl + 8;
	uint16_t	 w;

	if (p->proto != IPPROTO_UDP || p->l4 == NULL ||
	    hdr + len > SIPNAT_MAX_PKT)
		return (-1);
	if (p->buf != n.edit)
		memcpy(n.edit, p->buf, hdr);
	memmove(n.edit + hdr, data, len);
	p->buf = n.edit;
	p->l4 = n.edit + p->hl;
	p->len = hdr + len;
	p->l4len = 8 + len;
	w = htons((uint16_t)p->len);
	memcpy(p->buf + 2, &w, 2);
	p->buf[10] = p->buf[11] = 0;
	w = cksum(p->buf, p->hl, 0);
	memcpy(p->buf + 10, &w, 2);
	w = htons((uint16_t)p->l4len);
	memcpy(p->l4 + 4, &w, 2);
	p->edited = true;
	return (0);
}

/*
 * Let a helper see the packet; false if it must not be sent on (dropped,
 * or a TCP stream sent what was needed itself).  A TCP connection that a
 * helper reads as a stream stays one, with its sequence numbers shifted,
 * even if the helper lets it go.
 */
static bool
nat_helper(struct pkt *p, enum nat_dir dir, struct nat_session *s)
{
	const struct alg	*a;
	struct alg_pkt		 ap;

	a = alg_find(p, dir);
	ap.p = p;
	ap.dir = dir;
	ap.s = s;
	ap.pub = n.pub;
	if (p->proto == IPPROTO_TCP) {
		if (a != NULL && a->stream == NULL)
			a = NULL;
		if (a == NULL && s->stream == NULL)
			return (true);
		return (stream_segment(&ap, a));
	}
	if (a == NULL)
		return (true);
	if (a->handle(&ap) == ALG_DROP) {
		stat_inc(STAT_DROP_ALG);
		return (false);
	}
	return (true);
}

/* The MTU toward the receiver of a stream's direction. */
static unsigned
nat_stream_mtu(enum nat_dir dir)
{
	return (dir == DIR_OUT ? n.wan_mtu : (unsigned)n.conf->tun_mtu);
}

/* A segment a stream made from the sender's: translate, send on. */
static void
nat_stream_to_receiver(struct pkt *p, struct nat_session *s,
    enum nat_dir dir)
{
	if (dir == DIR_OUT)
		nat_out_send(p, s);
	else
		nat_in_send(p, s);
}

/* A stream's own ACK to a sender, addressed already. */
static void
nat_stream_to_sender(struct pkt *p, enum nat_dir dir)
{
	if (dir == DIR_OUT) {
		if (n.io->to_lan(p->buf, p->len) == -1)
			stat_inc(STAT_DROP_TUN);
	} else
		nat_emit_wan(p->buf, p->len, NULL);
}

/* After translation: a rewritten payload needs a whole new checksum. */
static void
nat_fix_edited(struct pkt *p)
{
	uint16_t	*sum;

	if (!p->edited || (sum = pkt_l4_cksum(p)) == NULL)
		return;
	if (p->proto == IPPROTO_UDP && *sum == 0)
		return;		/* the sender did not checksum it */
	*sum = 0;
	*sum = cksum_l4(p);
	if (p->proto == IPPROTO_UDP && *sum == 0)
		*sum = 0xffff;
	p->edited = false;
}

/* The ports of a flow, as the table keys them (ICMP: the id, remote 0). */
static bool
nat_flow_ports(struct pkt *p, enum nat_dir dir)
{
	switch (p->proto) {
	case IPPROTO_UDP:
	case IPPROTO_TCP:
		return (true);
	case IPPROTO_ICMP:
		if (dir == DIR_OUT && p->icmp_type == ICMP_ECHO)
			return (true);
		if (dir == DIR_IN && p->icmp_type == ICMP_ECHOREPLY)
			return (true);
		stat_inc(STAT_DROP_ICMP_TYPE);
		return (false);
	}
	stat_inc(STAT_DROP_UNKNOWN_PROTO);
	return (false);
}

/* A packet from the LAN: find or make its session and send it out. */
static void
nat_outbound(struct pkt *p)
{
	struct nat_session	*s;
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	uint16_t		 rport;

	if (p->proto == IPPROTO_ICMP && pkt_icmp_is_error(p->icmp_type)) {
		nat_icmp_error_out(p);
		return;
	}
	if (!nat_flow_ports(p, DIR_OUT))
		return;
	if (p->len > n.wan_mtu && p->dst != n.pub &&
	    (p->buf[6] & (IP_DF >> 8))) {
		stat_inc(STAT_DROP_DF_TOO_BIG);
		nat_icmp_to_lan(p, ICMP_UNREACH, ICMP_UNREACH_NEEDFRAG,
		    (uint16_t)n.wan_mtu);
		return;
	}
	rport = p->proto == IPPROTO_ICMP ? 0 : p->dport;
	s = nat_session_out(p->proto, p->src, p->sport, p->dst, rport);
	if (s == NULL) {
		if ((m = nat_mapping_get(p->proto, p->src, p->sport,
		    &why)) == NULL) {
			nat_refuse(p, why);
			return;
		}
		if ((s = nat_session_create(m, p->dst, rport, &why)) == NULL) {
			nat_mapping_gc(m);
			nat_refuse(p, why);
			return;
		}
	}
	if (p->proto == IPPROTO_TCP) {
		nat_session_tcp(s, DIR_OUT, p->tcp_flags);
		if (n.mss_clamp && pkt_clamp_mss(p, n.wan_mtu - 40))
			stat_inc(STAT_MSS_CLAMPED);
	}
	nat_session_touch(s, DIR_OUT, p->len);
	if (s->map->watch != NULL)
		s->map->watch(s->map->watch_arg, p, DIR_OUT, true);
	if (!nat_helper(p, DIR_OUT, s))
		return;
	nat_out_send(p, s);
}

/* Translate an outbound packet of a session and send it. */
static void
nat_out_send(struct pkt *p, struct nat_session *s)
{
	pkt_set_src(p, n.pub, s->map->pub_port);
	nat_fix_edited(p);
	if (p->dst == n.pub) {
		/* Hairpin (RFC 4787 REQ-9): in again, from our public side. */
		stat_inc(STAT_HAIRPIN);
		nat_inbound(p);
		return;
	}
	nat_send_wan(p);
}

/*
 * May a remote with no session start one on this mapping?  Under
 * endpoint-independent filtering yes; under address-and-port-dependent
 * filtering only through a helper's pinhole.  Echo replies only ever
 * answer requests.
 */
static bool
nat_filter_allows(const struct pkt *p, const struct nat_mapping *m,
    uint16_t rport)
{
	if (p->proto == IPPROTO_ICMP) {
		stat_inc(STAT_DROP_FILTERED);
		return (false);
	}
	if (n.filtering == FILTER_ENDPOINT_INDEPENDENT)
		return (true);
	if (nat_pinhole_allows(m, p->src, rport)) {
		stat_inc(STAT_PINHOLE_ADMITTED);
		return (true);
	}
	stat_inc(STAT_DROP_FILTERED);
	if (m->watch != NULL)
		m->watch(m->watch_arg, p, DIR_IN, false);
	return (false);
}

/* A packet to the public address: filter, translate, into the TUN. */
static void
nat_inbound(struct pkt *p)
{
	struct nat_session	*s;
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	uint16_t		 rport;

	if (p->proto == IPPROTO_ICMP && pkt_icmp_is_error(p->icmp_type)) {
		nat_icmp_error_in(p);
		return;
	}
	if (!nat_flow_ports(p, DIR_IN))
		return;
	rport = p->proto == IPPROTO_ICMP ? 0 : p->sport;
	s = nat_session_in(p->proto, p->dport, p->src, rport);
	if (s == NULL) {
		if ((m = nat_mapping_public(p->proto, p->dport)) == NULL) {
			if (p->proto == IPPROTO_ICMP) {
				nat_to_gateway(p);
				return;
			}
			stat_inc(STAT_DROP_NO_MAPPING);
			alg_stray(p);
			return;
		}
		if (!nat_filter_allows(p, m, rport))
			return;
		if ((s = nat_session_create(m, p->src, rport, &why)) == NULL) {
			stat_inc(STAT_DROP_LIMIT);
			return;
		}
	}
	m = s->map;
	if (p->proto == IPPROTO_TCP) {
		nat_session_tcp(s, DIR_IN, p->tcp_flags);
		if (n.mss_clamp && pkt_clamp_mss(p, n.wan_mtu - 40))
			stat_inc(STAT_MSS_CLAMPED);
	}
	nat_session_touch(s, DIR_IN, p->len);
	if (m->watch != NULL)
		m->watch(m->watch_arg, p, DIR_IN, true);
	if (!nat_helper(p, DIR_IN, s))
		return;
	nat_in_send(p, s);
}

/* Translate an inbound packet of a session and send it. */
static void
nat_in_send(struct pkt *p, struct nat_session *s)
{
	struct nat_mapping	*m = s->map;	/* a helper may have moved it */

	pkt_set_dst(p, m->in_addr, m->in_port);
	nat_fix_edited(p);
	nat_send_lan(p);
}

/* Count a parse failure under its reason. */
static void
nat_bad_packet(int err)
{
	stat_inc(err == PKT_ERR_VERSION ? STAT_DROP_NOT_IPV4 :
	    STAT_DROP_MALFORMED);
}

/*
 * One packet read from the TUN.  Its direction comes from its addresses:
 * from a LAN prefix it is outbound (hairpin included), to the public
 * address it is inbound; anything else is not ours.
 */
void
nat_input(uint8_t *buf, size_t len)
{
	struct pkt	p;
	int		err;

	if ((err = pkt_parse(&p, buf, len)) != PKT_OK) {
		nat_bad_packet(err);
		return;
	}
	if (p.frag) {
		if (frag_input(&p, nat_now(), &buf, &len) != 1)
			return;
		if ((err = pkt_parse(&p, buf, len)) != PKT_OK) {
			nat_bad_packet(err);
			return;
		}
	}
	if (config_is_lan(n.conf, p.src)) {
		stat_inc(STAT_PKT_IN_LAN);
		nat_outbound(&p);
	} else if (p.dst == n.pub) {
		stat_inc(STAT_PKT_IN_WAN);
		nat_inbound(&p);
	} else
		stat_inc(STAT_DROP_NOT_OURS);
}
