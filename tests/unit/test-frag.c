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
 * Unit tests for frag.c: reassembly in any order, the ways a fragment
 * can be wrong (overlap, duplicate, past the end, bad length), timeout,
 * the memory limit, and cutting a datagram to an MTU and back.
 *
 * Fragment payloads come from a fixed-seed PRNG; SIPNAT_TEST_SEED=<n>
 * picks another.
 */

#define DEFAULT_SEED	0xf4a9f4a9u
#include "util.h"
#define MEMORY		(4u << 20)	/* room for many datagrams */
#define TIMEOUT		30
#define NOW		1000
#define MAXFRAGS	128
#define MAXFRAGLEN	1600

/* Fragments collected from frag_output. */
struct frags {
	uint8_t		 buf[MAXFRAGS][MAXFRAGLEN];
	size_t		 len[MAXFRAGS];
	int		 n;
	int		 fail_at;	/* make the emit fail at this one */
};

static uint8_t		 dgram[SIPNAT_MAX_PKT];	/* the original */
static size_t		 dlen;
static uint8_t		 result[SIPNAT_MAX_PKT];	/* reassembled */
static size_t		 rlen;
static struct frags	*fr;

static size_t	make_dgram(uint8_t *, const uint8_t *, size_t, size_t,
		    uint16_t);
static size_t	make_frag(uint8_t *, size_t, size_t, bool);
static int	feed(uint8_t *, size_t, uint64_t);
static int	feed_piece(size_t, size_t, bool, uint64_t);
static int	collect_cb(const uint8_t *, size_t, void *);
static void	assert_reassembled(void);
static void	check_fragments(unsigned, int);

/*
 * A whole UDP-ish datagram from 192.0.2.1 to 203.0.113.1 with optlen
 * bytes of IP options and plen bytes of random payload; returns its
 * length.
 */
static size_t
make_dgram(uint8_t *buf, const uint8_t *opt, size_t optlen, size_t plen,
    uint16_t id)
{
	size_t		hl = 20 + optlen, i;
	uint32_t	a;
	uint16_t	w;

	memset(buf, 0, hl);
	buf[0] = (uint8_t)(0x40 | hl / 4);
	pkt_put16(buf + 2, (uint16_t)(hl + plen));
	pkt_put16(buf + 4, id);
	buf[8] = 64;
	buf[9] = IPPROTO_UDP;
	a = htonl(0xc0000201);
	memcpy(buf + 12, &a, 4);
	a = htonl(0xcb007101);
	memcpy(buf + 16, &a, 4);
	if (optlen > 0)
		memcpy(buf + 20, opt, optlen);
	for (i = 0; i < plen; i++)
		buf[hl + i] = (uint8_t)rng();
	w = cksum(buf, hl, 0);
	memcpy(buf + 10, &w, 2);
	return (hl + plen);
}

/* Cut payload bytes [start, start + len) of dgram into a fragment. */
static size_t
make_frag(uint8_t *out, size_t start, size_t len, bool mf)
{
	unsigned	hl = (dgram[0] & 0x0f) * 4;
	uint16_t	w, df = pkt_get16(dgram + 6) & IP_DF;

	memcpy(out, dgram, hl);
	pkt_put16(out + 2, (uint16_t)(hl + len));
	pkt_put16(out + 6, (uint16_t)(df | (mf ? IP_MF : 0) | (start / 8)));
	out[10] = out[11] = 0;
	w = cksum(out, hl, 0);
	memcpy(out + 10, &w, 2);
	memcpy(out + hl, dgram + hl + start, len);
	return (hl + len);
}

/* Give one fragment to frag_input; keep a reassembled datagram. */
static int
feed(uint8_t *buf, size_t len, uint64_t now)
{
	struct pkt	 p;
	uint8_t		*out = NULL;
	size_t		 outlen = 0;
	int		 rc;

	assert_int_equal(pkt_parse(&p, buf, len), PKT_OK);
	assert_true(p.frag);
	rc = frag_input(&p, now, &out, &outlen);
	if (rc == 1) {
		assert_non_null(out);
		assert_true(outlen <= SIPNAT_MAX_PKT);
		memcpy(result, out, outlen);
		rlen = outlen;
	}
	return (rc);
}

/* Cut a piece of dgram and feed it. */
static int
feed_piece(size_t start, size_t len, bool mf, uint64_t now)
{
	uint8_t	buf[SIPNAT_MAX_PKT];
	size_t	n;

	n = make_frag(buf, start, len, mf);
	return (feed(buf, n, now));
}

/* frag_output's emit: keep a copy of each fragment. */
static int
collect_cb(const uint8_t *buf, size_t len, void *arg)
{
	struct frags	*f = arg;

	if (f->n == f->fail_at)
		return (-1);
	assert_true(f->n < MAXFRAGS);
	assert_true(len <= MAXFRAGLEN);
	memcpy(f->buf[f->n], buf, len);
	f->len[f->n++] = len;
	return (0);
}

/* Fresh buffers, counters and a datagram of 3000 bytes for each test. */
static int
setup(void **state)
{
	memset(stats, 0, sizeof stats);
	rng_seed();
	if (frag_init(MEMORY, TIMEOUT) == -1)
		return (-1);
	dlen = make_dgram(dgram, NULL, 0, 3000, 0x4242);
	rlen = 0;
	return (0);
}

/* Free the buffers. */
static int
teardown(void **state)
{
	frag_free();
	return (0);
}

/* The reassembled datagram is the original, header and all. */
static void
assert_reassembled(void)
{
	assert_int_equal(rlen, dlen);
	assert_int_equal(pkt_get16(result + 2), dlen);
	assert_int_equal(pkt_get16(result + 6) & (IP_MF | IP_OFFMASK), 0);
	assert_int_equal(cksum(result, (result[0] & 0x0f) * 4, 0), 0);
	assert_memory_equal(result, dgram, dlen);
	assert_int_equal(frag_pending(), 0);
}

/* In order: 0, 1000, 2000. */
static void
test_in_order(void **state)
{
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(frag_pending(), 1);
	assert_int_equal(feed_piece(1000, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 1);
	assert_reassembled();
	assert_int_equal(stats[STAT_FRAG_IN], 3);
	assert_int_equal(stats[STAT_FRAG_REASSEMBLED], 1);
}

/* Out of order, the first one last. */
static void
test_out_of_order(void **state)
{
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 0);
	assert_int_equal(feed_piece(1000, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(0, 1000, true, NOW), 1);
	assert_reassembled();

	/* Middle, last, first. */
	assert_int_equal(feed_piece(1000, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 0);
	assert_int_equal(feed_piece(0, 1000, true, NOW), 1);
	assert_reassembled();
}

/* In reverse, 8 bytes at a time: 375 fragments. */
static void
test_reverse(void **state)
{
	size_t	off;
	int	rc;

	for (off = 3000; off > 0; off -= 8) {
		rc = feed_piece(off - 8, 8, off != 3000, NOW);
		assert_int_equal(rc, off == 8 ? 1 : 0);
	}
	assert_reassembled();
}

/* Two datagrams interleaved (different ids) both come out. */
static void
test_interleaved(void **state)
{
	uint8_t	a[3][1100], b[3][1100];
	size_t	al[3], bl[3];
	uint8_t	save[SIPNAT_MAX_PKT];
	size_t	savelen;
	int	i;

	for (i = 0; i < 3; i++)
		al[i] = make_frag(a[i], (size_t)i * 1000, 1000, i < 2);
	memcpy(save, dgram, dlen);
	savelen = dlen;
	dlen = make_dgram(dgram, NULL, 0, 3000, 0x4343);
	for (i = 0; i < 3; i++)
		bl[i] = make_frag(b[i], (size_t)i * 1000, 1000, i < 2);
	assert_int_equal(feed(a[0], al[0], NOW), 0);
	assert_int_equal(feed(b[2], bl[2], NOW), 0);
	assert_int_equal(feed(a[1], al[1], NOW), 0);
	assert_int_equal(feed(b[0], bl[0], NOW), 0);
	assert_int_equal(frag_pending(), 2);
	assert_int_equal(feed(b[1], bl[1], NOW), 1);
	assert_int_equal(rlen, dlen);
	assert_memory_equal(result, dgram, dlen);
	assert_int_equal(feed(a[2], al[2], NOW), 1);
	assert_int_equal(rlen, savelen);
	assert_memory_equal(result, save, savelen);
	assert_int_equal(frag_pending(), 0);
}

/* Overlapping fragments: the datagram is dropped and counted. */
static void
test_overlap(void **state)
{
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(992, 1008, true, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_OVERLAP], 1);
	assert_int_equal(frag_pending(), 0);
	/* What comes after cannot complete the dropped one. */
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 0);
	assert_int_equal(feed_piece(1000, 1000, true, NOW), 0);
	assert_int_equal(stats[STAT_FRAG_REASSEMBLED], 0);
	frag_expire(NOW + TIMEOUT);
	assert_int_equal(frag_pending(), 0);

	/* Overlap from the other side, with the last fragment first. */
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 0);
	assert_int_equal(feed_piece(1000, 1008, true, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_OVERLAP], 2);
	assert_int_equal(frag_pending(), 0);
}

/*
 * A duplicate fragment counts as an overlap: the datagram is dropped
 * whole.  A retransmission of the whole datagram then goes through.
 */
static void
test_duplicate(void **state)
{
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(0, 1000, true, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_OVERLAP], 1);
	assert_int_equal(frag_pending(), 0);
	/* A second last fragment is refused the same way. */
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 0);
	assert_int_equal(feed_piece(2000, 1000, false, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_OVERLAP], 2);
	assert_int_equal(frag_pending(), 0);

	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(1000, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 1);
	assert_reassembled();
}

/* A fragment past the end the last fragment gave: dropped. */
static void
test_past_end(void **state)
{
	/* The last one first, then one beyond it. */
	assert_int_equal(feed_piece(1000, 1000, false, NOW), 0);
	assert_int_equal(feed_piece(2000, 1000, true, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_OVERLAP], 1);
	assert_int_equal(frag_pending(), 0);

	/* The last one after one beyond where it ends. */
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(2000, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(1000, 1000, false, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_OVERLAP] +
	    stats[STAT_DROP_FRAG_BAD], 2);
	assert_int_equal(frag_pending(), 0);
}

/*
 * A fragment past the end, sent before the last one, must not stand in
 * for a missing one in the middle: bytes 0-7 and 16-23 came, 8-15 did
 * not, yet 24 bytes were received in all (8 of them past the end).
 */
static void
test_past_end_hole(void **state)
{
	int	rc;

	dlen = make_dgram(dgram, NULL, 0, 24, 0x4444);
	assert_int_equal(feed_piece(0, 8, true, NOW), 0);
	assert_int_equal(feed_piece(24, 8, true, NOW), 0);
	rc = feed_piece(16, 8, false, NOW);
	if (rc == 1)
		fail_msg("reassembled %zu bytes with bytes 8-15 missing", rlen);
	assert_int_equal(stats[STAT_FRAG_REASSEMBLED], 0);
}

/* More fragments coming, yet a length that is not a multiple of 8. */
static void
test_bad_length(void **state)
{
	assert_int_equal(feed_piece(0, 1001, true, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_BAD], 1);
	assert_int_equal(frag_pending(), 0);
	/* The last one may be any length. */
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(1000, 1999, false, NOW), 1);
	assert_int_equal(rlen, 20 + 2999);
	assert_int_equal(pkt_get16(result + 2), 20 + 2999);
	assert_memory_equal(result + 20, dgram + 20, 2999);
}

/* A fragment reaching past 65535 bytes is refused. */
static void
test_too_long(void **state)
{
	uint8_t	buf[2000];
	size_t	n;

	/* Offset 65528 with 1000 bytes. */
	n = make_frag(buf, 0, 1000, true);
	pkt_put16(buf + 6, IP_MF | (65528 / 8));
	assert_int_equal(feed(buf, n, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_BAD], 1);
	/* A last fragment ending at 65512 of 65515 payload bytes is fine. */
	n = make_frag(buf, 0, 8, false);
	pkt_put16(buf + 6, (65535 - 20 - 8) / 8);
	assert_int_equal(feed(buf, n, NOW), 0);
	assert_int_equal(stats[STAT_DROP_FRAG_BAD], 1);
	assert_int_equal(frag_pending(), 1);
}

/* A datagram not complete within the timeout is dropped and counted. */
static void
test_timeout(void **state)
{
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(1000, 1000, true, NOW + 20), 0);
	assert_int_equal(frag_expire(NOW + TIMEOUT - 1), 0);
	assert_int_equal(frag_pending(), 1);
	assert_int_equal(frag_expire(NOW + TIMEOUT), 1);
	assert_int_equal(frag_pending(), 0);
	assert_int_equal(stats[STAT_DROP_FRAG_TIMEOUT], 1);
	/* The last fragment alone cannot finish it now. */
	assert_int_equal(feed_piece(2000, 1000, false, NOW + TIMEOUT), 0);
	assert_int_equal(stats[STAT_FRAG_REASSEMBLED], 0);

	/* A shorter timeout set on reload applies at once. */
	frag_configure(MEMORY, 5);
	assert_int_equal(frag_expire(NOW + TIMEOUT + 4), 0);
	assert_int_equal(frag_expire(NOW + TIMEOUT + 5), 1);
}

/* Room for one datagram: a second one is dropped and counted. */
static void
test_memory_limit(void **state)
{
	uint8_t	b[1100];
	size_t	bl;

	frag_free();
	assert_int_equal(frag_init(1000, TIMEOUT), 0);
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(frag_pending(), 1);
	/* Another datagram: no room. */
	pkt_put16(dgram + 4, 0x9999);
	bl = make_frag(b, 0, 1000, true);
	pkt_put16(dgram + 4, 0x4242);
	assert_int_equal(feed(b, bl, NOW), -1);
	assert_int_equal(stats[STAT_DROP_FRAG_MEMORY], 1);
	/* The first one still completes, and then there is room. */
	assert_int_equal(feed_piece(1000, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(2000, 1000, false, NOW), 1);
	assert_reassembled();
	assert_int_equal(feed(b, bl, NOW), 0);
	assert_int_equal(frag_pending(), 1);
}

/* The header comes from the first fragment: options kept, DF kept. */
static void
test_header(void **state)
{
	static const uint8_t	opt[] = { 0x94, 4, 0, 0, 1, 1, 1, 0 };

	dlen = make_dgram(dgram, opt, sizeof opt, 2000, 0x5151);
	assert_int_equal(feed_piece(1000, 1000, false, NOW), 0);
	assert_int_equal(feed_piece(0, 1000, true, NOW), 1);
	assert_int_equal(result[0], 0x47);
	assert_reassembled();

	/* A first fragment with DF (a broken sender): DF stays. */
	dgram[6] |= 0x40;
	assert_int_equal(feed_piece(0, 1000, true, NOW), 0);
	assert_int_equal(feed_piece(1000, 1000, false, NOW), 1);
	assert_int_equal(result[6] & 0xe0, 0x40);
	assert_int_equal(result[7], 0);
	assert_int_equal(cksum(result, 28, 0), 0);
	assert_int_equal(pkt_get16(result + 2), 28 + 2000);
}

/*
 * Check frag_output's fragments of dgram: each fits the MTU, has a valid
 * header, 8-byte aligned offsets that follow on, MF on all but the last.
 */
static void
check_fragments(unsigned mtu, int expect)
{
	unsigned	hl, fhl;
	size_t		off = 0, plen;
	uint16_t	w;
	int		i;

	hl = (dgram[0] & 0x0f) * 4;
	assert_int_equal(fr->n, expect);
	for (i = 0; i < fr->n; i++) {
		fhl = (fr->buf[i][0] & 0x0f) * 4;
		assert_int_equal(fr->buf[i][0] >> 4, 4);
		assert_true(fr->len[i] <= mtu);
		assert_int_equal(pkt_get16(fr->buf[i] + 2), fr->len[i]);
		assert_int_equal(cksum(fr->buf[i], fhl, 0), 0);
		assert_memory_equal(fr->buf[i] + 4, dgram + 4, 2);
		assert_memory_equal(fr->buf[i] + 8, dgram + 8, 2);
		assert_memory_equal(fr->buf[i] + 12, dgram + 12, 8);
		w = pkt_get16(fr->buf[i] + 6);
		assert_int_equal((size_t)(w & IP_OFFMASK) * 8, off);
		assert_int_equal(w & IP_DF, 0);
		plen = fr->len[i] - fhl;
		if (i < fr->n - 1) {
			assert_true(w & IP_MF);
			assert_int_equal(plen % 8, 0);
		} else
			assert_false(w & IP_MF);
		if (i == 0)
			assert_int_equal(fhl, hl);
		assert_memory_equal(fr->buf[i] + fhl, dgram + hl + off, plen);
		off += plen;
	}
	assert_int_equal(off, dlen - hl);
}

/* 4000 bytes at MTU 1280: four fragments that reassemble to the same. */
static void
test_output(void **state)
{
	int	i, rc;

	fr = calloc(1, sizeof *fr);
	assert_non_null(fr);
	fr->fail_at = -1;
	dlen = make_dgram(dgram, NULL, 0, 3980, 0x6161);
	assert_int_equal(dlen, 4000);
	assert_int_equal(frag_output(dgram, dlen, 1280, collect_cb, fr), 4);
	check_fragments(1280, 4);
	assert_int_equal(stats[STAT_FRAG_OUT], 4);
	/* Back through reassembly, last first. */
	for (i = fr->n - 1; i >= 0; i--) {
		rc = feed(fr->buf[i], fr->len[i], NOW);
		assert_int_equal(rc, i == 0 ? 1 : 0);
	}
	assert_reassembled();

	/* The smallest MTU a router must take, and odd MTUs. */
	fr->n = 0;
	assert_int_equal(frag_output(dgram, dlen, 68, collect_cb, fr),
	    (int)((3980 + 47) / 48));
	check_fragments(68, (3980 + 47) / 48);
	fr->n = 0;
	assert_int_equal(frag_output(dgram, dlen, 1499, collect_cb, fr), 3);
	check_fragments(1499, 3);
	for (i = 0; i < fr->n; i++)
		rc = feed(fr->buf[i], fr->len[i], NOW);
	assert_int_equal(rc, 1);
	assert_reassembled();
	free(fr);
	fr = NULL;
}

/* Options: all in the first fragment, only copied ones in the rest. */
static void
test_output_options(void **state)
{
	/* Router alert (copied), an uncopied option, padding. */
	static const uint8_t	opt[] = { 0x94, 4, 0, 0, 0x19, 4, 9, 9 };
	int			i, rc = 0;

	fr = calloc(1, sizeof *fr);
	assert_non_null(fr);
	fr->fail_at = -1;
	dlen = make_dgram(dgram, opt, sizeof opt, 3000, 0x7171);
	assert_int_equal(frag_output(dgram, dlen, 1000, collect_cb, fr), 4);
	check_fragments(1000, 4);
	assert_int_equal(fr->buf[0][0], 0x47);
	for (i = 1; i < fr->n; i++) {
		assert_int_equal(fr->buf[i][0], 0x46);
		assert_memory_equal(fr->buf[i] + 20, opt, 4);
	}
	for (i = 0; i < fr->n; i++)
		rc = feed(fr->buf[i], fr->len[i], NOW);
	assert_int_equal(rc, 1);
	assert_reassembled();
	free(fr);
	fr = NULL;
}

/* Errors: an MTU too small, an emit that fails. */
static void
test_output_errors(void **state)
{
	fr = calloc(1, sizeof *fr);
	assert_non_null(fr);
	fr->fail_at = -1;
	assert_int_equal(frag_output(dgram, dlen, 67, collect_cb, fr), -1);
	assert_int_equal(fr->n, 0);
	fr->fail_at = 1;
	assert_int_equal(frag_output(dgram, dlen, 1280, collect_cb, fr), -1);
	assert_int_equal(fr->n, 1);
	free(fr);
	fr = NULL;
}

/* Run the fragment tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_in_order),
		T(test_out_of_order),
		T(test_reverse),
		T(test_interleaved),
		T(test_overlap),
		T(test_duplicate),
		T(test_past_end),
		T(test_past_end_hole),
		T(test_bad_length),
		T(test_too_long),
		T(test_timeout),
		T(test_memory_limit),
		T(test_header),
		T(test_output),
		T(test_output_options),
		T(test_output_errors),
#undef T
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
