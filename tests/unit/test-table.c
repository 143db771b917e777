/* SPDX-License-Identifier: ISC */

#include <sys/types.h>
#include <sys/queue.h>

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
 * Unit tests for nat-table.c: mapping and filtering behaviour (RFC 4787),
 * port choice, limits, lookups from both sides, expiry on the timer
 * wheel, TCP states (RFC 5382), helper holds, and a stress test.
 *
 * The stress test uses a fixed seed; SIPNAT_TEST_SEED=<n> picks another.
 * The table's own port choice is seeded at random by nat_table_init, so
 * the tests only assert what holds for any port it picks.
 */

#define DEFAULT_SEED	0x7ab1e5edu
#include "util.h"
#define START		5000		/* the clock at init */
#define PORT_LO		20000
#define PORT_HI		20009
#define TO_UDP		120
#define TO_TCP_EST	7440
#define TO_TCP_TRANS	240
#define TO_ICMP		60
#define STRESS		50000
#define TH_FIN		0x01
#define TH_SYN		0x02
#define TH_RST		0x04
#define TH_ACK		0x10

/* A flow of the stress test. */
struct sflow {
	uint8_t			 proto;
	uint32_t		 in;
	uint16_t		 in_port;
	uint32_t		 rem;
	uint16_t		 rem_port;
	struct nat_session	*s;
};

static struct config	tc;

static void	conf_fill(struct config *);
static struct nat_session *flow(uint8_t, const char *, uint16_t,
		    const char *, uint16_t);
static void	count_cb(struct nat_session *, void *);
static void	reinit(void);
static void	stress_check(struct sflow *, size_t);

/* The configuration the tests start from, filled by hand. */
static void
conf_fill(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->lan[0].addr = ip("10.0.0.0");
	c->lan[0].mask = ip("255.255.255.0");
	c->nlan = 1;
	c->wan_addr = ip("203.0.113.1");
	c->wan_mtu = 1500;
	c->port_lo = PORT_LO;
	c->port_hi = PORT_HI;
	c->filtering = FILTER_ADDRESS_PORT_DEPENDENT;
	c->inbound_refresh = false;
	c->to_udp = TO_UDP;
	c->to_tcp_est = TO_TCP_EST;
	c->to_tcp_trans = TO_TCP_TRANS;
	c->to_icmp = TO_ICMP;
	c->to_frag = 30;
	c->max_sessions = 100;
	c->max_sessions_per_host = 50;
	c->frag_memory = 1 << 20;
}

/* A fresh table and counters for each test. */
static int
setup(void **state)
{
	conf_fill(&tc);
	memset(stats, 0, sizeof stats);
	if (nat_table_init(&tc, START) == -1)
		return (-1);
	return (0);
}

/* Free the table. */
static int
teardown(void **state)
{
	nat_table_free();
	return (0);
}

/* Re-create the table with the configuration as changed by a test. */
static void
reinit(void)
{
	nat_table_free();
	memset(stats, 0, sizeof stats);
	assert_int_equal(nat_table_init(&tc, START), 0);
}

/* Find or make the mapping and session of a flow; it must succeed. */
static struct nat_session *
flow(uint8_t proto, const char *in, uint16_t in_port, const char *rem,
    uint16_t rem_port)
{
	struct nat_mapping	*m;
	struct nat_session	*s;
	enum nat_refusal	 why;

	s = nat_session_out(proto, ip(in), in_port, ip(rem), rem_port);
	if (s != NULL)
		return (s);
	m = nat_mapping_get(proto, ip(in), in_port, &why);
	assert_non_null(m);
	assert_int_equal(why, NAT_OK);
	s = nat_session_create(m, ip(rem), rem_port, &why);
	assert_non_null(s);
	assert_int_equal(why, NAT_OK);
	assert_ptr_equal(s->map, m);
	return (s);
}

/* Count the sessions a walk sees. */
static void
count_cb(struct nat_session *s, void *arg)
{
	(*(size_t *)arg)++;
}

/* One inside endpoint to two remotes: one mapping, two sessions. */
static void
test_endpoint_independent_mapping(void **state)
{
	struct nat_session	*s1, *s2;
	struct nat_mapping	*m;
	enum nat_refusal	 why;

	s1 = flow(IPPROTO_UDP, "10.0.0.2", 5060, "192.0.2.1", 5060);
	s2 = flow(IPPROTO_UDP, "10.0.0.2", 5060, "198.51.100.7", 3478);
	assert_ptr_not_equal(s1, s2);
	assert_ptr_equal(s1->map, s2->map);
	m = s1->map;
	assert_int_equal(m->nsessions, 2);
	assert_int_equal(m->in_addr, ip("10.0.0.2"));
	assert_int_equal(m->in_port, 5060);
	assert_int_equal(m->proto, IPPROTO_UDP);
	assert_int_equal(nat_mapping_count(), 1);
	assert_int_equal(nat_session_count(), 2);
	assert_ptr_equal(nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 5060,
	    &why), m);
	assert_int_equal(why, NAT_OK);
	/* 5060 is outside the range: another port, the same parity. */
	assert_true(m->pub_port >= PORT_LO && m->pub_port <= PORT_HI);
	assert_int_equal(m->pub_port % 2, 0);
	assert_int_equal(m->host->nsessions, 2);
	assert_int_equal(m->host->nmappings, 1);
	assert_int_equal(stats[STAT_MAP_CREATED], 1);
	assert_int_equal(stats[STAT_SESS_CREATED], 2);

	/* The same port over TCP is another mapping. */
	s2 = flow(IPPROTO_TCP, "10.0.0.2", 5060, "192.0.2.1", 5060);
	assert_ptr_not_equal(s2->map, m);
	assert_int_equal(nat_mapping_count(), 2);
	assert_int_equal(m->host->nmappings, 2);
}

/* The inside port is kept when it is in the range and free. */
static void
test_port_preservation(void **state)
{
	struct nat_session	*a, *b, *c, *d;

	a = flow(IPPROTO_UDP, "10.0.0.2", 20004, "192.0.2.1", 53);
	assert_int_equal(a->map->pub_port, 20004);
	/* A second host on the same port: another, even, port. */
	b = flow(IPPROTO_UDP, "10.0.0.3", 20004, "192.0.2.1", 53);
	assert_int_not_equal(b->map->pub_port, 20004);
	assert_int_equal(b->map->pub_port % 2, 0);
	c = flow(IPPROTO_UDP, "10.0.0.4", 20007, "192.0.2.1", 53);
	assert_int_equal(c->map->pub_port, 20007);
	d = flow(IPPROTO_UDP, "10.0.0.5", 20007, "192.0.2.1", 53);
	assert_int_not_equal(d->map->pub_port, 20007);
	assert_int_equal(d->map->pub_port % 2, 1);
	assert_int_not_equal(d->map->pub_port, b->map->pub_port);
	/* TCP has its own ports: 20004 is free there. */
	a = flow(IPPROTO_TCP, "10.0.0.3", 20004, "192.0.2.1", 80);
	assert_int_equal(a->map->pub_port, 20004);
}

/* Parity holds while a port of that parity is free, many times over. */
static void
test_port_parity(void **state)
{
	struct nat_mapping	*m, *held[5];
	enum nat_refusal	 why;
	int			 i, j;

	for (i = 0; i < 200; i++) {
		m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"),
		    (uint16_t)(1000 + i), &why);
		assert_non_null(m);
		assert_int_equal(m->pub_port % 2, i % 2);
		nat_mapping_release(m);
		assert_int_equal(nat_mapping_count(), 0);
	}
	/* Fill the odd ports: an odd request falls back to an even one. */
	for (j = 0; j < 5; j++) {
		held[j] = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.3"),
		    (uint16_t)(3001 + 2 * j), &why);
		assert_non_null(held[j]);
		assert_int_equal(held[j]->pub_port % 2, 1);
		nat_mapping_hold(held[j]);
	}
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 999, &why);
	assert_non_null(m);
	assert_int_equal(m->pub_port % 2, 0);
	nat_mapping_release(m);
	for (j = 0; j < 5; j++)
		nat_mapping_release(held[j]);
	assert_int_equal(nat_mapping_count(), 0);
}

/*
 * An odd-sized range (20000-20004 holds two odd ports) must still give
 * an odd port to an odd inside port while one is free (RFC 4787 REQ-3).
 */
static void
test_port_parity_odd_range(void **state)
{
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	int			 i;

	tc.port_hi = PORT_LO + 4;
	reinit();
	for (i = 0; i < 200; i++) {
		m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"),
		    (uint16_t)(1000 + i), &why);
		assert_non_null(m);
		if (m->pub_port % 2 != i % 2)
			fail_msg("inside port %d got public port %u", 1000 + i,
			    m->pub_port);
		nat_mapping_release(m);
	}
}

/* Every port taken: refused; one freed: that one is given. */
static void
test_port_exhaustion(void **state)
{
	struct nat_session	*s[PORT_HI - PORT_LO + 1];
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	bool			 seen[PORT_HI - PORT_LO + 1];
	char			 host[32];
	uint16_t		 freed;
	int			 i, n = PORT_HI - PORT_LO + 1;

	memset(seen, 0, sizeof seen);
	for (i = 0; i < n; i++) {
		snprintf(host, sizeof host, "10.0.0.%d", 10 + i);
		s[i] = flow(IPPROTO_UDP, host, 4000, "192.0.2.1", 53);
		assert_false(seen[s[i]->map->pub_port - PORT_LO]);
		seen[s[i]->map->pub_port - PORT_LO] = true;
	}
	assert_int_equal(nat_mapping_count(), n);
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.99"), 4000, &why);
	assert_null(m);
	assert_int_equal(why, NAT_REFUSED_PORT);
	/* A port inside the range that is taken: refused as well. */
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.99"), PORT_LO, &why);
	assert_null(m);
	assert_int_equal(why, NAT_REFUSED_PORT);
	assert_int_equal(nat_mapping_count(), n);
	assert_int_equal(nat_session_count(), n);

	/* Other protocols are not affected. */
	assert_non_null(flow(IPPROTO_TCP, "10.0.0.99", 4000, "192.0.2.1", 80));
	assert_non_null(flow(IPPROTO_ICMP, "10.0.0.99", 77, "192.0.2.1", 0));

	/* Free one: its port is the only one, and it is given again. */
	freed = s[3]->map->pub_port;
	nat_session_remove(s[3]);
	assert_null(nat_mapping_public(IPPROTO_UDP, freed));
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.99"), 4001, &why);
	assert_non_null(m);
	assert_int_equal(m->pub_port, freed);
}

/* Total and per-host session limits, counted in stats. */
static void
test_session_limits(void **state)
{
	struct nat_mapping	*a1, *a2, *b;
	struct nat_session	*s;
	enum nat_refusal	 why;

	tc.max_sessions = 5;
	tc.max_sessions_per_host = 3;
	reinit();
	a1 = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 1000, &why);
	a2 = nat_mapping_get(IPPROTO_TCP, ip("10.0.0.2"), 1001, &why);
	assert_non_null(a1);
	assert_non_null(a2);
	assert_non_null(nat_session_create(a1, ip("192.0.2.1"), 1, &why));
	assert_non_null(nat_session_create(a1, ip("192.0.2.1"), 2, &why));
	assert_non_null(nat_session_create(a2, ip("192.0.2.1"), 3, &why));
	/* The host has 3 sessions over two mappings: a fourth is refused. */
	s = nat_session_create(a1, ip("192.0.2.1"), 4, &why);
	assert_null(s);
	assert_int_equal(why, NAT_REFUSED_HOST);
	assert_int_equal(stats[STAT_SESS_REFUSED_HOST], 1);
	assert_int_equal(stats[STAT_SESS_REFUSED_TOTAL], 0);
	assert_int_equal(nat_session_count(), 3);

	b = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.3"), 1000, &why);
	assert_non_null(b);
	assert_non_null(nat_session_create(b, ip("192.0.2.1"), 1, &why));
	assert_non_null(nat_session_create(b, ip("192.0.2.1"), 2, &why));
	/* Five in all: the total limit refuses first. */
	s = nat_session_create(b, ip("192.0.2.1"), 3, &why);
	assert_null(s);
	assert_int_equal(why, NAT_REFUSED_TOTAL);
	assert_int_equal(stats[STAT_SESS_REFUSED_TOTAL], 1);
	assert_int_equal(stats[STAT_SESS_REFUSED_HOST], 1);
	assert_int_equal(nat_session_count(), 5);
	assert_int_equal(stats[STAT_SESS_CREATED], 5);

	/* One ends: there is room again. */
	s = nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 1000, ip("192.0.2.1"),
	    1);
	assert_non_null(s);
	nat_session_remove(s);
	assert_non_null(nat_session_create(b, ip("192.0.2.1"), 3, &why));
	assert_int_equal(why, NAT_OK);
}

/* The mapping count is bounded by the session limit too. */
static void
test_mapping_limit(void **state)
{
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	int			 i;

	tc.max_sessions = 3;
	reinit();
	for (i = 0; i < 3; i++)
		assert_non_null(nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"),
		    (uint16_t)(1000 + i), &why));
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 2000, &why);
	assert_null(m);
	assert_int_equal(why, NAT_REFUSED_TOTAL);
	/* An existing one is still found. */
	assert_non_null(nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 1001,
	    &why));
	assert_int_equal(why, NAT_OK);
	/* Not a protocol with ports or ids. */
	assert_null(nat_mapping_get(47, ip("10.0.0.2"), 0, &why));
	assert_int_equal(why, NAT_REFUSED_PORT);
}

/* Lookups from the inside, the outside and by public port. */
static void
test_lookups(void **state)
{
	struct nat_session	*s, *t;
	uint16_t		 pub;

	s = flow(IPPROTO_UDP, "10.0.0.2", 5000, "192.0.2.1", 53);
	t = flow(IPPROTO_UDP, "10.0.0.2", 5000, "192.0.2.1", 54);
	pub = s->map->pub_port;
	assert_ptr_equal(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 5000,
	    ip("192.0.2.1"), 53), s);
	assert_ptr_equal(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 5000,
	    ip("192.0.2.1"), 54), t);
	assert_ptr_equal(nat_session_in(IPPROTO_UDP, pub, ip("192.0.2.1"), 53),
	    s);
	assert_ptr_equal(nat_session_in(IPPROTO_UDP, pub, ip("192.0.2.1"), 54),
	    t);
	assert_ptr_equal(nat_mapping_public(IPPROTO_UDP, pub), s->map);
	assert_ptr_equal(nat_mapping_find(IPPROTO_UDP, ip("10.0.0.2"), 5000),
	    s->map);
	assert_int_equal(s->rem_addr, ip("192.0.2.1"));
	assert_int_equal(s->rem_port, 53);
	assert_int_equal(s->created, START);

	/* Near misses find nothing. */
	assert_null(nat_session_out(IPPROTO_TCP, ip("10.0.0.2"), 5000,
	    ip("192.0.2.1"), 53));
	assert_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.3"), 5000,
	    ip("192.0.2.1"), 53));
	assert_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 5001,
	    ip("192.0.2.1"), 53));
	assert_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 5000,
	    ip("192.0.2.2"), 53));
	assert_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 5000,
	    ip("192.0.2.1"), 55));
	assert_null(nat_session_in(IPPROTO_UDP, pub, ip("192.0.2.2"), 53));
	assert_null(nat_session_in(IPPROTO_UDP, pub, ip("192.0.2.1"), 55));
	assert_null(nat_session_in(IPPROTO_TCP, pub, ip("192.0.2.1"), 53));
	assert_null(nat_session_in(IPPROTO_UDP,
	    (uint16_t)(pub == PORT_LO ? PORT_LO + 1 : PORT_LO),
	    ip("192.0.2.1"), 53));
	/* The outside lookup does not answer to the inside endpoint. */
	assert_null(nat_session_in(IPPROTO_UDP, 5000, ip("192.0.2.1"), 53));
	assert_null(nat_mapping_public(IPPROTO_TCP, pub));
	assert_null(nat_mapping_public(IPPROTO_UDP, PORT_LO - 1));
	assert_null(nat_mapping_public(IPPROTO_UDP, PORT_HI + 1));
	assert_null(nat_mapping_public(47, pub));
	assert_null(nat_mapping_find(IPPROTO_UDP, ip("10.0.0.2"), 5001));

	/* Removing one session leaves the other and the mapping. */
	nat_session_remove(s);
	assert_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 5000,
	    ip("192.0.2.1"), 53));
	assert_null(nat_session_in(IPPROTO_UDP, pub, ip("192.0.2.1"), 53));
	assert_ptr_equal(nat_session_in(IPPROTO_UDP, pub, ip("192.0.2.1"), 54),
	    t);
	assert_ptr_equal(nat_mapping_public(IPPROTO_UDP, pub), t->map);
}

/* A UDP session ends at exactly its timeout; its mapping and port too. */
static void
test_expire_udp(void **state)
{
	struct nat_session	*s;
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	uint16_t		 pub;

	s = flow(IPPROTO_UDP, "10.0.0.2", 20002, "192.0.2.1", 53);
	pub = s->map->pub_port;
	assert_int_equal(pub, 20002);
	assert_int_equal(nat_table_expire(START + TO_UDP - 1), 0);
	assert_int_equal(nat_session_count(), 1);
	assert_int_equal(nat_table_expire(START + TO_UDP), 1);
	assert_int_equal(nat_now(), START + TO_UDP);
	assert_int_equal(nat_session_count(), 0);
	assert_int_equal(nat_mapping_count(), 0);
	assert_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 20002,
	    ip("192.0.2.1"), 53));
	assert_null(nat_session_in(IPPROTO_UDP, pub, ip("192.0.2.1"), 53));
	assert_null(nat_mapping_find(IPPROTO_UDP, ip("10.0.0.2"), 20002));
	assert_null(nat_mapping_public(IPPROTO_UDP, pub));
	assert_int_equal(stats[STAT_SESS_EXPIRED], 1);
	assert_int_equal(stats[STAT_MAP_EXPIRED], 1);
	/* The port is free: another host preserving it gets it. */
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.3"), 20002, &why);
	assert_non_null(m);
	assert_int_equal(m->pub_port, 20002);
	assert_int_equal(m->created, START + TO_UDP);
}

/* ICMP sessions use their own timeout. */
static void
test_expire_icmp(void **state)
{
	flow(IPPROTO_ICMP, "10.0.0.2", 0x1234, "192.0.2.1", 0);
	assert_int_equal(nat_table_expire(START + TO_ICMP - 1), 0);
	assert_int_equal(nat_session_count(), 1);
	assert_int_equal(nat_table_expire(START + TO_ICMP), 1);
	assert_int_equal(nat_session_count(), 0);
}

/* Outbound packets refresh a session; inbound ones only if configured. */
static void
test_refresh(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_UDP, "10.0.0.2", 1000, "192.0.2.1", 53);
	nat_set_now(START + 100);
	nat_session_touch(s, DIR_OUT, 100);
	assert_int_equal(s->last, START + 100);
	assert_int_equal(s->pkts[DIR_OUT], 1);
	assert_int_equal(s->bytes[DIR_OUT], 100);
	/* At the first deadline the timer re-arms instead. */
	assert_int_equal(nat_table_expire(START + TO_UDP), 1);
	assert_int_equal(nat_session_count(), 1);
	assert_non_null(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 1000,
	    ip("192.0.2.1"), 53));
	assert_int_equal(nat_table_expire(START + 100 + TO_UDP - 1), 0);
	assert_int_equal(nat_session_count(), 1);
	assert_int_equal(nat_table_expire(START + 100 + TO_UDP), 1);
	assert_int_equal(nat_session_count(), 0);

	/* An inbound packet does not refresh (inbound_refresh off). */
	s = flow(IPPROTO_UDP, "10.0.0.2", 1000, "192.0.2.1", 53);
	assert_int_equal(s->created, START + 100 + TO_UDP);
	nat_set_now(START + 200 + TO_UDP);
	nat_session_touch(s, DIR_IN, 50);
	assert_int_equal(s->pkts[DIR_IN], 1);
	assert_int_equal(s->bytes[DIR_IN], 50);
	assert_int_equal(s->last, START + 100 + TO_UDP);
	nat_table_expire(START + 100 + 2 * TO_UDP);
	assert_int_equal(nat_session_count(), 0);
}

/* With inbound_refresh on, an inbound packet refreshes too. */
static void
test_refresh_inbound(void **state)
{
	struct nat_session	*s;

	tc.inbound_refresh = true;
	nat_table_configure(&tc);
	s = flow(IPPROTO_UDP, "10.0.0.2", 1000, "192.0.2.1", 53);
	nat_set_now(START + 100);
	nat_session_touch(s, DIR_IN, 50);
	assert_int_equal(s->last, START + 100);
	nat_table_expire(START + TO_UDP);
	assert_int_equal(nat_session_count(), 1);
	nat_table_expire(START + 100 + TO_UDP);
	assert_int_equal(nat_session_count(), 0);
}

/* SYN out, SYN-ACK in: established, with the long timeout. */
static void
test_tcp_handshake(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_TCP, "10.0.0.2", 40000, "192.0.2.1", 443);
	assert_int_equal(s->tcp_state, TCP_NONE);
	nat_session_tcp(s, DIR_OUT, TH_SYN);
	assert_int_equal(s->tcp_state, TCP_SYN_OUT);
	/* A retransmitted SYN changes nothing. */
	nat_session_tcp(s, DIR_OUT, TH_SYN);
	assert_int_equal(s->tcp_state, TCP_SYN_OUT);
	nat_session_tcp(s, DIR_IN, TH_SYN | TH_ACK);
	assert_int_equal(s->tcp_state, TCP_ESTABLISHED);
	nat_session_tcp(s, DIR_OUT, TH_ACK);
	assert_int_equal(s->tcp_state, TCP_ESTABLISHED);
	assert_string_equal(nat_tcp_state_name(s->tcp_state), "established");
	/* Past the transitory timeout it lives on. */
	nat_table_expire(START + TO_TCP_TRANS);
	assert_int_equal(nat_session_count(), 1);
	nat_table_expire(START + TO_TCP_EST - 1);
	assert_int_equal(nat_session_count(), 1);
	nat_table_expire(START + TO_TCP_EST);
	assert_int_equal(nat_session_count(), 0);
}

/* A SYN that gets no answer ends at the transitory timeout. */
static void
test_tcp_syn_timeout(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_TCP, "10.0.0.2", 40000, "192.0.2.1", 443);
	nat_session_tcp(s, DIR_OUT, TH_SYN);
	nat_table_expire(START + TO_TCP_TRANS - 1);
	assert_int_equal(nat_session_count(), 1);
	nat_table_expire(START + TO_TCP_TRANS);
	assert_int_equal(nat_session_count(), 0);
}

/* A SYN from outside, answered from inside, also establishes. */
static void
test_tcp_syn_in(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_TCP, "10.0.0.2", 40000, "192.0.2.1", 443);
	nat_session_tcp(s, DIR_IN, TH_SYN);
	assert_int_equal(s->tcp_state, TCP_SYN_IN);
	nat_session_tcp(s, DIR_IN, TH_SYN);
	assert_int_equal(s->tcp_state, TCP_SYN_IN);
	nat_session_tcp(s, DIR_OUT, TH_SYN | TH_ACK);
	assert_int_equal(s->tcp_state, TCP_ESTABLISHED);
}

/* A connection picked up mid-stream counts as established. */
static void
test_tcp_midstream(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_TCP, "10.0.0.2", 40000, "192.0.2.1", 443);
	nat_session_tcp(s, DIR_OUT, TH_ACK);
	assert_int_equal(s->tcp_state, TCP_ESTABLISHED);
	nat_table_expire(START + TO_TCP_TRANS + 10);
	assert_int_equal(nat_session_count(), 1);
}

/* FIN both ways: closing, on the transitory timeout from the last use. */
static void
test_tcp_fin(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_TCP, "10.0.0.2", 40000, "192.0.2.1", 443);
	nat_session_tcp(s, DIR_OUT, TH_SYN);
	nat_session_tcp(s, DIR_IN, TH_SYN | TH_ACK);
	nat_set_now(START + 1000);
	nat_session_touch(s, DIR_OUT, 40);
	nat_session_tcp(s, DIR_OUT, TH_FIN | TH_ACK);
	assert_int_equal(s->tcp_state, TCP_FIN);
	/* Half closed: still the transitory timeout. */
	nat_session_tcp(s, DIR_OUT, TH_ACK);
	assert_int_equal(s->tcp_state, TCP_FIN);
	nat_session_tcp(s, DIR_IN, TH_FIN | TH_ACK);
	assert_int_equal(s->tcp_state, TCP_CLOSING);
	assert_int_equal(s->tcp_fin, 3);
	nat_table_expire(START + 1000 + TO_TCP_TRANS - 1);
	assert_int_equal(nat_session_count(), 1);
	nat_table_expire(START + 1000 + TO_TCP_TRANS);
	assert_int_equal(nat_session_count(), 0);
	assert_int_equal(nat_mapping_count(), 0);
}

/* A FIN one way only, then silence: the transitory timeout. */
static void
test_tcp_half_close(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_TCP, "10.0.0.2", 40000, "192.0.2.1", 443);
	nat_session_tcp(s, DIR_OUT, TH_SYN);
	nat_session_tcp(s, DIR_IN, TH_SYN | TH_ACK);
	nat_session_tcp(s, DIR_IN, TH_FIN | TH_ACK);
	assert_int_equal(s->tcp_state, TCP_FIN);
	nat_table_expire(START + TO_TCP_TRANS);
	assert_int_equal(nat_session_count(), 0);
}

/* RST closes; a new SYN on the same session opens it again. */
static void
test_tcp_rst(void **state)
{
	struct nat_session	*s;

	s = flow(IPPROTO_TCP, "10.0.0.2", 40000, "192.0.2.1", 443);
	nat_session_tcp(s, DIR_OUT, TH_SYN);
	nat_session_tcp(s, DIR_IN, TH_SYN | TH_ACK);
	nat_session_tcp(s, DIR_IN, TH_RST);
	assert_int_equal(s->tcp_state, TCP_CLOSING);
	assert_string_equal(nat_tcp_state_name(s->tcp_state), "closing");
	nat_session_tcp(s, DIR_OUT, TH_SYN);
	assert_int_equal(s->tcp_state, TCP_SYN_OUT);
	assert_int_equal(s->tcp_fin, 0);
	nat_session_tcp(s, DIR_OUT, TH_RST | TH_ACK);
	assert_int_equal(s->tcp_state, TCP_CLOSING);
	nat_table_expire(START + TO_TCP_TRANS);
	assert_int_equal(nat_session_count(), 0);
	assert_string_equal(nat_tcp_state_name(200), "?");
}

/* A held mapping outlives its sessions until it is released. */
static void
test_mapping_hold(void **state)
{
	struct nat_mapping	*m;
	struct nat_session	*s;
	enum nat_refusal	 why;
	uint16_t		 pub;

	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 5060, &why);
	assert_non_null(m);
	pub = m->pub_port;
	nat_mapping_hold(m);
	nat_mapping_hold(m);
	assert_int_equal(m->holds, 2);
	s = nat_session_create(m, ip("192.0.2.1"), 5060, &why);
	assert_non_null(s);
	nat_table_expire(START + 10 * TO_UDP);
	assert_int_equal(nat_session_count(), 0);
	assert_int_equal(nat_mapping_count(), 1);
	assert_ptr_equal(nat_mapping_public(IPPROTO_UDP, pub), m);
	assert_ptr_equal(nat_mapping_find(IPPROTO_UDP, ip("10.0.0.2"), 5060),
	    m);
	nat_mapping_release(m);
	assert_int_equal(nat_mapping_count(), 1);
	nat_mapping_release(m);
	assert_int_equal(nat_mapping_count(), 0);
	assert_null(nat_mapping_public(IPPROTO_UDP, pub));
	assert_null(nat_mapping_find(IPPROTO_UDP, ip("10.0.0.2"), 5060));

	/* Released while a session runs: it ends with the session. */
	m = nat_mapping_get(IPPROTO_UDP, ip("10.0.0.2"), 5060, &why);
	nat_mapping_hold(m);
	s = nat_session_create(m, ip("192.0.2.1"), 5060, &why);
	nat_mapping_release(m);
	assert_int_equal(nat_mapping_count(), 1);
	nat_session_remove(s);
	assert_int_equal(nat_mapping_count(), 0);
}

/* The walk sees every session once. */
static void
test_walk(void **state)
{
	size_t	n = 0;

	flow(IPPROTO_UDP, "10.0.0.2", 1, "192.0.2.1", 1);
	flow(IPPROTO_UDP, "10.0.0.2", 1, "192.0.2.1", 2);
	flow(IPPROTO_TCP, "10.0.0.2", 1, "192.0.2.1", 1);
	flow(IPPROTO_ICMP, "10.0.0.3", 9, "192.0.2.1", 0);
	nat_table_walk(count_cb, &n);
	assert_int_equal(n, 4);
}

/* Does every live flow find its own session from both sides? */
static void
stress_check(struct sflow *f, size_t n)
{
	struct nat_session	*s;
	size_t			 i;

	for (i = 0; i < n; i++) {
		s = nat_session_out(f[i].proto, f[i].in, f[i].in_port,
		    f[i].rem, f[i].rem_port);
		if (f[i].s == NULL) {
			assert_null(s);
			continue;
		}
		assert_ptr_equal(s, f[i].s);
		assert_int_equal(s->rem_addr, f[i].rem);
		assert_int_equal(s->rem_port, f[i].rem_port);
		assert_int_equal(s->map->in_addr, f[i].in);
		assert_int_equal(s->map->in_port, f[i].in_port);
		assert_int_equal(s->map->proto, f[i].proto);
		assert_ptr_equal(nat_session_in(f[i].proto, s->map->pub_port,
		    f[i].rem, f[i].rem_port), s);
		assert_ptr_equal(nat_mapping_public(f[i].proto,
		    s->map->pub_port), s->map);
		assert_ptr_equal(nat_mapping_find(f[i].proto, f[i].in,
		    f[i].in_port), s->map);
	}
}

/*
 * 50000 sessions between random inside and remote endpoints, a few per
 * mapping; every lookup finds the right one, counts match, and removing
 * half of them disturbs none of the rest.
 */
static void
test_stress(void **state)
{
	static const uint8_t	 protos[] = {
		IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMP
	};
	struct sflow		*f;
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	size_t			 n = 0, live, maps, walked = 0, i;
	uint32_t		 r;

	tc.port_lo = 1024;
	tc.port_hi = 65535;
	tc.max_sessions = STRESS * 2;
	tc.max_sessions_per_host = STRESS * 2;
	reinit();
	rng_seed();
	f = calloc(STRESS, sizeof *f);
	assert_non_null(f);
	while (n < STRESS) {
		r = rng();
		f[n].proto = protos[r % 3];
		/* 64 inside hosts, 512 ports each: endpoints repeat. */
		f[n].in = htonl(0x0a000000 | ((r >> 2) & 0x3f));
		f[n].in_port = (uint16_t)(1024 + (rng() & 0x1ff));
		f[n].rem = rng();
		f[n].rem_port = f[n].proto == IPPROTO_ICMP ? 0 :
		    (uint16_t)rng();
		if (nat_session_out(f[n].proto, f[n].in, f[n].in_port,
		    f[n].rem, f[n].rem_port) != NULL)
			continue;
		m = nat_mapping_get(f[n].proto, f[n].in, f[n].in_port, &why);
		assert_non_null(m);
		f[n].s = nat_session_create(m, f[n].rem, f[n].rem_port, &why);
		assert_non_null(f[n].s);
		n++;
	}
	assert_int_equal(nat_session_count(), STRESS);
	maps = nat_mapping_count();
	assert_true(maps > 1000 && maps < STRESS);
	assert_int_equal(stats[STAT_SESS_CREATED], STRESS);
	assert_int_equal(stats[STAT_MAP_CREATED], maps);
	nat_table_walk(count_cb, &walked);
	assert_int_equal(walked, STRESS);
	stress_check(f, n);

	/* Remove every other one. */
	live = n;
	for (i = 0; i < n; i += 2) {
		nat_session_remove(f[i].s);
		f[i].s = NULL;
		live--;
	}
	assert_int_equal(nat_session_count(), live);
	stress_check(f, n);

	/*
	 * Half the rest are used 10 s later; then the TCP transitory
	 * timeout passes (longer than the UDP and ICMP ones).  Only the
	 * TCP sessions used late are left.
	 */
	nat_set_now(START + 10);
	for (i = 1; i < n; i += 4)
		nat_session_touch(f[i].s, DIR_OUT, 1);
	nat_table_expire(START + TO_TCP_TRANS);
	for (i = 1; i < n; i += 2)
		if (i % 4 == 3 || f[i].proto != IPPROTO_TCP)
			f[i].s = NULL;
	stress_check(f, n);
	live = 0;
	for (i = 0; i < n; i++)
		if (f[i].s != NULL)
			live++;
	assert_true(live > 0);
	assert_int_equal(nat_session_count(), live);

	/* Everything ends; nothing is left behind. */
	nat_table_expire(START + 10 * TO_TCP_EST);
	assert_int_equal(nat_session_count(), 0);
	assert_int_equal(nat_mapping_count(), 0);
	for (i = 0; i < n; i++)
		f[i].s = NULL;
	stress_check(f, n);
	free(f);
}

/* Raising the limit live lets new sessions in; old ones stay found. */
static void
test_configure_limit(void **state)
{
	struct nat_session	*s[4], *x;
	struct nat_mapping	*m;
	enum nat_refusal	 why;
	char			 host[32];
	int			 i;

	tc.max_sessions = 4;
	tc.port_lo = 1024;
	tc.port_hi = 65535;
	reinit();
	for (i = 0; i < 4; i++) {
		snprintf(host, sizeof host, "10.0.0.%d", 2 + i);
		s[i] = flow(IPPROTO_UDP, host, 1000, "192.0.2.1", 53);
	}
	m = s[0]->map;
	x = nat_session_create(m, ip("192.0.2.2"), 53, &why);
	assert_null(x);
	assert_int_equal(why, NAT_REFUSED_TOTAL);

	/* Raised: the hash table grows and every session is found. */
	tc.max_sessions = 20000;
	tc.max_sessions_per_host = 20000;
	nat_table_configure(&tc);
	for (i = 0; i < 4; i++) {
		snprintf(host, sizeof host, "10.0.0.%d", 2 + i);
		assert_ptr_equal(nat_session_out(IPPROTO_UDP, ip(host), 1000,
		    ip("192.0.2.1"), 53), s[i]);
		assert_ptr_equal(nat_session_in(IPPROTO_UDP,
		    s[i]->map->pub_port, ip("192.0.2.1"), 53), s[i]);
	}
	for (i = 0; i < 10000; i++) {
		x = nat_session_create(m, htonl(0xc6336400 + (uint32_t)i), 53,
		    &why);
		assert_non_null(x);
	}
	assert_int_equal(nat_session_count(), 10004);
	for (i = 0; i < 10000; i++)
		assert_non_null(nat_session_in(IPPROTO_UDP, m->pub_port,
		    htonl(0xc6336400 + (uint32_t)i), 53));

	/* Lowered: nothing ends, but nothing new starts. */
	tc.max_sessions = 100;
	nat_table_configure(&tc);
	assert_int_equal(nat_session_count(), 10004);
	assert_null(nat_session_create(m, ip("192.0.2.99"), 1, &why));
	assert_int_equal(why, NAT_REFUSED_TOTAL);
	assert_ptr_equal(nat_session_out(IPPROTO_UDP, ip("10.0.0.2"), 1000,
	    ip("192.0.2.1"), 53), s[0]);

	/* New timeouts apply to sessions from then on. */
	tc.max_sessions = 20000;
	tc.to_udp = 10;
	nat_table_configure(&tc);
	x = flow(IPPROTO_UDP, "10.0.1.1", 7, "192.0.2.1", 53);
	nat_table_expire(START + 10);
	assert_null(nat_session_out(IPPROTO_UDP, ip("10.0.1.1"), 7,
	    ip("192.0.2.1"), 53));
}

/* Run the table tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_endpoint_independent_mapping),
		T(test_port_preservation),
		T(test_port_parity),
		T(test_port_parity_odd_range),
		T(test_port_exhaustion),
		T(test_session_limits),
		T(test_mapping_limit),
		T(test_lookups),
		T(test_expire_udp),
		T(test_expire_icmp),
		T(test_refresh),
		T(test_refresh_inbound),
		T(test_tcp_handshake),
		T(test_tcp_syn_timeout),
		T(test_tcp_syn_in),
		T(test_tcp_midstream),
		T(test_tcp_fin),
		T(test_tcp_half_close),
		T(test_tcp_rst),
		T(test_mapping_hold),
		T(test_walk),
		T(test_stress),
		T(test_configure_limit),
#undef T
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
