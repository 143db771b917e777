/*
 * Helpers the unit tests share: a seeded PRNG, addresses, the IPv4 header
 * and transport checksums.  A test defines DEFAULT_SEED
 * before including this; SIPNAT_TEST_SEED in the environment overrides it.
 */

#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef DEFAULT_SEED
#define DEFAULT_SEED	1u
#endif

static uint32_t	rng_state = DEFAULT_SEED;

/* A small PRNG (xorshift32) so every run sees the same packets. */
static inline uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return (rng_state);
}

/* Seed the PRNG from SIPNAT_TEST_SEED or the default. */
static inline void
rng_seed(void)
{
	const char	*s = getenv("SIPNAT_TEST_SEED");

	rng_state = DEFAULT_SEED;
	if (s != NULL && *s != '\0') {
		rng_state = (uint32_t)strtoul(s, NULL, 0);
		if (rng_state == 0)
			rng_state = 1;
		print_message("seed %u (SIPNAT_TEST_SEED)\n", rng_state);
	}
}

/* An address in network byte order. */
static inline uint32_t
ip(const char *s)
{
	struct in_addr	ia;

	assert_int_equal(inet_pton(AF_INET, s, &ia), 1);
	return (ia.s_addr);
}

/* Recompute the IPv4 header checksum (cksum() from sipnat.h). */
static inline void
fix_ip(uint8_t *buf)
{
	uint16_t	w;

	buf[10] = buf[11] = 0;
	w = cksum(buf, (buf[0] & 0x0f) * 4, 0);
	memcpy(buf + 10, &w, 2);
}

/* Recompute the transport checksum the long way, pseudo-header and all. */
static inline void
fix_l4(uint8_t *buf)
{
	unsigned	hl = (buf[0] & 0x0f) * 4;
	size_t		l4len = pkt_get16(buf + 2) - hl, off;
	uint8_t		*l4 = buf + hl, ph[12];
	uint32_t	sum = 0;
	uint16_t	w;

	off = buf[9] == IPPROTO_UDP ? 6 : buf[9] == IPPROTO_TCP ? 16 : 2;
	l4[off] = l4[off + 1] = 0;
	if (buf[9] != IPPROTO_ICMP) {
		memcpy(ph, buf + 12, 8);
		ph[8] = 0;
		ph[9] = buf[9];
		pkt_put16(ph + 10, (uint16_t)l4len);
		sum = cksum_partial(ph, sizeof ph, 0);
	}
	w = cksum(l4, l4len, sum);
	if (buf[9] == IPPROTO_UDP && w == 0)
		w = 0xffff;
	memcpy(l4 + off, &w, 2);
}

/*
 * Parse a packet again: its length agrees, and its IP and transport
 * checksums sum to zero (a UDP checksum of 0 means none).
 */
static inline void
assert_valid(uint8_t *buf, size_t len)
{
	struct pkt	 p;
	uint16_t	*sum;

	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(p.len, len);
	assert_int_equal(cksum(buf, p.hl, 0), 0);
	if (p.l4 == NULL)
		return;
	if ((sum = pkt_l4_cksum(&p)) == NULL)
		return;
	if (p.proto == IPPROTO_UDP && *sum == 0)
		return;
	assert_int_equal(cksum_l4(&p), 0);
}

#ifdef MAXCAP
/*
 * What the engine sent each way, kept through a struct nat_io: a test
 * defines MAXCAP (packets a side keeps) before including this.
 */
struct capture {
	uint8_t		 buf[MAXCAP][SIPNAT_MAX_PKT + 1];	/* even rows */
	size_t		 len[MAXCAP];
	int		 n;
	int		 fail;		/* refuse them, as when full */
};

static struct capture	*wan, *lan;

/* Keep a copy of a packet the engine sent. */
static inline int
capture(struct capture *c, const uint8_t *buf, size_t len)
{
	if (c->fail)
		return (-1);
	assert_true(c->n < MAXCAP);
	assert_true(len <= SIPNAT_MAX_PKT);
	memcpy(c->buf[c->n], buf, len);
	c->len[c->n++] = len;
	return (0);
}

/* The uplink. */
static inline int
to_wan(const uint8_t *buf, size_t len)
{
	return (capture(wan, buf, len));
}

/* The TUN. */
static inline int
to_lan(const uint8_t *buf, size_t len)
{
	return (capture(lan, buf, len));
}
#endif /* MAXCAP */

#endif /* TEST_UTIL_H */
