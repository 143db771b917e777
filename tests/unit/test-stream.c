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

#include "alg.h"

/*
 * Unit tests for stream.c with the SIP helper: a SIP-over-TCP connection
 * between a phone (10.0.0.11:5060) and a provider (198.51.100.10:5060)
 * goes through nat_input(), and what comes out on each side is checked:
 * the bytes the far end gets (rewritten messages, at the right sequence
 * numbers), the ACKs the gateway sends for bytes it holds, the shifted
 * ACK and SACK numbers, retransmissions rewritten the same, big messages
 * cut to the MSS, and the bounds that make a connection degrade.
 */

#define DEFAULT_SEED	1u
#define MAXCAP		64
#include "util.h"
#define START		10000
#define PHONE		"10.0.0.11"
#define PROV		"198.51.100.10"
#define PUB		"203.0.113.1"
#define ISN_P		1000u		/* the phone's initial sequence */
#define ISN_R		5000u		/* the provider's */
#define TH_FIN		0x01
#define TH_SYN		0x02
#define TH_RST		0x04
#define TH_ACK		0x10
#define TH_PSH		0x08

static struct config	 tc;
static uint16_t		 pub_port;

static const struct nat_io io = {
	.to_wan = to_wan,
	.to_lan = to_lan,
};

/* An address field is this one. */
static void
assert_addr(const uint8_t *field, const char *want)
{
	uint32_t	a = ip(want);

	assert_memory_equal(field, &a, 4);
}

/* Build a TCP segment with options and data, checksums valid. */
static size_t
make_seg(uint8_t *buf, const char *src, uint16_t sport, const char *dst,
    uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
    const uint8_t *opt, size_t optlen, const void *data, size_t dlen)
{
	size_t		thl = 20 + optlen, len = 20 + thl + dlen;
	uint8_t		*l4 = buf + 20;
	uint32_t	a;

	memset(buf, 0, 20 + thl);
	buf[0] = 0x45;
	pkt_put16(buf + 2, (uint16_t)len);
	buf[8] = 64;
	buf[9] = IPPROTO_TCP;
	a = ip(src);
	memcpy(buf + 12, &a, 4);
	a = ip(dst);
	memcpy(buf + 16, &a, 4);
	fix_ip(buf);
	pkt_put16(l4, sport);
	pkt_put16(l4 + 2, dport);
	pkt_put32(l4 + 4, seq);
	pkt_put32(l4 + 8, ack);
	l4[12] = (uint8_t)((thl / 4) << 4);
	l4[13] = flags;
	pkt_put16(l4 + 14, 29200);
	if (optlen > 0)
		memcpy(l4 + 20, opt, optlen);
	if (dlen > 0)
		memcpy(l4 + thl, data, dlen);
	fix_l4(buf);
	return (len);
}

/* Send a segment through the engine, as the TUN reader would. */
static void
feed(const char *src, uint16_t sport, const char *dst, uint16_t dport,
    uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *opt,
    size_t optlen, const void *data, size_t dlen)
{
	static uint8_t	buf[SIPNAT_MAX_PKT];
	size_t		len;

	len = make_seg(buf, src, sport, dst, dport, seq, ack, flags, opt,
	    optlen, data, dlen);
	nat_input(buf, len);
}

/* The phone sends (seq and ack in its own space). */
static void
phone(uint32_t seq, uint32_t ack, uint8_t flags, const void *data,
    size_t dlen)
{
	feed(PHONE, 5060, PROV, 5060, seq, ack, flags, NULL, 0, data, dlen);
}

/* The provider sends, to the public side. */
static void
prov(uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *opt,
    size_t optlen, const void *data, size_t dlen)
{
	feed(PROV, 5060, PUB, pub_port, seq, ack, flags, opt, optlen, data,
	    dlen);
}

/* A captured packet's TCP fields. */
#define SEG_L4(c, i)	((c)->buf[i] + 20)
#define SEG_SEQ(c, i)	pkt_get32(SEG_L4(c, i) + 4)
#define SEG_ACK(c, i)	pkt_get32(SEG_L4(c, i) + 8)
#define SEG_FLAGS(c, i)	(SEG_L4(c, i)[13])
#define SEG_THL(c, i)	((size_t)(SEG_L4(c, i)[12] >> 4) * 4)
#define SEG_DATA(c, i)	(SEG_L4(c, i) + SEG_THL(c, i))
#define SEG_DLEN(c, i)	((c)->len[i] - 20 - SEG_THL(c, i))

/*
 * The data segments a side got from index from on, checked valid and
 * contiguous from seq: their bytes into out.  Returns the length.
 */
static size_t
collect(struct capture *c, int from, uint32_t seq, uint8_t *out)
{
	size_t	len = 0;
	int	i;

	for (i = from; i < c->n; i++) {
		assert_valid(c->buf[i], c->len[i]);
		if (SEG_DLEN(c, i) == 0)
			continue;
		assert_int_equal(SEG_SEQ(c, i), seq + len);
		memcpy(out + len, SEG_DATA(c, i), SEG_DLEN(c, i));
		len += SEG_DLEN(c, i);
	}
	return (len);
}

/* Replace every "from" in a text by "to" (no overlap); into out. */
static size_t
subst(const char *in, const char *from, const char *to, char *out)
{
	size_t		 n = 0, fl = strlen(from), tl = strlen(to);
	const char	*p;

	while ((p = strstr(in, from)) != NULL) {
		memcpy(out + n, in, (size_t)(p - in));
		n += (size_t)(p - in);
		memcpy(out + n, to, tl);
		n += tl;
		in = p + fl;
	}
	strcpy(out + n, in);
	return (n + strlen(in));
}

/* A request from the phone naming itself in Via and Contact. */
static size_t
request(char *out, int cseq, size_t pad)
{
	size_t	n;

	n = (size_t)sprintf(out,
	    "OPTIONS sip:p@" PROV " SIP/2.0\r\n"
	    "Via: SIP/2.0/TCP " PHONE ":5060;branch=z9hG4bK-%d\r\n"
	    "From: <sip:a@example.com>;tag=t%d\r\n"
	    "To: <sip:p@" PROV ">\r\n"
	    "Call-ID: c%d@example.com\r\n"
	    "CSeq: %d OPTIONS\r\n"
	    "Contact: <sip:a@" PHONE ":5060;transport=tcp>\r\n",
	    cseq, cseq, cseq, cseq);
	while (pad > 0) {
		size_t	k = pad > 100 ? 100 : pad;

		n += (size_t)sprintf(out + n, "X-Pad: %.*s\r\n", (int)k,
		    "0123456789012345678901234567890123456789012345678901"
		    "234567890123456789012345678901234567890123456789");
		pad -= k;
	}
	n += (size_t)sprintf(out + n, "Content-Length: 0\r\n\r\n");
	return (n);
}

/* What the provider must get for a request: the public address. */
static size_t
rewritten(const char *in, char *out)
{
	char	to[32];

	snprintf(to, sizeof to, PUB ":%u", pub_port);
	return (subst(in, PHONE ":5060", to, out));
}

/* A counter from the helpers' and streams' stats. */
static uint64_t	stat_value;
static const char *stat_want;

static void
stat_cb(const char *name, uint64_t v, bool gauge, void *arg)
{
	if (strcmp(name, stat_want) == 0)
		stat_value = v;
}

static uint64_t
stat(const char *name)
{
	int	i;

	for (i = 0; i < STAT_MAX; i++)
		if (strcmp(stat_name((enum counter)i), name) == 0)
			return (stats[i]);
	stat_want = name;
	stat_value = UINT64_MAX;
	alg_stats(stat_cb, NULL);
	assert_true(stat_value != UINT64_MAX);
	return (stat_value);
}

/* SYN, SYN-ACK, ACK; learns the public port. */
static void
handshake(void)
{
	static const uint8_t	mss[] = { 2, 4, 0x05, 0xb4 };

	feed(PHONE, 5060, PROV, 5060, ISN_P, 0, TH_SYN, mss, sizeof mss,
	    NULL, 0);
	assert_int_equal(wan->n, 1);
	pub_port = pkt_get16(wan->buf[0] + 20);
	prov(ISN_R, ISN_P + 1, TH_SYN | TH_ACK, mss, sizeof mss, NULL, 0);
	assert_int_equal(lan->n, 1);
	assert_int_equal(SEG_ACK(lan, 0), ISN_P + 1);
	phone(ISN_P + 1, ISN_R + 1, TH_ACK, NULL, 0);
	assert_int_equal(wan->n, 2);
	wan->n = lan->n = 0;
}

static int
setup(void **state)
{
	if ((wan = calloc(1, sizeof *wan)) == NULL ||
	    (lan = calloc(1, sizeof *lan)) == NULL)
		return (-1);
	config_defaults(&tc);
	tc.wan_addr = ip(PUB);
	tc.wan_mtu = 1400;
	tc.tun_mtu = 1500;
	tc.port_lo = 20000;
	tc.port_hi = 20099;
	tc.stream_buffer = 8192;
	tc.stream_memory = 1 << 20;
	memset(stats, 0, sizeof stats);
	nat_set_now(START);
	if (nat_init(&tc, &io) == -1 || alg_configure(&tc, NULL) == -1)
		return (-1);
	nat_tick(START);
	handshake();
	return (0);
}

static int
teardown(void **state)
{
	alg_shutdown();
	nat_table_free();
	frag_free();
	free(wan);
	free(lan);
	return (0);
}

/*
 * A rewritten message grows; the next one starts where the far end
 * expects it, and the far end's ACK (and SACK blocks) come back in the
 * phone's numbers.
 */
static void
test_rewrite_shift(void **state)
{
	char		m1[2048], m2[2048], e1[2048], e2[2048];
	uint8_t		got[8192];
	size_t		l1 = request(m1, 1, 0), l2 = request(m2, 2, 0);
	size_t		x1 = rewritten(m1, e1), x2 = rewritten(m2, e2);
	uint8_t		sack[12] = { 1, 1, 5, 10 };

	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m1, l1);
	phone(ISN_P + 1 + (uint32_t)l1, ISN_R + 1, TH_ACK | TH_PSH, m2, l2);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x1 + x2);
	assert_memory_equal(got, e1, x1);
	assert_memory_equal(got + x1, e2, x2);
	assert_int_not_equal(x1, l1);
	assert_int_equal(lan->n, 0);	/* nothing held, nothing to ACK */

	/* The first lost: ACK of nothing, a SACK block for the second. */
	pkt_put32(sack + 4, ISN_P + 1 + (uint32_t)x1);
	pkt_put32(sack + 8, ISN_P + 1 + (uint32_t)(x1 + x2));
	prov(ISN_R + 1, ISN_P + 1, TH_ACK, sack, sizeof sack, NULL, 0);
	assert_int_equal(lan->n, 1);
	assert_valid(lan->buf[0], lan->len[0]);
	assert_int_equal(SEG_ACK(lan, 0), ISN_P + 1);
	assert_int_equal(pkt_get32(SEG_L4(lan, 0) + 24), ISN_P + 1 + l1);
	assert_int_equal(pkt_get32(SEG_L4(lan, 0) + 28), ISN_P + 1 + l1 + l2);

	/* The provider ACKs both: the phone sees its own numbers. */
	prov(ISN_R + 1, ISN_P + 1 + (uint32_t)(x1 + x2), TH_ACK, NULL, 0,
	    NULL, 0);
	assert_int_equal(lan->n, 2);
	assert_valid(lan->buf[1], lan->len[1]);
	assert_int_equal(SEG_ACK(lan, 1), ISN_P + 1 + l1 + l2);
	assert_int_equal(stat("tcp_stream.messages"), 2);
}

/*
 * A message cut in three: the first parts are held and ACKed to the
 * phone by the gateway; the last brings the whole message out.
 */
static void
test_split_held(void **state)
{
	char		m[2048], e[2048];
	uint8_t		got[8192];
	size_t		l = request(m, 1, 0), x = rewritten(m, e);
	uint32_t	s = ISN_P + 1;

	phone(s, ISN_R + 1, TH_ACK, m, 10);
	assert_int_equal(wan->n, 0);
	assert_int_equal(lan->n, 1);
	assert_valid(lan->buf[0], lan->len[0]);
	assert_addr(lan->buf[0] + 12, PROV);
	assert_addr(lan->buf[0] + 16, PHONE);
	assert_int_equal(SEG_ACK(lan, 0), s + 10);
	assert_int_equal(SEG_SEQ(lan, 0), ISN_R + 1);
	assert_int_equal(SEG_FLAGS(lan, 0), TH_ACK);

	phone(s + 10, ISN_R + 1, TH_ACK, m + 10, 40);
	assert_int_equal(wan->n, 0);
	assert_int_equal(lan->n, 2);
	assert_int_equal(SEG_ACK(lan, 1), s + 50);

	phone(s + 50, ISN_R + 1, TH_ACK | TH_PSH, m + 50, l - 50);
	assert_int_equal(collect(wan, 0, s, got), x);
	assert_memory_equal(got, e, x);
	assert_int_equal(lan->n, 2);	/* nothing held now */
	assert_true(stat("tcp_stream.acks_sent") >= 2);
}

/* Two messages in one segment, and a keep-alive between them. */
static void
test_two_in_one(void **state)
{
	char		m[4096], e[4096];
	uint8_t		got[8192];
	size_t		l, x;

	l = request(m, 1, 0);
	memcpy(m + l, "\r\n\r\n", 4);
	l += 4;
	l += request(m + l, 2, 0);
	x = rewritten(m, e);
	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m, l);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x);
	assert_memory_equal(got, e, x);
	assert_int_equal(stat("tcp_stream.messages"), 3);
}

/*
 * The phone sends a message again before the provider ACKed it: the
 * provider gets the same rewritten bytes at the same numbers.  Once the
 * provider has it, a retransmission is answered by the gateway's ACK.
 */
static void
test_retransmit(void **state)
{
	char		m[2048], e[2048];
	uint8_t		got[8192], again[8192];
	size_t		l = request(m, 1, 0), x = rewritten(m, e);

	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m, l);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x);
	wan->n = 0;
	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m, l);
	assert_int_equal(collect(wan, 0, ISN_P + 1, again), x);
	assert_memory_equal(again, got, x);
	assert_int_equal(stat("tcp_stream.retransmits_seen"), 1);

	prov(ISN_R + 1, ISN_P + 1 + (uint32_t)x, TH_ACK, NULL, 0, NULL, 0);
	wan->n = lan->n = 0;
	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m, l);
	assert_int_equal(wan->n, 0);
	assert_int_equal(lan->n, 1);
	assert_int_equal(SEG_ACK(lan, 0), ISN_P + 1 + l);
}

/* Not acknowledged for a second: the gateway sends it again itself. */
static void
test_resend_on_tick(void **state)
{
	char		m[2048], e[2048];
	uint8_t		got[8192];
	size_t		l = request(m, 1, 0), x = rewritten(m, e);

	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m, 20);
	phone(ISN_P + 21, ISN_R + 1, TH_ACK | TH_PSH, m + 20, l - 20);
	wan->n = 0;
	nat_set_now(START + 2);
	nat_tick(START + 2);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x);
	assert_memory_equal(got, e, x);
	prov(ISN_R + 1, ISN_P + 1 + (uint32_t)x, TH_ACK, NULL, 0, NULL, 0);
	wan->n = 0;
	nat_set_now(START + 4);
	nat_tick(START + 4);
	assert_int_equal(wan->n, 0);
}

/* A message bigger than the MSS goes out cut to it, bytes intact. */
static void
test_big_message(void **state)
{
	char		m[8192], e[8192];
	uint8_t		got[8192];
	size_t		l = request(m, 1, 3000), x = rewritten(m, e);
	int		i;

	phone(ISN_P + 1, ISN_R + 1, TH_ACK, m, 1400);
	phone(ISN_P + 1401, ISN_R + 1, TH_ACK, m + 1400, 1400);
	phone(ISN_P + 2801, ISN_R + 1, TH_ACK | TH_PSH, m + 2800, l - 2800);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x);
	assert_memory_equal(got, e, x);
	assert_true(wan->n >= 3);
	for (i = 0; i < wan->n; i++)
		assert_true(wan->len[i] <= 1400 && SEG_DLEN(wan, i) <= 1460);
}

/* The provider's answer: its Via comes back to the phone's address. */
static void
test_response_in(void **state)
{
	char		m[2048], e[2048], r[2048], want[2048], pubhp[32];
	uint8_t		got[8192];
	size_t		l = request(m, 1, 0), x = rewritten(m, e), rl, wl;
	char		*via, *eol;

	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m, l);
	/* The response echoes the Via as received. */
	via = strstr(e, "Via: ");
	eol = strstr(via, "\r\n");
	rl = (size_t)sprintf(r, "SIP/2.0 200 OK\r\n%.*s\r\n"
	    "From: <sip:a@example.com>;tag=t1\r\n"
	    "To: <sip:p@" PROV ">;tag=p1\r\n"
	    "Call-ID: c1@example.com\r\nCSeq: 1 OPTIONS\r\n"
	    "Content-Length: 0\r\n\r\n", (int)(eol - via), via);
	snprintf(pubhp, sizeof pubhp, PUB ":%u", pub_port);
	wl = subst(r, pubhp, PHONE ":5060", want);
	lan->n = 0;
	prov(ISN_R + 1, ISN_P + 1 + (uint32_t)x, TH_ACK | TH_PSH, NULL, 0, r,
	    rl);
	assert_int_equal(collect(lan, 0, ISN_R + 1, got), wl);
	assert_memory_equal(got, want, wl);
	/* The phone ACKs what it got: the provider sees its own numbers. */
	wan->n = 0;
	phone(ISN_P + 1 + (uint32_t)l, ISN_R + 1 + (uint32_t)wl, TH_ACK,
	    NULL, 0);
	assert_int_equal(wan->n, 1);
	assert_int_equal(SEG_ACK(wan, 0), ISN_R + 1 + rl);
	assert_int_equal(SEG_SEQ(wan, 0), ISN_P + 1 + x);
}

/* A gap: the helper needs bytes in order, so the segment waits. */
static void
test_out_of_order(void **state)
{
	char	m[2048];
	size_t	l = request(m, 1, 0);

	phone(ISN_P + 1 + 100, ISN_R + 1, TH_ACK, m + 100, l - 100);
	assert_int_equal(wan->n, 0);
	assert_int_equal(stat("tcp_stream.out_of_order"), 1);
}

/*
 * More than a direction may hold (tcp_stream_buffer = 8192, no end of
 * head in sight): the connection is passed on unparsed from then on,
 * bytes as they came, numbers still continuous.
 */
static void
test_degrade(void **state)
{
	uint8_t		junk[1000], got[16384];
	uint32_t	s = ISN_P + 1;
	int		i;

	memset(junk, 'a', sizeof junk);
	memcpy(junk, "OPTIONS sip:x SIP/2.0\r\n", 23);
	for (i = 0; i < 10; i++)
		phone(s + (uint32_t)i * 1000, ISN_R + 1, TH_ACK, junk, 1000);
	assert_int_equal(stat("tcp_stream.degraded"), 1);
	assert_int_equal(stat("tcp_stream.limit.buffer"), 1);
	assert_int_equal(collect(wan, 0, s, got), 10000);
	for (i = 0; i < 10; i++)
		assert_memory_equal(got + i * 1000, junk, 1000);
}

/* Bytes that do not start like SIP: passed on as they came, at once. */
static void
test_not_sip(void **state)
{
	uint8_t		junk[100], got[1024];
	char		m[2048];
	size_t		l = request(m, 1, 0);
	int		i;

	for (i = 0; i < (int)sizeof junk; i++)
		junk[i] = (uint8_t)(i * 7 + 1);
	phone(ISN_P + 1, ISN_R + 1, TH_ACK, junk, sizeof junk);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), sizeof junk);
	assert_memory_equal(got, junk, sizeof junk);
	assert_int_equal(stat("tcp_stream.degraded"), 1);
	/* Later SIP on it is not read either: the stream is lost. */
	wan->n = 0;
	phone(ISN_P + 1 + sizeof junk, ISN_R + 1, TH_ACK, m, l);
	assert_int_equal(collect(wan, 0, ISN_P + 1 + sizeof junk, got), l);
	assert_memory_equal(got, m, l);
}

/*
 * A SYN inside an open connection (forged, or late) leaves the stream as
 * it is: it goes on to the endpoint, which answers it with an ACK (RFC
 * 5961); a batch sent again after it is built as before (ACK flag and
 * number), and the next message is still rewritten at the shifted
 * numbers.
 */
static void
test_syn_in_open(void **state)
{
	char		m1[2048], m2[2048], e1[2048], e2[2048];
	uint8_t		got[8192];
	size_t		l1 = request(m1, 1, 0), l2 = request(m2, 2, 0);
	size_t		x1 = rewritten(m1, e1), x2 = rewritten(m2, e2);
	int		i;

	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m1, l1);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x1);

	/* A SYN from the phone's side, a late copy of its first one. */
	wan->n = 0;
	phone(ISN_P, 0, TH_SYN, NULL, 0);
	assert_int_equal(wan->n, 1);
	assert_int_equal(SEG_FLAGS(wan, 0), TH_SYN);
	/* Not acknowledged yet: the batch goes again, built as before. */
	wan->n = 0;
	nat_set_now(START + 2);
	nat_tick(START + 2);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x1);
	assert_memory_equal(got, e1, x1);
	for (i = 0; i < wan->n; i++) {
		assert_true(SEG_FLAGS(wan, i) & TH_ACK);
		assert_int_equal(SEG_ACK(wan, i), ISN_R + 1);
	}
	prov(ISN_R + 1, ISN_P + 1 + (uint32_t)x1, TH_ACK, NULL, 0, NULL, 0);

	/* One from "the provider" with another ISN. */
	lan->n = 0;
	prov(77777, 0, TH_SYN, NULL, 0, NULL, 0);
	assert_int_equal(lan->n, 1);
	assert_int_equal(SEG_FLAGS(lan, 0), TH_SYN);
	assert_int_equal(SEG_SEQ(lan, 0), 77777);

	/* The connection goes on where it was. */
	wan->n = lan->n = 0;
	phone(ISN_P + 1 + (uint32_t)l1, ISN_R + 1, TH_ACK | TH_PSH, m2, l2);
	assert_int_equal(collect(wan, 0, ISN_P + 1 + (uint32_t)x1, got), x2);
	assert_memory_equal(got, e2, x2);
	prov(ISN_R + 1, ISN_P + 1 + (uint32_t)(x1 + x2), TH_ACK, NULL, 0,
	    NULL, 0);
	assert_int_equal(lan->n, 1);
	assert_int_equal(SEG_ACK(lan, 0), ISN_P + 1 + l1 + l2);
	assert_int_equal(stat("tcp_stream.degraded"), 0);
	assert_int_equal(stat("tcp_stream.syn_in_open"), 2);
}

/*
 * A message the helper drops (sip.on_error = drop): nothing of it reaches
 * the provider, and the phone learns it arrived: from the gateway if it
 * sends it again, and from the provider's next ACK.
 */
static void
test_drop_acked(void **state)
{
	static const char	bad[] = "OPTIONS sip:p@" PROV " SIP/2.0\r\n"
				    "Content-Length: 0\r\n\r\n";
	size_t			l = sizeof bad - 1;
	char			m[2048], e[2048];
	uint8_t			got[8192];
	size_t			ml = request(m, 2, 0), x = rewritten(m, e);
	uint64_t		dropped = stat("sip.errors.dropped");
	int			i;

	tc.sip_drop_errors = true;
	assert_int_equal(alg_configure(&tc, NULL), 0);
	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, bad, l);
	assert_int_equal(stat("sip.errors.dropped"), dropped + 1);
	for (i = 0; i < wan->n; i++)
		assert_int_equal(SEG_DLEN(wan, i), 0);

	/* Sent again before the provider said anything: the gateway has it. */
	lan->n = 0;
	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, bad, l);
	assert_int_equal(lan->n, 1);
	assert_int_equal(SEG_ACK(lan, 0), ISN_P + 1 + l);

	/* The provider's next ACK, of nothing new, covers it too. */
	lan->n = 0;
	prov(ISN_R + 1, ISN_P + 1, TH_ACK, NULL, 0, NULL, 0);
	assert_int_equal(lan->n, 1);
	assert_int_equal(SEG_ACK(lan, 0), ISN_P + 1 + l);

	/* The next message goes on where the dropped one left off. */
	wan->n = 0;
	phone(ISN_P + 1 + (uint32_t)l, ISN_R + 1, TH_ACK | TH_PSH, m, ml);
	assert_int_equal(collect(wan, 0, ISN_P + 1, got), x);
	assert_memory_equal(got, e, x);
}

/*
 * A message the helper drops (sip.on_error = drop), then the phone's FIN:
 * the provider gets the FIN alone, and it is sent again until the
 * provider acknowledges it, not forgotten at an ACK of the bytes before.
 */
static void
test_fin_after_drop(void **state)
{
	static const char	bad[] = "OPTIONS sip:p@" PROV " SIP/2.0\r\n"
				    "Content-Length: 0\r\n\r\n";
	size_t			l = sizeof bad - 1;
	uint64_t		dropped = stat("sip.errors.dropped");

	tc.sip_drop_errors = true;
	assert_int_equal(alg_configure(&tc, NULL), 0);
	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH | TH_FIN, bad, l);
	assert_int_equal(wan->n, 1);
	assert_int_equal(SEG_DLEN(wan, 0), 0);
	assert_true(SEG_FLAGS(wan, 0) & TH_FIN);
	assert_int_equal(SEG_SEQ(wan, 0), ISN_P + 1);
	assert_int_equal(stat("sip.errors.dropped"), dropped + 1);

	/* An ACK of the bytes before it only: the FIN goes again. */
	prov(ISN_R + 1, ISN_P + 1, TH_ACK, NULL, 0, NULL, 0);
	wan->n = 0;
	nat_set_now(START + 2);
	nat_tick(START + 2);
	assert_int_equal(wan->n, 1);
	assert_true(SEG_FLAGS(wan, 0) & TH_FIN);
	assert_int_equal(SEG_SEQ(wan, 0), ISN_P + 1);

	/* Acknowledged: the phone sees its FIN taken, nothing goes again. */
	lan->n = wan->n = 0;
	prov(ISN_R + 1, ISN_P + 2, TH_ACK, NULL, 0, NULL, 0);
	assert_int_equal(lan->n, 1);
	assert_int_equal(SEG_ACK(lan, 0), ISN_P + 1 + l + 1);
	nat_set_now(START + 4);
	nat_tick(START + 4);
	assert_int_equal(wan->n, 0);
}

/*
 * After an RST the connection is closed: a SYN on the same ports starts
 * a new one, read from its first byte with no shift from the old one.
 */
static void
test_syn_after_rst(void **state)
{
	static const uint8_t	mss[] = { 2, 4, 0x05, 0xb4 };
	char			m1[2048], e1[2048];
	uint8_t			got[8192];
	size_t			l1 = request(m1, 1, 0);
	size_t			x1 = rewritten(m1, e1);
	uint32_t		isn = 900000;

	phone(ISN_P + 1, ISN_R + 1, TH_ACK | TH_PSH, m1, l1);
	prov(ISN_R + 1, ISN_P + 1 + (uint32_t)x1, TH_ACK, NULL, 0, NULL, 0);
	phone(ISN_P + 1 + (uint32_t)l1, 0, TH_RST, NULL, 0);

	wan->n = lan->n = 0;
	phone(isn, 0, TH_SYN, NULL, 0);
	prov(ISN_R + 100000, isn + 1, TH_SYN | TH_ACK, mss, sizeof mss, NULL,
	    0);
	phone(isn + 1, ISN_R + 100001, TH_ACK | TH_PSH, m1, l1);
	assert_int_equal(collect(wan, 0, isn + 1, got), x1);
	assert_memory_equal(got, e1, x1);
	assert_int_equal(stat("tcp_stream.syn_in_open"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_rewrite_shift),
		T(test_split_held),
		T(test_two_in_one),
		T(test_retransmit),
		T(test_resend_on_tick),
		T(test_big_message),
		T(test_response_in),
		T(test_out_of_order),
		T(test_degrade),
		T(test_not_sip),
		T(test_syn_in_open),
		T(test_syn_after_rst),
		T(test_drop_acked),
		T(test_fin_after_drop),
#undef T
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
