/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <string.h>

#include "sipnat.h"

/*
 * Internet checksums: full sums for the packets sipnatd makes itself and
 * incremental updates (RFC 1624) for the fields NAT rewrites.  Everything
 * is summed in network byte order; the one's complement sum does not care
 * which order, as long as it is the same on both sides.
 */

/* Add a buffer to a running 32-bit sum. */
uint32_t
cksum_partial(const void *data, size_t len, uint32_t sum)
{
	const uint8_t	*p = data;
	uint16_t	 w;

	while (len >= 2) {
		memcpy(&w, p, 2);
		sum += w;
		p += 2;
		len -= 2;
	}
	if (len == 1) {
		w = 0;
		memcpy(&w, p, 1);
		sum += w;
	}
	return (sum);
}

/* Fold a 32-bit sum into 16 bits and complement it. */
uint16_t
cksum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ((uint16_t)~sum);
}

/* The checksum of a buffer, starting from a partial sum. */
uint16_t
cksum(const void *data, size_t len, uint32_t sum)
{
	return (cksum_fold(cksum_partial(data, len, sum)));
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). */
void
cksum_update16(uint16_t *sum, uint16_t old, uint16_t new)
{
	uint32_t	s;

	s = (uint16_t)~*sum;
	s += (uint16_t)~old;
	s += new;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	*sum = (uint16_t)~s;
}

/* The same for a 32-bit field (an address), as two 16-bit words. */
void
cksum_update32(uint16_t *sum, uint32_t old, uint32_t new)
{
	uint16_t	o[2], n[2];

	memcpy(o, &old, 4);
	memcpy(n, &new, 4);
	cksum_update16(sum, o[0], n[0]);
	cksum_update16(sum, o[1], n[1]);
}

/* The full TCP/UDP checksum of a parsed datagram, pseudo-header included. */
uint16_t
cksum_l4(const struct pkt *p)
{
	uint32_t	sum = 0;
	uint16_t	w;

	if (p->proto == IPPROTO_ICMP)
		return (cksum(p->l4, p->l4len, 0));
	sum = cksum_partial(&p->src, 4, sum);
	sum = cksum_partial(&p->dst, 4, sum);
	w = htons(p->proto);
	sum += w;
	w = htons((uint16_t)p->l4len);
	sum += w;
	return (cksum(p->l4, p->l4len, sum));
}
