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
 * Unit tests for nat.c: synthetic packets go through nat_input() and the
 * packets it sends are captured from a struct nat_io, then checked field
 * by field with every checksum summed again: translation both ways,
 * filtering, hairpinning, ICMP errors (RFC 5508), path MTU, fragments,
 * limits, and malformed input.
 *
 * The LAN is 10.0.0.0/24, the public address 203.0.113.1, the uplink
 * MTU 1400.  The random tests use a fixed seed; SIPNAT_TEST_SEED=<n>
 * picks another.
 */

#define DEFAULT_SEED	0x11a7c0deu
#define MAXCAP		128
#include "util.h"
#define START		10000
#define PUB		"203.0.113.1"
#define WAN_MTU		1400
#define PORT_LO		20000
#define PORT_HI		20099
#define TH_FIN		0x01
#define TH_SYN		0x02
#define TH_RST		0x04
#define TH_ACK		0x10
#define ICMP_ECHOREPLY	0
#define ICMP_UNREACH	3
#define ICMP_ECHO	8
#define ICMP_TIMXCEED	11

static struct config	 tc;

static uint16_t		 ip_id = 1;

static void	conf_fill(struct config *);
static void	restart(void);
static size_t	make_ip(uint8_t *, uint8_t, const char *, const char *,
		    size_t);
static size_t	make_udp(uint8_t *, const char *, uint16_t, const char *,
		    uint16_t, size_t);
static size_t	make_tcp(uint8_t *, const char *, uint16_t, const char *,
		    uint16_t, uint8_t, const uint8_t *, size_t);
static size_t	make_icmp(uint8_t *, const char *, const char *, uint8_t,
		    uint8_t, uint16_t, const uint8_t *, size_t);
static void	send_pkt(uint8_t *, size_t);
static void	assert_addr(const uint8_t *, const char *);
static uint16_t	udp_out(const char *, uint16_t, const char *, uint16_t);
static size_t	quote_of(uint8_t *, const uint8_t *, size_t, size_t);

static const struct nat_io io = {
	.to_wan = to_wan,
	.to_lan = to_lan,
};

/* The configuration the tests start from, filled by hand. */
static void
conf_fill(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->lan[0].addr = ip("10.0.0.0");
	c->lan[0].mask = ip("255.255.255.0");
	c->nlan = 1;
	c->wan_addr = ip(PUB);
	c->wan_mtu = WAN_MTU;
	c->tun_mtu = 1500;
	c->port_lo = PORT_LO;
	c->port_hi = PORT_HI;
	c->filtering = FILTER_ADDRESS_PORT_DEPENDENT;
	c->inbound_refresh = false;
	c->mss_clamp = true;
	c->to_udp = 120;
	c->to_tcp_est = 7440;
	c->to_tcp_trans = 240;
	c->to_icmp = 60;
	c->to_frag = 30;
	c->max_sessions = 1000;
	c->max_sessions_per_host = 100;
	c->frag_memory = 1 << 20;
}

/* Start the engine on tc, as sipnatd does, and give it its first tick. */
static void
restart(void)
{
	nat_table_free();
	frag_free();
	memset(stats, 0, sizeof stats);
	wan->n = lan->n = 0;
	wan->fail = lan->fail = 0;
	nat_set_now(START);
	assert_int_equal(nat_init(&tc, &io), 0);
	nat_tick(START);
}

/* Capture buffers and a running engine for each test. */
static int
setup(void **state)
{
	if ((wan = calloc(1, sizeof *wan)) == NULL ||
	    (lan = calloc(1, sizeof *lan)) == NULL)
		return (-1);
	conf_fill(&tc);
	rng_seed();
	memset(stats, 0, sizeof stats);
	nat_set_now(START);
	if (nat_init(&tc, &io) == -1)
		return (-1);
	nat_tick(START);
	return (0);
}

/* Stop the engine and free the buffers. */
static int
teardown(void **state)
{
	nat_table_free();
	frag_free();
	free(wan);
	free(lan);
	wan = lan = NULL;
	return (0);
}

/* A 20-byte IPv4 header for l4len bytes of payload; returns the total. */
static size_t
make_ip(uint8_t *buf, uint8_t proto, const char *src, const char *dst,
    size_t l4len)
{
	uint32_t	a;

	memset(buf, 0, 20);
	buf[0] = 0x45;
	pkt_put16(buf + 2, (uint16_t)(20 + l4len));
	pkt_put16(buf + 4, ip_id++);
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

/* A TCP segment with options and no payload. */
static size_t
make_tcp(uint8_t *buf, const char *src, uint16_t sport, const char *dst,
    uint16_t dport, uint8_t flags, const uint8_t *opt, size_t optlen)
{
	size_t	thl = 20 + optlen;
	size_t	len = make_ip(buf, IPPROTO_TCP, src, dst, thl);
	uint8_t	*l4 = buf + 20;

	memset(l4, 0, thl);
	pkt_put16(l4, sport);
	pkt_put16(l4 + 2, dport);
	pkt_put16(l4 + 4, 0x1234);
	l4[12] = (uint8_t)((thl / 4) << 4);
	l4[13] = flags;
	pkt_put16(l4 + 14, 65535);
	if (optlen > 0)
		memcpy(l4 + 20, opt, optlen);
	fix_l4(buf);
	return (len);
}

/* An ICMP message; word is the echo id; data follows the 8 bytes. */
static size_t
make_icmp(uint8_t *buf, const char *src, const char *dst, uint8_t type,
    uint8_t code, uint16_t word, const uint8_t *data, size_t dlen)
{
	size_t	len = make_ip(buf, IPPROTO_ICMP, src, dst, 8 + dlen);
	uint8_t	*l4 = buf + 20;

	memset(l4, 0, 8);
	l4[0] = type;
	l4[1] = code;
	pkt_put16(l4 + 4, word);
	if (type == ICMP_ECHO || type == ICMP_ECHOREPLY)
		pkt_put16(l4 + 6, 1);
	if (dlen > 0)
		memcpy(l4 + 8, data, dlen);
	fix_l4(buf);
	return (len);
}

/* Hand a copy to nat_input(), as the TUN reader would. */
static void
send_pkt(uint8_t *buf, size_t len)
{
	uint8_t	copy[SIPNAT_MAX_PKT];

	memcpy(copy, buf, len);
	nat_input(copy, len);
}

/* An address field is this one. */
static void
assert_addr(const uint8_t *field, const char *want)
{
	uint32_t	a = ip(want);

	assert_memory_equal(field, &a, 4);
}

/* Send one UDP packet out and return the public port it left from. */
static uint16_t
udp_out(const char *src, uint16_t sport, const char *dst, uint16_t dport)
{
	uint8_t	buf[256];
	size_t	len;
	int	n = wan->n;

	len = make_udp(buf, src, sport, dst, dport, 20);
	send_pkt(buf, len);
	assert_int_equal(wan->n, n + 1);
	return (pkt_get16(wan->buf[n] + 20));
}

/* Outbound UDP: the public source, the rest untouched, checksums right. */
static void
test_udp_out(void **state)
{
	uint8_t		 buf[256], *o;
	size_t		 len;
	uint16_t	 pub;

	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53, 40);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 1);
	assert_int_equal(lan->n, 0);
	o = wan->buf[0];
	assert_int_equal(wan->len[0], len);
	assert_valid(o, wan->len[0]);
	assert_addr(o + 12, PUB);
	assert_addr(o + 16, "192.0.2.1");
	pub = pkt_get16(o + 20);
	assert_true(pub >= PORT_LO && pub <= PORT_HI);
	assert_int_equal(pub % 2, 0);
	assert_int_equal(pkt_get16(o + 22), 53);
	assert_int_equal(o[8], 64);
	assert_memory_equal(o + 28, buf + 28, 40);
	assert_int_equal(stats[STAT_PKT_IN_LAN], 1);
	assert_int_equal(nat_session_count(), 1);
	assert_non_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 5000,
	    ip("192.0.2.1"), 53));

	/* The next packet of the flow uses the same port. */
	assert_int_equal(udp_out("10.0.0.2", 5000, "192.0.2.1", 53), pub);
	/* And so does one to another remote (endpoint-independent). */
	assert_int_equal(udp_out("10.0.0.2", 5000, "198.51.100.3", 3478), pub);
	assert_int_equal(nat_session_count(), 2);
	assert_int_equal(nat_mapping_count(), 1);
}

/* The reply comes back to the inside host, one TTL given back. */
static void
test_udp_reply(void **state)
{
	uint8_t		 buf[256], *o;
	size_t		 len;
	uint16_t	 pub;

	pub = udp_out("10.0.0.2", 5000, "192.0.2.1", 53);
	len = make_udp(buf, "192.0.2.1", 53, PUB, pub, 100);
	buf[8] = 50;
	fix_ip(buf);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	o = lan->buf[0];
	assert_int_equal(lan->len[0], len);
	assert_valid(o, len);
	assert_addr(o + 12, "192.0.2.1");
	assert_addr(o + 16, "10.0.0.2");
	assert_int_equal(pkt_get16(o + 20), 53);
	assert_int_equal(pkt_get16(o + 22), 5000);
	assert_int_equal(o[8], 51);
	assert_memory_equal(o + 28, buf + 28, 100);
	assert_int_equal(stats[STAT_PKT_IN_WAN], 1);
	assert_int_equal(stats[STAT_PKT_OUT_LAN], 1);
	assert_int_equal(stats[STAT_BYTES_OUT_LAN], len);

	/* A UDP datagram without a checksum keeps none. */
	len = make_udp(buf, "192.0.2.1", 53, PUB, pub, 10);
	buf[26] = buf[27] = 0;
	send_pkt(buf, len);
	assert_int_equal(lan->n, 2);
	assert_int_equal(pkt_get16(lan->buf[1] + 26), 0);
	assert_addr(lan->buf[1] + 16, "10.0.0.2");
	assert_int_equal(cksum(lan->buf[1], 20, 0), 0);
}

/* Unsolicited inbound: filtered unless filtering is independent. */
static void
test_filtering(void **state)
{
	uint8_t		buf[256];
	size_t		len;
	uint16_t	pub;

	pub = udp_out("10.0.0.2", 5000, "192.0.2.1", 53);
	/* Another remote, and the right remote from another port. */
	len = make_udp(buf, "198.51.100.9", 53, PUB, pub, 10);
	send_pkt(buf, len);
	len = make_udp(buf, "192.0.2.1", 54, PUB, pub, 10);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 0);
	assert_int_equal(stats[STAT_DROP_FILTERED], 2);
	/* A port nobody has. */
	len = make_udp(buf, "192.0.2.1", 53, PUB, (uint16_t)(pub + 1), 10);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_NO_MAPPING], 1);
	assert_int_equal(lan->n, 0);
	assert_int_equal(nat_session_count(), 1);

	/* Endpoint-independent: the stranger gets in, a session opens. */
	tc.filtering = FILTER_ENDPOINT_INDEPENDENT;
	nat_configure(&tc);
	len = make_udp(buf, "198.51.100.9", 53, PUB, pub, 10);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	assert_addr(lan->buf[0] + 16, "10.0.0.2");
	assert_int_equal(pkt_get16(lan->buf[0] + 22), 5000);
	assert_valid(lan->buf[0], lan->len[0]);
	assert_int_equal(nat_session_count(), 2);
	assert_non_null(nat_session_in(IPPROTO_UDP, pub, ip("198.51.100.9"),
	    53));
	/* Still nothing for a port without a mapping. */
	len = make_udp(buf, "192.0.2.1", 53, PUB, (uint16_t)(pub + 1), 10);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	assert_int_equal(stats[STAT_DROP_NO_MAPPING], 2);
}

/* Hairpin: one inside host reaches another through the public address. */
static void
test_hairpin(void **state)
{
	uint8_t		 buf[256], *o;
	size_t		 len;
	uint16_t	 pa, pb;

	tc.filtering = FILTER_ENDPOINT_INDEPENDENT;
	nat_configure(&tc);
	pa = udp_out("10.0.0.2", 5000, "192.0.2.1", 3478);
	len = make_udp(buf, "10.0.0.3", 6000, PUB, pa, 30);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 1);
	assert_int_equal(lan->n, 1);
	assert_int_equal(stats[STAT_HAIRPIN], 1);
	o = lan->buf[0];
	assert_valid(o, lan->len[0]);
	/* From B's public endpoint, to A's inside one. */
	assert_addr(o + 12, PUB);
	pb = pkt_get16(o + 20);
	assert_true(pb >= PORT_LO && pb <= PORT_HI);
	assert_int_not_equal(pb, pa);
	assert_addr(o + 16, "10.0.0.2");
	assert_int_equal(pkt_get16(o + 22), 5000);

	/* A answers B's public endpoint: B gets it, from A's. */
	len = make_udp(buf, "10.0.0.2", 5000, PUB, pb, 30);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 1);
	assert_int_equal(lan->n, 2);
	o = lan->buf[1];
	assert_valid(o, lan->len[1]);
	assert_addr(o + 12, PUB);
	assert_int_equal(pkt_get16(o + 20), pa);
	assert_addr(o + 16, "10.0.0.3");
	assert_int_equal(pkt_get16(o + 22), 6000);
	assert_int_equal(stats[STAT_HAIRPIN], 2);
}

/* ICMP echo: the id is translated out and back; no unsolicited reply. */
static void
test_icmp_echo(void **state)
{
	uint8_t		 buf[256], data[32], *o;
	size_t		 len;
	uint16_t	 id;

	memset(data, 0x61, sizeof data);
	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", ICMP_ECHO, 0, 0x0777,
	    data, sizeof data);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 1);
	o = wan->buf[0];
	assert_valid(o, wan->len[0]);
	assert_addr(o + 12, PUB);
	id = pkt_get16(o + 24);
	assert_true(id >= PORT_LO && id <= PORT_HI);
	assert_int_equal(o[20], ICMP_ECHO);

	len = make_icmp(buf, "192.0.2.1", PUB, ICMP_ECHOREPLY, 0, id, data,
	    sizeof data);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	o = lan->buf[0];
	assert_valid(o, lan->len[0]);
	assert_addr(o + 16, "10.0.0.2");
	assert_int_equal(pkt_get16(o + 24), 0x0777);

	/* A reply from someone never asked, even with filtering off. */
	tc.filtering = FILTER_ENDPOINT_INDEPENDENT;
	nat_configure(&tc);
	len = make_icmp(buf, "198.51.100.1", PUB, ICMP_ECHOREPLY, 0, id, data,
	    sizeof data);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	assert_int_equal(stats[STAT_DROP_FILTERED], 1);
	/* An echo request from outside is not forwarded. */
	len = make_icmp(buf, "198.51.100.1", PUB, ICMP_ECHO, 0, id, data,
	    sizeof data);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	assert_int_equal(stats[STAT_DROP_ICMP_TYPE], 1);
}

/* TCP: the SYN's MSS is clamped to the uplink; the flow goes both ways. */
static void
test_tcp(void **state)
{
	static const uint8_t	 opt[] = { 2, 4, 0x05, 0xb4, 1, 3, 3, 7 };
	struct nat_session	*s;
	uint8_t			 buf[256], *o;
	size_t			 len;
	uint16_t		 pub;

	len = make_tcp(buf, "10.0.0.2", 40000, "192.0.2.1", 443, TH_SYN, opt,
	    sizeof opt);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 1);
	o = wan->buf[0];
	assert_valid(o, wan->len[0]);
	assert_int_equal(pkt_get16(o + 40 + 2), WAN_MTU - 40);
	assert_int_equal(stats[STAT_MSS_CLAMPED], 1);
	pub = pkt_get16(o + 20);
	s = nat_session_out(IPPROTO_TCP, ip("10.0.0.2"), 40000,
	    ip("192.0.2.1"), 443);
	assert_non_null(s);
	assert_int_equal(s->tcp_state, TCP_SYN_OUT);

	len = make_tcp(buf, "192.0.2.1", 443, PUB, pub, TH_SYN | TH_ACK, opt,
	    sizeof opt);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	o = lan->buf[0];
	assert_valid(o, lan->len[0]);
	assert_addr(o + 16, "10.0.0.2");
	assert_int_equal(pkt_get16(o + 22), 40000);
	assert_int_equal(pkt_get16(o + 40 + 2), WAN_MTU - 40);
	assert_int_equal(s->tcp_state, TCP_ESTABLISHED);

	/* With clamping off the option is left alone. */
	tc.mss_clamp = false;
	nat_configure(&tc);
	len = make_tcp(buf, "10.0.0.2", 40001, "192.0.2.1", 443, TH_SYN, opt,
	    sizeof opt);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 2);
	assert_int_equal(pkt_get16(wan->buf[1] + 40 + 2), 1460);
	assert_valid(wan->buf[1], wan->len[1]);
}

/* Build the packet a remote router quotes: what we sent, TTL run out. */
static size_t
quote_of(uint8_t *q, const uint8_t *sent, size_t sentlen, size_t qlen)
{
	memcpy(q, sent, sentlen);
	q[8] = 1;
	fix_ip(q);
	return (qlen < sentlen ? qlen : sentlen);
}

/*
 * Time exceeded from a router on the way, quoting an outbound packet:
 * it goes to the inside host with the quote translated back, and the
 * outer IP, ICMP and inner IP checksums all valid (RFC 5508 REQ-3).
 */
static void
test_icmp_error_in(void **state)
{
	uint8_t		 buf[600], q[600], *o;
	struct pkt	 inner;
	size_t		 len, qlen;
	uint16_t	 pub;
	int		 full;

	pub = udp_out("10.0.0.2", 5000, "192.0.2.1", 53);
	for (full = 1; full >= 0; full--) {
		/* The whole datagram quoted, then only 8 bytes of UDP. */
		qlen = quote_of(q, wan->buf[0], wan->len[0], full ? 600 : 28);
		len = make_icmp(buf, "198.51.100.254", PUB, ICMP_TIMXCEED, 0,
		    0, q, qlen);
		lan->n = 0;
		send_pkt(buf, len);
		assert_int_equal(lan->n, 1);
		o = lan->buf[0];
		assert_int_equal(lan->len[0], len);
		/* Outer: IP header and the ICMP checksum. */
		assert_valid(o, lan->len[0]);
		assert_addr(o + 12, "198.51.100.254");
		assert_addr(o + 16, "10.0.0.2");
		assert_int_equal(o[20], ICMP_TIMXCEED);
		assert_int_equal(cksum(o + 20, len - 20, 0), 0);
		/* Inner: from the inside host, to the remote. */
		assert_int_equal(pkt_parse_inner(&inner, o + 28, qlen),
		    PKT_OK);
		assert_int_equal(cksum(o + 28, 20, 0), 0);
		assert_addr(o + 28 + 12, "10.0.0.2");
		assert_addr(o + 28 + 16, "192.0.2.1");
		assert_int_equal(inner.sport, 5000);
		assert_int_equal(inner.dport, 53);
		assert_int_equal(o[28 + 8], 1);
		if (full)
			assert_int_equal(cksum_l4(&inner), 0);
	}
	assert_int_equal(stats[STAT_ICMP_ERR_IN], 2);

	/* Quoting a flow we do not have: dropped. */
	qlen = quote_of(q, wan->buf[0], wan->len[0], 28);
	pkt_put16(q + 20, pub == PORT_HI ? PORT_LO : pub + 1);
	len = make_icmp(buf, "198.51.100.254", PUB, ICMP_TIMXCEED, 0, 0, q,
	    qlen);
	lan->n = 0;
	send_pkt(buf, len);
	assert_int_equal(lan->n, 0);
	assert_int_equal(stats[STAT_DROP_ICMP_UNMATCHED], 1);

	/* A quote cut inside its IP header: malformed. */
	len = make_icmp(buf, "198.51.100.254", PUB, ICMP_TIMXCEED, 0, 0, q,
	    12);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 0);
	assert_int_equal(stats[STAT_DROP_MALFORMED], 1);
}

/* An ICMP error about an echo request: the quoted id goes back too. */
static void
test_icmp_error_in_echo(void **state)
{
	uint8_t		 buf[600], q[600], data[16], *o;
	size_t		 len, qlen;

	memset(data, 0x62, sizeof data);
	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", ICMP_ECHO, 0, 0x0555,
	    data, sizeof data);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 1);
	qlen = quote_of(q, wan->buf[0], wan->len[0], 600);
	len = make_icmp(buf, "198.51.100.254", PUB, ICMP_UNREACH, 1, 0, q,
	    qlen);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	o = lan->buf[0];
	assert_valid(o, lan->len[0]);
	assert_addr(o + 16, "10.0.0.2");
	assert_addr(o + 28 + 12, "10.0.0.2");
	assert_int_equal(pkt_get16(o + 28 + 24), 0x0555);
	assert_int_equal(cksum(o + 28, 20, 0), 0);
	/* The quoted echo request is whole: its checksum holds too. */
	assert_int_equal(cksum(o + 48, qlen - 20, 0), 0);
}

/* An inside host's ICMP error about an inbound packet goes out right. */
static void
test_icmp_error_out(void **state)
{
	uint8_t		 buf[600], in[256], *o;
	struct pkt	 inner;
	size_t		 len, inlen;
	uint16_t	 pub;

	pub = udp_out("10.0.0.2", 5000, "192.0.2.1", 53);
	inlen = make_udp(in, "192.0.2.1", 53, PUB, pub, 20);
	send_pkt(in, inlen);
	assert_int_equal(lan->n, 1);
	/* Port unreachable, quoting the packet as the host got it. */
	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", ICMP_UNREACH, 3, 0,
	    lan->buf[0], lan->len[0]);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 2);
	o = wan->buf[1];
	assert_valid(o, wan->len[1]);
	assert_addr(o + 12, PUB);
	assert_addr(o + 16, "192.0.2.1");
	assert_int_equal(cksum(o + 20, len - 20, 0), 0);
	assert_int_equal(pkt_parse_inner(&inner, o + 28, len - 28), PKT_OK);
	assert_int_equal(cksum(o + 28, 20, 0), 0);
	assert_addr(o + 28 + 12, "192.0.2.1");
	assert_addr(o + 28 + 16, PUB);
	assert_int_equal(inner.dport, pub);
	assert_int_equal(inner.sport, 53);
	assert_int_equal(cksum_l4(&inner), 0);
	assert_int_equal(stats[STAT_ICMP_ERR_OUT], 1);

	/* About a flow we do not know: dropped. */
	inlen = make_udp(in, "192.0.2.9", 53, "10.0.0.2", 5000, 20);
	len = make_icmp(buf, "10.0.0.2", "192.0.2.9", ICMP_UNREACH, 3, 0, in,
	    inlen);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 2);
	assert_int_equal(stats[STAT_DROP_ICMP_UNMATCHED], 1);
}

/* DF and too big for the uplink: fragmentation needed, to the host. */
static void
test_df_too_big(void **state)
{
	uint8_t		 buf[2000], *o;
	size_t		 len;

	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53,
	    WAN_MTU - 28 + 1);
	pkt_put16(buf + 6, IP_DF);
	fix_ip(buf);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 0);
	assert_int_equal(lan->n, 1);
	assert_int_equal(stats[STAT_DROP_DF_TOO_BIG], 1);
	assert_int_equal(stats[STAT_ICMP_SENT], 1);
	o = lan->buf[0];
	assert_int_equal(lan->len[0], 576);
	assert_valid(o, lan->len[0]);
	assert_int_equal(o[9], IPPROTO_ICMP);
	assert_addr(o + 12, PUB);
	assert_addr(o + 16, "10.0.0.2");
	assert_int_equal(o[20], ICMP_UNREACH);
	assert_int_equal(o[21], 4);
	assert_int_equal(pkt_get16(o + 26), WAN_MTU);
	assert_int_equal(cksum(o + 20, lan->len[0] - 20, 0), 0);
	/* The quote is the packet as the host sent it. */
	assert_memory_equal(o + 28, buf, 576 - 28);
	assert_int_equal(nat_session_count(), 0);

	/* Exactly the MTU passes. */
	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53, WAN_MTU - 28);
	pkt_put16(buf + 6, IP_DF);
	fix_ip(buf);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 1);
	assert_int_equal(wan->len[0], WAN_MTU);
	assert_valid(wan->buf[0], wan->len[0]);
}

/* ICMP errors sipnatd makes are rate limited per second. */
static void
test_icmp_rate(void **state)
{
	uint8_t		buf[2000];
	size_t		len;
	int		i;

	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53, WAN_MTU);
	pkt_put16(buf + 6, IP_DF);
	fix_ip(buf);
	for (i = 0; i < 150; i++)
		send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_DF_TOO_BIG], 150);
	assert_true(lan->n >= 1 && lan->n < 150);
	i = lan->n;
	nat_set_now(START + 1);
	nat_tick(START + 1);
	send_pkt(buf, len);
	assert_int_equal(lan->n, i + 1);
}

/* The first error after start is sent, before any tick. */
static void
test_icmp_before_tick(void **state)
{
	uint8_t		buf[2000];
	size_t		len;

	nat_table_free();
	frag_free();
	nat_set_now(START);
	assert_int_equal(nat_init(&tc, &io), 0);
	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53, WAN_MTU);
	pkt_put16(buf + 6, IP_DF);
	fix_ip(buf);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_DF_TOO_BIG], 1);
	assert_int_equal(lan->n, 1);
}

/* Without DF a large packet is cut to the uplink MTU after translation. */
static void
test_fragment_out(void **state)
{
	uint8_t		 buf[4000], whole[4000], *o;
	struct pkt	 p;
	size_t		 len, off = 0, plen, hl;
	uint16_t	 w;
	int		 i;

	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53, 3000);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 3);
	assert_int_equal(stats[STAT_FRAG_OUT], 3);
	/* Put it together again by hand. */
	memset(whole, 0, sizeof whole);
	for (i = 0; i < wan->n; i++) {
		o = wan->buf[i];
		hl = (o[0] & 0x0f) * 4;
		assert_true(wan->len[i] <= WAN_MTU);
		assert_int_equal(pkt_get16(o + 2), wan->len[i]);
		assert_int_equal(cksum(o, hl, 0), 0);
		assert_addr(o + 12, PUB);
		assert_addr(o + 16, "192.0.2.1");
		w = pkt_get16(o + 6);
		assert_int_equal((size_t)(w & IP_OFFMASK) * 8, off);
		assert_int_equal((w & IP_MF) != 0, i < wan->n - 1);
		plen = wan->len[i] - hl;
		if (i == 0)
			memcpy(whole, o, hl);
		memcpy(whole + 20 + off, o + hl, plen);
		off += plen;
	}
	assert_int_equal(off, len - 20);
	pkt_put16(whole + 2, (uint16_t)len);
	pkt_put16(whole + 6, 0);
	fix_ip(whole);
	assert_int_equal(pkt_parse(&p, whole, len), PKT_OK);
	assert_int_equal(cksum_l4(&p), 0);
	assert_int_equal(p.dport, 53);
	assert_true(p.sport >= PORT_LO && p.sport <= PORT_HI);
	assert_memory_equal(whole + 28, buf + 28, 3000);
}

/* Fragments from the LAN are put together, translated and sent. */
static void
test_fragment_in(void **state)
{
	uint8_t		 buf[2000], f1[2000], f2[2000], *o;
	size_t		 len, l1, l2;

	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53, 992);
	/* First 800 bytes of UDP, then the rest. */
	memcpy(f1, buf, 20 + 800);
	pkt_put16(f1 + 2, 20 + 800);
	pkt_put16(f1 + 6, IP_MF);
	fix_ip(f1);
	l1 = 20 + 800;
	memcpy(f2, buf, 20);
	memcpy(f2 + 20, buf + 20 + 800, len - 20 - 800);
	l2 = len - 800;
	pkt_put16(f2 + 2, (uint16_t)l2);
	pkt_put16(f2 + 6, 800 / 8);
	fix_ip(f2);
	send_pkt(f2, l2);
	assert_int_equal(wan->n, 0);
	send_pkt(f1, l1);
	assert_int_equal(wan->n, 1);
	o = wan->buf[0];
	assert_int_equal(wan->len[0], len);
	assert_valid(o, len);
	assert_addr(o + 12, PUB);
	assert_int_equal(pkt_get16(o + 22), 53);
	assert_memory_equal(o + 28, buf + 28, 992);
	assert_int_equal(stats[STAT_FRAG_REASSEMBLED], 1);
	assert_int_equal(stats[STAT_FRAG_IN], 2);
}

/* Limits: the refused host is told (administratively prohibited). */
static void
test_limits(void **state)
{
	uint8_t		buf[256], *o;
	size_t		len;
	char		rem[32];
	int		i;

	tc.max_sessions_per_host = 3;
	restart();
	for (i = 0; i < 3; i++) {
		snprintf(rem, sizeof rem, "192.0.2.%d", 1 + i);
		udp_out("10.0.0.2", 5000, rem, 53);
	}
	len = make_udp(buf, "10.0.0.2", 5001, "192.0.2.99", 53, 10);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 3);
	assert_int_equal(stats[STAT_DROP_LIMIT], 1);
	assert_int_equal(stats[STAT_SESS_REFUSED_HOST], 1);
	assert_int_equal(lan->n, 1);
	o = lan->buf[0];
	assert_valid(o, lan->len[0]);
	assert_int_equal(o[20], ICMP_UNREACH);
	assert_int_equal(o[21], 13);
	assert_addr(o + 16, "10.0.0.2");
	/* The refused flow left no mapping behind. */
	assert_null(nat_mapping_find(IPPROTO_UDP, ip("10.0.0.2"), 5001));
	assert_int_equal(nat_mapping_count(), 1);
	/* Another host is not affected. */
	udp_out("10.0.0.3", 5000, "192.0.2.1", 53);

	/* Every public port taken: no port. */
	tc.max_sessions_per_host = 1000;
	tc.port_hi = PORT_LO + 1;
	restart();
	udp_out("10.0.0.2", 1, "192.0.2.1", 53);
	udp_out("10.0.0.2", 2, "192.0.2.1", 53);
	len = make_udp(buf, "10.0.0.2", 3, "192.0.2.1", 53, 10);
	send_pkt(buf, len);
	assert_int_equal(wan->n, 2);
	assert_int_equal(stats[STAT_DROP_NO_PORT], 1);
}

/*
 * A flow refused by a limit must leave a helper's hold on the mapping
 * alone: the mapping a helper keeps is not the refused flow's to free.
 */
static void
test_limit_keeps_hold(void **state)
{
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	uint8_t			 buf[256];
	size_t			 len;

	tc.max_sessions_per_host = 1;
	restart();
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 5060, &why);
	assert_non_null(m);
	nat_mapping_hold(m);
	udp_out("10.0.0.2", 5060, "192.0.2.1", 5060);
	len = make_udp(buf, "10.0.0.2", 5060, "192.0.2.2", 5060, 10);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_LIMIT], 1);
	assert_int_equal(m->holds, 1);
	/* The session ends; the held mapping stays. */
	nat_set_now(START + 1000);
	nat_tick(START + 1000);
	assert_int_equal(nat_session_count(), 0);
	assert_ptr_equal(nat_mapping_find(IPPROTO_UDP, ip("10.0.0.2"), 5060),
	    m);
	nat_mapping_release(m);
	assert_int_equal(nat_mapping_count(), 0);
}

/* Sessions expire through nat_tick; then replies are dropped. */
static void
test_expiry(void **state)
{
	uint8_t		buf[256];
	size_t		len;
	uint16_t	pub;

	pub = udp_out("10.0.0.2", 5000, "192.0.2.1", 53);
	nat_set_now(START + 119);
	nat_tick(START + 119);
	len = make_udp(buf, "192.0.2.1", 53, PUB, pub, 10);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	/* Inbound does not refresh (inbound_refresh off). */
	nat_set_now(START + 120);
	nat_tick(START + 120);
	assert_int_equal(nat_session_count(), 0);
	send_pkt(buf, len);
	assert_int_equal(lan->n, 1);
	assert_int_equal(stats[STAT_DROP_NO_MAPPING], 1);
}

/* Packets that are not ours, or not IPv4, or broken, are counted. */
static void
test_malformed(void **state)
{
	uint8_t		buf[256];
	size_t		len;

	/* Short, IPv6, a bad header length, a length past the buffer. */
	len = make_udp(buf, "10.0.0.2", 1, "192.0.2.1", 2, 10);
	send_pkt(buf, 10);
	buf[0] = 0x60;
	send_pkt(buf, len);
	buf[0] = 0x43;
	send_pkt(buf, len);
	buf[0] = 0x45;
	send_pkt(buf, len - 1);
	/* UDP length past the datagram. */
	pkt_put16(buf + 24, 200);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_NOT_IPV4], 1);
	assert_int_equal(stats[STAT_DROP_MALFORMED], 4);

	/* Neither from the LAN nor to us. */
	len = make_udp(buf, "192.0.2.1", 1, "192.0.2.2", 2, 10);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_NOT_OURS], 1);
	/* A protocol without ports. */
	len = make_ip(buf, 47, "10.0.0.2", "192.0.2.1", 8);
	memset(buf + 20, 0, 8);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_UNKNOWN_PROTO], 1);
	/* An ICMP type that is neither echo nor error. */
	len = make_icmp(buf, "10.0.0.2", "192.0.2.1", 13, 0, 1, NULL, 0);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_ICMP_TYPE], 1);
	assert_int_equal(wan->n, 0);
	assert_int_equal(lan->n, 0);
}

/* A failing uplink or TUN is counted, not fatal. */
static void
test_io_errors(void **state)
{
	uint8_t		buf[256];
	size_t		len;
	uint16_t	pub;

	pub = udp_out("10.0.0.2", 5000, "192.0.2.1", 53);
	wan->fail = lan->fail = 1;
	len = make_udp(buf, "10.0.0.2", 5000, "192.0.2.1", 53, 10);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_UPLINK], 1);
	len = make_udp(buf, "192.0.2.1", 53, PUB, pub, 10);
	send_pkt(buf, len);
	assert_int_equal(stats[STAT_DROP_TUN], 1);
	assert_int_equal(stats[STAT_PKT_OUT_LAN], 0);
}

/*
 * Random bytes and randomly damaged valid packets, from both sides:
 * nothing crashes (run under ASan), every packet sent is well formed.
 */
static void
test_garbage(void **state)
{
	uint8_t		buf[1600], q[600];
	size_t		len, qlen;
	uint16_t	pub;
	int		i, j, k;

	tc.filtering = FILTER_ENDPOINT_INDEPENDENT;
	nat_configure(&tc);
	pub = udp_out("10.0.0.2", 5000, "192.0.2.1", 53);
	qlen = quote_of(q, wan->buf[0], wan->len[0], 600);
	for (i = 0; i < 20000; i++) {
		wan->n = lan->n = 0;
		switch (i % 5) {
		case 0:
			len = rng() % sizeof buf;
			for (j = 0; j < (int)len; j++)
				buf[j] = (uint8_t)rng();
			if (len > 0)
				buf[0] = (uint8_t)(0x45 + rng() % 11);
			break;
		case 1:
			len = make_udp(buf, "10.0.0.2", (uint16_t)rng(),
			    "192.0.2.1", 53, rng() % 1500);
			break;
		case 2:
			len = make_udp(buf, "192.0.2.1", 53, PUB, pub,
			    rng() % 1000);
			break;
		case 3:
			len = make_icmp(buf, "198.51.100.254", PUB,
			    ICMP_TIMXCEED, 0, 0, q, rng() % (qlen + 1));
			break;
		default:
			len = make_tcp(buf, "10.0.0.2", (uint16_t)rng(),
			    "192.0.2.1", 80, (uint8_t)rng(), NULL, 0);
			break;
		}
		/* Damage a few bytes, or the lengths. */
		for (k = rng() % 4; k > 0 && len > 0; k--)
			buf[rng() % len] = (uint8_t)rng();
		if (rng() % 8 == 0 && len > 4)
			len -= rng() % 4;
		nat_input(buf, len);
		for (j = 0; j < wan->n; j++)
			assert_true(wan->len[j] >= 20 &&
			    wan->len[j] <= WAN_MTU);
		for (j = 0; j < lan->n; j++)
			assert_true(lan->len[j] >= 20);
		if (i % 1000 == 999) {
			nat_set_now(START + (uint64_t)i / 100);
			nat_tick(START + (uint64_t)i / 100);
		}
	}
	assert_true(stats[STAT_DROP_MALFORMED] > 0);
}

/* Run the translation tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_udp_out),
		T(test_udp_reply),
		T(test_filtering),
		T(test_hairpin),
		T(test_icmp_echo),
		T(test_tcp),
		T(test_icmp_error_in),
		T(test_icmp_error_in_echo),
		T(test_icmp_error_out),
		T(test_df_too_big),
		T(test_icmp_rate),
		T(test_icmp_before_tick),
		T(test_fragment_out),
		T(test_fragment_in),
		T(test_limits),
		T(test_limit_keeps_hold),
		T(test_expiry),
		T(test_malformed),
		T(test_io_errors),
		T(test_garbage),
#undef T
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
