/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "alg.h"

/*
 * TCP streams for helpers that rewrite a text protocol over TCP.  A
 * helper needs whole messages, and TCP cuts them anywhere, so each
 * direction of such a connection keeps the bytes of an unfinished message
 * ("held") instead of sending them on, and tells the sender it has them
 * with an ACK of its own, so that a sender that writes a byte at a time
 * never stalls.  Once the helper has whole messages, their rewritten form
 * goes out as new segments; it is kept until the receiver acknowledges
 * it, and sent again if the sender retransmits or the receiver's ACKs stop
 * short of it.  Rewriting changes lengths, so every sequence number of
 * that direction after a change, and every ACK and SACK block of the
 * other, is shifted (RFC 793 arithmetic, modulo 2^32).
 *
 * Bounds: a direction holds at most stream.buffer bytes unsent and as many
 * sent but unacknowledged; all streams together at most stream.memory.
 * Past a bound the connection "degrades": what it holds goes out as it
 * came, and from then on its segments only have their sequence numbers
 * shifted by what was already changed.
 */

#define STREAM_UNITS	32	/* sent, unacknowledged batches per direction */
#define STREAM_RTO	1	/* seconds before sending a batch again */
#define STREAM_TMPL	120	/* IP and TCP headers with options */
#define TCP_FIN		0x01
#define TCP_SYN		0x02
#define TCP_RST		0x04
#define TCP_PSH		0x08
#define TCP_ACK		0x10

#define SEQ_LT(a, b)	((int32_t)((a) - (b)) < 0)
#define SEQ_LEQ(a, b)	((int32_t)((a) - (b)) <= 0)

/* A batch of rewritten bytes sent, kept until the receiver has it. */
struct stream_unit {
	uint32_t	 oseq;		/* original range [oseq, oend) */
	uint32_t	 oend;
	uint32_t	 tseq;		/* where it starts, translated */
	uint32_t	 off;		/* its bytes in hist */
	uint32_t	 len;
	bool		 fin;		/* the sender's FIN came after it */
	uint64_t	 sent;		/* when it was last sent */
};

/* One direction: the sender's bytes and how they map to the receiver's. */
struct stream_dir {
	bool		 synced;	/* seen a SYN or a first segment */
	bool		 plain;		/* degraded: no more parsing */
	uint32_t	 plain_from;	/* where it degraded */
	uint32_t	 base;		/* where it was picked up */
	uint32_t	 acked;		/* original bytes the receiver has */
	bool		 acked_known;	/* not until it says, if picked up */
	uint32_t	 nxt;		/* next original byte expected */
	uint32_t	 sent;		/* original bytes before it are sent */
	int32_t		 delta;		/* translated - original, from sent */
	uint16_t	 mss;		/* the receiver's, from its SYN */
	size_t		 cap;		/* of held and of hist, each */
	uint8_t		*held;		/* [sent, nxt), original bytes */
	size_t		 nheld;
	uint8_t		*hist;		/* the units' rewritten bytes */
	size_t		 nhist;
	struct stream_unit units[STREAM_UNITS];
	unsigned	 nunits;
	/* The other direction as this sender sees it, for our own ACKs. */
	uint32_t	 peer_seq;	/* its next sequence number */
	uint16_t	 peer_win;	/* its last window field, scaled */
	bool		 peer_ts;	/* it sends timestamps (RFC 7323) */
	uint32_t	 peer_tsval;	/* its last TSval */
	uint32_t	 echo_tsval;	/* the sender's last TSval */
	uint32_t	 fwd_ack;	/* last ACK sent on to the receiver */
	uint16_t	 fwd_win;	/* and window */
	uint32_t	 last_ack;	/* the receiver's, translated */
	unsigned	 dupacks;
	/* The sender's last headers, to build segments on (options kept). */
	uint8_t		 tmpl[STREAM_TMPL];
	unsigned	 tmpl_hl;	/* IP header length */
	unsigned	 tmpl_len;	/* IP and TCP headers */
};

struct stream {
	LIST_ENTRY(stream) entry;
	struct nat_session *s;
	struct stream_dir dir[2];	/* by enum nat_dir of the sender */
	size_t		 mem;
};

static struct {
	size_t			 buffer;	/* per direction, each of held
						   and hist */
	size_t			 memory;	/* all streams */
	size_t			 used;
	unsigned		 count;
	LIST_HEAD(, stream)	 all;
	const struct stream_io	*io;
	uint64_t		 segments_sent;		/* by stream_send() */
	uint8_t			 out[SIPNAT_MAX_PKT];	/* rewritten bytes */
	/* Packets are read as 16- and 32-bit words: keep them aligned. */
	uint8_t			 seg[SIPNAT_MAX_PKT]
				     __attribute__((aligned(8)));
} st = {
	.all = LIST_HEAD_INITIALIZER(st.all),
};



/* Take the bounds and the way out; runs at start and on every reload. */
void
stream_configure(size_t buffer, size_t memory, const struct stream_io *io)
{
	st.buffer = buffer;
	st.memory = memory;
	st.io = io;
}

/* Make the stream state of a helper's TCP session; NULL at the limit. */
static struct stream *
stream_new(struct nat_session *s)
{
	struct stream	*sm;

	if (st.used + sizeof *sm > st.memory) {
		stat_inc(STAT_STREAM_LIMIT_MEMORY);
		return (NULL);
	}
	if ((sm = calloc(1, sizeof *sm)) == NULL)
		return (NULL);
	sm->s = s;
	sm->mem = sizeof *sm;
	st.used += sm->mem;
	st.count++;
	LIST_INSERT_HEAD(&st.all, sm, entry);
	stat_inc(STAT_STREAM_CONNECTIONS);
	return (sm);
}

/* Free a session's stream state (the session is going). */
void
stream_free(struct stream *sm)
{
	int	i;

	if (sm == NULL)
		return;
	for (i = 0; i < 2; i++) {
		free(sm->dir[i].held);
		free(sm->dir[i].hist);
	}
	st.used -= sm->mem;
	st.count--;
	LIST_REMOVE(sm, entry);
	free(sm);
}

/* Free every stream (at exit, with the table). */
void
stream_free_all(void)
{
	while (!LIST_EMPTY(&st.all))
		stream_free(LIST_FIRST(&st.all));
}

/* Give a direction its buffers, within the total; -1 at the limit. */
static int
stream_buffers(struct stream *sm, struct stream_dir *d)
{
	if (d->held != NULL)
		return (0);
	if (st.used + 2 * st.buffer > st.memory) {
		stat_inc(STAT_STREAM_LIMIT_MEMORY);
		return (-1);
	}
	if ((d->held = malloc(st.buffer)) == NULL ||
	    (d->hist = malloc(st.buffer)) == NULL) {
		free(d->held);
		d->held = NULL;
		return (-1);
	}
	/* Its own size: a reload may change st.buffer. */
	d->cap = st.buffer;
	sm->mem += 2 * st.buffer;
	st.used += 2 * st.buffer;
	return (0);
}

/* The parts of a TCP segment this file reads. */
struct stream_seg {
	struct pkt	*p;
	uint8_t		*tcp;
	unsigned	 thl;		/* TCP header length */
	uint8_t		*data;
	size_t		 len;
	uint32_t	 seq;
	uint32_t	 ack;
	uint8_t		 flags;
};

/* Read a segment's header fields. */
static void
stream_seg_read(struct stream_seg *g, struct pkt *p)
{
	g->p = p;
	g->tcp = p->l4;
	g->thl = (g->tcp[12] >> 4) * 4;
	g->data = g->tcp + g->thl;
	g->len = p->l4len - g->thl;
	g->seq = pkt_get32(g->tcp + 4);
	g->ack = pkt_get32(g->tcp + 8);
	g->flags = g->tcp[13];
}

/* A sequence number of the sender, as the receiver is to see it. */
static uint32_t
stream_o2t(const struct stream_dir *d, uint32_t seq)
{
	const struct stream_unit	*u;
	unsigned			 i;

	/* Data held back: the receiver expects where we stopped. */
	if (SEQ_LEQ(d->sent, seq))
		return ((d->nheld > 0 ? d->sent : seq) + (uint32_t)d->delta);
	/* Passed as it came since it degraded, or before we had it. */
	if (d->plain && SEQ_LEQ(d->plain_from, seq))
		return (seq + (uint32_t)d->delta);
	if (SEQ_LT(seq, d->base))
		return (seq);
	for (i = 0; i < d->nunits; i++) {
		u = &d->units[i];
		if (SEQ_LT(seq, u->oseq))
			return (seq + (u->tseq - u->oseq));
		if (SEQ_LT(seq, u->oend))
			return (u->tseq + (seq - u->oseq < u->len ?
			    seq - u->oseq : u->len));
	}
	return (seq + (uint32_t)d->delta);
}

/*
 * An acknowledgement from the receiver (translated space) as the sender
 * is to see it.  Inside a batch it counts as none of the batch: the
 * sender may resend it, and we send the batch again.  At its end it
 * counts as all of it, so an empty batch (messages the helper dropped)
 * is acknowledged as soon as what came before it is.
 */
static uint32_t
stream_t2o(const struct stream_dir *d, uint32_t ack)
{
	const struct stream_unit	*u;
	unsigned			 i;

	for (i = 0; i < d->nunits; i++) {
		u = &d->units[i];
		if (SEQ_LT(ack, u->tseq))
			return (ack - (u->tseq - u->oseq));
		if (SEQ_LT(ack, u->tseq + u->len))
			return (u->oseq);
	}
	return (ack - (uint32_t)d->delta);
}

/*
 * An acknowledgement as the sender is to see it, rounded up: the left
 * edge of a SACK block inside a batch counts from the batch's end.
 */
static uint32_t
stream_t2o_up(const struct stream_dir *d, uint32_t ack)
{
	const struct stream_unit	*u;
	unsigned			 i;

	for (i = 0; i < d->nunits; i++) {
		u = &d->units[i];
		if (SEQ_LT(u->tseq, ack) && SEQ_LT(ack, u->tseq + u->len))
			return (u->oend);
	}
	return (stream_t2o(d, ack));
}

/* Set a TCP header's 32-bit field at off, fixing the checksum. */
static void
stream_set32(struct pkt *p, unsigned off, uint32_t v)
{
	uint8_t		*f = p->l4 + off;
	uint16_t	*sum = pkt_l4_cksum(p);
	uint32_t	 old;

	memcpy(&old, f, 4);
	pkt_put32(f, v);
	if (sum != NULL) {
		uint32_t	new;

		memcpy(&new, f, 4);
		cksum_update32(sum, old, new);
	}
}

/* Shift the SACK blocks of a segment from the receiver (RFC 2018). */
static void
stream_sack(struct stream_seg *g, const struct stream_dir *d)
{
	unsigned	i = 20, n, k;

	while (i < g->thl) {
		if (g->tcp[i] == 0)
			break;
		if (g->tcp[i] == 1) {
			i++;
			continue;
		}
		if (i + 1 >= g->thl || g->tcp[i + 1] < 2 ||
		    i + g->tcp[i + 1] > g->thl)
			break;
		if (g->tcp[i] == 5) {
			n = (g->tcp[i + 1] - 2) / 8;
			for (k = 0; k < 2 * n; k++)
				stream_set32(g->p, i + 2 + 4 * k, (k % 2 == 0 ?
				    stream_t2o_up : stream_t2o)(d,
				    pkt_get32(g->tcp + i + 2 + 4 * k)));
		}
		i += g->tcp[i + 1];
	}
}

/* A TCP option of a segment (kind, its length), or NULL. */
static const uint8_t *
stream_opt(const struct stream_seg *g, uint8_t kind, uint8_t len)
{
	unsigned	i = 20;

	while (i < g->thl) {
		if (g->tcp[i] == 0)
			break;
		if (g->tcp[i] == 1) {
			i++;
			continue;
		}
		if (i + 1 >= g->thl || g->tcp[i + 1] < 2 ||
		    i + g->tcp[i + 1] > g->thl)
			break;
		if (g->tcp[i] == kind && g->tcp[i + 1] == len)
			return (g->tcp + i);
		i += g->tcp[i + 1];
	}
	return (NULL);
}

/*
 * Send the sender an ACK for what we hold, as if from the receiver: the
 * receiver's last sequence number and window as the sender knows them.
 */
static void
stream_ack_sender(struct stream *sm, enum nat_dir dir, uint32_t ack)
{
	struct stream_dir	*d = &sm->dir[dir];
	struct nat_session	*s = sm->s;
	struct nat_mapping	*m = s->map;
	uint8_t			*ip = st.seg, *tcp = st.seg + IP_HDR_MIN;
	uint32_t		 src, dst;
	uint16_t		 sport, dport, w;
	struct pkt		 p;

	memset(ip, 0, IP_HDR_MIN + 32);
	if (dir == DIR_OUT) {
		src = s->rem_addr;
		sport = s->rem_port;
		dst = m->in_addr;
		dport = m->in_port;
	} else {
		src = st.io->pub;
		sport = m->pub_port;
		dst = s->rem_addr;
		dport = s->rem_port;
	}
	ip[0] = 0x45;
	ip[3] = IP_HDR_MIN + (d->peer_ts ? 32 : 20);
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	w = cksum(ip, IP_HDR_MIN, 0);
	memcpy(ip + 10, &w, 2);
	w = htons(sport);
	memcpy(tcp, &w, 2);
	w = htons(dport);
	memcpy(tcp + 2, &w, 2);
	pkt_put32(tcp + 4, d->peer_seq);
	pkt_put32(tcp + 8, ack);
	tcp[12] = 5 << 4;
	tcp[13] = TCP_ACK;
	w = htons(d->peer_win);
	memcpy(tcp + 14, &w, 2);
	if (d->peer_ts) {
		/* Both ends use timestamps: ours echo like the receiver's. */
		tcp[12] = 8 << 4;
		tcp[20] = tcp[21] = 1;
		tcp[22] = 8;
		tcp[23] = 10;
		pkt_put32(tcp + 24, d->peer_tsval);
		pkt_put32(tcp + 28, d->echo_tsval);
	}
	if (pkt_parse(&p, ip, ip[3]) != PKT_OK)
		return;
	w = cksum_l4(&p);
	memcpy(tcp + 16, &w, 2);
	stat_inc(STAT_STREAM_ACKS_SENT);
	st.io->to_sender(&p, dir);
}

/*
 * Send bytes to the receiver as segments built on the sender's last
 * headers (options kept), at most one MSS each, from translated tseq.
 * FIN goes on the last one if fin.
 */
static void
stream_send(struct stream *sm, enum nat_dir dir, uint32_t tseq,
    const uint8_t *data, size_t len, bool fin)
{
	struct stream_dir	*d = &sm->dir[dir];
	size_t			 hdr = d->tmpl_len, opt, mss, n, off = 0;
	unsigned		 mtu = st.io->mtu(dir);
	uint16_t		 w;
	struct pkt		 p;

	if (hdr == 0)
		return;
	opt = hdr - d->tmpl_hl - 20;
	mss = mtu > hdr ? mtu - hdr : 536;
	if (d->mss != 0 && d->mss < mss + opt)
		mss = d->mss > opt ? d->mss - opt : 1;
	do {
		n = len - off < mss ? len - off : mss;
		memcpy(st.seg, d->tmpl, hdr);
		if (n > 0)
			memcpy(st.seg + hdr, data + off, n);
		w = htons((uint16_t)(hdr + n));
		memcpy(st.seg + 2, &w, 2);
		st.seg[10] = st.seg[11] = 0;
		w = cksum(st.seg, d->tmpl_hl, 0);
		memcpy(st.seg + 10, &w, 2);
		if (pkt_parse(&p, st.seg, hdr + n) != PKT_OK)
			return;
		pkt_put32(p.l4 + 4, tseq + (uint32_t)off);
		p.l4[13] = (uint8_t)((p.l4[13] & ~(TCP_FIN | TCP_PSH | TCP_SYN |
		    TCP_RST)) | (off + n == len ? (n > 0 ? TCP_PSH : 0) |
		    (fin ? TCP_FIN : 0) : 0));
		d->fwd_ack = pkt_get32(p.l4 + 8);
		d->fwd_win = (uint16_t)(p.l4[14] << 8 | p.l4[15]);
		st.segments_sent++;
		p.tcp_flags = p.l4[13];
		p.l4[16] = p.l4[17] = 0;
		w = cksum_l4(&p);
		memcpy(p.l4 + 16, &w, 2);
		stat_inc(STAT_STREAM_SEGMENTS_OUT);
		st.io->to_receiver(&p, sm->s, dir);
		off += n;
	} while (off < len);
}

/* Is there room to keep a batch of len bytes? */
static bool
stream_room(const struct stream_dir *d, size_t len)
{
	return (d->hist != NULL && d->nunits < STREAM_UNITS &&
	    d->nhist + len <= d->cap);
}

/* Keep a batch sent until the receiver acknowledges it; -1 if no room. */
static int
stream_keep(struct stream_dir *d, uint32_t oseq, uint32_t oend,
    uint32_t tseq, const uint8_t *data, size_t len, bool fin)
{
	struct stream_unit	*u;

	if (!stream_room(d, len))
		return (-1);
	u = &d->units[d->nunits++];
	u->fin = fin;
	u->oseq = oseq;
	u->oend = oend;
	u->tseq = tseq;
	u->off = (uint32_t)d->nhist;
	u->len = (uint32_t)len;
	u->sent = nat_now();
	if (len > 0)
		memcpy(d->hist + d->nhist, data, len);
	d->nhist += len;
	return (0);
}

/*
 * Forget batches the receiver acknowledged (ack: translated), the FIN
 * that ends one included: a batch of nothing but a FIN (a message the
 * helper dropped) is acknowledged only past it.
 */
static void
stream_acked(struct stream_dir *d, uint32_t ack)
{
	unsigned	i, n = 0;
	uint32_t	drop;

	while (n < d->nunits && SEQ_LEQ(d->units[n].tseq + d->units[n].len +
	    (d->units[n].fin ? 1 : 0), ack))
		n++;
	if (n == 0)
		return;
	drop = d->units[n - 1].off + d->units[n - 1].len;
	memmove(d->hist, d->hist + drop, d->nhist - drop);
	d->nhist -= drop;
	for (i = n; i < d->nunits; i++) {
		d->units[i - n] = d->units[i];
		d->units[i - n].off -= drop;
	}
	d->nunits -= n;
}

/*
 * Send again every kept batch that ends after the original seq (an
 * empty one, messages the helper dropped, has nothing to send).
 */
static bool
stream_resend(struct stream *sm, enum nat_dir dir, uint32_t seq)
{
	struct stream_dir	*d = &sm->dir[dir];
	struct stream_unit	*u;
	unsigned		 i;
	bool			 any = false;

	for (i = 0; i < d->nunits; i++) {
		u = &d->units[i];
		if (SEQ_LEQ(u->oend, seq) || (u->len == 0 && !u->fin))
			continue;
		stream_send(sm, dir, u->tseq, d->hist + u->off, u->len,
		    u->fin);
		u->sent = nat_now();
		stat_inc(STAT_STREAM_RESENT);
		any = true;
	}
	return (any);
}

/*
 * How far the sender may be told its bytes arrived: what the receiver
 * acknowledged, then what we keep to send again (batches, held bytes)
 * without a gap.  Bytes passed on as they came are the sender's to send
 * again, so an ACK of ours never covers them.
 */
static uint32_t
stream_custody(const struct stream_dir *d)
{
	const struct stream_unit	*u;
	uint32_t			 pos = d->acked;
	unsigned			 i;

	for (i = 0; i < d->nunits; i++) {
		u = &d->units[i];
		if (SEQ_LT(pos, u->oseq))
			return (pos);
		if (SEQ_LT(pos, u->oend + (u->fin ? 1 : 0)))
			pos = u->oend + (u->fin ? 1 : 0);
	}
	/* Held bytes, if we could keep them when they go out as they came. */
	if (d->nheld > 0 && SEQ_LEQ(d->sent, pos) && SEQ_LT(pos, d->nxt) &&
	    stream_room(d, d->nheld))
		pos = d->nxt;
	return (pos);
}

/* ACK the sender for what we have in custody. */
static void
stream_ack_custody(struct stream *sm, enum nat_dir dir)
{
	/* Picked up mid-stream: what came before may not have arrived. */
	if (!sm->dir[dir].acked_known)
		return;
	stream_ack_sender(sm, dir, stream_custody(&sm->dir[dir]));
}

/*
 * Give up parsing: what is held goes out as it came, and the direction
 * only shifts sequence numbers from now on.
 */
static void
stream_degrade(struct stream *sm, enum nat_dir dir, const char *why)
{
	struct stream_dir	*d = &sm->dir[dir];
	size_t			 keep;

	if (!d->plain) {
		log_info("tcp stream: %s, passing the connection unparsed",
		    why);
		stat_inc(STAT_STREAM_DEGRADED);
	}
	/* From here on bytes go as they came, at one shift: the held ones too. */
	if (!d->plain)
		d->plain_from = d->sent;
	if (d->nheld > 0) {
		/*
		 * We may have ACKed them: keep what fits to send again if
		 * lost.  Our ACKs only covered held bytes there was room to
		 * keep, so the sender still has any we cannot.
		 */
		keep = stream_room(d, 0) ? d->cap - d->nhist : 0;
		if (keep > d->nheld)
			keep = d->nheld;
		stream_send(sm, dir, d->sent + (uint32_t)d->delta, d->held,
		    d->nheld, false);
		if (keep > 0)
			(void)stream_keep(d, d->sent, d->sent + (uint32_t)keep,
			    d->sent + (uint32_t)d->delta, d->held, keep, false);
		if (keep < d->nheld)
			stat_inc(STAT_STREAM_LIMIT_BUFFER);
		d->sent += (uint32_t)d->nheld;
		d->nheld = 0;
	}
	d->plain = true;
}

/*
 * Let the helper take whole messages from the front of what is held, and
 * send their rewritten form on as one batch.  A helper that cannot read
 * the bytes (-1) ends parsing: they go on as they came.
 */
static void
stream_parse(struct stream *sm, enum nat_dir dir, const struct alg *a,
    struct alg_pkt *ap, bool fin)
{
	struct stream_dir	*d = &sm->dir[dir];
	size_t			 used = 0, outlen = 0, n;
	ssize_t			 k;
	uint32_t		 tseq = d->sent + (uint32_t)d->delta;

	while (used < d->nheld && !d->plain) {
		n = sizeof st.out - outlen;
		k = a->stream(ap, d->held + used, d->nheld - used,
		    st.out + outlen, &n);
		if (k == 0)
			break;
		if (k < 0 || (size_t)k > d->nheld - used) {
			log_info("tcp stream: not a message the helper "
			    "reads, passing the connection unparsed");
			stat_inc(STAT_STREAM_DEGRADED);
			d->plain = true;
			break;
		}
		stat_inc(STAT_STREAM_MESSAGES);
		used += (size_t)k;
		outlen += n;
	}
	if ((fin || d->plain) && used < d->nheld) {
		if (d->plain)
			d->plain_from = d->sent + (uint32_t)used;
		/* The rest as it came (the sender closes mid-message). */
		memcpy(st.out + outlen, d->held + used, d->nheld - used);
		outlen += d->nheld - used;
		used = d->nheld;
	}
	if (used == 0 && !fin)
		return;
	if (!stream_room(d, outlen)) {
		/*
		 * A batch we could not send again must not go out: send
		 * the bytes as they came instead (the sender can resend
		 * those), and read no more of this direction.
		 */
		stat_inc(STAT_STREAM_LIMIT_BUFFER);
		d->plain = false;
		stream_degrade(sm, dir, "too much unacknowledged");
		if (fin) {
			stream_send(sm, dir, d->sent + (uint32_t)d->delta, NULL,
			    0, true);
			(void)stream_keep(d, d->sent, d->sent,
			    d->sent + (uint32_t)d->delta, NULL, 0, true);
		}
		return;
	}
	stream_send(sm, dir, tseq, st.out, outlen, fin);
	(void)stream_keep(d, d->sent, d->sent + (uint32_t)used, tseq, st.out,
	    outlen, fin);
	d->delta += (int32_t)outlen - (int32_t)used;
	d->sent += (uint32_t)used;
	memmove(d->held, d->held + used, d->nheld - used);
	d->nheld -= used;
}

/*
 * A segment from the receiver of direction dir: its ACK and SACK blocks
 * refer to dir's translated bytes.  Shift them, forget what the receiver
 * has, and send again what it seems to have lost (a second duplicate ACK).
 */
static void
stream_from_receiver(struct stream *sm, enum nat_dir dir,
    struct stream_seg *g)
{
	struct stream_dir	*d = &sm->dir[dir];
	uint32_t		 ack = g->ack;
	const uint8_t		*opt;
	unsigned		 win = (unsigned)(g->tcp[14] << 8 | g->tcp[15]);

	/* A SYN's window is not scaled; the ones after it are. */
	if ((g->flags & TCP_SYN) && (opt = stream_opt(g, 3, 3)) != NULL)
		win >>= opt[2] < 14 ? opt[2] : 14;
	d->peer_win = (uint16_t)win;
	if ((opt = stream_opt(g, 8, 10)) != NULL) {
		d->peer_ts = true;
		d->peer_tsval = pkt_get32(opt + 2);
	}
	if (!(g->flags & TCP_ACK))
		return;
	if (d->nunits > 0 && ack == d->last_ack && g->len == 0 &&
	    !(g->flags & (TCP_SYN | TCP_FIN | TCP_RST))) {
		if (++d->dupacks == 2)
			stream_resend(sm, dir, stream_t2o(d, ack));
	} else
		d->dupacks = 0;
	d->last_ack = ack;
	stream_sack(g, d);
	ack = stream_t2o(d, ack);
	stream_set32(g->p, 8, ack);
	if (d->synced && SEQ_LEQ(ack, d->nxt) && (d->acked_known ?
	    SEQ_LT(d->acked, ack) : SEQ_LEQ(d->base, ack))) {
		d->acked = ack;
		d->acked_known = true;
	}
	stream_acked(d, g->ack);
}

/*
 * New bytes in order, or a retransmission: hold them, let the helper take
 * whole messages, and ACK the sender for what is left held.
 */
static void
stream_data(struct stream *sm, enum nat_dir dir, struct stream_seg *g,
    const struct alg *a, struct alg_pkt *ap)
{
	struct stream_dir	*d = &sm->dir[dir];
	uint32_t		 seq = g->seq;
	const uint8_t		*data = g->data;
	size_t			 len = g->len;
	bool			 fin = (g->flags & TCP_FIN) != 0, resent;

	if (SEQ_LT(seq, d->nxt)) {
		/* Some or all of it seen before: a retransmission. */
		stat_inc(STAT_STREAM_RETRANSMITS);
		if (SEQ_LEQ(seq + (uint32_t)len + (fin ? 1 : 0), d->nxt)) {
			resent = SEQ_LT(seq, d->sent) &&
			    stream_resend(sm, dir, seq);
			if (!resent || d->nheld > 0)
				stream_ack_custody(sm, dir);
			return;
		}
		if (SEQ_LEQ(seq + (uint32_t)len, d->nxt)) {
			data += len;	/* only the FIN is new */
			len = 0;
		} else {
			data += d->nxt - seq;
			len -= d->nxt - seq;
		}
		seq = d->nxt;
	}
	if (d->nheld + len > d->cap) {
		stat_inc(STAT_STREAM_LIMIT_BUFFER);
		stream_degrade(sm, dir, "buffer limit");
		stream_send(sm, dir, seq + (uint32_t)d->delta, data, len, fin);
		d->sent = d->nxt = seq + (uint32_t)len + (fin ? 1 : 0);
		return;
	}
	memcpy(d->held + d->nheld, data, len);
	d->nheld += len;
	d->nxt = seq + (uint32_t)len;
	stream_parse(sm, dir, a, ap, fin);
	if (fin) {
		d->nxt++;
		d->sent++;
	}
	if (d->nheld > 0) {
		stat_inc(STAT_STREAM_HELD);
		stream_ack_custody(sm, dir);
	}
}

/*
 * A segment that is passed on whole: no data for the helper (ACKs, FIN,
 * RST), or a direction no longer parsed.  Its sequence number is shifted;
 * data sent again that we rewrote is replaced by what we sent.
 */
static bool
stream_pass(struct stream *sm, enum nat_dir dir, struct stream_seg *g)
{
	struct stream_dir	*d = &sm->dir[dir];
	uint32_t		 end = g->seq + (uint32_t)g->len;
	bool			 rst = (g->flags & TCP_RST) != 0;

	/* A FIN past a gap would close before the missing bytes. */
	if (!d->plain && !rst && (g->flags & TCP_FIN) &&
	    SEQ_LT(d->nxt, g->seq))
		return (false);
	if ((g->flags & TCP_FIN) && !rst && d->nheld > 0)
		stream_degrade(sm, dir, "closed mid-message");
	if (d->plain && !rst && g->len > 0 &&
	    SEQ_LT(g->seq, d->plain_from) && SEQ_LEQ(d->base, g->seq)) {
		/*
		 * Sent again from before it degraded: what we sent then,
		 * and the part after that as it came.
		 */
		if (!stream_resend(sm, dir, g->seq) &&
		    SEQ_LEQ(end, d->plain_from))
			stream_ack_custody(sm, dir);
		if (SEQ_LT(d->plain_from, end) || ((g->flags & TCP_FIN) &&
		    d->plain_from == end))
			stream_send(sm, dir, d->plain_from + (uint32_t)d->delta,
			    g->data + (d->plain_from - g->seq),
			    SEQ_LT(d->plain_from, end) ? end - d->plain_from : 0,
			    (g->flags & TCP_FIN) != 0);
		return (false);
	}
	if (rst && g->len > 0 && !d->plain)
		stat_inc(STAT_STREAM_DEGRADED);	/* its data goes unparsed */
	stream_set32(g->p, 4, stream_o2t(d, g->seq));
	if (g->flags & TCP_FIN)
		end++;
	/* Only bytes that follow on from what we have move us on. */
	if (SEQ_LEQ(g->seq, d->nxt) && SEQ_LT(d->nxt, end)) {
		if (d->nheld == 0)
			d->nxt = d->sent = end;
	}
	return (true);
}

/* Forget a direction's numbers and bytes, keeping its buffers. */
static void
stream_reset(struct stream_dir *d)
{
	d->synced = d->plain = d->acked_known = false;
	d->base = d->acked = 0;
	d->delta = 0;
	d->nheld = d->nhist = 0;
	d->nunits = d->dupacks = 0;
	d->last_ack = d->peer_seq = 0;
	d->mss = 0;
}

/*
 * Keep the sender's headers to build our segments on: its IP header and
 * TCP header with the timestamp option only (SACK blocks and the rest
 * describe that one segment, not ours).
 */
static void
stream_template(struct stream_dir *d, const struct stream_seg *g)
{
	const uint8_t	*ts = stream_opt(g, 8, 10);
	uint8_t		*tcp;

	if (g->p->hl + 32 > STREAM_TMPL)
		return;
	memcpy(d->tmpl, g->p->buf, g->p->hl + 20);
	tcp = d->tmpl + g->p->hl;
	tcp[12] = 5 << 4;
	d->tmpl_hl = g->p->hl;
	d->tmpl_len = g->p->hl + 20;
	if (ts != NULL) {
		tcp[12] = 8 << 4;
		tcp[20] = tcp[21] = 1;
		memcpy(tcp + 22, ts, 10);
		d->tmpl_len += 12;
		d->echo_tsval = pkt_get32(ts + 2);
	}
}

/*
 * A segment we kept or dropped may carry news for the other end: an ACK
 * or a window it has not seen.  If nothing of ours carried it, send it
 * on in a segment without data.
 */
static void
stream_pass_ack(struct stream *sm, enum nat_dir dir, const struct stream_seg *g)
{
	struct stream_dir	*d = &sm->dir[dir];
	uint32_t		 ack = pkt_get32(g->tcp + 8);
	uint16_t		 win = (uint16_t)(g->tcp[14] << 8 | g->tcp[15]);

	if (!(g->flags & TCP_ACK) || (ack == d->fwd_ack && win == d->fwd_win))
		return;
	stream_send(sm, dir, d->sent + (uint32_t)d->delta, NULL, 0, false);
}

/*
 * One segment of a connection a helper reads as a stream (a is NULL once
 * the helper no longer wants it, e.g. after a reload).  Returns true if
 * the caller is to send the segment on (its fields shifted), false if
 * this file sent what was needed itself.
 */
bool
stream_segment(struct alg_pkt *ap, const struct alg *a)
{
	struct nat_session	*s = ap->s;
	struct stream		*sm = s->stream;
	struct stream_dir	*d;
	struct stream_seg	 g;
	enum nat_dir		 dir = ap->dir, rdir;
	const uint8_t		*opt;
	uint64_t		 sent_before = st.segments_sent;
	bool			 pass;

	if (sm == NULL) {
		if (a == NULL || (sm = s->stream = stream_new(s)) == NULL)
			return (true);
	}
	rdir = dir == DIR_OUT ? DIR_IN : DIR_OUT;
	d = &sm->dir[dir];
	stream_seg_read(&g, ap->p);
	if ((g.flags & TCP_SYN) && d->synced && nat_session_tcp_open(s)) {
		/*
		 * A SYN inside an open connection, sent again or with another
		 * ISN: not a new connection, and maybe forged, so nothing of
		 * it is taken (numbers, window, headers to build on); only its
		 * ACK is put in the receiver's numbers, like any.  The
		 * endpoint answers it with an ACK (RFC 5961 4.2); a peer that
		 * really started over then resets the old connection, and its
		 * next SYN finds it closed.
		 */
		if (g.flags & TCP_ACK)
			stream_set32(g.p, 8, stream_t2o(&sm->dir[rdir], g.ack));
		stat_inc(STAT_STREAM_SYN_OPEN);
		return (true);
	}
	stream_from_receiver(sm, rdir, &g);
	stream_template(d, &g);

	if (g.flags & TCP_SYN) {
		/* A new connection on the same ports starts afresh. */
		if (d->synced && d->nxt != g.seq + 1) {
			stream_reset(d);
			if (!(g.flags & TCP_ACK))
				stream_reset(&sm->dir[rdir]);
		}
		d->synced = true;
		d->nxt = d->sent = d->base = d->acked = g.seq + 1;
		d->acked_known = true;
		if (g.len > 0) {
			/* Data on a SYN (TCP Fast Open): not parsed. */
			stream_degrade(sm, dir, "data on a SYN");
			d->nxt = d->sent = d->plain_from = g.seq + 1 +
			    (uint32_t)g.len;
		}
		opt = stream_opt(&g, 2, 4);
		sm->dir[rdir].mss = opt != NULL ?
		    (uint16_t)(opt[2] << 8 | opt[3]) : 0;
		sm->dir[rdir].peer_seq = g.seq + 1;
		return (true);
	}
	if (!d->synced) {
		/*
		 * Picked up mid-stream (a reload, a limit that let go): bytes
		 * the receiver may already have as they came (even out of
		 * order) could come again rewritten, or a FIN move.  So the
		 * stream goes on as it comes, unparsed, for good.
		 */
		log_info("tcp stream: picked up mid-stream, passing it on "
		    "unparsed");
		stat_inc(STAT_STREAM_DEGRADED);
		d->synced = d->plain = true;
		d->plain_from = d->nxt = d->sent = d->base = g.seq;
		return (true);
	}
	if (!d->plain && a == NULL)
		stream_degrade(sm, dir, "the helper let go");
	if (!d->plain && g.len > 0 && d->held == NULL &&
	    stream_buffers(sm, d) == -1)
		stream_degrade(sm, dir, "memory limit");
	if (d->plain || a == NULL || g.len == 0 || (g.flags & TCP_RST) ||
	    SEQ_LT(g.seq, d->base))
		pass = stream_pass(sm, dir, &g);
	else if (SEQ_LT(d->nxt, g.seq)) {
		/* A gap: the helper needs every byte in order. */
		stat_inc(STAT_STREAM_OUT_OF_ORDER);
		if (d->nheld > 0)
			stream_ack_custody(sm, dir);
		pass = false;
	} else {
		stream_data(sm, dir, &g, a, ap);
		pass = false;
	}
	if (pass) {
		d->fwd_ack = pkt_get32(g.tcp + 8);
		d->fwd_win = (uint16_t)(g.tcp[14] << 8 | g.tcp[15]);
	} else if (st.segments_sent == sent_before)
		stream_pass_ack(sm, dir, &g);
	/* What the receiver will take as our next byte, for our ACKs. */
	sm->dir[rdir].peer_seq = d->sent + (uint32_t)d->delta;
	return (pass);
}

/*
 * Once a second: send again batches the receiver has not acknowledged
 * for STREAM_RTO (our ACKs told the sender it need not).
 */
void
stream_tick(uint64_t now)
{
	struct stream		*sm;
	struct stream_dir	*d;
	int			 i;

	LIST_FOREACH(sm, &st.all, entry) {
		for (i = 0; i < 2; i++) {
			d = &sm->dir[i];
			if (d->nunits > 0 &&
			    d->units[0].sent + STREAM_RTO <= now)
				stream_resend(sm, (enum nat_dir)i,
				    d->units[0].oseq);
		}
	}
}

/* Gauges for sipnatctl stats (the counters are in stats[]). */
void
stream_stats(alg_stat_cb cb, void *arg)
{
	cb("tcp_stream.open", st.count, true, arg);
	cb("tcp_stream.memory", st.used, true, arg);
}
