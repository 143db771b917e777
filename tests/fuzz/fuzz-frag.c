/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sipnat.h"

/*
 * libFuzzer target for the IPv4 defragmenter (frag.c), driven directly:
 * each input is a fresh frag_init() and a sequence of fragments of up to
 * eight datagrams, with valid IP header checksums, so that every
 * fragment reaches frag_input().
 *
 *	bytes 0-3, the set-up:
 *	byte 0	bits 0-1: room for 1-4 datagrams (memory 70000 each);
 *		bit 2: memory smaller than one buffer (room for one)
 *	byte 1	the timeout, 1 + n % 30 seconds
 *	byte 2-3  the MTU of the round trip below: with bit 15 set, byte 3
 *		itself (too small ones included), else 68 + n % 1433
 *	then 8 bytes a fragment, at most MAX_FRAGS of them:
 *	byte 0	bits 0-2: which datagram (id, addresses, protocol: keys[]);
 *		bit 3: MF; bit 4: DF; bit 5: advance the clock by byte 7
 *		and call frag_expire() first; bit 6: IP options (byte 6);
 *		bit 7: feed the round trip's fragments in reverse
 *	byte 1-2  bits 0-12: the offset in 8-byte units; bits 13-15: bytes
 *		added to the length (a length that is not a multiple of 8)
 *	byte 3-4  the length in 8-byte units: byte 3, or with bit 7 of byte
 *		4, byte 3 and bits 0-4 of byte 4; bits 5-6: kind of options
 *		(NOPs, router alerts, record route then a source route,
 *		random bytes)
 *	byte 5	the seed of the payload bytes (a function of seed and
 *		offset, so fragments of one datagram may disagree)
 *	byte 6	bits 0-3: option words (at most 10); bits 4-7: where the
 *		round trip starts feeding (n/16ths of its fragments in)
 *	byte 7	clock step, seconds
 * A record for offset 0 without MF is no fragment, and is skipped.
 *
 * A model of each datagram (which bytes came, with what values, the
 * first fragment's header, where the last fragment ends) says what
 * frag_input() must do with each fragment: keep it (0), drop it alone
 * (a bad fragment, no room), drop the datagram (overlap, duplicate,
 * past the end, too long), or hand back the whole datagram (1).  Checks:
 *   - the return value and the counters are the model's;
 *   - a reassembled datagram has the length the fragments promised, the
 *     first fragment's header (MF and offset cleared, DF kept, valid
 *     checksum) and exactly the fragments' bytes;
 *   - frag_pending() is the model's count and never more than the
 *     configured memory holds; frag_expire() drops exactly the datagrams
 *     older than the timeout, and at the end every datagram left;
 *   - frag_output() of each reassembled datagram to the MTU gives valid
 *     fragments within the MTU (copied options only after the first)
 *     that frag_input() puts back together, in the order byte 0 bit 7
 *     and byte 6 ask, into the same datagram.
 * A broken check traps, which libFuzzer reports as a crash.
 *
 * Run as tests/run does (copy the seeds, so new inputs stay out of the
 * tree):
 *	cp -r tests/fuzz/corpus/frag /tmp/corpus
 *	build-fuzz/tests/fuzz/fuzz-frag -max_total_time=60 /tmp/corpus
 */

#define NKEYS		8
#define NCTX_MEM	70000	/* memory for one datagram, with room */
#define MAX_FRAGS	48
#define REC_LEN		8
#define HDR_LEN		4
#define OUT_MAX		(SIPNAT_MAX_PKT / 8 + 1)	/* fragments */
#define OUT_BUF		(SIPNAT_MAX_PKT + OUT_MAX * 60)

#define CHECK(x)	do { if (!(x)) __builtin_trap(); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The datagrams a fragment can belong to: all of the key matters. */
static const struct key {
	uint16_t	id;
	uint32_t	src;
	uint32_t	dst;
	uint8_t		proto;
} keys[NKEYS] = {
	{ 0x0001, 0xc0000201, 0xcb007101, IPPROTO_UDP },
	{ 0x0002, 0xc0000201, 0xcb007101, IPPROTO_UDP },
	{ 0x0001, 0xc0000202, 0xcb007101, IPPROTO_UDP },	/* src */
	{ 0x0001, 0xc0000201, 0xcb007101, IPPROTO_TCP },	/* proto */
	{ 0x0001, 0xc0000201, 0x0a00000b, IPPROTO_UDP },	/* dst */
	{ 0x0100, 0xc0000201, 0xcb007101, IPPROTO_UDP },	/* id bytes */
	{ 0x0002, 0xc0000202, 0xcb007101, IPPROTO_TCP },
	{ 0xffff, 0xc0000201, 0xcb007101, IPPROTO_ICMP },
};

/* The model of one datagram being reassembled. */
struct dgram {
	bool		 live;
	uint64_t	 created;
	unsigned	 hl;		/* 0 until the first fragment came */
	uint8_t		 hdr[60];	/* the first fragment's header */
	bool		 last;		/* the fragment without MF came */
	size_t		 total;		/* its end */
	size_t		 end;		/* the furthest end so far */
	size_t		 covered;	/* bytes received */
	uint8_t		 have[SIPNAT_MAX_PKT / 8 + 1];	/* bit a byte */
	uint8_t		 data[SIPNAT_MAX_PKT];
};

/* What frag_output() handed to the emit callback. */
struct out {
	uint8_t		 buf[OUT_BUF];
	size_t		 off[OUT_MAX];
	size_t		 len[OUT_MAX];
	size_t		 used;
	unsigned	 n;
};

static struct dgram	 dg[NKEYS];
static struct out	 fo;
static unsigned		 nctx;		/* datagrams the memory holds */
static size_t		 mem;
static unsigned		 timeout;
static uint64_t		 now;
static unsigned		 live;
static uint8_t		 pkt[SIPNAT_MAX_PKT];
static uint8_t		 whole[SIPNAT_MAX_PKT];

static uint8_t	gen(uint8_t, size_t);
static unsigned	make_options(uint8_t *, unsigned, unsigned, uint8_t);
static size_t	make_frag(const uint8_t *);
static void	check_counts(void);
static void	check_pending(void);
static void	drop(struct dgram *);
static void	step_clock(unsigned);
static void	feed(const uint8_t *);
static void	check_whole(const struct dgram *, const uint8_t *, size_t);
static int	collect_cb(const uint8_t *, size_t, void *);
static size_t	copied_options(const uint8_t *, unsigned, uint8_t *);
static void	round_trip(size_t, unsigned, bool, unsigned);

/* The payload byte at offset pos of a fragment made with seed. */
static uint8_t
gen(uint8_t seed, size_t pos)
{
	uint32_t	x = (uint32_t)pos * 2654435761u ^ seed * 0x01000193u;

	return ((uint8_t)(x >> 24 ^ x >> 11 ^ seed));
}

/* Fill words * 4 bytes of IP options of a kind; returns their length. */
static unsigned
make_options(uint8_t *o, unsigned words, unsigned kind, uint8_t seed)
{
	unsigned	len = words * 4, i;

	if (len == 0)
		return (0);
	switch (kind) {
	case 0:
		memset(o, 1, len);		/* NOP */
		break;
	case 1:
		for (i = 0; i < len; i += 4) {	/* router alert: copied */
			o[i] = 0x94;
			o[i + 1] = 4;
			o[i + 2] = o[i + 3] = 0;
		}
		break;
	case 2:
		memset(o, 0, len);		/* record route: not copied */
		o[0] = 7;
		o[1] = (uint8_t)(len > 2 ? len - 1 : len);
		if (len > 2)
			o[2] = 4;
		if (len > 4) {			/* and a copied LSRR after */
			o[len - 4] = 1;
			o[len - 3] = 0x83;
			o[len - 2] = 3;
			o[len - 1] = 4;
			o[1] = (uint8_t)(len - 4);
		}
		break;
	default:
		for (i = 0; i < len; i++)
			o[i] = gen(seed, 70000 + i);
		break;
	}
	return (len);
}

/*
 * Build the fragment a record describes into pkt, with a valid header
 * checksum; returns its length, 0 if it is no fragment (offset 0 and no
 * MF: nat_input() never gives frag_input() a whole datagram).
 */
static size_t
make_frag(const uint8_t *r)
{
	const struct key	*k = &keys[r[0] & 7];
	unsigned		 hl = IP_HDR_MIN, off;
	size_t			 plen, i;
	uint32_t		 a;
	uint16_t		 w;
	bool			 mf = (r[0] & 0x08) != 0;

	off = pkt_get16(r + 1) & IP_OFFMASK;
	if (off == 0 && !mf)
		return (0);
	plen = (size_t)(r[4] & 0x80 ? r[3] | (r[4] & 0x1f) << 8 : r[3]) * 8 +
	    (r[1] >> 5);
	memset(pkt, 0, 60);
	pkt[1] = 0xb8;			/* some TOS */
	if (r[0] & 0x40)
		hl += make_options(pkt + IP_HDR_MIN,
		    (r[6] & 0x0f) > 10 ? 10 : r[6] & 0x0f, (r[4] >> 5) & 3,
		    r[5]);
	if (hl + plen > SIPNAT_MAX_PKT)
		plen = SIPNAT_MAX_PKT - hl;
	pkt[0] = (uint8_t)(0x40 | hl / 4);
	pkt_put16(pkt + 2, (uint16_t)(hl + plen));
	pkt_put16(pkt + 4, k->id);
	pkt_put16(pkt + 6, (uint16_t)((r[0] & 0x10 ? IP_DF : 0) |
	    (mf ? IP_MF : 0) | off));
	pkt[8] = 64;
	pkt[9] = k->proto;
	a = htonl(k->src);
	memcpy(pkt + 12, &a, 4);
	a = htonl(k->dst);
	memcpy(pkt + 16, &a, 4);
	w = cksum(pkt, hl, 0);
	memcpy(pkt + 10, &w, 2);
	for (i = 0; i < plen; i++)
		pkt[hl + i] = gen(r[5], (size_t)off * 8 + i);
	return (hl + plen);
}

/* The counters frag.c keeps, before and after a call. */
static uint64_t	c_in, c_done, c_bad, c_mem, c_overlap, c_timeout, c_out;

/* Check the counters against what the model counted, then take them. */
static void
check_counts(void)
{
	CHECK(stats[STAT_FRAG_IN] == c_in);
	CHECK(stats[STAT_FRAG_REASSEMBLED] == c_done);
	CHECK(stats[STAT_DROP_FRAG_BAD] == c_bad);
	CHECK(stats[STAT_DROP_FRAG_MEMORY] == c_mem);
	CHECK(stats[STAT_DROP_FRAG_OVERLAP] == c_overlap);
	CHECK(stats[STAT_DROP_FRAG_TIMEOUT] == c_timeout);
	CHECK(stats[STAT_FRAG_OUT] == c_out);
}

/* Pending datagrams: the model's, and within the configured memory. */
static void
check_pending(void)
{
	CHECK(frag_pending() == live);
	CHECK(live <= nctx);
	CHECK(frag_pending() * SIPNAT_MAX_PKT <=
	    (mem > SIPNAT_MAX_PKT ? mem : SIPNAT_MAX_PKT));
}

/* The model lets a datagram go. */
static void
drop(struct dgram *d)
{
	d->live = false;
	live--;
}

/* Move the clock on; exactly the datagrams too old must go. */
static void
step_clock(unsigned secs)
{
	unsigned	i, n = 0;

	now += secs;
	for (i = 0; i < NKEYS; i++) {
		if (dg[i].live && dg[i].created + timeout <= now) {
			drop(&dg[i]);
			n++;
		}
	}
	c_timeout += n;
	CHECK(frag_expire(now) == n);
	check_counts();
	check_pending();
}

/* Check a reassembled datagram against its model. */
static void
check_whole(const struct dgram *d, const uint8_t *buf, size_t len)
{
	unsigned	hl = d->hl;

	CHECK(len == hl + d->total);
	CHECK(buf[0] == (0x40 | hl / 4));
	CHECK(pkt_get16(buf + 2) == len);
	CHECK((pkt_get16(buf + 6) & (IP_MF | IP_OFFMASK)) == 0);
	CHECK((pkt_get16(buf + 6) & IP_DF) == (pkt_get16(d->hdr + 6) & IP_DF));
	CHECK(cksum(buf, hl, 0) == 0);
	CHECK(buf[1] == d->hdr[1]);
	CHECK(memcmp(buf + 4, d->hdr + 4, 2) == 0);
	CHECK(memcmp(buf + 8, d->hdr + 8, 2) == 0);
	CHECK(memcmp(buf + 12, d->hdr + 12, hl - 12) == 0);
	CHECK(memcmp(buf + hl, d->data, d->total) == 0);
}

/* frag_output's emit: keep each fragment. */
static int
collect_cb(const uint8_t *buf, size_t len, void *arg)
{
	struct out	*o = arg;

	CHECK(o->n < OUT_MAX && o->used + len <= OUT_BUF);
	memcpy(o->buf + o->used, buf, len);
	o->off[o->n] = o->used;
	o->len[o->n++] = len;
	o->used += len;
	return (0);
}

/*
 * The options a non-first fragment must carry (RFC 791: those with the
 * copy bit), padded to a word; returns their length.  Malformed options
 * end the list.
 */
static size_t
copied_options(const uint8_t *ip, unsigned hl, uint8_t *to)
{
	size_t		n = 0;
	unsigned	i = IP_HDR_MIN;

	while (i < hl && ip[i] != 0) {
		if (ip[i] == 1) {
			i++;
			continue;
		}
		if (hl - i < 2 || ip[i + 1] < 2 || ip[i + 1] > hl - i)
			break;
		if (ip[i] & 0x80) {
			memcpy(to + n, ip + i, ip[i + 1]);
			n += ip[i + 1];
		}
		i += ip[i + 1];
	}
	while (n % 4 != 0)
		to[n++] = 0;
	return (n);
}

/*
 * Cut whole (len bytes) to mtu with frag_output(), check each fragment,
 * and feed them back to frag_input(), starting at the start/16th one,
 * forwards or backwards: the last one fed gives the datagram back.
 */
static void
round_trip(size_t len, unsigned mtu, bool reverse, unsigned start)
{
	struct pkt	 p;
	uint8_t		 copy[60], opts[40], *out;
	unsigned	 hl = (whole[0] & 0x0f) * 4, fhl, i, j;
	size_t		 optlen, off = 0, plen, outlen;
	uint8_t		*b;
	int		 rc;

	fo.n = 0;
	fo.used = 0;
	rc = frag_output(whole, len, mtu, collect_cb, &fo);
	if (mtu < 68 || hl + 8 > mtu) {
		CHECK(rc == -1 && fo.n == 0);
		return;
	}
	CHECK(rc > 0 && (unsigned)rc == fo.n);
	c_out += fo.n;
	check_counts();
	optlen = copied_options(whole, hl, opts);
	for (i = 0; i < fo.n; i++) {
		b = fo.buf + fo.off[i];
		CHECK(fo.len[i] <= mtu && fo.len[i] > IP_HDR_MIN);
		fhl = (b[0] & 0x0f) * 4;
		CHECK(b[0] >> 4 == 4 && fhl >= IP_HDR_MIN && fhl < fo.len[i]);
		CHECK(pkt_get16(b + 2) == fo.len[i]);
		CHECK(cksum(b, fhl, 0) == 0);
		CHECK(b[1] == whole[1] && memcmp(b + 4, whole + 4, 2) == 0 &&
		    memcmp(b + 8, whole + 8, 2) == 0 &&
		    memcmp(b + 12, whole + 12, 8) == 0);
		if (i == 0)
			CHECK(fhl == hl && memcmp(b + IP_HDR_MIN,
			    whole + IP_HDR_MIN, hl - IP_HDR_MIN) == 0);
		else
			CHECK(fhl == IP_HDR_MIN + optlen &&
			    memcmp(b + IP_HDR_MIN, opts, optlen) == 0);
		plen = fo.len[i] - fhl;
		CHECK((pkt_get16(b + 6) & IP_OFFMASK) * 8 == off);
		if (i + 1 < fo.n)
			CHECK((pkt_get16(b + 6) & IP_MF) && plen % 8 == 0);
		else
			CHECK(!(pkt_get16(b + 6) & IP_MF));
		CHECK(memcmp(b + fhl, whole + hl + off, plen) == 0);
		off += plen;
	}
	CHECK(off == len - hl);
	if (fo.n == 1) {
		/* It fitted: the datagram as it was, DF aside. */
		b = fo.buf;
		CHECK(fo.len[0] == len &&
		    memcmp(b, whole, 6) == 0 && memcmp(b + 8, whole + 8, 2) == 0 &&
		    memcmp(b + 12, whole + 12, len - 12) == 0);
		return;
	}
	/* One context is free: the one that just gave whole back. */
	for (j = 0; j < fo.n; j++) {
		i = (start * fo.n / 16 + j) % fo.n;
		if (reverse)
			i = fo.n - 1 - i;
		b = fo.buf + fo.off[i];
		CHECK(pkt_parse(&p, b, fo.len[i]) == PKT_OK && p.frag);
		out = NULL;
		rc = frag_input(&p, now, &out, &outlen);
		c_in++;
		if (j + 1 < fo.n) {
			CHECK(rc == 0);
			CHECK(frag_pending() == live + 1);
			continue;
		}
		CHECK(rc == 1 && out != NULL && outlen == len);
		c_done++;
		memcpy(copy, whole, hl);
		copy[6] &= ~0x40;	/* the fragments had DF clear */
		CHECK(memcmp(out, copy, 10) == 0 &&
		    memcmp(out + 12, copy + 12, hl - 12) == 0 &&
		    cksum(out, hl, 0) == 0);
		CHECK(memcmp(out + hl, whole + hl, len - hl) == 0);
	}
	check_counts();
	check_pending();
}

/* One fragment: what the model expects, then what frag_input() did. */
static void
feed(const uint8_t *r)
{
	struct dgram	*d = &dg[r[0] & 7];
	struct pkt	 p;
	uint8_t		*out = NULL;
	size_t		 len, start, plen, i, outlen = 0;
	int		 rc, want;
	bool		 mf;

	if ((len = make_frag(r)) == 0)
		return;
	CHECK(pkt_parse(&p, pkt, len) == PKT_OK && p.frag);
	mf = (pkt_get16(pkt + 6) & IP_MF) != 0;
	start = (size_t)(pkt_get16(pkt + 6) & IP_OFFMASK) * 8;
	plen = len - p.hl;

	/* The model first. */
	c_in++;
	if (plen == 0 || (mf && plen % 8 != 0) ||
	    start + plen > SIPNAT_MAX_PKT - p.hl) {
		want = -1;
		c_bad++;
	} else if (!d->live && live == nctx) {
		want = -1;
		c_mem++;
	} else {
		if (!d->live) {
			memset(d, 0, offsetof(struct dgram, data));
			d->live = true;
			d->created = now;
			live++;
		}
		for (i = start; i < start + plen; i++)
			if (d->have[i / 8] & (1 << (i % 8)))
				break;
		if ((!mf && d->last) || (d->last && start + plen > d->total) ||
		    i < start + plen) {
			want = -1;
			c_overlap++;
			drop(d);
			goto call;
		}
		for (i = start; i < start + plen; i++)
			d->have[i / 8] |= (uint8_t)(1 << (i % 8));
		memcpy(d->data + start, pkt + p.hl, plen);
		d->covered += plen;
		if (start + plen > d->end)
			d->end = start + plen;
		if (!mf) {
			d->last = true;
			d->total = start + plen;
		}
		if (start == 0) {
			d->hl = p.hl;
			memcpy(d->hdr, pkt, p.hl);
		}
		want = 0;
		if (d->last && d->end > d->total) {
			want = -1;
			c_overlap++;
			drop(d);
		} else if (d->last && d->hl != 0 && d->covered == d->total) {
			for (i = 0; i < d->total; i++)
				CHECK(d->have[i / 8] & (1 << (i % 8)));
			if (d->hl + d->total > SIPNAT_MAX_PKT) {
				want = -1;
				c_bad++;
			} else {
				want = 1;
				c_done++;
			}
			drop(d);
		}
	}
call:
	rc = frag_input(&p, now, &out, &outlen);
	CHECK(rc == want);
	check_counts();
	check_pending();
	if (rc != 1)
		return;
	CHECK(out != NULL);
	check_whole(d, out, outlen);
	memcpy(whole, out, outlen);
}

/* One input: set up, then each fragment in turn. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool	 ready;
	const uint8_t	*r;
	uint64_t	 done;
	size_t		 n, len;
	unsigned	 mtu;
	int		 k;

	if (size < HDR_LEN)
		return (0);
	if (ready)
		frag_free();
	ready = true;
	nctx = (data[0] & 3) + 1;
	mem = (size_t)nctx * NCTX_MEM;
	if (data[0] & 4) {
		nctx = 1;
		mem = 4096;
	}
	timeout = 1 + data[1] % 30;
	if (data[2] & 0x80)
		mtu = data[3];
	else
		mtu = 68 + (unsigned)pkt_get16(data + 2) % 1433;
	CHECK(frag_init(mem, timeout) == 0);
	now = 1000;
	live = 0;
	for (k = 0; k < NKEYS; k++)
		dg[k].live = false;
	c_in = stats[STAT_FRAG_IN];
	c_done = stats[STAT_FRAG_REASSEMBLED];
	c_bad = stats[STAT_DROP_FRAG_BAD];
	c_mem = stats[STAT_DROP_FRAG_MEMORY];
	c_overlap = stats[STAT_DROP_FRAG_OVERLAP];
	c_timeout = stats[STAT_DROP_FRAG_TIMEOUT];
	c_out = stats[STAT_FRAG_OUT];
	check_pending();

	for (n = 0, r = data + HDR_LEN; n < MAX_FRAGS &&
	    r + REC_LEN <= data + size; n++, r += REC_LEN) {
		if (r[0] & 0x20)
			step_clock(r[7]);
		done = c_done;
		feed(r);
		if (c_done == done)
			continue;
		len = pkt_get16(whole + 2);
		round_trip(len, mtu, (r[0] & 0x80) != 0, r[6] >> 4);
	}
	/* Whatever is left goes when its time is up. */
	step_clock(timeout);
	CHECK(frag_pending() == 0 && live == 0);
	return (0);
}
