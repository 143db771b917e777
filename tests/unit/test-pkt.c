/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sipnat.h"

/*
 * Unit tests for pkt.c: parsing valid and broken packets, and rewriting
 * addresses, ports, TTL and MSS with every checksum still right, checked
 * by summing the whole packet again.
 *
 * The random tests use a fixed seed; SIPNAT_TEST_SEED=<n> picks another.
 */

#define DEFAULT_SEED	0x9e3779b9u
#include "util.h"
#define TH_FIN		0x01
#define TH_SYN		0x02
#define TH_RST		0x04
#define TH_ACK		0x10


static size_t	make_ip(uint8_t *, uint8_t, const char *, const char *,
		    size_t);
static size_t	make_udp(uint8_t *, const char *, uint16_t, const char *,
		    uint16_t, size_t);
static size_t	make_tcp(uint8_t *, const char *, uint16_t, const char *,
		    uint16_t, uint8_t, const uint8_t *, size_t, size_t);
static size_t	make_icmp(uint8_t *, const char *, const char *, uint8_t,
		    uint8_t, uint16_t, size_t);

/* A 20-byte IPv4 header for l4len bytes of payload; returns the total. */
static size_t
make_ip(uint8_t *buf, uint8_t proto, const char *src, const char *dst,
    size_t l4len)
{
	uint32_t	a;

	memset(buf, 0, 20);
	buf[0] = 0x45;
	pkt_put16(buf + 2, (uint16_t)(20 + l4len));
	pkt_put16(buf + 4, 0x1234);
	buf[8] = 64;
	buf[9] = proto;
	a = ip(src);
	memcpy(buf + 12, &a, 4);
	a = ip(dst);
	memcpy(buf + 16, &a, 4);
	fix_ip(buf);
	return (20 + l4len);
}

/* A UDP datagram with plen bytes of payload and a valid checksum. */
static size_t
make_udp(uint8_t *buf, const char *src, uint16_t sport, const char *dst,
    uint16_t dport, size_t plen)
{
	size_t	len = make_ip(buf, IPPROTO_UDP, src, dst, 8 + plen), i;
	uint8_t	*l4 = buf + 20;

	pkt_put16(l4, sport);
	pkt_put16(l4 + 2, dport);
	pkt_put16(l4 + 4, (uint16_t)(8 + plen));
	for (i = 0; i < plen; i++)
		l4[8 + i] = (uint8_t)rng();
	fix_l4(buf);
	return (len);
}

/* A TCP segment with options and plen bytes of payload. */
static size_t
make_tcp(uint8_t *buf, const char *src, uint16_t sport, const char *dst,
    uint16_t dport, uint8_t flags, const uint8_t *opt, size_t optlen,
    size_t plen)
{
	size_t	thl = 20 + optlen, i;
	size_t	len = make_ip(buf, IPPROTO_TCP, src, dst, thl + plen);
	uint8_t	*l4 = buf + 20;

	memset(l4, 0, thl);
	pkt_put16(l4, sport);
	pkt_put16(l4 + 2, dport);
	for (i = 4; i < 12; i++)
		l4[i] = (uint8_t)rng();
	l4[12] = (uint8_t)((thl / 4) << 4);
	l4[13] = flags;
	pkt_put16(l4 + 14, 65535);
	if (optlen > 0)
		memcpy(l4 + 20, opt, optlen);
	for (i = 0; i < plen; i++)
		l4[thl + i] = (uint8_t)rng();
	fix_l4(buf);
	return (len);
}

/* An ICMP message; word is the echo id, or the unused/MTU field. */
static size_t
make_icmp(uint8_t *buf, const char *src, const char *dst, uint8_t type,
    uint8_t code, uint16_t word, size_t plen)
{
	size_t	len = make_ip(buf, IPPROTO_ICMP, src, dst, 8 + plen), i;
	uint8_t	*l4 = buf + 20;

	memset(l4, 0, 8);
	l4[0] = type;
	l4[1] = code;
	pkt_put16(l4 + 4, word);
	pkt_put16(l4 + 6, 1);
	for (i = 0; i < plen; i++)
		l4[8 + i] = (uint8_t)rng();
	fix_l4(buf);
	return (len);
}

/* A UDP datagram: addresses, ports, lengths. */
static void
test_parse_udp(void **state)
{
	uint8_t		buf[256];
	struct pkt	p;
	size_t		len;

	len = make_udp(buf, "10.0.0.2", 5060, "192.0.2.1", 53, 30);
	assert_int_equal(len, 58);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_ptr_equal(p.buf, buf);
	assert_int_equal(p.len, 58);
	assert_int_equal(p.hl, 20);
	assert_int_equal(p.proto, IPPROTO_UDP);
	assert_int_equal(p.src, ip("10.0.0.2"));
	assert_int_equal(p.dst, ip("192.0.2.1"));
	assert_false(p.frag);
	assert_ptr_equal(p.l4, buf + 20);
	assert_int_equal(p.l4len, 38);
	assert_int_equal(p.sport, 5060);
	assert_int_equal(p.dport, 53);
	assert_ptr_equal(pkt_l4_cksum(&p), buf + 26);
	assert_true(pkt_has_ports(p.proto));
	assert_valid(buf, len);

	/* A buffer longer than the datagram: the header's length wins. */
	assert_int_equal(pkt_parse(&p, buf, sizeof buf), PKT_OK);
	assert_int_equal(p.len, 58);

	/* IP padding after a shorter UDP length: l4len is UDP's. */
	pkt_put16(buf + 24, 20);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(p.l4len, 20);
}

/* A TCP segment with options: ports, flags. */
static void
test_parse_tcp(void **state)
{
	static const uint8_t	opt[] = { 2, 4, 0x05, 0xb4, 1, 3, 3, 7 };
	uint8_t			buf[256];
	struct pkt		p;
	size_t			len;

	len = make_tcp(buf, "10.0.0.9", 40000, "198.51.100.7", 443,
	    TH_SYN | TH_ACK, opt, sizeof opt, 10);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(p.proto, IPPROTO_TCP);
	assert_int_equal(p.sport, 40000);
	assert_int_equal(p.dport, 443);
	assert_int_equal(p.tcp_flags, TH_SYN | TH_ACK);
	assert_int_equal(p.l4len, 20 + sizeof opt + 10);
	assert_ptr_equal(pkt_l4_cksum(&p), buf + 20 + 16);
	assert_false(p.frag);
	assert_valid(buf, len);
}

/* ICMP echo: the id serves as both ports; errors have none. */
static void
test_parse_icmp(void **state)
{
	uint8_t		buf[256];
	struct pkt	p;
	size_t		len;

	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", 8, 0, 0xbeef, 16);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(p.proto, IPPROTO_ICMP);
	assert_int_equal(p.icmp_type, 8);
	assert_int_equal(p.icmp_code, 0);
	assert_int_equal(p.sport, 0xbeef);
	assert_int_equal(p.dport, 0xbeef);
	assert_int_equal(p.l4len, 24);
	assert_false(pkt_has_ports(p.proto));
	assert_false(pkt_icmp_is_error(p.icmp_type));
	assert_valid(buf, len);

	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", 0, 0, 0x0102, 0);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(p.icmp_type, 0);
	assert_int_equal(p.sport, 0x0102);

	/* Time exceeded, quoting 28 bytes. */
	len = make_icmp(buf, "192.0.2.254", "203.0.113.1", 11, 0, 0, 28);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(p.icmp_type, 11);
	assert_int_equal(p.icmp_code, 0);
	assert_int_equal(p.sport, 0);
	assert_int_equal(p.dport, 0);
	assert_true(pkt_icmp_is_error(11));
	assert_true(pkt_icmp_is_error(3));
	assert_true(pkt_icmp_is_error(12));
	assert_true(pkt_icmp_is_error(4));
	assert_false(pkt_icmp_is_error(0));
	assert_false(pkt_icmp_is_error(5));
	assert_false(pkt_icmp_is_error(13));
}

/* Other protocols parse, with no ports. */
static void
test_parse_other(void **state)
{
	uint8_t		buf[64];
	struct pkt	p;
	size_t		len;

	len = make_ip(buf, 47, "10.0.0.2", "192.0.2.1", 24);
	memset(buf + 20, 0xaa, 24);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(p.proto, 47);
	assert_int_equal(p.sport, 0);
	assert_null(pkt_l4_cksum(&p));
}

/* Header errors of every kind are refused with their reason. */
static void
test_parse_rejects(void **state)
{
	uint8_t		buf[256], save[256];
	struct pkt	p;
	size_t		len;

	len = make_udp(buf, "10.0.0.2", 1000, "192.0.2.1", 2000, 12);
	memcpy(save, buf, len);

	/* Too short for an IPv4 header. */
	assert_int_equal(pkt_parse(&p, buf, 0), PKT_ERR_SHORT);
	assert_int_equal(pkt_parse(&p, buf, 19), PKT_ERR_SHORT);

	/* IPv6. */
	buf[0] = 0x60;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_VERSION);
	buf[0] = 0x05;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_VERSION);

	/* IHL below 5, and beyond the buffer. */
	buf[0] = 0x44;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_HEADER);
	buf[0] = 0x40;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_HEADER);
	buf[0] = 0x4f;
	assert_int_equal(pkt_parse(&p, buf, 40), PKT_ERR_HEADER);
	buf[0] = 0x45;

	/* Total length beyond the buffer, and below the header. */
	assert_int_equal(pkt_parse(&p, buf, len - 1), PKT_ERR_LENGTH);
	pkt_put16(buf + 2, 19);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_HEADER);
	pkt_put16(buf + 2, (uint16_t)len);

	/* UDP: length longer than the datagram, shorter than 8. */
	pkt_put16(buf + 24, (uint16_t)(len - 20 + 1));
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_L4);
	pkt_put16(buf + 24, 7);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_L4);
	pkt_put16(buf + 24, (uint16_t)(len - 20));
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);

	/* UDP: fewer than 8 bytes after the IP header. */
	pkt_put16(buf + 2, 27);
	assert_int_equal(pkt_parse(&p, buf, 27), PKT_ERR_L4);
	memcpy(buf, save, len);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
}

/* TCP data offset below 5 words or past the segment; short TCP. */
static void
test_parse_rejects_tcp(void **state)
{
	uint8_t		buf[256];
	struct pkt	p;
	size_t		len;

	len = make_tcp(buf, "10.0.0.2", 1000, "192.0.2.1", 80, TH_ACK,
	    NULL, 0, 8);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	buf[32] = 4 << 4;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_L4);
	buf[32] = 0;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_L4);
	/* 28 bytes of segment: a 32-byte header does not fit. */
	buf[32] = 8 << 4;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_ERR_L4);
	buf[32] = 7 << 4;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	buf[32] = 5 << 4;
	/* A segment shorter than 20 bytes. */
	pkt_put16(buf + 2, 20 + 19);
	assert_int_equal(pkt_parse(&p, buf, 39), PKT_ERR_L4);
}

/* ICMP shorter than its 8-byte header. */
static void
test_parse_rejects_icmp(void **state)
{
	uint8_t		buf[64];
	struct pkt	p;
	size_t		len;

	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", 8, 0, 1, 0);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	pkt_put16(buf + 2, 27);
	assert_int_equal(pkt_parse(&p, buf, 27), PKT_ERR_L4);
	pkt_put16(buf + 2, 20);
	assert_int_equal(pkt_parse(&p, buf, 20), PKT_ERR_L4);
}

/* Fragments parse, but their transport header is not read. */
static void
test_parse_fragments(void **state)
{
	uint8_t		buf[256];
	struct pkt	p;
	size_t		len;

	/* First fragment: MF set, offset 0. */
	len = make_udp(buf, "10.0.0.2", 1000, "192.0.2.1", 2000, 40);
	pkt_put16(buf + 6, IP_MF);
	fix_ip(buf);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_true(p.frag);
	assert_null(p.l4);
	assert_int_equal(p.sport, 0);
	assert_null(pkt_l4_cksum(&p));

	/* Last fragment: offset only. */
	pkt_put16(buf + 6, 3);
	fix_ip(buf);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_true(p.frag);
	assert_null(p.l4);

	/* DF alone is not a fragment. */
	pkt_put16(buf + 6, IP_DF);
	fix_ip(buf);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_false(p.frag);
	assert_non_null(p.l4);
}

/*
 * Rewrite the addresses and ports of many random UDP and TCP packets;
 * after every change both checksums still verify.
 */
static void
test_set_src_dst_random(void **state)
{
	static const char	*hosts[] = {
		"10.0.0.2", "10.0.0.254", "192.168.1.1", "0.0.0.0",
		"255.255.255.255", "203.0.113.1", "198.51.100.99"
	};
	uint8_t			 buf[1600];
	struct pkt		 p;
	size_t			 len;
	uint32_t		 a;
	uint16_t		 port;
	int			 i;

	rng_seed();
	for (i = 0; i < 5000; i++) {
		if (i & 1)
			len = make_udp(buf, hosts[rng() % 7],
			    (uint16_t)rng(), hosts[rng() % 7], (uint16_t)rng(),
			    rng() % 1400);
		else
			len = make_tcp(buf, hosts[rng() % 7],
			    (uint16_t)rng(), hosts[rng() % 7], (uint16_t)rng(),
			    (uint8_t)rng(), NULL, 0, rng() % 1400);
		assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
		a = rng();
		port = (uint16_t)rng();
		if (rng() % 4 == 0)
			port = p.sport;
		pkt_set_src(&p, a, port);
		assert_int_equal(p.src, a);
		assert_int_equal(p.sport, port);
		assert_memory_equal(buf + 12, &a, 4);
		assert_int_equal(pkt_get16(buf + 20), port);
		assert_valid(buf, len);

		a = rng();
		port = (uint16_t)rng();
		pkt_set_dst(&p, a, port);
		assert_int_equal(p.dst, a);
		assert_int_equal(p.dport, port);
		assert_memory_equal(buf + 16, &a, 4);
		assert_int_equal(pkt_get16(buf + 22), port);
		assert_valid(buf, len);
		/* A checksummed datagram never turns into an unchecked one. */
		if (p.proto == IPPROTO_UDP)
			assert_int_not_equal(pkt_get16(buf + 26), 0);
	}
}

/* A UDP datagram sent without a checksum keeps none. */
static void
test_udp_zero_cksum(void **state)
{
	uint8_t		buf[128];
	struct pkt	p;
	size_t		len;

	len = make_udp(buf, "10.0.0.2", 1000, "192.0.2.1", 2000, 20);
	buf[26] = buf[27] = 0;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	pkt_set_src(&p, ip("203.0.113.1"), 31000);
	pkt_set_dst(&p, ip("198.51.100.1"), 5);
	assert_int_equal(buf[26], 0);
	assert_int_equal(buf[27], 0);
	assert_int_equal(pkt_get16(buf + 20), 31000);
	assert_int_equal(pkt_get16(buf + 22), 5);
	assert_int_equal(cksum(buf, 20, 0), 0);
}

/*
 * A rewrite whose UDP checksum comes out as 0x0000 must send 0xffff
 * instead: zero means "no checksum" (RFC 768).
 */
static void
test_udp_cksum_becomes_zero(void **state)
{
	uint8_t		buf[128];
	struct pkt	p;
	size_t		len;
	uint16_t	sum, port;
	uint32_t	cand, a;

	len = make_udp(buf, "10.0.0.2", 1000, "192.0.2.1", 2000, 20);
	/* Find the source port that makes the new checksum 0x0000. */
	for (cand = 0; cand <= 0xffff; cand++) {
		memcpy(&sum, buf + 26, 2);
		cksum_update16(&sum, htons(1000), htons((uint16_t)cand));
		if (sum == 0)
			break;
	}
	assert_true(cand <= 0xffff);
	port = (uint16_t)cand;
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	pkt_set_src(&p, p.src, port);
	assert_int_equal(pkt_get16(buf + 20), port);
	assert_int_equal(pkt_get16(buf + 26), 0xffff);
	assert_valid(buf, len);

	/* The same through an address change (the pseudo-header). */
	len = make_udp(buf, "10.0.0.2", 1000, "192.0.2.1", 2000, 20);
	for (cand = 0; cand <= 0xffff; cand++) {
		memcpy(&sum, buf + 26, 2);
		cksum_update16(&sum, htons(0x0002), htons((uint16_t)cand));
		if (sum == 0)
			break;
	}
	assert_true(cand <= 0xffff);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	a = p.src;
	pkt_put16((uint8_t *)&a + 2, (uint16_t)cand);
	pkt_set_src(&p, a, 1000);
	assert_memory_equal(buf + 12, &a, 4);
	assert_int_equal(pkt_get16(buf + 26), 0xffff);
	assert_valid(buf, len);
}

/* ICMP echo: the id is rewritten; ICMP errors keep their bytes 4-7. */
static void
test_icmp_rewrite(void **state)
{
	uint8_t		buf[128], save[128];
	struct pkt	p;
	size_t		len;

	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", 8, 0, 0x1111, 32);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	pkt_set_src(&p, ip("203.0.113.1"), 0x2222);
	assert_int_equal(pkt_get16(buf + 24), 0x2222);
	assert_int_equal(p.sport, 0x2222);
	assert_int_equal(p.dport, 0x2222);
	assert_int_equal(p.src, ip("203.0.113.1"));
	assert_valid(buf, len);

	/* The reply comes back: the id goes back too. */
	len = make_icmp(buf, "192.0.2.1", "203.0.113.1", 0, 0, 0x2222, 32);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	pkt_set_dst(&p, ip("10.0.0.2"), 0x1111);
	assert_int_equal(pkt_get16(buf + 24), 0x1111);
	assert_int_equal(p.dst, ip("10.0.0.2"));
	assert_valid(buf, len);

	/*
	 * A reply that becomes all zeros (inside id 0, sequence 0, no data)
	 * sums to zero: its checksum is 0xffff, not the 0 an incremental
	 * update gives.
	 */
	len = make_icmp(buf, "192.0.2.1", "203.0.113.1", 0, 0, 0x4e22, 0);
	pkt_put16(buf + 26, 0);
	fix_l4(buf);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	pkt_set_dst(&p, ip("10.0.0.3"), 0);
	assert_int_equal(pkt_get16(buf + 22), 0xffff);
	assert_valid(buf, len);

	/* Port unreachable: bytes 4-7 and the ICMP checksum stay. */
	len = make_icmp(buf, "192.0.2.1", "203.0.113.1", 3, 3, 0x0000, 28);
	memcpy(save, buf, len);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	pkt_set_dst(&p, ip("10.0.0.2"), 0x4444);
	assert_memory_equal(buf + 20, save + 20, len - 20);
	assert_int_equal(p.dst, ip("10.0.0.2"));
	assert_valid(buf, len);
}

/* A quoted packet cut after 8 bytes of transport header still parses. */
static void
test_parse_inner_truncated(void **state)
{
	static const uint8_t	opt[] = { 2, 4, 0x05, 0xb4 };
	uint8_t			buf[256];
	struct pkt		p;
	size_t			len;

	/* A 100-byte UDP datagram, 28 bytes of it quoted. */
	len = make_udp(buf, "203.0.113.1", 20000, "192.0.2.1", 53, 72);
	assert_int_equal(len, 100);
	assert_int_equal(pkt_parse(&p, buf, 28), PKT_ERR_LENGTH);
	assert_int_equal(pkt_parse_inner(&p, buf, 28), PKT_OK);
	assert_int_equal(p.len, 28);
	assert_int_equal(p.l4len, 8);
	assert_int_equal(p.sport, 20000);
	assert_int_equal(p.dport, 53);
	assert_ptr_equal(pkt_l4_cksum(&p), buf + 26);
	/* Fewer than 8 bytes of it is too short. */
	assert_int_equal(pkt_parse_inner(&p, buf, 27), PKT_ERR_L4);
	/* And the IP header itself must be whole. */
	assert_int_equal(pkt_parse_inner(&p, buf, 19), PKT_ERR_SHORT);

	/* TCP: 8 bytes give the ports; the checksum is not there. */
	len = make_tcp(buf, "203.0.113.1", 20001, "192.0.2.1", 80, TH_SYN,
	    opt, sizeof opt, 0);
	assert_int_equal(pkt_parse_inner(&p, buf, 28), PKT_OK);
	assert_int_equal(p.sport, 20001);
	assert_int_equal(p.dport, 80);
	assert_null(pkt_l4_cksum(&p));
	/* Rewriting the quoted source still fixes the quoted IP header. */
	pkt_set_src(&p, ip("10.0.0.2"), 5555);
	assert_int_equal(pkt_get16(buf + 20), 5555);
	assert_int_equal(cksum(buf, 20, 0), 0);

	/* ICMP echo quoted. */
	len = make_icmp(buf, "203.0.113.1", "192.0.2.1", 8, 0, 0x7777, 56);
	assert_int_equal(pkt_parse_inner(&p, buf, 28), PKT_OK);
	assert_int_equal(p.sport, 0x7777);

	/* A quoted first fragment is read; a later one is not. */
	len = make_udp(buf, "203.0.113.1", 20002, "192.0.2.1", 53, 72);
	pkt_put16(buf + 6, IP_MF);
	fix_ip(buf);
	assert_int_equal(pkt_parse_inner(&p, buf, 28), PKT_OK);
	assert_true(p.frag);
	assert_non_null(p.l4);
	assert_int_equal(p.sport, 20002);
	pkt_put16(buf + 6, IP_MF | 10);
	fix_ip(buf);
	assert_int_equal(pkt_parse_inner(&p, buf, 28), PKT_OK);
	assert_null(p.l4);
}

/* MSS 1460 is lowered to 1360; a smaller one is left alone. */
static void
test_clamp_mss(void **state)
{
	static const uint8_t	opt[] = {
		1, 1, 4, 2,			/* NOP NOP SACK-permitted */
		2, 4, 0x05, 0xb4,		/* MSS 1460 */
		1, 3, 3, 7,			/* NOP window scale 7 */
	};
	static const uint8_t	small[] = { 2, 4, 0x04, 0xb0 }; /* 1200 */
	static const uint8_t	odd[] = { 1, 2, 4, 0x05, 0xb4, 1, 1, 0 };
	static const uint8_t	bad[] = { 8, 0, 2, 4, 0x05, 0xb4, 0, 0 };
	uint8_t			buf[256], save[256];
	struct pkt		p;
	size_t			len;

	len = make_tcp(buf, "10.0.0.2", 40000, "192.0.2.1", 443, TH_SYN,
	    opt, sizeof opt, 0);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(pkt_clamp_mss(&p, 1360), 1);
	assert_int_equal(pkt_get16(buf + 40 + 6), 1360);
	assert_valid(buf, len);
	/* Once clamped, clamping again changes nothing. */
	assert_int_equal(pkt_clamp_mss(&p, 1360), 0);
	assert_int_equal(pkt_get16(buf + 40 + 6), 1360);

	/* The SYN-ACK is clamped too. */
	len = make_tcp(buf, "192.0.2.1", 443, "203.0.113.1", 20000,
	    TH_SYN | TH_ACK, opt, sizeof opt, 0);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(pkt_clamp_mss(&p, 1360), 1);
	assert_int_equal(pkt_get16(buf + 40 + 6), 1360);
	assert_valid(buf, len);

	/* After one NOP the MSS value sits at an odd offset. */
	len = make_tcp(buf, "10.0.0.2", 40000, "192.0.2.1", 443, TH_SYN,
	    odd, sizeof odd, 0);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(pkt_clamp_mss(&p, 1360), 1);
	assert_int_equal(pkt_get16(buf + 40 + 3), 1360);
	assert_valid(buf, len);

	/* 1200 is below the clamp. */
	len = make_tcp(buf, "10.0.0.2", 40000, "192.0.2.1", 443, TH_SYN,
	    small, sizeof small, 0);
	memcpy(save, buf, len);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(pkt_clamp_mss(&p, 1360), 0);
	assert_memory_equal(buf, save, len);

	/* Not a SYN: left alone even with an MSS option. */
	len = make_tcp(buf, "10.0.0.2", 40000, "192.0.2.1", 443, TH_ACK,
	    opt, sizeof opt, 0);
	memcpy(save, buf, len);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(pkt_clamp_mss(&p, 1360), 0);
	assert_memory_equal(buf, save, len);

	/* A zero option length stops the walk instead of looping. */
	len = make_tcp(buf, "10.0.0.2", 40000, "192.0.2.1", 443, TH_SYN,
	    bad, sizeof bad, 0);
	memcpy(save, buf, len);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(pkt_clamp_mss(&p, 1360), 0);
	assert_memory_equal(buf, save, len);

	/* UDP has no MSS. */
	len = make_udp(buf, "10.0.0.2", 1, "192.0.2.1", 2, 40);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_int_equal(pkt_clamp_mss(&p, 536), 0);
}

/* The TTL changes with the header checksum. */
static void
test_set_ttl(void **state)
{
	uint8_t		buf[128];
	struct pkt	p;
	size_t		len;
	int		ttl;

	len = make_udp(buf, "10.0.0.2", 1000, "192.0.2.1", 2000, 20);
	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	for (ttl = 0; ttl < 256; ttl++) {
		pkt_set_ttl(&p, (uint8_t)ttl);
		assert_int_equal(buf[8], ttl);
		assert_int_equal(buf[9], IPPROTO_UDP);
		assert_int_equal(cksum(buf, 20, 0), 0);
	}
	/* The transport checksum does not cover the TTL. */
	assert_valid(buf, len);
}

/* Run the packet tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_udp),
		cmocka_unit_test(test_parse_tcp),
		cmocka_unit_test(test_parse_icmp),
		cmocka_unit_test(test_parse_other),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_parse_rejects_tcp),
		cmocka_unit_test(test_parse_rejects_icmp),
		cmocka_unit_test(test_parse_fragments),
		cmocka_unit_test(test_set_src_dst_random),
		cmocka_unit_test(test_udp_zero_cksum),
		cmocka_unit_test(test_udp_cksum_becomes_zero),
		cmocka_unit_test(test_icmp_rewrite),
		cmocka_unit_test(test_parse_inner_truncated),
		cmocka_unit_test(test_clamp_mss),
		cmocka_unit_test(test_set_ttl),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
