/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "sipnat.h"

/*
 * IPv4 fragments.  Fragments are reassembled before NAT looks at them:
 * only the first one carries ports, and a helper needs the whole message.
 * Reassembly buffers are allocated once, as many as the configured memory
 * allows; a datagram with overlapping or malformed fragments is dropped
 * whole, and one not complete in time is dropped by frag_expire().  On
 * output, frag_output() cuts a datagram to the uplink MTU.
 */

#define FRAG_HDR_ROOM	60	/* the longest IPv4 header */
#define FRAG_BUF_SIZE	(FRAG_HDR_ROOM + SIPNAT_MAX_PKT)
#define FRAG_BLOCKS	(SIPNAT_MAX_PKT / 8 + 1)

struct frag_ctx {
	bool		 used;
	uint32_t	 src;
	uint32_t	 dst;
	uint16_t	 id;
	uint8_t		 proto;
	uint64_t	 created;
	unsigned	 hl;		/* 0 until the first fragment came */
	size_t		 total;		/* payload length, 0 until the last */
	size_t		 received;	/* payload bytes so far */
	size_t		 end;		/* furthest byte any fragment reached */
	uint8_t		 have[FRAG_BLOCKS / 8 + 1];	/* 8-byte blocks */
	uint8_t		*buf;
};

static struct {
	struct frag_ctx	*ctx;
	unsigned	 nctx;
	unsigned	 used;
	unsigned	 timeout;
	uint8_t		 out[SIPNAT_MAX_PKT];
} f;

/* Allocate reassembly buffers for mem bytes; timeout in seconds. */
int
frag_init(size_t mem, unsigned timeout)
{
	unsigned	i;

	f.nctx = mem / (sizeof(struct frag_ctx) + FRAG_BUF_SIZE);
	if (f.nctx == 0)
		f.nctx = 1;
	if ((f.ctx = calloc(f.nctx, sizeof *f.ctx)) == NULL)
		return (-1);
	for (i = 0; i < f.nctx; i++)
		if ((f.ctx[i].buf = malloc(FRAG_BUF_SIZE)) == NULL)
			return (-1);
	f.used = 0;
	f.timeout = timeout;
	return (0);
}

/* On reload: the timeout changes now, memory needs a restart. */
void
frag_configure(size_t mem, unsigned timeout)
{
	f.timeout = timeout;
}

/* Free the buffers. */
void
frag_free(void)
{
	unsigned	i;

	for (i = 0; i < f.nctx; i++)
		free(f.ctx[i].buf);
	free(f.ctx);
	memset(&f, 0, sizeof f);
}

/* Datagrams waiting for fragments. */
size_t
frag_pending(void)
{
	return (f.used);
}

/* Let a context go. */
static void
frag_release(struct frag_ctx *c)
{
	c->used = false;
	f.used--;
}

/*
 * The context of a fragment's datagram, or a free one.  A linear scan:
 * the set is small (memory / 64 KB) and only fragments come here.
 */
static struct frag_ctx *
frag_find(const struct pkt *p, uint16_t id, uint64_t now)
{
	struct frag_ctx	*free_ctx = NULL, *c;
	unsigned	 i;

	for (i = 0; i < f.nctx; i++) {
		c = &f.ctx[i];
		if (!c->used) {
			if (free_ctx == NULL)
				free_ctx = c;
			continue;
		}
		if (c->id == id && c->src == p->src && c->dst == p->dst &&
		    c->proto == p->proto)
			return (c);
	}
	if ((c = free_ctx) == NULL)
		return (NULL);
	memset(c->have, 0, sizeof c->have);
	c->used = true;
	c->src = p->src;
	c->dst = p->dst;
	c->id = id;
	c->proto = p->proto;
	c->created = now;
	c->hl = 0;
	c->total = 0;
	c->received = 0;
	c->end = 0;
	f.used++;
	return (c);
}

/* Mark blocks [first, last] received; -1 if any was already there. */
static int
frag_mark(struct frag_ctx *c, size_t first, size_t last)
{
	size_t	i;

	for (i = first; i <= last; i++)
		if (c->have[i / 8] & (1 << (i % 8)))
			return (-1);
	for (i = first; i <= last; i++)
		c->have[i / 8] |= 1 << (i % 8);
	return (0);
}

/* Lay the first fragment's header before the payload and finish it. */
static void
frag_finish(struct frag_ctx *c, uint8_t **out, size_t *outlen)
{
	uint8_t		*ip = c->buf + FRAG_HDR_ROOM - c->hl;
	size_t		 len = c->hl + c->total;
	uint16_t	 w;

	w = htons((uint16_t)len);
	memcpy(ip + 2, &w, 2);
	ip[6] &= 0x40;		/* keep DF, clear MF and the offset */
	ip[7] = 0;
	ip[10] = ip[11] = 0;
	w = cksum(ip, c->hl, 0);
	memcpy(ip + 10, &w, 2);
	*out = ip;
	*outlen = len;
}

/*
 * Take one fragment.  Returns 1 with the whole datagram in *out (valid
 * until the next call), 0 while fragments are missing, -1 if dropped.
 */
int
frag_input(struct pkt *p, uint64_t now, uint8_t **out, size_t *outlen)
{
	struct frag_ctx	*c;
	uint16_t	 id, off;
	size_t		 start, plen;
	bool		 more;

	stat_inc(STAT_FRAG_IN);
	memcpy(&id, p->buf + 4, 2);
	off = (uint16_t)(p->buf[6] << 8 | p->buf[7]);
	more = (off & IP_MF) != 0;
	start = (size_t)(off & IP_OFFMASK) * 8;
	plen = p->len - p->hl;
	if (plen == 0 || (more && plen % 8 != 0) ||
	    start + plen > SIPNAT_MAX_PKT - p->hl) {
		stat_inc(STAT_DROP_FRAG_BAD);
		return (-1);
	}
	if ((c = frag_find(p, id, now)) == NULL) {
		stat_inc(STAT_DROP_FRAG_MEMORY);
		return (-1);
	}
	if ((!more && c->total != 0) ||
	    (c->total != 0 && start + plen > c->total) ||
	    frag_mark(c, start / 8, (start + plen - 1) / 8) == -1) {
		stat_inc(STAT_DROP_FRAG_OVERLAP);
		frag_release(c);
		return (-1);
	}
	if (!more)
		c->total = start + plen;
	if (start == 0) {
		c->hl = p->hl;
		memcpy(c->buf + FRAG_HDR_ROOM - p->hl, p->buf, p->hl);
	}
	memcpy(c->buf + FRAG_HDR_ROOM + start, p->buf + p->hl, plen);
	c->received += plen;
	if (start + plen > c->end)
		c->end = start + plen;
	if (c->total != 0 && c->end > c->total) {
		/* Something lay past the end the last fragment gave. */
		stat_inc(STAT_DROP_FRAG_OVERLAP);
		frag_release(c);
		return (-1);
	}
	if (c->total == 0 || c->hl == 0 || c->received != c->total)
		return (0);
	if (c->hl + c->total > SIPNAT_MAX_PKT) {
		stat_inc(STAT_DROP_FRAG_BAD);
		frag_release(c);
		return (-1);
	}
	frag_finish(c, out, outlen);
	frag_release(c);
	stat_inc(STAT_FRAG_REASSEMBLED);
	return (1);
}

/* Drop datagrams whose fragments did not all come in time. */
unsigned
frag_expire(uint64_t now)
{
	unsigned	i, n = 0;

	for (i = 0; i < f.nctx && f.used > 0; i++) {
		if (f.ctx[i].used && f.ctx[i].created + f.timeout <= now) {
			frag_release(&f.ctx[i]);
			stat_inc(STAT_DROP_FRAG_TIMEOUT);
			n++;
		}
	}
	return (n);
}

/* The options a non-first fragment carries: those with the copy bit. */
static unsigned
frag_copy_options(const uint8_t *ip, unsigned hl, uint8_t *to)
{
	unsigned	i = IP_HDR_MIN, n = 0, olen;

	while (i < hl) {
		if (ip[i] == 0)
			break;
		if (ip[i] == 1) {
			i++;
			continue;
		}
		if (i + 1 >= hl || ip[i + 1] < 2 || i + ip[i + 1] > hl)
			break;
		olen = ip[i + 1];
		if (ip[i] & 0x80) {
			memcpy(to + n, ip + i, olen);
			n += olen;
		}
		i += olen;
	}
	while (n % 4 != 0)
		to[n++] = 0;
	return (IP_HDR_MIN + n);
}

/*
 * Cut a whole datagram (DF clear) into fragments of at most mtu bytes
 * and hand each to emit.  Returns the number of fragments, -1 on error.
 */
int
frag_output(const uint8_t *ip, size_t len, unsigned mtu, frag_emit_cb emit,
    void *arg)
{
	unsigned	hl = (ip[0] & 0x0f) * 4, fhl = hl, n = 0;
	size_t		off = 0, plen = len - hl, chunk;
	uint16_t	w, flags;

	if (mtu < 68 || hl + 8 > mtu)
		return (-1);
	memcpy(f.out, ip, hl);
	while (off < plen) {
		if (off > 0 && n == 1)
			fhl = frag_copy_options(ip, hl, f.out + IP_HDR_MIN);
		chunk = (mtu - fhl) & ~7u;
		flags = 0;
		if (off + chunk < plen)
			flags = IP_MF;
		else
			chunk = plen - off;
		f.out[0] = 0x40 | (uint8_t)(fhl / 4);
		w = htons((uint16_t)(fhl + chunk));
		memcpy(f.out + 2, &w, 2);
		w = htons(flags | (uint16_t)(off / 8));
		memcpy(f.out + 6, &w, 2);
		f.out[10] = f.out[11] = 0;
		w = cksum(f.out, fhl, 0);
		memcpy(f.out + 10, &w, 2);
		memcpy(f.out + fhl, ip + hl + off, chunk);
		if (emit(f.out, fhl + chunk, arg) == -1)
			return (-1);
		stat_inc(STAT_FRAG_OUT);
		off += chunk;
		n++;
	}
	return ((int)n);
}
