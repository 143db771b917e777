/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include "sipnat.h"

/* Counters: one array of dotted keys, bumped without locks (one thread). */

uint64_t	stats[STAT_MAX];

static const char *stat_names[STAT_MAX] = {
	[STAT_PKT_IN_LAN] = "packets.in.lan",
	[STAT_PKT_IN_WAN] = "packets.in.wan",
	[STAT_PKT_OUT_WAN] = "packets.out.wan",
	[STAT_PKT_OUT_LAN] = "packets.out.lan",
	[STAT_BYTES_OUT_WAN] = "bytes.out.wan",
	[STAT_BYTES_OUT_LAN] = "bytes.out.lan",
	[STAT_HAIRPIN] = "packets.hairpin",
	[STAT_TO_GATEWAY] = "packets.to_gateway",
	[STAT_ICMP_ERR_OUT] = "icmp.errors.to_wan",
	[STAT_ICMP_ERR_IN] = "icmp.errors.to_lan",
	[STAT_ICMP_SENT] = "icmp.generated",
	[STAT_FRAG_IN] = "fragments.in",
	[STAT_FRAG_REASSEMBLED] = "fragments.reassembled",
	[STAT_FRAG_OUT] = "fragments.out",
	[STAT_MSS_CLAMPED] = "tcp.mss_clamped",
	[STAT_DROP_MALFORMED] = "drop.malformed",
	[STAT_DROP_NOT_IPV4] = "drop.not_ipv4",
	[STAT_DROP_UNKNOWN_PROTO] = "drop.unknown_protocol",
	[STAT_DROP_NOT_OURS] = "drop.not_ours",
	[STAT_DROP_NO_MAPPING] = "drop.no_mapping",
	[STAT_DROP_FILTERED] = "drop.filtered",
	[STAT_DROP_LIMIT] = "drop.limit",
	[STAT_DROP_NO_PORT] = "drop.no_port",
	[STAT_DROP_ICMP_UNMATCHED] = "drop.icmp_unmatched",
	[STAT_DROP_ICMP_TYPE] = "drop.icmp_type",
	[STAT_DROP_FRAG_OVERLAP] = "drop.fragment_overlap",
	[STAT_DROP_FRAG_TIMEOUT] = "drop.fragment_timeout",
	[STAT_DROP_FRAG_MEMORY] = "drop.fragment_memory",
	[STAT_DROP_FRAG_BAD] = "drop.fragment_bad",
	[STAT_DROP_DF_TOO_BIG] = "drop.too_big_df",
	[STAT_DROP_TTL] = "drop.ttl",
	[STAT_DROP_UPLINK] = "drop.uplink_send",
	[STAT_DROP_TUN] = "drop.tun_write",
	[STAT_DROP_ALG] = "drop.helper",
	[STAT_SESS_CREATED] = "sessions.created",
	[STAT_SESS_EXPIRED] = "sessions.expired",
	[STAT_SESS_REFUSED_TOTAL] = "sessions.refused.total_limit",
	[STAT_SESS_REFUSED_HOST] = "sessions.refused.host_limit",
	[STAT_MAP_CREATED] = "mappings.created",
	[STAT_PINHOLE_OPENED] = "pinholes.opened",
	[STAT_PINHOLE_CLOSED] = "pinholes.closed",
	[STAT_PINHOLE_REFUSED] = "pinholes.refused",
	[STAT_PINHOLE_ADMITTED] = "pinholes.admitted",
	[STAT_MAP_EXPIRED] = "mappings.expired",
	[STAT_RELOADS] = "reloads",
	[STAT_RELOAD_FAILED] = "reloads.failed",
	[STAT_STREAM_CONNECTIONS] = "tcp_stream.connections",
	[STAT_STREAM_MESSAGES] = "tcp_stream.messages",
	[STAT_STREAM_HELD] = "tcp_stream.segments_held",
	[STAT_STREAM_ACKS_SENT] = "tcp_stream.acks_sent",
	[STAT_STREAM_SEGMENTS_OUT] = "tcp_stream.segments_out",
	[STAT_STREAM_RESENT] = "tcp_stream.resent",
	[STAT_STREAM_RETRANSMITS] = "tcp_stream.retransmits_seen",
	[STAT_STREAM_OUT_OF_ORDER] = "tcp_stream.out_of_order",
	[STAT_STREAM_SYN_OPEN] = "tcp_stream.syn_in_open",
	[STAT_STREAM_DEGRADED] = "tcp_stream.degraded",
	[STAT_STREAM_LIMIT_BUFFER] = "tcp_stream.limit.buffer",
	[STAT_STREAM_LIMIT_MEMORY] = "tcp_stream.limit.memory",
};

/* The dotted name of a counter. */
const char *
stat_name(enum counter s)
{
	if (s >= STAT_MAX || stat_names[s] == NULL)
		return ("unknown");
	return (stat_names[s]);
}
