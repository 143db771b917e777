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
 * Unit tests for cksum.c: known vectors, the edge cases of one's
 * complement arithmetic, and incremental updates against full sums.
 *
 * The random tests use a fixed seed; to reproduce a failure with another
 * seed, run with SIPNAT_TEST_SEED=<n> in the environment (the seed in use
 * is printed when it is not the default).
 */

#define DEFAULT_SEED	0x5eed1071u
#include "util.h"
#define RANDOM_ROUNDS	20000


static uint16_t	ref_cksum(const uint8_t *, size_t);
static void	store_cksum(uint8_t *, size_t, size_t);
static size_t	make_l4(uint8_t *, uint8_t, size_t);

/* A reference checksum, byte by byte in big-endian order, host result. */
static uint16_t
ref_cksum(const uint8_t *p, size_t len)
{
	uint64_t	sum = 0;
	size_t		i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ((uint16_t)~sum);
}

/* The RFC 1071 section 3 example: the sum of 8 bytes is 0xddf2. */
static void
test_rfc1071_vector(void **state)
{
	static const uint8_t	data[] = {
		0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7
	};
	uint16_t		w;

	w = cksum(data, sizeof data, 0);
	assert_int_equal(ntohs(w), (uint16_t)~0xddf2);
	assert_int_equal(cksum_fold(cksum_partial(data, sizeof data, 0)), w);
}

/* A real IPv4 header: its checksum is 0xb861 and it verifies to zero. */
static void
test_ipv4_header(void **state)
{
	uint8_t		hdr[] = {
		0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00,
		0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
		0xc0, 0xa8, 0x00, 0xc7
	};
	uint16_t	w;

	/* With the checksum in place the sum is 0xffff: cksum gives 0. */
	assert_int_equal(cksum(hdr, sizeof hdr, 0), 0);
	hdr[10] = hdr[11] = 0;
	w = cksum(hdr, sizeof hdr, 0);
	assert_int_equal(ntohs(w), 0xb861);
	assert_int_equal(ntohs(w), ref_cksum(hdr, sizeof hdr));
	/* Stored back it verifies again. */
	memcpy(hdr + 10, &w, 2);
	assert_int_equal(cksum(hdr, sizeof hdr, 0), 0);
	assert_int_equal(hdr[10], 0xb8);
	assert_int_equal(hdr[11], 0x61);
}

/* Random buffers of every length agree with the reference. */
static void
test_reference_random(void **state)
{
	uint8_t		buf[1501];
	size_t		len, i;
	int		round;

	rng_seed();
	for (round = 0; round < 2000; round++) {
		len = rng() % sizeof buf;
		for (i = 0; i < len; i++)
			buf[i] = (uint8_t)rng();
		assert_int_equal(ntohs(cksum(buf, len, 0)),
		    ref_cksum(buf, len));
	}
}

/* 0x0000 and 0xffff: the two zeros of one's complement arithmetic. */
static void
test_zero_edges(void **state)
{
	uint8_t		zero[20], ones[4], pair[4];
	uint16_t	sum;

	memset(zero, 0, sizeof zero);
	memset(ones, 0xff, sizeof ones);
	/* All zeros sum to 0 and complement to 0xffff. */
	assert_int_equal(cksum(zero, sizeof zero, 0), 0xffff);
	assert_int_equal(cksum(zero, 0, 0), 0xffff);
	/* All ones sum to 0xffff (negative zero) and complement to 0. */
	assert_int_equal(cksum(ones, sizeof ones, 0), 0);
	/* 0x8000 + 0x7fff = 0xffff: checksum 0. */
	pair[0] = 0x80;
	pair[1] = 0x00;
	pair[2] = 0x7f;
	pair[3] = 0xff;
	assert_int_equal(cksum(pair, sizeof pair, 0), 0);
	/* 0xffff + 0x0001 carries round to 0x0001: checksum 0xfffe. */
	pair[0] = pair[1] = 0xff;
	pair[2] = 0x00;
	pair[3] = 0x01;
	assert_int_equal(ntohs(cksum(pair, sizeof pair, 0)), 0xfffe);
	/* Folding carries twice: 0x1fffe folds to 0xffff, then 0x0000. */
	assert_int_equal(cksum_fold(0x1fffe), 0x0000);
	assert_int_equal(cksum_fold(0xffff0001), (uint16_t)~0x0001);
	assert_int_equal(cksum_fold(0), 0xffff);

	/*
	 * RFC 1624 section 4: the rest of the header sums to 0xcd7a and a
	 * field goes from 0x5555 to 0x3285.  Equation 2 would give 0xffff;
	 * the right answer (equation 3) is 0x0000.
	 */
	sum = htons(0xdd2f);
	cksum_update16(&sum, htons(0x5555), htons(0x3285));
	assert_int_equal(sum, 0x0000);
	/* And back again. */
	cksum_update16(&sum, htons(0x3285), htons(0x5555));
	assert_int_equal(ntohs(sum), 0xdd2f);
}

/* An odd length is summed as if padded with one zero byte. */
static void
test_odd_length(void **state)
{
	uint8_t		buf[8] = { 0x12, 0x34, 0x56, 0x78, 0x9a };
	uint8_t		one = 0xab;

	assert_int_equal(cksum(buf, 5, 0), cksum(buf, 6, 0));
	assert_int_equal(ntohs(cksum(buf, 5, 0)), ref_cksum(buf, 5));
	/* The lone byte is the high byte of its word. */
	assert_int_equal(ntohs(cksum(&one, 1, 0)), (uint16_t)~0xab00);
	/* A running sum of even pieces plus an odd tail is the whole. */
	buf[5] = 0x77;
	assert_int_equal(cksum(buf + 4, 2, cksum_partial(buf, 4, 0)),
	    cksum(buf, 6, 0));
	assert_int_equal(cksum(buf + 2, 3, cksum_partial(buf, 2, 0)),
	    cksum(buf, 5, 0));
}

/* Store a checksum computed over buf at off. */
static void
store_cksum(uint8_t *buf, size_t len, size_t off)
{
	uint16_t	w;

	buf[off] = buf[off + 1] = 0;
	w = cksum(buf, len, 0);
	memcpy(buf + off, &w, 2);
}

/*
 * Random buffers with a checksum at offset 10; random 16- and 32-bit
 * fields (at even offsets, as in real headers) change many times over.
 * After each change the incremental sum equals a full recomputation,
 * and the buffer still verifies.
 */
static void
test_update_random(void **state)
{
	uint8_t		buf[1500], copy[1500];
	uint16_t	sum, o16, n16, full;
	uint32_t	o32, n32;
	size_t		len, i, off;
	int		round, change;

	rng_seed();
	for (round = 0; round < RANDOM_ROUNDS / 10; round++) {
		len = 20 + rng() % (sizeof buf - 20);
		for (i = 0; i < len; i++)
			buf[i] = (uint8_t)rng();
		/* Sometimes mostly zeros or ones, to reach the edges. */
		if (round % 7 == 0)
			memset(buf, round % 2 ? 0xff : 0, len - 4);
		store_cksum(buf, len, 10);
		for (change = 0; change < 10; change++) {
			memcpy(&sum, buf + 10, 2);
			do
				off = (rng() % ((len - 4) / 2)) * 2;
			while (off >= 8 && off <= 12);
			if (rng() & 1) {
				memcpy(&o16, buf + off, 2);
				n16 = (uint16_t)rng();
				if (rng() % 8 == 0)
					n16 = rng() & 1 ? 0 : 0xffff;
				memcpy(buf + off, &n16, 2);
				cksum_update16(&sum, o16, n16);
			} else {
				memcpy(&o32, buf + off, 4);
				n32 = rng();
				memcpy(buf + off, &n32, 4);
				cksum_update32(&sum, o32, n32);
			}
			memcpy(buf + 10, &sum, 2);
			assert_int_equal(cksum(buf, len, 0), 0);
			memcpy(copy, buf, len);
			store_cksum(copy, len, 10);
			memcpy(&full, copy + 10, 2);
			if (sum != full)
				fail_msg("round %d change %d: incremental "
				    "%04x full %04x (len %zu off %zu)", round,
				    change, ntohs(sum), ntohs(full), len, off);
		}
	}
}

/* A no-op change leaves the checksum as it was. */
static void
test_update_same(void **state)
{
	uint16_t	sum, orig;
	uint32_t	addr;
	int		i;

	rng_seed();
	for (i = 0; i < 1000; i++) {
		orig = sum = (uint16_t)rng();
		addr = rng();
		cksum_update32(&sum, addr, addr);
		cksum_update16(&sum, (uint16_t)addr, (uint16_t)addr);
		/* 0xffff (only all-zero data has it) may become 0x0000. */
		if (orig == 0xffff)
			assert_true(sum == 0xffff || sum == 0);
		else
			assert_int_equal(sum, orig);
	}
}

/* Build a UDP or TCP datagram with the given payload length. */
static size_t
make_l4(uint8_t *buf, uint8_t proto, size_t plen)
{
	size_t	hl = proto == IPPROTO_TCP ? 20 : 8, len, i;

	len = 20 + hl + plen;
	memset(buf, 0, len);
	buf[0] = 0x45;
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	buf[8] = 64;
	buf[9] = proto;
	for (i = 12; i < 20; i++)
		buf[i] = (uint8_t)rng();
	for (i = 20; i < len; i++)
		buf[i] = (uint8_t)rng();
	if (proto == IPPROTO_UDP) {
		buf[24] = (uint8_t)((hl + plen) >> 8);
		buf[25] = (uint8_t)(hl + plen);
		buf[26] = buf[27] = 0;
	} else {
		buf[32] = 0x50;
		buf[36] = buf[37] = 0;
	}
	return (len);
}

/* cksum_l4 covers the pseudo-header: compare with one built by hand. */
static void
test_l4_pseudo_header(void **state)
{
	uint8_t		buf[1600], ph[12 + 1600];
	struct pkt	p;
	size_t		len, l4len, plen;
	uint8_t		proto;
	int		round;

	rng_seed();
	for (round = 0; round < 500; round++) {
		proto = round & 1 ? IPPROTO_TCP : IPPROTO_UDP;
		plen = rng() % 1400;
		len = make_l4(buf, proto, plen);
		l4len = len - 20;
		memset(&p, 0, sizeof p);
		p.buf = buf;
		p.len = len;
		p.hl = 20;
		p.proto = proto;
		memcpy(&p.src, buf + 12, 4);
		memcpy(&p.dst, buf + 16, 4);
		p.l4 = buf + 20;
		p.l4len = l4len;
		/* src, dst, zero, proto, length, then the segment. */
		memcpy(ph, buf + 12, 8);
		ph[8] = 0;
		ph[9] = proto;
		ph[10] = (uint8_t)(l4len >> 8);
		ph[11] = (uint8_t)l4len;
		memcpy(ph + 12, buf + 20, l4len);
		assert_int_equal(ntohs(cksum_l4(&p)),
		    ref_cksum(ph, 12 + l4len));
	}
	/* ICMP has no pseudo-header. */
	p.proto = IPPROTO_ICMP;
	assert_int_equal(ntohs(cksum_l4(&p)), ref_cksum(p.l4, p.l4len));
}

/* Run the checksum tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc1071_vector),
		cmocka_unit_test(test_ipv4_header),
		cmocka_unit_test(test_reference_random),
		cmocka_unit_test(test_zero_edges),
		cmocka_unit_test(test_odd_length),
		cmocka_unit_test(test_update_random),
		cmocka_unit_test(test_update_same),
		cmocka_unit_test(test_l4_pseudo_header),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
