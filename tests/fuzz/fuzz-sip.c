/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "alg.h"

/*
 * libFuzzer target for the SIP helper: each input is a UDP payload sent
 * through nat_input() between a phone (10.0.0.11:5060) and a provider
 * (198.51.100.10:5060), the first byte choosing the direction.  Packets
 * are built whole with valid checksums so the input reaches the helper.
 */

static struct config fz_conf;

/* Discard output. */
static int
fz_discard(const uint8_t *buf, size_t len)
{
	return (0);
}

static const struct nat_io fz_io = {
	.to_wan = fz_discard,
	.to_lan = fz_discard,
};

/* Build an IPv4/UDP packet around a payload and feed it in. */
static void
fz_send(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
    const uint8_t *data, size_t len)
{
	static uint8_t	pkt[SIPNAT_MAX_PKT];
	struct pkt	p;
	uint16_t	w;

	if (len > SIPNAT_MAX_PKT - 28)
		len = SIPNAT_MAX_PKT - 28;
	memset(pkt, 0, 28);
	pkt[0] = 0x45;
	w = htons((uint16_t)(28 + len));
	memcpy(pkt + 2, &w, 2);
	pkt[8] = 64;
	pkt[9] = IPPROTO_UDP;
	memcpy(pkt + 12, &src, 4);
	memcpy(pkt + 16, &dst, 4);
	w = cksum(pkt, 20, 0);
	memcpy(pkt + 10, &w, 2);
	w = htons(sport);
	memcpy(pkt + 20, &w, 2);
	w = htons(dport);
	memcpy(pkt + 22, &w, 2);
	w = htons((uint16_t)(8 + len));
	memcpy(pkt + 24, &w, 2);
	memcpy(pkt + 28, data, len);
	if (pkt_parse(&p, pkt, 28 + len) == PKT_OK) {
		w = cksum_l4(&p);
		memcpy(pkt + 26, &w, 2);
	}
	nat_input(pkt, 28 + len);
}

/* Set up once: a config by hand, the table, the helper, one mapping. */
static void
fz_init(void)
{
	static const uint8_t	hello[] = "\r\n\r\n";

	config_defaults(&fz_conf);
	inet_pton(AF_INET, "203.0.113.1", &fz_conf.wan_addr);
	fz_conf.wan_mtu = 1500;
	fz_conf.max_sessions = 4096;
	fz_conf.max_pinholes = 4096;
	fz_conf.sip_max_dialogs = 64;
	nat_set_now(1000);
	if (nat_init(&fz_conf, &fz_io) == -1 ||
	    alg_configure(&fz_conf, NULL) == -1)
		__builtin_trap();
	fz_send(inet_addr("10.0.0.11"), 5060, inet_addr("198.51.100.10"),
	    5060, hello, sizeof hello - 1);
}

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static int			 ready;
	static uint64_t			 now = 1000;
	struct nat_mapping		*m;

	if (!ready) {
		fz_init();
		ready = 1;
	}
	if (len < 1)
		return (0);
	if (data[0] & 0x80) {
		now += data[0] & 0x0f;
		nat_set_now(now);
		nat_tick(now);
	}
	m = nat_mapping_find(IPPROTO_UDP, inet_addr("10.0.0.11"), 5060);
	if ((data[0] & 1) == 0 || m == NULL)
		fz_send(inet_addr("10.0.0.11"), 5060,
		    inet_addr("198.51.100.10"), 5060, data + 1, len - 1);
	else
		fz_send(inet_addr("198.51.100.10"), 5060,
		    inet_addr("203.0.113.1"), m->pub_port, data + 1, len - 1);
	return (0);
}
