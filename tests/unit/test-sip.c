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
#define MAXCAP		4
#include "util.h"

/*
 * Golden tests for the SIP helper (alg-sip.c).  Each case is a pair of
 * files in tests/unit/sip: NAME.in, a SIP message as the phone
 * 10.0.0.11:20000 sends it to the provider 198.51.100.10:5060 (or, for
 * names starting "in-", as the provider sends it to the phone's public
 * mapping 203.0.113.1:20000), and NAME.out, the exact payload expected
 * out of sipnatd.  The message goes through nat_input() in a valid UDP
 * packet; the packet sent on is checked (addresses, ports, lengths,
 * checksums) and its payload compared with NAME.out byte for byte.
 *
 * Public ports are deterministic where port preservation applies (the
 * signalling port 20000, media pairs inside 10000-32767); elsewhere
 * NAME.out says @MAP:<inside port>@, filled from the mapping table.
 * A case may send other cases' messages first (a REGISTER before the
 * provider's INVITE); the phone sends a keep-alive before anything
 * comes in, to make its mapping.  SIPNAT_SIP_GOT=<dir> writes each
 * payload to <dir>/NAME.got, to update a golden file after checking it
 * by eye.
 */

#define START		10000
#define PHONE		"10.0.0.11"
#define PHONE_PORT	20000
#define PROVIDER	"198.51.100.10"
#define SIP_PORT	5060
#define PUB		"203.0.113.1"
#define MAXMSG		8192

/* One golden case. */
struct sip_case {
	const char	*name;
	const char	*pre[3];	/* cases sent first, output unchecked */
	const char	*counter;	/* a helper counter it must bump */
};

/* A helper counter looked up through alg_stats(). */
struct counter_query {
	const char	*name;
	uint64_t	 value;
	int		 found;
};

static struct config	 tc;
static uint16_t		 ip_id = 1;

static size_t	make_udp(uint8_t *, const char *, uint16_t, const char *,
		    uint16_t, const uint8_t *, size_t);
static void	send_pkt(uint8_t *, size_t);
static void	assert_udp_valid(const uint8_t *, size_t);
static void	assert_addr(const uint8_t *, const char *);
static char	*case_path(const char *, const char *);
static size_t	case_read(const char *, const char *, uint8_t *);
static void	case_write_got(const char *, const uint8_t *, size_t);
static size_t	expand(const uint8_t *, size_t, uint8_t *, size_t);
static void	counter_cb(const char *, uint64_t, bool, void *);
static uint64_t	counter(const char *);
static void	print_payload(const char *, const uint8_t *, size_t);
static void	assert_payload(const char *, const uint8_t *, size_t,
		    const uint8_t *, size_t);
static void	assert_headers_kept(const uint8_t *, size_t, const uint8_t *,
		    size_t);
static void	phone_send(const uint8_t *, size_t);
static void	provider_send(const uint8_t *, size_t);

static const struct nat_io io = {
	.to_wan = to_wan,
	.to_lan = to_lan,
};

/* The cases; every NAME.in in tests/unit/sip has a line here. */
static const struct sip_case cases[] = {
	{ "invite-sdp", { NULL }, "sip.messages.rewritten" },
	{ "compact", { NULL }, "sip.messages.rewritten" },
	{ "contacts-multi", { NULL }, "sip.messages.rewritten" },
	{ "contact-other-host", { NULL }, "sip.messages.rewritten" },
	{ "ipv6", { NULL }, NULL },
	{ "rtcp-addr", { NULL }, "sip.messages.rewritten" },
	{ "media-c", { NULL }, "sip.messages.rewritten" },
	{ "hold", { NULL }, "sip.messages.rewritten" },
	{ "already-public", { NULL }, "sip.untouched.already_public" },
	{ "ice", { NULL }, "sip.untouched.ice" },
	{ "register", { NULL }, "sip.messages.rewritten" },
	{ "in-invite-200", { "invite-sdp" }, "sip.messages.rewritten" },
	{ "in-register-200", { "register" }, "sip.registrations.accepted" },
	{ "in-invite", { "register" }, "sip.messages.rewritten" },
	{ "answer-200", { "register", "in-invite" }, "sip.media.streams" },
	{ "unparseable", { NULL }, "sip.errors.parse" },
	{ "keepalive", { NULL }, "sip.keepalives" },
};

/* An IPv4/UDP datagram around a payload, both checksums valid. */
static size_t
make_udp(uint8_t *buf, const char *src, uint16_t sport, const char *dst,
    uint16_t dport, const uint8_t *data, size_t dlen)
{
	struct pkt	 p;
	uint32_t	 a;
	uint16_t	 w;

	assert_true(28 + dlen <= SIPNAT_MAX_PKT);
	memset(buf, 0, 28);
	buf[0] = 0x45;
	pkt_put16(buf + 2, (uint16_t)(28 + dlen));
	pkt_put16(buf + 4, ip_id++);
	buf[8] = 64;
	buf[9] = IPPROTO_UDP;
	a = ip(src);
	memcpy(buf + 12, &a, 4);
	a = ip(dst);
	memcpy(buf + 16, &a, 4);
	w = cksum(buf, 20, 0);
	memcpy(buf + 10, &w, 2);
	pkt_put16(buf + 20, sport);
	pkt_put16(buf + 22, dport);
	pkt_put16(buf + 24, (uint16_t)(8 + dlen));
	memcpy(buf + 28, data, dlen);
	assert_int_equal(pkt_parse(&p, buf, 28 + dlen), PKT_OK);
	w = cksum_l4(&p);
	if (w == 0)
		w = 0xffff;
	memcpy(buf + 26, &w, 2);
	return (28 + dlen);
}

/* Hand a copy to nat_input(), as the TUN or uplink reader would. */
static void
send_pkt(uint8_t *buf, size_t len)
{
	static uint8_t	copy[SIPNAT_MAX_PKT];

	memcpy(copy, buf, len);
	nat_input(copy, len);
}

/* A sent UDP packet: lengths agree and both checksums sum to zero. */
static void
assert_udp_valid(const uint8_t *buf, size_t len)
{
	uint8_t		 copy[SIPNAT_MAX_PKT];
	struct pkt	 p;

	assert_true(len >= 28);
	assert_int_equal(buf[0], 0x45);
	assert_int_equal(pkt_get16(buf + 2), len);
	assert_int_equal(pkt_get16(buf + 24), len - 20);
	assert_int_equal(cksum(buf, 20, 0), 0);
	assert_int_not_equal(pkt_get16(buf + 26), 0);	/* it was summed */
	memcpy(copy, buf, len);
	assert_int_equal(pkt_parse(&p, copy, len), PKT_OK);
	assert_int_equal(p.len, len);
	assert_int_equal(p.proto, IPPROTO_UDP);
	assert_int_equal(cksum_l4(&p), 0);
}

/* An address field is this one. */
static void
assert_addr(const uint8_t *field, const char *want)
{
	uint32_t	a = ip(want);

	assert_memory_equal(field, &a, 4);
}

/* srcdir/tests/unit/sip/NAME.EXT, allocated. */
static char *
case_path(const char *name, const char *ext)
{
	const char	*srcdir = getenv("srcdir");
	char		*path;

	if (srcdir == NULL || *srcdir == '\0')
		srcdir = ".";
	if (asprintf(&path, "%s/tests/unit/sip/%s.%s", srcdir, name,
	    ext) == -1)
		fail_msg("asprintf");
	return (path);
}

/* Read a case file whole into a buffer of MAXMSG bytes. */
static size_t
case_read(const char *name, const char *ext, uint8_t *buf)
{
	char	*path = case_path(name, ext);
	FILE	*f;
	size_t	 len;

	if ((f = fopen(path, "rb")) == NULL) {
		print_error("%s: cannot open (is srcdir set?)\n", path);
		free(path);
		fail();
	}
	free(path);
	len = fread(buf, 1, MAXMSG, f);
	if (ferror(f) || len == MAXMSG) {
		fclose(f);
		fail_msg("%s.%s: unreadable or too long", name, ext);
	}
	fclose(f);
	return (len);
}

/* With SIPNAT_SIP_GOT set, keep what the helper produced. */
static void
case_write_got(const char *name, const uint8_t *data, size_t len)
{
	const char	*dir = getenv("SIPNAT_SIP_GOT");
	char		*path;
	FILE		*f;

	if (dir == NULL || *dir == '\0')
		return;
	if (asprintf(&path, "%s/%s.got", dir, name) == -1)
		return;
	if ((f = fopen(path, "wb")) != NULL) {
		fwrite(data, 1, len, f);
		fclose(f);
	}
	free(path);
}

/*
 * Copy an expected payload, replacing @MAP:<port>@ by the public port of
 * the phone's UDP mapping for that inside port; returns the length.
 */
static size_t
expand(const uint8_t *in, size_t len, uint8_t *out, size_t size)
{
	static const char	 tag[] = "@MAP:";
	struct nat_mapping	*m;
	const uint8_t		*end = in + len, *close;
	unsigned long		 port;
	size_t			 n = 0;
	int			 w;

	while (in < end) {
		if ((size_t)(end - in) > sizeof tag - 1 &&
		    memcmp(in, tag, sizeof tag - 1) == 0) {
			port = strtoul((const char *)in + sizeof tag - 1, NULL,
			    10);
			close = memchr(in + sizeof tag - 1, '@',
			    (size_t)(end - in) - (sizeof tag - 1));
			assert_non_null(close);
			m = nat_mapping_find(IPPROTO_UDP, ip(PHONE),
			    (uint16_t)port);
			if (m == NULL)
				fail_msg("no mapping for %s:%lu", PHONE, port);
			w = snprintf((char *)out + n, size - n, "%u",
			    m->pub_port);
			assert_true(w > 0 && (size_t)w < size - n);
			n += (size_t)w;
			in = close + 1;
			continue;
		}
		assert_true(n < size);
		out[n++] = *in++;
	}
	return (n);
}

/* alg_stats() callback: pick one counter. */
static void
counter_cb(const char *name, uint64_t value, bool gauge, void *arg)
{
	struct counter_query	*q = arg;

	if (strcmp(name, q->name) == 0) {
		q->value = value;
		q->found = 1;
	}
}

/* The helper's counter of this name (they live across tests). */
static uint64_t
counter(const char *name)
{
	struct counter_query	q = { .name = name };

	alg_stats(counter_cb, &q);
	if (!q.found)
		fail_msg("no counter %s", name);
	return (q.value);
}

/* Print a payload with its line ends shown. */
static void
print_payload(const char *what, const uint8_t *p, size_t len)
{
	size_t	i;

	print_error("---- %s (%zu bytes) ----\n", what, len);
	for (i = 0; i < len; i++) {
		if (p[i] == '\r')
			print_error("\\r");
		else if (p[i] == '\n')
			print_error("\\n\n");
		else if (p[i] < 0x20 || p[i] >= 0x7f)
			print_error("\\x%02x", p[i]);
		else
			print_error("%c", p[i]);
	}
	if (len == 0 || p[len - 1] != '\n')
		print_error("\n");
}

/* The payload is the expected one, byte for byte; else show both. */
static void
assert_payload(const char *name, const uint8_t *got, size_t glen,
    const uint8_t *want, size_t wlen)
{
	size_t	i, bol, ge, we;

	if (glen == wlen && memcmp(got, want, glen) == 0)
		return;
	for (i = 0; i < glen && i < wlen && got[i] == want[i]; i++)
		;
	print_payload("expected", want, wlen);
	print_payload("got", got, glen);
	for (bol = i; bol > 0 && got[bol - 1] != '\n'; bol--)
		;
	for (ge = i; ge < glen && got[ge] != '\r' && got[ge] != '\n'; ge++)
		;
	for (we = i; we < wlen && want[we] != '\r' && want[we] != '\n'; we++)
		;
	fail_msg("%s: payload differs from %s.out at byte %zu:\n"
	    "  expected: %.*s\n  got:      %.*s", name, name, i,
	    (int)(we - bol), (const char *)want + bol, (int)(ge - bol),
	    (const char *)got + bol);
}

/*
 * Independently of the golden file: every header line of the input that
 * names neither the phone's address nor the public one (nor gives the
 * body's length) comes out byte for byte, and in the same order.
 */
static void
assert_headers_kept(const uint8_t *in, size_t ilen, const uint8_t *out,
    size_t olen)
{
	const char	*line = (const char *)in, *end = line + ilen, *eol;
	const char	*o = (const char *)out, *oend = o + olen;
	const char	*hdr_end, *found;
	char		 buf[1024];
	size_t		 n;

	hdr_end = memmem(in, ilen, "\r\n\r\n", 4);
	if (hdr_end == NULL)
		return;
	if ((found = memmem(out, olen, "\r\n\r\n", 4)) != NULL)
		oend = found + 2;
	while (line < hdr_end) {
		eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		n = (size_t)(eol - line) + 2;
		assert_true(n < sizeof buf);
		memcpy(buf, line, n);
		buf[n] = '\0';
		line = eol + 2;
		if (strstr(buf, PHONE) != NULL || strstr(buf, PUB) != NULL ||
		    strncasecmp(buf, "Content-Length:", 15) == 0 ||
		    strncmp(buf, "l:", 2) == 0)
			continue;
		found = memmem(o, (size_t)(oend - o), buf, n);
		if (found == NULL || (found != (const char *)out &&
		    found[-1] != '\n'))
			fail_msg("header line not kept as it was: %.*s",
			    (int)n - 2, buf);
		o = found + n;
	}
}

/* A fresh engine and helper for each case, as sipnatd sets them up. */
static int
setup(void **state)
{
	if ((wan = calloc(1, sizeof *wan)) == NULL ||
	    (lan = calloc(1, sizeof *lan)) == NULL)
		return (-1);
	config_defaults(&tc);
	tc.wan_addr = ip(PUB);
	tc.lan[0].addr = ip("10.0.0.0");
	tc.lan[0].mask = ip("255.255.255.0");
	tc.nlan = 1;
	tc.wan_mtu = 1500;
	memset(stats, 0, sizeof stats);
	nat_set_now(START);
	if (nat_init(&tc, &io) == -1 || alg_configure(&tc, NULL) == -1)
		return (-1);
	nat_tick(START);
	return (0);
}

/* Let the helper go before the table its mappings live in. */
static int
teardown(void **state)
{
	alg_shutdown();
	nat_table_free();
	frag_free();
	free(wan);
	free(lan);
	wan = lan = NULL;
	return (0);
}

/* The phone sends a message to the provider. */
static void
phone_send(const uint8_t *data, size_t len)
{
	static uint8_t	buf[SIPNAT_MAX_PKT];
	size_t		plen;

	plen = make_udp(buf, PHONE, PHONE_PORT, PROVIDER, SIP_PORT, data,
	    len);
	send_pkt(buf, plen);
}

/* The provider sends a message to the phone's public mapping. */
static void
provider_send(const uint8_t *data, size_t len)
{
	static uint8_t	buf[SIPNAT_MAX_PKT];
	size_t		plen;

	plen = make_udp(buf, PROVIDER, SIP_PORT, PUB, PHONE_PORT, data,
	    len);
	send_pkt(buf, plen);
}

/* Run one golden case. */
static void
test_case(void **state)
{
	const struct sip_case	*c = *state;
	static uint8_t		 in[MAXMSG], out[MAXMSG], pre[MAXMSG];
	static uint8_t		 want[MAXMSG];
	static const uint8_t	 crlf[] = "\r\n\r\n";
	uint8_t			*o;
	size_t			 ilen, olen, prelen, wlen, len;
	uint64_t		 rewritten, count = 0;
	int			 inbound = strncmp(c->name, "in-", 3) == 0;
	struct capture		*side;
	int			 i;

	ilen = case_read(c->name, "in", in);
	olen = case_read(c->name, "out", out);

	for (i = 0; i < 3 && c->pre[i] != NULL; i++) {
		prelen = case_read(c->pre[i], "in", pre);
		if (i == 0 && strncmp(c->pre[i], "in-", 3) == 0)
			phone_send(crlf, sizeof crlf - 1);
		if (strncmp(c->pre[i], "in-", 3) == 0)
			provider_send(pre, prelen);
		else
			phone_send(pre, prelen);
	}
	if (inbound && c->pre[0] == NULL)
		phone_send(crlf, sizeof crlf - 1);
	if (wan->n > 0)
		assert_int_equal(pkt_get16(wan->buf[0] + 20), PHONE_PORT);
	wan->n = lan->n = 0;

	rewritten = counter("sip.messages.rewritten");
	if (c->counter != NULL)
		count = counter(c->counter);
	if (inbound) {
		provider_send(in, ilen);
		side = lan;
		assert_int_equal(wan->n, 0);
	} else {
		phone_send(in, ilen);
		side = wan;
		assert_int_equal(lan->n, 0);
	}
	assert_int_equal(side->n, 1);
	o = side->buf[0];
	assert_udp_valid(o, side->len[0]);
	if (inbound) {
		assert_addr(o + 12, PROVIDER);
		assert_int_equal(pkt_get16(o + 20), SIP_PORT);
		assert_addr(o + 16, PHONE);
		assert_int_equal(pkt_get16(o + 22), PHONE_PORT);
	} else {
		assert_addr(o + 12, PUB);
		assert_int_equal(pkt_get16(o + 20), PHONE_PORT);
		assert_addr(o + 16, PROVIDER);
		assert_int_equal(pkt_get16(o + 22), SIP_PORT);
	}

	len = side->len[0] - 28;
	case_write_got(c->name, o + 28, len);
	wlen = expand(out, olen, want, sizeof want);
	assert_payload(c->name, o + 28, len, want, wlen);
	assert_headers_kept(in, ilen, o + 28, len);

	/* Rewritten exactly when the payload changed. */
	assert_int_equal(counter("sip.messages.rewritten") - rewritten,
	    ilen == wlen && memcmp(in, want, ilen) == 0 ? 0 : 1);
	if (c->counter != NULL)
		assert_int_equal(counter(c->counter) - count, 1);
}

/*
 * A case file with a header line added after the Call-ID (and the
 * Content-Length left right: it counts the body only).
 */
static size_t
case_with_header(const char *name, const char *header, uint8_t *buf)
{
	static uint8_t	 tmp[MAXMSG];
	size_t		 len = case_read(name, "in", tmp), hl = strlen(header);
	uint8_t		*cid, *eol;

	cid = memmem(tmp, len, "\r\nCall-ID:", 10);
	assert_non_null(cid);
	eol = memmem(cid + 2, len - (size_t)(cid + 2 - tmp), "\r\n", 2);
	assert_non_null(eol);
	assert_true(len + hl + 2 <= MAXMSG);
	memcpy(buf, tmp, (size_t)(eol + 2 - tmp));
	memcpy(buf + (eol + 2 - tmp), header, hl);
	memcpy(buf + (eol + 2 - tmp) + hl, "\r\n", 2);
	memcpy(buf + (eol + 2 - tmp) + hl + 2, eol + 2,
	    len - (size_t)(eol + 2 - tmp));
	return (len + hl + 2);
}

/* Let time pass, a tick a second, as sipnatd's timer does. */
static void
advance(uint64_t *now, unsigned secs)
{
	while (secs-- > 0) {
		nat_set_now(++*now);
		nat_tick(*now);
	}
}

/*
 * A call whose BYE never comes: after timeouts.sip_dialog of silence it
 * ends, counted as ended without BYE (and logged with its last
 * signalling).
 */
static void
test_ended_without_bye(void **state)
{
	static uint8_t	buf[MAXMSG];
	uint64_t	now = START, before;
	size_t		len;

	before = counter("sip.alarms.ended_without_bye");
	tc.to_sip_dialog = 60;
	assert_int_equal(alg_configure(&tc, NULL), 0);
	len = case_read("invite-sdp", "in", buf);
	phone_send(buf, len);
	len = case_read("in-invite-200", "in", buf);
	provider_send(buf, len);
	assert_int_equal(counter("sip.dialogs"), 1);
	advance(&now, 30);
	assert_int_equal(counter("sip.dialogs"), 1);
	advance(&now, 31);
	assert_int_equal(counter("sip.dialogs"), 0);
	assert_int_equal(counter("sip.alarms.ended_without_bye") - before, 1);
}

/*
 * A call with a session timer (RFC 4028): no re-INVITE or UPDATE within
 * Session-Expires is counted once; the call itself stays.
 */
static void
test_missed_refresh(void **state)
{
	static uint8_t	buf[MAXMSG];
	uint64_t	now = START;
	uint64_t	before = counter("sip.alarms.missed_session_refresh");
	size_t		len;

	len = case_with_header("invite-sdp", "Session-Expires: 90;"
	    "refresher=uac", buf);
	phone_send(buf, len);
	len = case_with_header("in-invite-200", "Session-Expires: 90;"
	    "refresher=uac", buf);
	provider_send(buf, len);
	advance(&now, 80);
	assert_int_equal(counter("sip.alarms.missed_session_refresh"), before);
	advance(&now, 15);
	assert_int_equal(counter("sip.alarms.missed_session_refresh") - before,
	    1);
	advance(&now, 100);
	assert_int_equal(counter("sip.alarms.missed_session_refresh") - before,
	    1);
	assert_int_equal(counter("sip.dialogs"), 1);
}

/*
 * A datagram just under the uplink MTU that the rewrite makes longer:
 * it leaves in fragments that fit, which put together are the rewritten
 * message with valid checksums.
 */
static void
test_growth_fragmented(void **state)
{
	static uint8_t	buf[MAXMSG], whole[MAXMSG];
	char		pad[1600];
	size_t		len, want, off = 0;
	int		i;
	uint16_t	frag;

	len = case_read("invite-sdp", "in", buf);
	want = (size_t)tc.wan_mtu - 28 - 2 - len;	/* 2 bytes to spare */
	assert_true(want > 12 && want < sizeof pad);
	memset(pad, 'x', sizeof pad);
	memcpy(pad, "X-Padding: ", 11);
	pad[want - 2] = '\0';
	len = case_with_header("invite-sdp", pad, buf);
	assert_int_equal(len + 28, (size_t)tc.wan_mtu - 2);
	phone_send(buf, len);
	assert_int_equal(wan->n, 2);
	for (i = 0; i < wan->n; i++) {
		assert_true(wan->len[i] <= (size_t)tc.wan_mtu);
		assert_int_equal(cksum(wan->buf[i], 20, 0), 0);
		frag = pkt_get16(wan->buf[i] + 6);
		assert_int_equal((frag & 0x1fff) * 8, off);
		assert_int_equal((frag & 0x2000) != 0, i == 0);
		memcpy(whole + 20 + off, wan->buf[i] + 20, wan->len[i] - 20);
		off += wan->len[i] - 20;
	}
	memcpy(whole, wan->buf[0], 20);
	pkt_put16(whole + 2, (uint16_t)(20 + off));
	pkt_put16(whole + 6, 0);
	fix_ip(whole);
	assert_true(20 + off > (size_t)tc.wan_mtu);
	assert_udp_valid(whole, 20 + off);
	assert_non_null(memmem(whole + 28, off - 8, "Via: SIP/2.0/UDP " PUB,
	    strlen("Via: SIP/2.0/UDP " PUB)));
	assert_non_null(memmem(whole + 28, off - 8, "c=IN IP4 " PUB,
	    strlen("c=IN IP4 " PUB)));
}

/* Run every golden case, each on a fresh engine, then the others. */
int
main(void)
{
	struct CMUnitTest	tests[sizeof cases / sizeof cases[0]];
	const struct CMUnitTest	others[] = {
		cmocka_unit_test_setup_teardown(test_ended_without_bye, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_missed_refresh, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_growth_fragmented, setup,
		    teardown),
	};
	size_t			i;
	int			failed;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		tests[i] = (struct CMUnitTest)cmocka_unit_test_prestate_setup_teardown(
		    test_case, setup, teardown, (void *)&cases[i]);
		tests[i].name = cases[i].name;
	}
	failed = _cmocka_run_group_tests("sip", tests, i, NULL, NULL);
	failed += cmocka_run_group_tests_name("sip-calls", others, NULL, NULL);
	return (failed);
}
