/*
 * sipnat: a user-space, SIP-aware NAT gateway on a TUN device.
 *
 * The one internal header: build-time defaults, shared types, and the
 * prototypes of every source file grouped under its name.
 */

#ifndef SIPNAT_H
#define SIPNAT_H

#include <sys/types.h>
#include <sys/queue.h>

#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef SIPNAT_CONF
#define SIPNAT_CONF "/etc/sipnat/sipnat.ini"
#endif
#ifndef SIPNAT_SOCKET
#define SIPNAT_SOCKET "/run/sipnatd.sock"
#endif
#ifndef SIPNAT_VERSION
#define SIPNAT_VERSION "0.1"
#endif

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof (a)[0])
#endif

#define SIPNAT_MAX_PKT		65535	/* largest IPv4 datagram */
#define CONFIG_MAX_LANS		16
#define CONFIG_MAX_SIP_PORTS	16
#define CONFIG_MAX_LINE		199	/* longest line inih reads whole */

struct event_base;
struct evbuffer;
struct pkt;
struct stream;

/* An IPv4 prefix; both fields in network byte order. */
struct prefix {
	uint32_t	addr;
	uint32_t	mask;
};

enum filtering {
	FILTER_ENDPOINT_INDEPENDENT,
	FILTER_ADDRESS_PORT_DEPENDENT,
};

/* config.c */
struct config {
	char		*path;

	/* [general] */
	char		 user[64];		/* "" keeps root */
	char		 control_socket[108];
	int		 debug;

	/* [tun] */
	char		 tun_name[16];
	int		 tun_mtu;

	/* [lan] */
	struct prefix	 lan[CONFIG_MAX_LANS];
	int		 nlan;
	char		 lan_interfaces[128];	/* for the scripts only */

	/* [wan] */
	char		 wan_interface[16];
	uint32_t	 wan_addr;		/* 0: take it from wan_interface */
	int		 wan_mtu;		/* 0: take it from wan_interface */
	uint16_t	 port_lo;
	uint16_t	 port_hi;

	/* [nat] */
	enum filtering	 filtering;
	bool		 inbound_refresh;
	bool		 mss_clamp;

	/* [timeouts], seconds */
	unsigned	 to_udp;
	unsigned	 to_tcp_est;
	unsigned	 to_tcp_trans;
	unsigned	 to_icmp;
	unsigned	 to_frag;

	/* [limits] */
	unsigned	 max_sessions;
	unsigned	 max_sessions_per_host;
	unsigned	 max_pinholes;
	size_t		 frag_memory;
	size_t		 stream_buffer;		/* per direction of a stream */
	size_t		 stream_memory;		/* all TCP streams */

	/* [sip] */
	struct config_sip_port {
		uint16_t	 port;
		bool		 normalise;	/* false: plain NAT */
	}		 sip_ports[CONFIG_MAX_SIP_PORTS];
	int		 nsip_ports;
	bool		 sip_drop_errors;	/* on_error = drop */
	unsigned	 sip_max_message;
	bool		 sip_media_eif;		/* media_filtering */
	unsigned	 sip_max_dialogs;
	unsigned	 sip_max_media;		/* per dialog */
	unsigned	 sip_max_registrations;
	unsigned	 sip_one_way_alarm;	/* seconds, 0: off */
	unsigned	 to_sip_dialog;		/* [timeouts] sip_dialog */

	/* [metrics] */
	char		 metrics_listen[32];	/* "addr:port", "" off */

	/* [routes]: read by scripts/sipnat-routes, checked here */
	unsigned	 route_table;
	unsigned	 route_mark;
	unsigned	 rule_priority;
};

/* One error found while reading a config file. */
struct config_error {
	TAILQ_ENTRY(config_error) entry;
	int		 line;			/* 0: about the whole file */
	char		*msg;
};
TAILQ_HEAD(config_errors, config_error);

void		 config_defaults(struct config *);
int		 config_load(struct config *, const char *, struct config_errors *);
void		 config_print_errors(const char *, struct config_errors *);
void		 config_free_errors(struct config_errors *);
void		 config_print(const struct config *, FILE *);
int		 config_is_lan(const struct config *, uint32_t);
int		 config_listen(const char *, uint32_t *, uint16_t *);
void		 config_free(struct config *);

/* log.c */
void		 log_init(int, int);
void		 log_set_debug(int);
void		 log_warn(const char *, ...)
		     __attribute__((format(printf, 1, 2)));
void		 log_warnx(const char *, ...)
		     __attribute__((format(printf, 1, 2)));
void		 log_info(const char *, ...)
		     __attribute__((format(printf, 1, 2)));
void		 log_debug(const char *, ...)
		     __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatal(const char *, ...)
		     __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatalx(const char *, ...)
		     __attribute__((format(printf, 1, 2)));

/* stats.c */
enum counter {
	STAT_PKT_IN_LAN,		/* packets read from the LAN side */
	STAT_PKT_IN_WAN,		/* packets read from the WAN side */
	STAT_PKT_OUT_WAN,		/* packets sent on the uplink */
	STAT_PKT_OUT_LAN,		/* packets written to the TUN */
	STAT_BYTES_OUT_WAN,
	STAT_BYTES_OUT_LAN,
	STAT_HAIRPIN,
	STAT_TO_GATEWAY,		/* handed back to the gateway's stack */
	STAT_ICMP_ERR_OUT,		/* ICMP errors translated to WAN */
	STAT_ICMP_ERR_IN,		/* ICMP errors translated to LAN */
	STAT_ICMP_SENT,			/* ICMP errors sipnatd made itself */
	STAT_FRAG_IN,			/* fragments received */
	STAT_FRAG_REASSEMBLED,
	STAT_FRAG_OUT,			/* fragments sent */
	STAT_MSS_CLAMPED,
	STAT_DROP_MALFORMED,
	STAT_DROP_NOT_IPV4,
	STAT_DROP_UNKNOWN_PROTO,
	STAT_DROP_NOT_OURS,		/* neither from the LAN nor to us */
	STAT_DROP_NO_MAPPING,
	STAT_DROP_FILTERED,
	STAT_DROP_LIMIT,		/* a limit refused a new session */
	STAT_DROP_NO_PORT,
	STAT_DROP_ICMP_UNMATCHED,
	STAT_DROP_ICMP_TYPE,
	STAT_DROP_FRAG_OVERLAP,
	STAT_DROP_FRAG_TIMEOUT,
	STAT_DROP_FRAG_MEMORY,
	STAT_DROP_FRAG_BAD,
	STAT_DROP_DF_TOO_BIG,		/* answered with fragmentation needed */
	STAT_DROP_TTL,
	STAT_DROP_UPLINK,		/* the raw socket refused it */
	STAT_DROP_TUN,			/* the TUN refused it */
	STAT_DROP_ALG,			/* a helper dropped it */
	STAT_SESS_CREATED,
	STAT_SESS_EXPIRED,
	STAT_SESS_REFUSED_TOTAL,
	STAT_SESS_REFUSED_HOST,
	STAT_MAP_CREATED,
	STAT_PINHOLE_OPENED,
	STAT_PINHOLE_CLOSED,
	STAT_PINHOLE_REFUSED,
	STAT_PINHOLE_ADMITTED,		/* sessions a pinhole let in */
	STAT_MAP_EXPIRED,
	STAT_RELOADS,
	STAT_RELOAD_FAILED,
	STAT_STREAM_CONNECTIONS,	/* TCP connections a helper read */
	STAT_STREAM_MESSAGES,		/* whole messages it took */
	STAT_STREAM_HELD,		/* segments held for more bytes */
	STAT_STREAM_ACKS_SENT,		/* our ACKs for held bytes */
	STAT_STREAM_SEGMENTS_OUT,	/* segments we made */
	STAT_STREAM_RESENT,		/* batches sent again */
	STAT_STREAM_RETRANSMITS,	/* retransmissions from senders */
	STAT_STREAM_OUT_OF_ORDER,	/* segments past a gap, dropped */
	STAT_STREAM_SYN_OPEN,		/* SYNs inside open connections */
	STAT_STREAM_DEGRADED,		/* directions passed unparsed */
	STAT_STREAM_LIMIT_BUFFER,
	STAT_STREAM_LIMIT_MEMORY,
	STAT_MAX
};
extern uint64_t	 stats[STAT_MAX];
#define stat_inc(s)	(stats[(s)]++)
#define stat_add(s, n)	(stats[(s)] += (n))
const char	*stat_name(enum counter);

/* cksum.c */
uint16_t	 cksum(const void *, size_t, uint32_t);
uint32_t	 cksum_partial(const void *, size_t, uint32_t);
uint16_t	 cksum_fold(uint32_t);
void		 cksum_update16(uint16_t *, uint16_t, uint16_t);
void		 cksum_update32(uint16_t *, uint32_t, uint32_t);
uint16_t	 cksum_l4(const struct pkt *);

/* Big-endian fields of packets, in any alignment. */
static inline uint16_t
pkt_get16(const uint8_t *p)
{
	return ((uint16_t)(p[0] << 8 | p[1]));
}

static inline uint32_t
pkt_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

static inline void
pkt_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
pkt_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* pkt.c */
struct pkt {
	uint8_t		*buf;		/* the IPv4 header */
	size_t		 len;		/* total length from the header */
	unsigned	 hl;		/* IP header length */
	uint8_t		 proto;
	uint32_t	 src;		/* network byte order */
	uint32_t	 dst;
	bool		 frag;		/* MF set or offset non-zero */
	uint8_t		*l4;		/* NULL unless a whole datagram */
	size_t		 l4len;
	uint16_t	 sport;		/* host order; ICMP echo: the id */
	uint16_t	 dport;
	uint8_t		 icmp_type;
	uint8_t		 icmp_code;
	uint8_t		 tcp_flags;
	bool		 edited;	/* a helper replaced the payload */
};

#define IP_HDR_MIN	20
#define IP_DF		0x4000
#define IP_MF		0x2000
#define IP_OFFMASK	0x1fff

enum pkt_error {
	PKT_OK,
	PKT_ERR_SHORT,
	PKT_ERR_VERSION,
	PKT_ERR_HEADER,
	PKT_ERR_LENGTH,
	PKT_ERR_L4,
};

int		 pkt_parse(struct pkt *, uint8_t *, size_t);
int		 pkt_parse_inner(struct pkt *, uint8_t *, size_t);
bool		 pkt_icmp_is_error(uint8_t);
bool		 pkt_has_ports(uint8_t);
uint16_t	*pkt_l4_cksum(const struct pkt *);
void		 pkt_set_src(struct pkt *, uint32_t, uint16_t);
void		 pkt_set_dst(struct pkt *, uint32_t, uint16_t);
void		 pkt_set_ttl(struct pkt *, uint8_t);
int		 pkt_clamp_mss(struct pkt *, uint16_t);

/* rtp.c: media quality of a stream seen by a helper */
struct rtp_stats {
	uint64_t	 packets;
	uint64_t	 bytes;
	uint64_t	 first_us;	/* monotonic microseconds */
	uint64_t	 last_us;
	uint64_t	 lost_before;	/* in earlier runs (sender restarts) */
	uint32_t	 rate;		/* clock rate, Hz; 0: 8000 */
	uint32_t	 ssrc;
	uint32_t	 base_seq;
	uint32_t	 cycles;
	uint32_t	 received;	/* in this run */
	uint32_t	 duplicates;
	uint32_t	 reordered;	/* came after a later one */
	uint16_t	 max_seq;
	bool		 started;
	bool		 have_transit;
	int64_t		 last_transit;
	double		 jitter;	/* timestamp units (RFC 3550 A.8) */
};

void		 rtp_stats_packet(struct rtp_stats *, const uint8_t *, size_t,
		     uint64_t);
uint64_t	 rtp_stats_expected(const struct rtp_stats *);
uint64_t	 rtp_stats_lost(const struct rtp_stats *);
double		 rtp_stats_jitter_ms(const struct rtp_stats *);

/* timer.c */
struct timer {
	LIST_ENTRY(timer) entry;
	uint64_t	 expire;	/* seconds on the monotonic clock */
	bool		 armed;
	void		(*cb)(struct timer *, uint64_t);
};

struct timer_wheel {
	LIST_HEAD(timer_slot, timer) *slots;
	unsigned	 nslots;	/* a power of two */
	uint64_t	 now;		/* last tick processed */
	size_t		 count;
};

int		 timer_wheel_init(struct timer_wheel *, unsigned, uint64_t);
void		 timer_wheel_free(struct timer_wheel *);
void		 timer_add(struct timer_wheel *, struct timer *, uint64_t);
void		 timer_del(struct timer_wheel *, struct timer *);
unsigned	 timer_advance(struct timer_wheel *, uint64_t);

/* nat-table.c */
enum tcp_state {
	TCP_NONE,
	TCP_SYN_OUT,		/* SYN seen from the inside only */
	TCP_SYN_IN,		/* SYN seen from the outside only */
	TCP_ESTABLISHED,
	TCP_FIN,		/* FIN seen in one direction */
	TCP_CLOSING,		/* FIN both ways, or RST */
};

enum nat_node_kind {
	NODE_MAPPING,		/* proto, inside addr:port */
	NODE_SESSION_OUT,	/* proto, inside addr:port, remote addr:port */
	NODE_SESSION_IN,	/* proto, public port, remote addr:port */
	NODE_HOST,		/* inside addr */
};

struct nat_key {
	uint32_t	 a_addr;
	uint32_t	 b_addr;
	uint16_t	 a_port;
	uint16_t	 b_port;
	uint8_t		 proto;
	uint8_t		 kind;
	uint16_t	 zero;
};

struct nat_node {
	struct nat_node	*next;
	struct nat_key	 key;
};

struct nat_host {
	struct nat_node	 node;
	uint32_t	 addr;
	unsigned	 nsessions;
	unsigned	 nmappings;
};

struct alg;

/* A packet on a watched mapping; false: the filter refused it. */
typedef void	(*nat_watch_cb)(void *, const struct pkt *, int, bool);

struct nat_mapping {
	struct nat_node	 node;
	struct nat_host	*host;
	uint8_t		 proto;
	uint32_t	 in_addr;
	uint16_t	 in_port;	/* host order */
	uint16_t	 pub_port;	/* host order */
	unsigned	 nsessions;
	unsigned	 holds;		/* references from helpers */
	uint64_t	 created;
	LIST_HEAD(, nat_session) sessions;
	LIST_HEAD(, nat_pinhole) pinholes;
	/* A helper watching its packets (media quality); see nat.c. */
	nat_watch_cb	 watch;
	void		*watch_arg;
};

/*
 * A pinhole: inbound traffic from a remote (address 0: any, port 0: any
 * port) may start sessions on a mapping whatever the filtering, until it
 * is closed or expires.  Helpers open them (media, registrations) and tie
 * them to an owner, so that a dialog's pinholes close together.
 */
struct nat_owner {
	LIST_HEAD(, nat_pinhole) pinholes;
};

struct nat_pinhole {
	LIST_ENTRY(nat_pinhole) map_entry;
	LIST_ENTRY(nat_pinhole) owner_entry;
	struct nat_mapping *map;
	struct nat_owner *owner;
	struct timer	 timer;
	uint32_t	 rem_addr;
	uint16_t	 rem_port;
	uint64_t	 expires;	/* 0: until closed */
};

enum nat_dir { DIR_OUT, DIR_IN };

struct nat_session {
	struct nat_node	 node_out;
	struct nat_node	 node_in;
	struct nat_mapping *map;
	LIST_ENTRY(nat_session) entry;
	struct timer	 timer;
	uint32_t	 rem_addr;
	uint16_t	 rem_port;	/* host order */
	uint8_t		 tcp_state;
	uint8_t		 tcp_fin;	/* FIN seen: bit 1 << enum nat_dir */
	uint64_t	 created;
	uint64_t	 last;
	uint64_t	 pkts[2];	/* by enum nat_dir */
	uint64_t	 bytes[2];
	struct stream	*stream;	/* a helper reads it as a stream */
};

enum nat_refusal {
	NAT_OK,
	NAT_REFUSED_TOTAL,
	NAT_REFUSED_HOST,
	NAT_REFUSED_PORT,
};

int		 nat_table_init(const struct config *, uint64_t);
void		 nat_table_configure(const struct config *);
void		 nat_table_free(void);
struct nat_mapping *nat_mapping_find(uint8_t, uint32_t, uint16_t);
struct nat_mapping *nat_mapping_public(uint8_t, uint16_t);
struct nat_mapping *nat_mapping_get(uint8_t, uint32_t, uint16_t,
		     enum nat_refusal *);
void		 nat_mapping_hold(struct nat_mapping *);
void		 nat_mapping_release(struct nat_mapping *);
void		 nat_mapping_gc(struct nat_mapping *);
void		 nat_mapping_flush(struct nat_mapping *);
void		 nat_mapping_watch(struct nat_mapping *, nat_watch_cb, void *);
int		 nat_mapping_get_pair(uint8_t, uint32_t, uint16_t, uint16_t,
		     struct nat_mapping **, struct nat_mapping **,
		     enum nat_refusal *);
int		 nat_mapping_rebind(struct nat_mapping *, uint16_t);
struct nat_pinhole *nat_pinhole_open(struct nat_mapping *, struct nat_owner *,
		     uint32_t, uint16_t, uint64_t);
void		 nat_pinhole_close(struct nat_pinhole *);
void		 nat_pinhole_extend(struct nat_pinhole *, uint64_t);
void		 nat_owner_init(struct nat_owner *);
void		 nat_owner_close(struct nat_owner *);
bool		 nat_pinhole_allows(const struct nat_mapping *, uint32_t,
		     uint16_t);
size_t		 nat_pinhole_count(void);
struct nat_session *nat_session_out(uint8_t, uint32_t, uint16_t, uint32_t,
		     uint16_t);
struct nat_session *nat_session_in(uint8_t, uint16_t, uint32_t, uint16_t);
struct nat_session *nat_session_create(struct nat_mapping *, uint32_t,
		     uint16_t, enum nat_refusal *);
void		 nat_session_touch(struct nat_session *, enum nat_dir, size_t);
void		 nat_session_tcp(struct nat_session *, enum nat_dir, uint8_t);
bool		 nat_session_tcp_open(const struct nat_session *);
void		 nat_session_remove(struct nat_session *);
unsigned	 nat_table_expire(uint64_t);
uint64_t	 nat_now(void);
uint64_t	 nat_now_us(void);
void		 nat_set_now_us(uint64_t);
void		 nat_set_now(uint64_t);
size_t		 nat_session_count(void);
size_t		 nat_mapping_count(void);
typedef void	(*nat_walk_cb)(struct nat_session *, void *);
void		 nat_table_walk(nat_walk_cb, void *);
const char	*nat_tcp_state_name(uint8_t);

/* frag.c */
int		 frag_init(size_t, unsigned);
void		 frag_configure(size_t, unsigned);
void		 frag_free(void);
int		 frag_input(struct pkt *, uint64_t, uint8_t **, size_t *);
unsigned	 frag_expire(uint64_t);
typedef int	(*frag_emit_cb)(const uint8_t *, size_t, void *);
int		 frag_output(const uint8_t *, size_t, unsigned, frag_emit_cb,
		     void *);
size_t		 frag_pending(void);

/* stream.c (the rest is in alg.h) */
void		 stream_free(struct stream *);
void		 stream_free_all(void);

/* nat.c */
struct nat_io {
	int		(*to_wan)(const uint8_t *, size_t);	/* raw socket */
	int		(*to_lan)(const uint8_t *, size_t);	/* the TUN */
	/* LAN-bound packets from the public address (raw socket too). */
	int		(*to_lan_routed)(const uint8_t *, size_t);
};

int		 nat_init(const struct config *, const struct nat_io *);
void		 nat_configure(const struct config *);
void		 nat_input(uint8_t *, size_t);
void		 nat_tick(uint64_t);

/* tun.c */
int		 tun_open(const char *, int, char **);
int		 tun_write(const uint8_t *, size_t);
void		 tun_set_fd(int);

/* uplink.c */
int		 uplink_open(char **);
void		 uplink_set_fd(int);
int		 uplink_send(const uint8_t *, size_t);
void		 uplink_flush(void);
int		 uplink_iface(const char *, uint32_t *, int *, char **);

/* capture.c */
typedef bool	(*capture_filter_cb)(const struct pkt *, void *);
int		 capture_start(const char *, const char *, capture_filter_cb,
		     void *, void (*)(void *), char **);
void		 capture_stop(void);
bool		 capture_status(const char **, const char **, uint64_t *);
void		 capture_packet(const uint8_t *, size_t);
void		 capture_flush(void);

/* metrics.c */
int		 metrics_init(struct event_base *, const char *, char **);
void		 metrics_cleanup(void);

/* control.c */
int		 control_init(struct event_base *, const char *, char **);
void		 control_cleanup(void);
void		 control_command(const char *, struct evbuffer *);

/* sipnatd.c */
extern struct config *conf;
int		 sipnatd_reload(char **);

#endif /* SIPNAT_H */
