/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <string.h>

#include "sipnat.h"

/*
 * Media quality from RTP headers as they pass (RFC 3550): packets lost
 * from the sequence numbers (A.1, A.3), packets that came after a later
 * one, and interarrival jitter from the timestamps (A.8), measured where
 * sipnatd sees the stream: between each end and the gateway.
 */

#define RTP_MAX_DROPOUT	3000	/* a jump ahead still in this sequence */
#define RTP_MAX_MISORDER 100	/* a step back counted as late */
#define RTP_RATE_DEFAULT 8000

/* Start counting a stream (again) at this packet. */
static void
rtp_restart(struct rtp_stats *r, uint16_t seq, uint32_t ssrc)
{
	r->lost_before = rtp_stats_lost(r);
	r->duplicates = 0;
	r->started = true;
	r->ssrc = ssrc;
	r->base_seq = seq;
	r->max_seq = seq;
	r->cycles = 0;
	r->received = 0;
	r->have_transit = false;
}

/*
 * One UDP payload of the stream, arrived at now_us (microseconds).  Not
 * RTP (too short, not version 2, RTCP multiplexed on the port): only
 * counted as a packet.
 */
void
rtp_stats_packet(struct rtp_stats *r, const uint8_t *p, size_t len,
    uint64_t now_us)
{
	uint16_t	seq, udelta;
	uint32_t	ts, ssrc, rate;
	int64_t		arrival, transit, d;

	r->packets++;
	r->bytes += len;
	if (r->first_us == 0)
		r->first_us = now_us;
	r->last_us = now_us;
	if (len < 12 || (p[0] >> 6) != 2 || ((p[1] & 0x7f) >= 72 &&
	    (p[1] & 0x7f) <= 76))
		return;
	seq = pkt_get16(p + 2);
	ts = pkt_get32(p + 4);
	ssrc = pkt_get32(p + 8);
	if (!r->started || ssrc != r->ssrc)
		rtp_restart(r, seq, ssrc);
	else {
		udelta = (uint16_t)(seq - r->max_seq);
		if (udelta == 0)
			r->duplicates++;
		else if (udelta < RTP_MAX_DROPOUT) {
			if (seq < r->max_seq)
				r->cycles += 65536;
			r->max_seq = seq;
		} else if (udelta > 65536 - RTP_MAX_MISORDER)
			r->reordered++;
		else
			rtp_restart(r, seq, ssrc);	/* a new sender */
	}
	r->received++;

	/* Jitter in timestamp units (A.8): arrival on the RTP clock. */
	rate = r->rate != 0 ? r->rate : RTP_RATE_DEFAULT;
	arrival = (int64_t)(now_us * rate / 1000000);
	transit = (int64_t)(int32_t)((uint32_t)arrival - ts);
	if (r->have_transit) {
		d = transit - r->last_transit;
		if (d < 0)
			d = -d;
		r->jitter += ((double)d - r->jitter) / 16.0;
	}
	r->last_transit = transit;
	r->have_transit = true;
}

/* Packets expected from the sequence numbers seen (A.3). */
uint64_t
rtp_stats_expected(const struct rtp_stats *r)
{
	if (!r->started)
		return (0);
	return ((uint64_t)r->cycles + r->max_seq - r->base_seq + 1);
}

/*
 * Packets lost: expected but never seen (duplicates not counted), in
 * this run of sequence numbers and the ones before it.
 */
uint64_t
rtp_stats_lost(const struct rtp_stats *r)
{
	uint64_t	expected = rtp_stats_expected(r);
	uint64_t	got = r->received - r->duplicates;

	return (r->lost_before + (expected > got ? expected - got : 0));
}

/* The interarrival jitter in milliseconds. */
double
rtp_stats_jitter_ms(const struct rtp_stats *r)
{
	uint32_t	rate = r->rate != 0 ? r->rate : RTP_RATE_DEFAULT;

	return (r->jitter * 1000.0 / rate);
}
