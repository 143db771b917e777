/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sipnat.h"

/*
 * libFuzzer target for the translation engine: each input becomes one
 * packet for nat_input().  The engine is set up once and keeps its state
 * from input to input, so a packet can meet the sessions and fragments
 * earlier ones left, and the clock moves on now and then.
 *
 * Most inputs are turned into packets the parser accepts, so that the
 * fuzzer spends its time past the header checks:
 *
 *	byte 0	bits 0-2: mode (below); bit 3: from the WAN (else LAN);
 *		bit 4: advance the clock first; bit 5: set DF;
 *		bits 6-7: which inside host (10.0.0.2-5)
 *	byte 1	bits 0-2: inside port PORT_LO+n (kept as the public port
 *		when free, so byte 2 can name it), or the echo id; bits 3-4:
 *		remote host (the last one is our public address: hairpin);
 *		bits 5-7: remote port 53+n
 *	byte 2	the public port, PORT_LO + n % the range
 *	byte 3	a mode's own byte: TCP flags, ICMP type, fragment offset
 *	rest	the payload
 *
 * Modes: 0 the rest of the input as is; 1 UDP; 2 TCP, options from the
 * payload; 3 ICMP echo (request out, reply in); 4 an ICMP error quoting
 * a packet of a flow made from the same bytes; 5 a fragment; 6 a UDP
 * datagram larger than the uplink MTU; 7 a TCP SYN with an MSS option.
 *
 * Every packet sent is checked: to the WAN from the public address and
 * no larger than the MTU, to the LAN for a LAN address, and when the
 * input was built with valid checksums, every checksum still holds.
 * A broken check aborts, which libFuzzer reports as a crash.
 *
 * Build and run (copy the seeds, so new inputs stay out of the tree):
 *	clang -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *	    -Iinclude -DINI_HANDLER_LINENO=1 \
 *	    $(pkg-config --cflags sofia-sip-ua) tests/fuzz/fuzz-nat.c \
 *	    src/{nat,alg,alg-sip,nat-table,pkt,cksum,frag,timer}.c \
 *	    src/{stats,log,config}.c -linih \
 *	    $(pkg-config --libs sofia-sip-ua libevent) -o /tmp/fuzz-nat
 *	cp -r tests/fuzz/corpus/nat /tmp/corpus
 *	/tmp/fuzz-nat -max_total_time=60 /tmp/corpus
 */

#define PUB_ADDR	0xcb007101	/* 203.0.113.1 */
#define LAN_NET		0x0a000000	/* 10.0.0.0/24 */
#define PORT_LO		20000
#define PORT_HI		20015
#define WAN_MTU		1400
#define MAX_BUILT	4096

#define CHECK(x)	do { if (!(x)) check_failed(__LINE__, #x, buf, len); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct config	 fconf;

static uint64_t		 now = 1000;
static int		 strict;	/* the input had valid checksums */
static uint8_t		 pkt[SIPNAT_MAX_PKT];
static uint8_t		 fed[SIPNAT_MAX_PKT];	/* the packet as built */
static size_t		 fedlen;

static const uint32_t	 remotes[4] = {
	0xc0000201,		/* 192.0.2.1 */
	0xc6336407,		/* 198.51.100.7 */
	0xc63364fe,		/* 198.51.100.254 */
	PUB_ADDR,		/* ourselves: hairpin */
};

static void	check_failed(int, const char *, const uint8_t *, size_t)
		    __attribute__((noreturn));
static void	hex(const char *, const uint8_t *, size_t);
static void	check_out(const uint8_t *, size_t);
static void	feed(size_t);
static int	io_wan(const uint8_t *, size_t);
static int	io_lan(const uint8_t *, size_t);
static void	setup(void);
static void	fix_ip(uint8_t *);
static void	fix_l4(uint8_t *, bool);
static size_t	build_ip(uint8_t *, uint8_t, uint32_t, uint32_t, size_t,
		    bool);
static size_t	build_l4(uint8_t *, uint8_t, uint32_t, uint16_t, uint32_t,
		    uint16_t, const uint8_t *, size_t, uint8_t, bool);

static const struct nat_io fio = {
	.to_wan = io_wan,
	.to_lan = io_lan,
};

/*
 * A broken check: say which, with the packet fed in and the one sent.
 * The engine keeps state from earlier inputs, so the crashing input alone
 * may not fail again: these two lines are what there is to go on.
 */
static void
check_failed(int line, const char *what, const uint8_t *buf, size_t len)
{
	fprintf(stderr, "fuzz-nat.c:%d: check failed: %s\n", line, what);
	hex("fed in", fed, fedlen);
	hex("sent", buf, len);
	abort();
}

/* A packet in hex on one line. */
static void
hex(const char *what, const uint8_t *buf, size_t len)
{
	size_t	i;

	fprintf(stderr, "%s:", what);
	for (i = 0; i < len && i < 256; i++)
		fprintf(stderr, "%s%02x", i % 4 == 0 ? " " : "", buf[i]);
	fprintf(stderr, "%s\n", len > 256 ? " ..." : "");
}

/* Checks on a packet the engine sent. */
static void
check_out(const uint8_t *buf, size_t len)
{
	uint8_t		 copy[SIPNAT_MAX_PKT];
	struct pkt	 p;
	uint16_t	*sum;

	CHECK(len >= IP_HDR_MIN && len <= SIPNAT_MAX_PKT);
	if (!strict)
		return;
	memcpy(copy, buf, len);
	CHECK(pkt_parse(&p, copy, len) == PKT_OK);
	CHECK(p.len == len);
	CHECK(cksum(copy, p.hl, 0) == 0);
	if (p.l4 == NULL || (sum = pkt_l4_cksum(&p)) == NULL)
		return;
	if (p.proto == IPPROTO_UDP && *sum == 0)
		return;
	CHECK(cksum_l4(&p) == 0);
}

/* The uplink: from the public address, within the MTU. */
static int
io_wan(const uint8_t *buf, size_t len)
{
	uint32_t	src;

	CHECK(len >= IP_HDR_MIN && len <= WAN_MTU);
	memcpy(&src, buf + 12, 4);
	CHECK(src == htonl(PUB_ADDR));
	check_out(buf, len);
	return (0);
}

/*
 * The TUN: only to LAN addresses, or an ICMP message handed back to the
 * gateway itself (an echo reply no mapping owns).
 */
static int
io_lan(const uint8_t *buf, size_t len)
{
	uint32_t	dst;

	CHECK(len >= IP_HDR_MIN);
	memcpy(&dst, buf + 16, 4);
	CHECK((ntohl(dst) & 0xffffff00) == LAN_NET ||
	    (ntohl(dst) == PUB_ADDR && buf[9] == IPPROTO_ICMP));
	check_out(buf, len);
	return (0);
}

/* Set the engine up once, with small limits so they are reached. */
static void
setup(void)
{
	memset(&fconf, 0, sizeof fconf);
	fconf.lan[0].addr = htonl(LAN_NET);
	fconf.lan[0].mask = htonl(0xffffff00);
	fconf.nlan = 1;
	fconf.wan_addr = htonl(PUB_ADDR);
	fconf.wan_mtu = WAN_MTU;
	fconf.tun_mtu = 1500;
	fconf.port_lo = PORT_LO;
	fconf.port_hi = PORT_HI;
	fconf.filtering = FILTER_ADDRESS_PORT_DEPENDENT;
	fconf.inbound_refresh = true;
	fconf.mss_clamp = true;
	fconf.to_udp = 30;
	fconf.to_tcp_est = 300;
	fconf.to_tcp_trans = 20;
	fconf.to_icmp = 10;
	fconf.to_frag = 5;
	fconf.max_sessions = 24;
	fconf.max_sessions_per_host = 8;
	fconf.frag_memory = 3 * 70000;
	log_init(1, 0);
	nat_set_now(now);
	if (nat_init(&fconf, &fio) == -1)
		abort();
	nat_tick(now);
}

/* Recompute the IPv4 header checksum. */
static void
fix_ip(uint8_t *buf)
{
	uint16_t	w;

	buf[10] = buf[11] = 0;
	w = cksum(buf, (buf[0] & 0x0f) * 4, 0);
	memcpy(buf + 10, &w, 2);
}

/* Recompute the transport checksum over the whole datagram. */
static void
fix_l4(uint8_t *buf, bool zero_udp)
{
	unsigned	hl = (buf[0] & 0x0f) * 4;
	size_t		l4len = (size_t)(buf[2] << 8 | buf[3]) - hl, off;
	uint8_t		*l4 = buf + hl, ph[12];
	uint32_t	sum = 0;
	uint16_t	w;

	switch (buf[9]) {
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
		return;
	}
	if (l4len < off + 2)
		return;
	l4[off] = l4[off + 1] = 0;
	if (buf[9] == IPPROTO_UDP && zero_udp)
		return;
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

/* An IPv4 header (addresses in host order); returns the total length. */
static size_t
build_ip(uint8_t *buf, uint8_t proto, uint32_t src, uint32_t dst,
    size_t l4len, bool df)
{
	static uint16_t	id;
	uint32_t	a;

	memset(buf, 0, IP_HDR_MIN);
	buf[0] = 0x45;
	pkt_put16(buf + 2, (uint16_t)(IP_HDR_MIN + l4len));
	pkt_put16(buf + 4, id++);
	pkt_put16(buf + 6, df ? IP_DF : 0);
	buf[8] = 64;
	buf[9] = proto;
	a = htonl(src);
	memcpy(buf + 12, &a, 4);
	a = htonl(dst);
	memcpy(buf + 16, &a, 4);
	fix_ip(buf);
	return (IP_HDR_MIN + l4len);
}

/*
 * A whole datagram of proto between two endpoints around data, with
 * valid checksums.  For TCP the first payload byte asks for options,
 * taken from the bytes after it; for ICMP, sport is the echo id and
 * flags the type.
 */
static size_t
build_l4(uint8_t *buf, uint8_t proto, uint32_t src, uint16_t sport,
    uint32_t dst, uint16_t dport, const uint8_t *data, size_t dlen,
    uint8_t flags, bool df)
{
	uint8_t	*l4 = buf + IP_HDR_MIN;
	size_t	 hl, optlen = 0, len;

	if (dlen > MAX_BUILT)
		dlen = MAX_BUILT;
	switch (proto) {
	case IPPROTO_TCP:
		if (dlen > 0) {
			optlen = (size_t)(data[0] & 0x0f) * 4;
			if (optlen > 40)
				optlen = 40;
			if (optlen > dlen - 1)
				optlen = (dlen - 1) & ~(size_t)3;
			data++;
			dlen--;
		}
		hl = 20 + optlen;
		len = build_ip(buf, proto, src, dst, hl + dlen - optlen, df);
		memset(l4, 0, 20);
		pkt_put16(l4, sport);
		pkt_put16(l4 + 2, dport);
		l4[12] = (uint8_t)((hl / 4) << 4);
		l4[13] = flags;
		pkt_put16(l4 + 14, 8192);
		memcpy(l4 + 20, data, dlen);
		break;
	case IPPROTO_ICMP:
		len = build_ip(buf, proto, src, dst, 8 + dlen, df);
		memset(l4, 0, 8);
		l4[0] = flags;
		pkt_put16(l4 + 4, sport);
		memcpy(l4 + 8, data, dlen);
		break;
	default:
		len = build_ip(buf, IPPROTO_UDP, src, dst, 8 + dlen, df);
		pkt_put16(l4, sport);
		pkt_put16(l4 + 2, dport);
		pkt_put16(l4 + 4, (uint16_t)(8 + dlen));
		memcpy(l4 + 8, data, dlen);
		break;
	}
	fix_l4(buf, proto == IPPROTO_UDP && (flags & 1));
	return (len);
}

/* Hand the packet built in pkt over, keeping a copy for check_failed(). */
static void
feed(size_t len)
{
	memcpy(fed, pkt, len);
	fedlen = len;
	nat_input(pkt, len);
}

/* One input: maybe move the clock, build a packet, hand it over. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool	 ready;
	static uint8_t	 big[MAX_BUILT];
	static uint8_t	 inner[IP_HDR_MIN + 60 + MAX_BUILT];
	const uint8_t	*pay;
	size_t		 plen, len, i, off, ilen;
	uint32_t	 host, rem, src, dst;
	uint16_t	 inport, remport, pubport, sport, dport;
	uint8_t		 c, mode, b3, proto;
	bool		 in, df;

	if (!ready) {
		setup();
		ready = true;
	}
	fedlen = 0;
	if (size < 1)
		return (0);
	c = data[0];
	mode = c & 7;
	in = (c & 0x08) != 0;
	df = (c & 0x20) != 0;
	if (c & 0x10) {
		/* Mostly small steps, sometimes past every timeout. */
		now += size > 1 && data[1] == 0xff ? 100000 :
		    1 + (size > 3 ? data[3] % 40 : 0);
		nat_set_now(now);
		nat_tick(now);
	}
	strict = 0;
	if (mode == 0 || size < 4) {
		len = size - 1;
		memcpy(pkt, data + 1, len);
		feed(len);
		return (0);
	}
	host = LAN_NET + 2 + (c >> 6);
	inport = (uint16_t)(PORT_LO + (data[1] & 7));
	rem = remotes[(data[1] >> 3) & 3];
	remport = (uint16_t)(53 + (data[1] >> 5));
	pubport = (uint16_t)(PORT_LO + data[2] % (PORT_HI - PORT_LO + 1));
	b3 = data[3];
	pay = data + 4;
	plen = size - 4;
	if (in) {
		src = rem == PUB_ADDR ? remotes[0] : rem;
		sport = remport;
		dst = PUB_ADDR;
		dport = pubport;
	} else {
		src = host;
		sport = inport;
		dst = rem;
		dport = rem == PUB_ADDR ? pubport : remport;
	}
	strict = 1;
	switch (mode) {
	case 1:
		len = build_l4(pkt, IPPROTO_UDP, src, sport, dst, dport, pay,
		    plen, b3, df);
		break;
	case 2:
		len = build_l4(pkt, IPPROTO_TCP, src, sport, dst, dport, pay,
		    plen, b3, df);
		break;
	case 3:
		/* Out: a request with the inside id; in: a reply to ours. */
		len = build_l4(pkt, IPPROTO_ICMP, src, in ? pubport : inport,
		    dst, 0, pay, plen, b3 & 0x80 ? b3 & 0x1f : in ? 0 : 8, df);
		break;
	case 4:
		/*
		 * An error about a packet of the flow these bytes name: in,
		 * one we sent (public -> remote); out, one we delivered
		 * (remote -> inside).  The quote may be cut anywhere.
		 */
		proto = (b3 & 0x30) == 0x10 ? IPPROTO_TCP :
		    (b3 & 0x30) == 0x20 ? IPPROTO_ICMP : IPPROTO_UDP;
		if (in)
			ilen = build_l4(inner, proto, PUB_ADDR, pubport, rem,
			    remport, pay, plen,
			    proto == IPPROTO_ICMP ? 8 : 0x02, false);
		else
			ilen = build_l4(inner, proto, rem, remport, host,
			    inport, pay, plen, proto == IPPROTO_ICMP ? 0 : 0x12,
			    false);
		/* The first byte also says where to cut the quote. */
		off = plen == 0 ? ilen : pay[0] < 20 ? pay[0] :
		    (size_t)pay[0] + 8;
		if (off < ilen)
			ilen = off;
		if (ilen > MAX_BUILT - 64)
			ilen = MAX_BUILT - 64;
		len = build_l4(pkt, IPPROTO_ICMP, in ? rem : host, 0,
		    in ? PUB_ADDR : rem, 0, inner, ilen,
		    (const uint8_t []){ 3, 11, 12, 4 }[b3 & 3], false);
		if (in && rem == PUB_ADDR)
			len = 0;
		pkt[IP_HDR_MIN + 1] = (b3 >> 6) == 1 ? 4 : b3 >> 6;
		if (len > 0)
			fix_l4(pkt, false);
		break;
	case 5:
		/* A fragment of a datagram, at an offset, MF as told. */
		len = build_l4(pkt, (b3 & 0x80) ? IPPROTO_TCP : IPPROTO_UDP,
		    src, sport, dst, dport, pay, plen, 0x02, false);
		off = (size_t)(b3 & 0x1f) * 8;
		if (off > 0) {
			/* Later fragments carry the payload only. */
			if (plen > MAX_BUILT)
				plen = MAX_BUILT;
			memmove(pkt + IP_HDR_MIN, pay, plen);
			len = IP_HDR_MIN + plen;
		}
		if ((b3 & 0x40) && !(b3 & 0x20))
			len = IP_HDR_MIN + ((len - IP_HDR_MIN) & ~(size_t)7);
		pkt_put16(pkt + 2, (uint16_t)len);
		pkt_put16(pkt + 4, (uint16_t)(0x4000 + (c >> 6)));
		pkt_put16(pkt + 6, (uint16_t)((b3 & 0x40 ? IP_MF : 0) | off / 8));
		fix_ip(pkt);
		strict = 0;
		break;
	case 6:
		/* Larger than the uplink takes: cut or refused, by DF. */
		ilen = WAN_MTU - 28 + 1 + (plen > 0 ? pay[0] * 8 : 0);
		for (i = 0; i < ilen; i++)
			big[i] = plen > 0 ? pay[i % plen] : (uint8_t)i;
		len = build_l4(pkt, IPPROTO_UDP, src, sport, dst, dport, big,
		    ilen, b3, df);
		break;
	default:
		/* A SYN (or whatever b3 says) with an MSS option first. */
		big[0] = 0x0f;
		big[1] = 2;
		big[2] = 4;
		pkt_put16(big + 3, (uint16_t)(1200 + b3 * 2));
		ilen = plen < 40 ? plen : 40;
		memcpy(big + 5, pay, ilen);
		len = build_l4(pkt, IPPROTO_TCP, src, sport, dst, dport, big,
		    5 + ilen, b3 | 0x02, df);
		break;
	}
	if (len > 0)
		feed(len);
	return (0);
}
