/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/random.h>

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sipnat.h"

/*
 * The NAT table: mappings (inside addr:port to a public port, shared by
 * every remote: endpoint-independent mapping), sessions (one per remote
 * endpoint, for filtering, TCP state and counters) and per-host counts.
 *
 * One hash table holds every lookup key: a session is found from either
 * side by its two nodes, a mapping by its inside endpoint; a flat array
 * indexed by public port finds a mapping from the outside.  Objects come
 * from pools that grow in chunks up to the configured limits, so the hot
 * path never calls malloc, and sessions expire on a timer wheel.
 */

#define POOL_CHUNK	256
#define NPROTO		3	/* UDP, TCP, ICMP */
#define WHEEL_SLOTS	4096
#define TH_RST		0x04
#define TH_SYN		0x02
#define TH_FIN		0x01

struct pool {
	size_t		 size;
	void		*free;
	size_t		 used;
	void		**chunks;
	size_t		 nchunks;
};

static struct {
	struct nat_node		**buckets;
	size_t			  nbuckets;	/* a power of two */
	uint32_t		  seed;
	struct nat_mapping	**pub[NPROTO];
	uint16_t		  port_lo;
	uint16_t		  port_hi;
	uint32_t		  rng;
	struct pool		  sessions;
	struct pool		  mappings;
	struct pool		  hosts;
	struct pool		  pinholes;
	struct timer_wheel	  wheel;
	unsigned		  max_sessions;
	unsigned		  max_per_host;
	unsigned		  max_pinholes;
	unsigned		  to_udp, to_tcp_est, to_tcp_trans, to_icmp;
	bool			  inbound_refresh;
} t;

static uint64_t	nat_clock;
static uint64_t	nat_clock_us;		/* fixed by tests; 0: real */

static void	*pool_get(struct pool *);
static void	 pool_put(struct pool *, void *);
static void	 pool_free(struct pool *);
static void	 session_expire_cb(struct timer *, uint64_t);
static unsigned	 session_timeout(const struct nat_session *);

/* Take an object from a pool, growing it by a chunk when it is empty. */
static void *
pool_get(struct pool *p)
{
	void	**chunks, *obj;
	char	 *c;
	size_t	  i;

	if (p->free == NULL) {
		chunks = reallocarray(p->chunks, p->nchunks + 1, sizeof *chunks);
		if (chunks == NULL)
			return (NULL);
		p->chunks = chunks;
		if ((c = calloc(POOL_CHUNK, p->size)) == NULL)
			return (NULL);
		p->chunks[p->nchunks++] = c;
		for (i = 0; i < POOL_CHUNK; i++) {
			obj = c + i * p->size;
			memcpy(obj, &p->free, sizeof p->free);
			p->free = obj;
		}
	}
	obj = p->free;
	memcpy(&p->free, obj, sizeof p->free);
	memset(obj, 0, p->size);
	p->used++;
	return (obj);
}

/* Return an object to its pool. */
static void
pool_put(struct pool *p, void *obj)
{
	memcpy(obj, &p->free, sizeof p->free);
	p->free = obj;
	p->used--;
}

/* Free every chunk of a pool. */
static void
pool_free(struct pool *p)
{
	size_t	i;

	for (i = 0; i < p->nchunks; i++)
		free(p->chunks[i]);
	free(p->chunks);
	memset(p, 0, sizeof *p);
}

/* The table index of a protocol, or -1. */
static int
proto_index(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_UDP:
		return (0);
	case IPPROTO_TCP:
		return (1);
	case IPPROTO_ICMP:
		return (2);
	}
	return (-1);
}

/* A keyed hash of a lookup key (the seed is random: no chosen chains). */
static size_t
key_hash(const struct nat_key *k)
{
	uint32_t	w[4], h = t.seed;
	int		i;

	memcpy(w, k, sizeof w);
	for (i = 0; i < 4; i++) {
		h ^= w[i];
		h *= 0x9e3779b1;
		h ^= h >> 15;
	}
	h *= 0x85ebca6b;
	h ^= h >> 13;
	return (h & (t.nbuckets - 1));
}

/* Fill a lookup key. */
static void
key_set(struct nat_key *k, uint8_t kind, uint8_t proto, uint32_t a_addr,
    uint16_t a_port, uint32_t b_addr, uint16_t b_port)
{
	memset(k, 0, sizeof *k);
	k->kind = kind;
	k->proto = proto;
	k->a_addr = a_addr;
	k->a_port = a_port;
	k->b_addr = b_addr;
	k->b_port = b_port;
}

/* Find the node with this key. */
static struct nat_node *
node_find(const struct nat_key *k)
{
	struct nat_node	*n;

	for (n = t.buckets[key_hash(k)]; n != NULL; n = n->next)
		if (memcmp(&n->key, k, sizeof *k) == 0)
			return (n);
	return (NULL);
}

/* Put a node (its key already set) into the table. */
static void
node_insert(struct nat_node *n)
{
	size_t	h = key_hash(&n->key);

	n->next = t.buckets[h];
	t.buckets[h] = n;
}

/* Take a node out of the table. */
static void
node_remove(struct nat_node *n)
{
	struct nat_node	**pp;

	for (pp = &t.buckets[key_hash(&n->key)]; *pp != NULL;
	    pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			return;
		}
	}
}

/* Size the bucket array for the limits, moving what is there. */
static int
table_resize(unsigned max_sessions)
{
	struct nat_node	**old = t.buckets, *n, *next;
	size_t		  oldn = t.nbuckets, want = 1024, i;

	/* Two nodes a session, a mapping and a host each: about 4 a session. */
	while (want < (size_t)max_sessions * 4)
		want <<= 1;
	if (want <= t.nbuckets)
		return (0);
	if ((t.buckets = calloc(want, sizeof *t.buckets)) == NULL) {
		t.buckets = old;
		return (-1);
	}
	t.nbuckets = want;
	for (i = 0; i < oldn; i++) {
		for (n = old[i]; n != NULL; n = next) {
			next = n->next;
			node_insert(n);
		}
	}
	free(old);
	return (0);
}

/* Move a session's timer to what the current timeouts say. */
static void
session_rearm(struct nat_session *s, void *arg)
{
	timer_add(&t.wheel, &s->timer, s->last + session_timeout(s));
}

/* Set up the table for a configuration. */
int
nat_table_init(const struct config *c, uint64_t now)
{
	size_t	nports;
	int	i;

	memset(&t, 0, sizeof t);
	nat_clock = now;
	if (getrandom(&t.seed, sizeof t.seed, 0) != sizeof t.seed)
		t.seed = (uint32_t)now ^ 0x5a5a5a5a;
	t.rng = t.seed | 1;
	t.sessions.size = sizeof(struct nat_session);
	t.mappings.size = sizeof(struct nat_mapping);
	t.hosts.size = sizeof(struct nat_host);
	t.pinholes.size = sizeof(struct nat_pinhole);
	t.port_lo = c->port_lo;
	t.port_hi = c->port_hi;
	nports = (size_t)c->port_hi - c->port_lo + 1;
	for (i = 0; i < NPROTO; i++)
		if ((t.pub[i] = calloc(nports, sizeof *t.pub[i])) == NULL)
			return (-1);
	if (timer_wheel_init(&t.wheel, WHEEL_SLOTS, now) == -1)
		return (-1);
	nat_table_configure(c);
	if (t.buckets == NULL)
		return (-1);
	return (0);
}

/*
 * Apply what may change on reload: limits and timeouts.  Existing
 * sessions keep running; lower limits only stop new ones.
 */
void
nat_table_configure(const struct config *c)
{
	t.max_sessions = c->max_sessions;
	t.max_per_host = c->max_sessions_per_host;
	t.max_pinholes = c->max_pinholes;
	t.to_udp = c->to_udp;
	t.to_tcp_est = c->to_tcp_est;
	t.to_tcp_trans = c->to_tcp_trans;
	t.to_icmp = c->to_icmp;
	t.inbound_refresh = c->inbound_refresh;
	if (table_resize(c->max_sessions) == -1)
		log_warnx("%s: no memory to grow the table", __func__);
	/* New timeouts apply to running sessions too. */
	nat_table_walk(session_rearm, NULL);
}

/* Free everything (at exit, so leak checkers stay quiet). */
void
nat_table_free(void)
{
	int	i;

	stream_free_all();
	for (i = 0; i < NPROTO; i++)
		free(t.pub[i]);
	free(t.buckets);
	timer_wheel_free(&t.wheel);
	pool_free(&t.sessions);
	pool_free(&t.mappings);
	pool_free(&t.hosts);
	pool_free(&t.pinholes);
	memset(&t, 0, sizeof t);
}

/* Seconds on the monotonic clock, as last set. */
uint64_t
nat_now(void)
{
	return (nat_clock);
}

/* Set the clock (once per batch of packets, and by tests). */
void
nat_set_now(uint64_t now)
{
	nat_clock = now;
}

/*
 * Microseconds on the monotonic clock, for media timing: read when asked
 * (a vDSO call, no syscall), or fixed by tests with nat_set_now_us().
 */
uint64_t
nat_now_us(void)
{
	struct timespec	ts;

	if (nat_clock_us != 0)
		return (nat_clock_us);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

/* Fix the microsecond clock (0: the real one again). */
void
nat_set_now_us(uint64_t us)
{
	nat_clock_us = us;
}

/* Live sessions. */
size_t
nat_session_count(void)
{
	return (t.sessions.used);
}

/* Live mappings. */
size_t
nat_mapping_count(void)
{
	return (t.mappings.used);
}

/* The mapping for an inside endpoint, if there is one. */
struct nat_mapping *
nat_mapping_find(uint8_t proto, uint32_t addr, uint16_t port)
{
	struct nat_key	 k;
	struct nat_node	*n;

	key_set(&k, NODE_MAPPING, proto, addr, port, 0, 0);
	if ((n = node_find(&k)) == NULL)
		return (NULL);
	return ((struct nat_mapping *)n);
}

/* The mapping that owns a public port, if any. */
struct nat_mapping *
nat_mapping_public(uint8_t proto, uint16_t port)
{
	int	i = proto_index(proto);

	if (i == -1 || port < t.port_lo || port > t.port_hi)
		return (NULL);
	return (t.pub[i][port - t.port_lo]);
}

/* A small PRNG for port choice (xorshift32). */
static uint32_t
rng_next(void)
{
	t.rng ^= t.rng << 13;
	t.rng ^= t.rng >> 17;
	t.rng ^= t.rng << 5;
	return (t.rng);
}

/*
 * Choose a public port: the inside port itself if it is free and in the
 * range (port preservation), else a free port of the same parity from a
 * random place in the range (RFC 4787 REQ-3, REQ-4), else any free port.
 * Returns 0 when the range is exhausted.
 */
static uint16_t
port_choose(int pi, uint16_t want)
{
	struct nat_mapping	**pub = t.pub[pi];
	uint32_t		  n = (uint32_t)t.port_hi - t.port_lo + 1;
	uint32_t		  start, i, off;

	if (want >= t.port_lo && want <= t.port_hi &&
	    pub[want - t.port_lo] == NULL)
		return (want);
	start = rng_next() % n;
	for (i = 0; i < n; i++) {
		off = (start + i) % n;
		if (((off + t.port_lo) & 1) == (want & 1) && pub[off] == NULL)
			return ((uint16_t)(t.port_lo + off));
	}
	for (i = 0; i < n; i++) {
		off = (start + i) % n;
		if (pub[off] == NULL)
			return ((uint16_t)(t.port_lo + off));
	}
	return (0);
}

/* The per-host record of an inside address, created if needed. */
static struct nat_host *
host_get(uint32_t addr)
{
	struct nat_key	 k;
	struct nat_node	*n;
	struct nat_host	*h;

	key_set(&k, NODE_HOST, 0, addr, 0, 0, 0);
	if ((n = node_find(&k)) != NULL)
		return ((struct nat_host *)n);
	if ((h = pool_get(&t.hosts)) == NULL)
		return (NULL);
	h->node.key = k;
	h->addr = addr;
	node_insert(&h->node);
	return (h);
}

/* Drop a host record nobody refers to any more. */
static void
host_put(struct nat_host *h)
{
	if (h->nsessions != 0 || h->nmappings != 0)
		return;
	node_remove(&h->node);
	pool_put(&t.hosts, h);
}

/* Make a mapping with a chosen public port. */
static struct nat_mapping *
mapping_new(uint8_t proto, uint32_t addr, uint16_t port, uint16_t pub,
    enum nat_refusal *why)
{
	struct nat_mapping	*m;
	struct nat_host		*h;

	if (t.mappings.used >= t.max_sessions) {
		*why = NAT_REFUSED_TOTAL;
		return (NULL);
	}
	if ((h = host_get(addr)) == NULL) {
		*why = NAT_REFUSED_TOTAL;
		return (NULL);
	}
	if ((m = pool_get(&t.mappings)) == NULL) {
		host_put(h);
		*why = NAT_REFUSED_TOTAL;
		return (NULL);
	}
	key_set(&m->node.key, NODE_MAPPING, proto, addr, port, 0, 0);
	node_insert(&m->node);
	m->host = h;
	h->nmappings++;
	m->proto = proto;
	m->in_addr = addr;
	m->in_port = port;
	m->pub_port = pub;
	m->created = nat_clock;
	LIST_INIT(&m->sessions);
	LIST_INIT(&m->pinholes);
	t.pub[proto_index(proto)][pub - t.port_lo] = m;
	stat_inc(STAT_MAP_CREATED);
	return (m);
}

/*
 * Find or make the mapping of an inside endpoint.  Protocol helpers call
 * this too, to learn the public port before a packet leaves.
 */
struct nat_mapping *
nat_mapping_get(uint8_t proto, uint32_t addr, uint16_t port,
    enum nat_refusal *why)
{
	struct nat_mapping	*m;
	uint16_t		 pub;
	int			 pi;

	*why = NAT_OK;
	if ((m = nat_mapping_find(proto, addr, port)) != NULL)
		return (m);
	if ((pi = proto_index(proto)) == -1) {
		*why = NAT_REFUSED_PORT;
		return (NULL);
	}
	if (t.mappings.used >= t.max_sessions ||
	    t.sessions.used >= t.max_sessions) {
		*why = NAT_REFUSED_TOTAL;
		stat_inc(STAT_SESS_REFUSED_TOTAL);
		return (NULL);
	}
	if ((pub = port_choose(pi, port)) == 0) {
		*why = NAT_REFUSED_PORT;
		return (NULL);
	}
	return (mapping_new(proto, addr, port, pub, why));
}

/* Free a mapping if no session and no helper needs it. */
void
nat_mapping_gc(struct nat_mapping *m)
{
	struct nat_host	*h = m->host;

	if (m->nsessions != 0 || m->holds != 0)
		return;
	node_remove(&m->node);
	t.pub[proto_index(m->proto)][m->pub_port - t.port_lo] = NULL;
	h->nmappings--;
	host_put(h);
	pool_put(&t.mappings, m);
	stat_inc(STAT_MAP_EXPIRED);
}

/* A helper watches the mapping's packets (NULL stops it). */
void
nat_mapping_watch(struct nat_mapping *m, nat_watch_cb cb, void *arg)
{
	m->watch = cb;
	m->watch_arg = arg;
}

/* A helper keeps the mapping alive (a registration, a pinhole). */
void
nat_mapping_hold(struct nat_mapping *m)
{
	m->holds++;
}

/* A helper lets the mapping go; it ends with its last session. */
void
nat_mapping_release(struct nat_mapping *m)
{
	if (m->holds > 0)
		m->holds--;
	nat_mapping_gc(m);
}

/*
 * Mappings for two inside ports whose public ports must be consecutive,
 * the first even (RTP and RTCP, RFC 3550 section 11).  Existing mappings
 * are returned as they are.  Returns 0, or -1 with a reason.
 */
int
nat_mapping_get_pair(uint8_t proto, uint32_t addr, uint16_t port1,
    uint16_t port2, struct nat_mapping **m1, struct nat_mapping **m2,
    enum nat_refusal *why)
{
	struct nat_mapping	**pub;
	uint32_t		  n = (uint32_t)t.port_hi - t.port_lo + 1, i, off;
	uint16_t		  q;
	int			  pi = proto_index(proto);

	*m1 = nat_mapping_find(proto, addr, port1);
	*m2 = nat_mapping_find(proto, addr, port2);
	if (*m1 != NULL || *m2 != NULL || pi == -1) {
		if (*m1 == NULL && (*m1 = nat_mapping_get(proto, addr, port1,
		    why)) == NULL)
			return (-1);
		if (*m2 == NULL && (*m2 = nat_mapping_get(proto, addr, port2,
		    why)) == NULL) {
			nat_mapping_gc(*m1);
			return (-1);
		}
		return (0);
	}
	/* Find an even q with q + 1 free: the inside pair if it is free. */
	pub = t.pub[pi];
	q = 0;
	if (port1 % 2 == 0 && port1 >= t.port_lo && port1 < t.port_hi &&
	    pub[port1 - t.port_lo] == NULL && pub[port1 + 1 - t.port_lo] == NULL)
		q = port1;
	for (i = 0, off = rng_next() % n; q == 0 && i < n; i++) {
		off = (off + 1) % n;
		if ((t.port_lo + off) % 2 == 0 && off + 1 < n &&
		    pub[off] == NULL && pub[off + 1] == NULL)
			q = (uint16_t)(t.port_lo + off);
	}
	if (q == 0) {
		*why = NAT_REFUSED_PORT;
		return (-1);
	}
	if ((*m1 = mapping_new(proto, addr, port1, q, why)) == NULL)
		return (-1);
	if ((*m2 = mapping_new(proto, addr, port2, q + 1, why)) == NULL) {
		nat_mapping_gc(*m1);
		return (-1);
	}
	return (0);
}

/*
 * End every session of a mapping now; the mapping goes with the last one
 * unless something holds it.
 */
void
nat_mapping_flush(struct nat_mapping *m)
{
	struct nat_session	*s, *next;

	for (s = LIST_FIRST(&m->sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (next == NULL) {
			nat_session_remove(s);	/* may free m */
			return;
		}
		nat_session_remove(s);
	}
}

/*
 * Point a mapping at another inside port of the same host, keeping its
 * public port (a media stream that moves on re-INVITE).  Its sessions end:
 * the next packet makes new ones.  Returns -1 if the new inside port has
 * a mapping of its own already.
 */
int
nat_mapping_rebind(struct nat_mapping *m, uint16_t port)
{
	struct nat_mapping	*old;

	if (m->in_port == port)
		return (0);
	/*
	 * A mapping of the new port that only its own sessions keep (left
	 * by an earlier call) gives way; one a helper holds does not.
	 */
	if ((old = nat_mapping_find(m->proto, m->in_addr, port)) != NULL) {
		if (old->holds != 0 || !LIST_EMPTY(&old->pinholes))
			return (-1);
		nat_mapping_flush(old);
		if (nat_mapping_find(m->proto, m->in_addr, port) != NULL)
			return (-1);
	}
	m->holds++;	/* the last session must not take the mapping */
	nat_mapping_flush(m);
	m->holds--;
	node_remove(&m->node);
	m->in_port = port;
	key_set(&m->node.key, NODE_MAPPING, m->proto, m->in_addr, port, 0, 0);
	node_insert(&m->node);
	return (0);
}

/* A pinhole's timer ran out. */
static void
pinhole_expire_cb(struct timer *tm, uint64_t now)
{
	struct nat_pinhole	*ph = (struct nat_pinhole *)((char *)tm -
	    offsetof(struct nat_pinhole, timer));

	nat_pinhole_close(ph);
}

/*
 * Let inbound traffic from rem_addr:rem_port (0: any) start sessions on
 * a mapping until expires (0: until closed), owned by owner (or NULL).
 * The pinhole holds the mapping.  NULL when the pinhole limit is hit.
 */
struct nat_pinhole *
nat_pinhole_open(struct nat_mapping *m, struct nat_owner *owner,
    uint32_t rem_addr, uint16_t rem_port, uint64_t expires)
{
	struct nat_pinhole	*ph;

	if (t.pinholes.used >= t.max_pinholes ||
	    (ph = pool_get(&t.pinholes)) == NULL) {
		stat_inc(STAT_PINHOLE_REFUSED);
		return (NULL);
	}
	ph->map = m;
	ph->owner = owner;
	ph->rem_addr = rem_addr;
	ph->rem_port = rem_port;
	ph->timer.cb = pinhole_expire_cb;
	LIST_INSERT_HEAD(&m->pinholes, ph, map_entry);
	if (owner != NULL)
		LIST_INSERT_HEAD(&owner->pinholes, ph, owner_entry);
	m->holds++;
	nat_pinhole_extend(ph, expires);
	stat_inc(STAT_PINHOLE_OPENED);
	return (ph);
}

/* Move a pinhole's end (0: until closed). */
void
nat_pinhole_extend(struct nat_pinhole *ph, uint64_t expires)
{
	ph->expires = expires;
	if (expires == 0)
		timer_del(&t.wheel, &ph->timer);
	else
		timer_add(&t.wheel, &ph->timer, expires);
}

/* Close a pinhole; its mapping lives on while sessions use it. */
void
nat_pinhole_close(struct nat_pinhole *ph)
{
	struct nat_mapping	*m = ph->map;

	timer_del(&t.wheel, &ph->timer);
	LIST_REMOVE(ph, map_entry);
	if (ph->owner != NULL)
		LIST_REMOVE(ph, owner_entry);
	pool_put(&t.pinholes, ph);
	stat_inc(STAT_PINHOLE_CLOSED);
	nat_mapping_release(m);
}

/* Start an owner with no pinholes. */
void
nat_owner_init(struct nat_owner *o)
{
	LIST_INIT(&o->pinholes);
}

/* Close every pinhole of an owner (a dialog that ended). */
void
nat_owner_close(struct nat_owner *o)
{
	struct nat_pinhole	*ph;

	while ((ph = LIST_FIRST(&o->pinholes)) != NULL)
		nat_pinhole_close(ph);
}

/* May this remote start a session on the mapping through a pinhole? */
bool
nat_pinhole_allows(const struct nat_mapping *m, uint32_t addr, uint16_t port)
{
	const struct nat_pinhole	*ph;

	LIST_FOREACH(ph, &m->pinholes, map_entry) {
		if ((ph->rem_addr == 0 || ph->rem_addr == addr) &&
		    (ph->rem_port == 0 || ph->rem_port == port))
			return (true);
	}
	return (false);
}

/* Open pinholes. */
size_t
nat_pinhole_count(void)
{
	return (t.pinholes.used);
}

/* The session of an inside endpoint with a remote endpoint. */
struct nat_session *
nat_session_out(uint8_t proto, uint32_t in_addr, uint16_t in_port,
    uint32_t rem_addr, uint16_t rem_port)
{
	struct nat_key	 k;
	struct nat_node	*n;

	key_set(&k, NODE_SESSION_OUT, proto, in_addr, in_port, rem_addr,
	    rem_port);
	if ((n = node_find(&k)) == NULL)
		return (NULL);
	return ((struct nat_session *)((char *)n -
	    offsetof(struct nat_session, node_out)));
}

/* The session of a public port with a remote endpoint. */
struct nat_session *
nat_session_in(uint8_t proto, uint16_t pub_port, uint32_t rem_addr,
    uint16_t rem_port)
{
	struct nat_key	 k;
	struct nat_node	*n;

	key_set(&k, NODE_SESSION_IN, proto, 0, pub_port, rem_addr, rem_port);
	if ((n = node_find(&k)) == NULL)
		return (NULL);
	return ((struct nat_session *)((char *)n -
	    offsetof(struct nat_session, node_in)));
}

/* The idle timeout of a session in its current state. */
static unsigned
session_timeout(const struct nat_session *s)
{
	switch (s->map->proto) {
	case IPPROTO_UDP:
		return (t.to_udp);
	case IPPROTO_ICMP:
		return (t.to_icmp);
	}
	if (s->tcp_state == TCP_ESTABLISHED)
		return (t.to_tcp_est);
	return (t.to_tcp_trans);
}

/* A session's timer: expire it, or re-arm if it was used since. */
static void
session_expire_cb(struct timer *tm, uint64_t now)
{
	struct nat_session	*s = (struct nat_session *)((char *)tm -
	    offsetof(struct nat_session, timer));
	uint64_t		 due = s->last + session_timeout(s);

	if (due > now) {
		timer_add(&t.wheel, &s->timer, due);
		return;
	}
	stat_inc(STAT_SESS_EXPIRED);
	nat_session_remove(s);
}

/* Start a session between a mapping and a remote endpoint. */
struct nat_session *
nat_session_create(struct nat_mapping *m, uint32_t rem_addr,
    uint16_t rem_port, enum nat_refusal *why)
{
	struct nat_session	*s;

	*why = NAT_OK;
	if (t.sessions.used >= t.max_sessions) {
		*why = NAT_REFUSED_TOTAL;
		stat_inc(STAT_SESS_REFUSED_TOTAL);
		return (NULL);
	}
	if (m->host->nsessions >= t.max_per_host) {
		*why = NAT_REFUSED_HOST;
		stat_inc(STAT_SESS_REFUSED_HOST);
		return (NULL);
	}
	if ((s = pool_get(&t.sessions)) == NULL) {
		*why = NAT_REFUSED_TOTAL;
		stat_inc(STAT_SESS_REFUSED_TOTAL);
		return (NULL);
	}
	s->map = m;
	s->rem_addr = rem_addr;
	s->rem_port = rem_port;
	s->stream = NULL;
	s->created = s->last = nat_clock;
	key_set(&s->node_out.key, NODE_SESSION_OUT, m->proto, m->in_addr,
	    m->in_port, rem_addr, rem_port);
	key_set(&s->node_in.key, NODE_SESSION_IN, m->proto, 0, m->pub_port,
	    rem_addr, rem_port);
	node_insert(&s->node_out);
	node_insert(&s->node_in);
	LIST_INSERT_HEAD(&m->sessions, s, entry);
	m->nsessions++;
	m->host->nsessions++;
	s->timer.cb = session_expire_cb;
	timer_add(&t.wheel, &s->timer, nat_clock + session_timeout(s));
	stat_inc(STAT_SESS_CREATED);
	return (s);
}

/* End a session now; its mapping goes with the last one. */
void
nat_session_remove(struct nat_session *s)
{
	struct nat_mapping	*m = s->map;
	struct nat_host		*h = m->host;

	timer_del(&t.wheel, &s->timer);
	stream_free(s->stream);
	s->stream = NULL;
	node_remove(&s->node_out);
	node_remove(&s->node_in);
	LIST_REMOVE(s, entry);
	m->nsessions--;
	h->nsessions--;
	pool_put(&t.sessions, s);
	nat_mapping_gc(m);
}

/* Count a packet; outbound always refreshes, inbound if configured. */
void
nat_session_touch(struct nat_session *s, enum nat_dir dir, size_t len)
{
	s->pkts[dir]++;
	s->bytes[dir] += len;
	if (dir == DIR_OUT || t.inbound_refresh)
		s->last = nat_clock;
}

/*
 * Follow a TCP connection's state (RFC 5382): established once both
 * sides sent SYN, or when picked up mid-stream; transitory while opening,
 * after a FIN, and after RST.  The timer moves when the class changes.
 */
void
nat_session_tcp(struct nat_session *s, enum nat_dir dir, uint8_t flags)
{
	unsigned	before = session_timeout(s);
	uint8_t		st = s->tcp_state;

	if (flags & TH_RST)
		st = TCP_CLOSING;
	else if (flags & TH_SYN) {
		if (st == TCP_NONE || st == TCP_CLOSING) {
			st = dir == DIR_OUT ? TCP_SYN_OUT : TCP_SYN_IN;
			s->tcp_fin = 0;
		} else if ((st == TCP_SYN_OUT && dir == DIR_IN) ||
		    (st == TCP_SYN_IN && dir == DIR_OUT))
			st = TCP_ESTABLISHED;
	} else if (flags & TH_FIN) {
		s->tcp_fin |= 1 << dir;
		if (st != TCP_CLOSING)
			st = s->tcp_fin == 3 ? TCP_CLOSING : TCP_FIN;
	} else if (st == TCP_NONE)
		st = TCP_ESTABLISHED;
	s->tcp_state = st;
	if (session_timeout(s) != before)
		timer_add(&t.wheel, &s->timer, s->last + session_timeout(s));
}

/* Is the connection open: handshake done, neither closed nor reset? */
bool
nat_session_tcp_open(const struct nat_session *s)
{
	return (s->tcp_state == TCP_ESTABLISHED || s->tcp_state == TCP_FIN);
}

/* Expire what is due; returns how many timers fired. */
unsigned
nat_table_expire(uint64_t now)
{
	nat_clock = now;
	return (timer_advance(&t.wheel, now));
}

/* Call cb for every session, in public port order. */
void
nat_table_walk(nat_walk_cb cb, void *arg)
{
	struct nat_session	*s, *next;
	uint32_t		 n = (uint32_t)t.port_hi - t.port_lo + 1, i;
	int			 pi;

	for (pi = 0; pi < NPROTO; pi++) {
		if (t.pub[pi] == NULL)
			continue;
		for (i = 0; i < n; i++) {
			if (t.pub[pi][i] == NULL)
				continue;
			s = LIST_FIRST(&t.pub[pi][i]->sessions);
			for (; s != NULL; s = next) {
				next = LIST_NEXT(s, entry);
				cb(s, arg);
			}
		}
	}
}

/* A TCP state for people. */
const char *
nat_tcp_state_name(uint8_t st)
{
	static const char *names[] = {
		[TCP_NONE] = "none",
		[TCP_SYN_OUT] = "syn_sent",
		[TCP_SYN_IN] = "syn_received",
		[TCP_ESTABLISHED] = "established",
		[TCP_FIN] = "fin_wait",
		[TCP_CLOSING] = "closing",
	};

	if (st >= sizeof names / sizeof names[0])
		return ("?");
	return (names[st]);
}
