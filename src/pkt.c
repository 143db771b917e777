/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <netinet/in.h>
#include <string.h>

#include "sipnat.h"

/*
 * IPv4 header parsing and field rewriting.  A parsed packet keeps pointers
 * into the caller's buffer; the setters rewrite a field and fix every
 * checksum that covers it, incrementally.
 */

#define ICMP_ECHOREPLY		0
#define ICMP_UNREACH		3
#define ICMP_SOURCEQUENCH	4
#define ICMP_ECHO		8
#define ICMP_TIMXCEED		11
#define ICMP_PARAMPROB		12

static int	pkt_parse_l4(struct pkt *, bool);

/* Is this ICMP type an error that quotes the packet that caused it? */
bool
pkt_icmp_is_error(uint8_t type)
{
	return (type == ICMP_UNREACH || type == ICMP_TIMXCEED ||
	    type == ICMP_PARAMPROB || type == ICMP_SOURCEQUENCH);
}

/* Does this protocol carry ports sipnatd translates? */
bool
pkt_has_ports(uint8_t proto)
{
	return (proto == IPPROTO_TCP || proto == IPPROTO_UDP);
}

/*
 * Read the transport header.  An inner (quoted) packet may be cut short:
 * then only the first 8 bytes, which RFC 792 guarantees, are required.
 */
static int
pkt_parse_l4(struct pkt *p, bool inner)
{
	uint8_t	*l4 = p->l4;
	size_t	 n = p->l4len;
	unsigned off;

	switch (p->proto) {
	case IPPROTO_UDP:
		if (n < 8)
			return (PKT_ERR_L4);
		if (!inner && (pkt_get16(l4 + 4) < 8 || pkt_get16(l4 + 4) > n))
			return (PKT_ERR_L4);
		if (!inner)
			p->l4len = pkt_get16(l4 + 4);
		p->sport = pkt_get16(l4);
		p->dport = pkt_get16(l4 + 2);
		break;
	case IPPROTO_TCP:
		if (n < (inner ? 8 : 20))
			return (PKT_ERR_L4);
		p->sport = pkt_get16(l4);
		p->dport = pkt_get16(l4 + 2);
		if (inner)
			break;
		off = (l4[12] >> 4) * 4;
		if (off < 20 || off > n)
			return (PKT_ERR_L4);
		p->tcp_flags = l4[13];
		break;
	case IPPROTO_ICMP:
		if (n < 8)
			return (PKT_ERR_L4);
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		if (p->icmp_type == ICMP_ECHO ||
		    p->icmp_type == ICMP_ECHOREPLY)
			p->sport = p->dport = pkt_get16(l4 + 4);
		break;
	default:
		break;
	}
	return (PKT_OK);
}

/* Parse the common IPv4 header; inner packets may be truncated. */
static int
pkt_parse_ip(struct pkt *p, uint8_t *buf, size_t n, bool inner)
{
	uint16_t	tot, off;

	memset(p, 0, sizeof *p);
	if (n < IP_HDR_MIN)
		return (PKT_ERR_SHORT);
	if ((buf[0] >> 4) != 4)
		return (PKT_ERR_VERSION);
	p->buf = buf;
	p->hl = (buf[0] & 0x0f) * 4;
	tot = pkt_get16(buf + 2);
	if (p->hl < IP_HDR_MIN || p->hl > n || tot < p->hl)
		return (PKT_ERR_HEADER);
	if (!inner && tot > n)
		return (PKT_ERR_LENGTH);
	p->len = inner && tot > n ? n : tot;
	p->proto = buf[9];
	memcpy(&p->src, buf + 12, 4);
	memcpy(&p->dst, buf + 16, 4);
	off = pkt_get16(buf + 6);
	p->frag = (off & (IP_MF | IP_OFFMASK)) != 0;
	/*
	 * Fragments are reassembled before NAT reads them; only a quoted
	 * first fragment in an ICMP error is read as it is.
	 */
	if (p->frag && (!inner || (off & IP_OFFMASK) != 0))
		return (PKT_OK);
	p->l4 = buf + p->hl;
	p->l4len = p->len - p->hl;
	return (pkt_parse_l4(p, inner));
}

/* Parse a packet read from the TUN. */
int
pkt_parse(struct pkt *p, uint8_t *buf, size_t n)
{
	return (pkt_parse_ip(p, buf, n, false));
}

/* Parse the packet quoted in an ICMP error. */
int
pkt_parse_inner(struct pkt *p, uint8_t *buf, size_t n)
{
	return (pkt_parse_ip(p, buf, n, true));
}

/* Where the transport checksum is, if the packet holds it. */
uint16_t *
pkt_l4_cksum(const struct pkt *p)
{
	size_t	off;

	if (p->l4 == NULL)
		return (NULL);
	switch (p->proto) {
	case IPPROTO_UDP:
		off = 6;
		break;
	case IPPROTO_TCP:
		off = 16;
		break;
	case IPPROTO_ICMP:
		off = 2;
		break;
	default:
		return (NULL);
	}
	if (off + 2 > p->l4len)
		return (NULL);
	return ((uint16_t *)(void *)(p->l4 + off));
}

/* Rewrite an address at offset off (12 src, 16 dst) and its checksums. */
static void
pkt_set_addr(struct pkt *p, unsigned off, uint32_t addr)
{
	uint16_t	*ipsum = (uint16_t *)(void *)(p->buf + 10);
	uint16_t	*l4sum = pkt_l4_cksum(p);
	uint32_t	 old;

	memcpy(&old, p->buf + off, 4);
	if (old == addr)
		return;
	memcpy(p->buf + off, &addr, 4);
	cksum_update32(ipsum, old, addr);
	/* The pseudo-header covers TCP and UDP, not ICMP. */
	if (l4sum != NULL && p->proto != IPPROTO_ICMP &&
	    !(p->proto == IPPROTO_UDP && *l4sum == 0)) {
		cksum_update32(l4sum, old, addr);
		if (p->proto == IPPROTO_UDP && *l4sum == 0)
			*l4sum = 0xffff;
	}
	if (off == 12)
		p->src = addr;
	else
		p->dst = addr;
}

/* Rewrite a port (or the echo id) at l4 offset off and its checksum. */
static void
pkt_set_port(struct pkt *p, unsigned off, uint16_t port)
{
	uint16_t	*l4sum = pkt_l4_cksum(p);
	uint16_t	 old;

	if (p->l4 == NULL || off + 2 > p->l4len)
		return;
	old = pkt_get16(p->l4 + off);
	if (old == port)
		return;
	pkt_put16(p->l4 + off, port);
	if (l4sum != NULL && !(p->proto == IPPROTO_UDP && *l4sum == 0)) {
		cksum_update16(l4sum, htons(old), htons(port));
		if (p->proto == IPPROTO_UDP && *l4sum == 0)
			*l4sum = 0xffff;
		/*
		 * The update cannot tell a sum of 0xffff from one of zero
		 * (RFC 1624): it says 0 for both.  Only an ICMP message can
		 * be all zeros (an echo reply with id 0, sequence 0, no data),
		 * and its checksum is then 0xffff: count it again.
		 */
		if (p->proto == IPPROTO_ICMP && *l4sum == 0)
			*l4sum = cksum(p->l4, p->l4len, 0);
	}
}

/* Rewrite the source address and port (echo: the id). */
void
pkt_set_src(struct pkt *p, uint32_t addr, uint16_t port)
{
	pkt_set_addr(p, 12, addr);
	if (pkt_has_ports(p->proto)) {
		pkt_set_port(p, 0, port);
		p->sport = port;
	} else if (p->proto == IPPROTO_ICMP && !pkt_icmp_is_error(p->icmp_type)) {
		pkt_set_port(p, 4, port);
		p->sport = p->dport = port;
	}
}

/* Rewrite the destination address and port (echo: the id). */
void
pkt_set_dst(struct pkt *p, uint32_t addr, uint16_t port)
{
	pkt_set_addr(p, 16, addr);
	if (pkt_has_ports(p->proto)) {
		pkt_set_port(p, 2, port);
		p->dport = port;
	} else if (p->proto == IPPROTO_ICMP && !pkt_icmp_is_error(p->icmp_type)) {
		pkt_set_port(p, 4, port);
		p->sport = p->dport = port;
	}
}

/*
 * Update a checksum for a 16-bit field at an offset of the summed data:
 * at an odd offset the field's bytes fall in two words, swapped.
 */
static void
pkt_cksum_update_at(uint16_t *sum, size_t off, uint16_t old, uint16_t new)
{
	uint16_t	o = htons(old), n = htons(new);

	if (off & 1) {
		o = (uint16_t)(o << 8 | o >> 8);
		n = (uint16_t)(n << 8 | n >> 8);
	}
	cksum_update16(sum, o, n);
}

/* Rewrite the TTL and the header checksum. */
void
pkt_set_ttl(struct pkt *p, uint8_t ttl)
{
	uint16_t	*ipsum = (uint16_t *)(void *)(p->buf + 10);
	uint8_t		 old[2], new[2];
	uint16_t	 o, n;

	old[0] = p->buf[8];
	old[1] = p->buf[9];
	new[0] = ttl;
	new[1] = p->buf[9];
	memcpy(&o, old, 2);
	memcpy(&n, new, 2);
	p->buf[8] = ttl;
	cksum_update16(ipsum, o, n);
}

/*
 * Lower the MSS option of a SYN to mss, so that hosts behind a larger
 * TUN MTU never send segments the uplink cannot carry.  Returns 1 when
 * the option was changed.
 */
int
pkt_clamp_mss(struct pkt *p, uint16_t mss)
{
	uint8_t		*opt, *end;
	uint16_t	*sum = pkt_l4_cksum(p);
	uint16_t	 old;

	if (p->proto != IPPROTO_TCP || p->l4 == NULL || !(p->tcp_flags & 0x02))
		return (0);
	opt = p->l4 + 20;
	end = p->l4 + (p->l4[12] >> 4) * 4;
	while (opt < end) {
		if (opt[0] == 0)
			break;
		if (opt[0] == 1) {
			opt++;
			continue;
		}
		if (opt + 1 >= end || opt[1] < 2 || opt + opt[1] > end)
			break;
		if (opt[0] == 2 && opt[1] == 4) {
			old = pkt_get16(opt + 2);
			if (old <= mss)
				return (0);
			pkt_put16(opt + 2, mss);
			if (sum != NULL)
				pkt_cksum_update_at(sum, (size_t)(opt + 2 - p->l4),
				    old, mss);
			return (1);
		}
		opt += opt[1];
	}
	return (0);
}
