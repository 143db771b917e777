#!/bin/bash
#
# test-sip-tcp-stream.sh: the SIP ALG reads SIP over TCP as a stream,
# whatever way TCP cuts it.  A scripted phone (siptcp.py phone in lan1,
# from 10.0.0.11:5060, which its Via and Contact name) talks to a scripted
# provider (siptcp.py provider in wan1, on 198.51.100.10:5060) over one
# connection, in steps, each end waiting for the other's answers:
#   bytes       an OPTIONS written a byte a send (TCP_NODELAY, 2 ms pause),
#               answered in one send;
#   pair        a REGISTER and a MESSAGE in one send, both answered in one;
#   straddle    an OPTIONS and half a MESSAGE in one send, the rest 0.3 s
#               later; answered the same way;
#   lost-lan    an INFO whose first segment nftables drops in gw, ahead of
#               sipnatd, so the phone sends it again; answered a byte a
#               send;
#   lost-wan    a NOTIFY whose rewritten segment nftables drops in wan1,
#               after sipnatd, so the phone sends it again and sipnatd
#               must send its rewritten copy again;
#   lost-reply  a MESSAGE answered "202 Accepted", whose rewritten segment
#               nftables drops in lan1, so the provider sends it again and
#               sipnatd must send its copy again;
#   big         a MESSAGE of 3.4 KB (a text body), larger than the MTU,
#               answered by 3.3 KB, each in one send;
#   gap         a MESSAGE of 4 KB whose second segment (of three) nftables
#               drops in gw, so sipnatd gets the third out of order; its
#               3.9 KB answer likewise loses its second segment in inet;
#   lost-big    a PUBLISH of 3.4 KB whose rewritten first segment (of
#               three) nftables drops in wan1, so the provider sees the
#               next two out of order (duplicate ACKs, SACK blocks) and
#               sipnatd must send the batch again; its 3.3 KB "202
#               Accepted" likewise loses its rewritten first segment in
#               lan1.
# After answering "pair", the provider also sends a SYN with a random ISN
# on the connection's ports from a raw socket (a forger who knows them):
# it must reach the phone (whose kernel answers it with an ACK, RFC 5961)
# and change nothing for the connection.
# No message names the phone's address but in Via and Contact.
# Asserts:
#   - the provider gets the connection from 203.0.113.1 (a public port);
#   - every request arrives byte for byte as the phone sent it with
#     "10.0.0.11:5060" turned into "203.0.113.1:<public port>" and nothing
#     else changed (Content-Length neither), message by message; every
#     response reaches the phone byte for byte as the provider sent it
#     (built from the request as it arrived: Via, From, To, Call-ID, CSeq,
#     and a REGISTER's Contact) with "203.0.113.1:<public port>" turned
#     back into "10.0.0.11:5060" (each end checks as it reads, and the
#     messages each end kept are compared again afterwards);
#   - the connection closes cleanly: each end's FIN is acknowledged and
#     each gets the other's (both sockets reach CLOSE), and no RST
#     reaches either end: sequence and ack numbers stayed consistent;
#   - the phone did write a byte a segment (nftables in lan1 counts at
#     least as many 1-byte segments as the OPTIONS has bytes), and so did
#     the provider (the INFO's answer); each of the 7 drop rules dropped
#     exactly one segment and then let its message through, and the phone
#     retransmitted at least twice, the provider at least once;
#   - the INFO left the phone exactly twice (once lost in gw): the
#     provider's ACK of it reached the phone although it rode on segments
#     of the answer that sipnatd held.
#   - the forged SYN reached the phone (one SYN without ACK in lan1).
# With sipnatd: tcp_stream.messages grew by 22 (11 requests, 11
# responses), tcp_stream.syn_in_open by 1 (the forged SYN left the stream
# as it was), tcp_stream.acks_sent > 0 (sipnatd acknowledged held bytes
# itself), tcp_stream.resent > 0, tcp_stream.out_of_order > 0,
# tcp_stream.degraded did not grow, sip.messages.rewritten grew by at
# least 22; sipnatd exits cleanly (no sanitizer report).
#
# E2E_SIP_CONF="section.key = value" adds a key to the config (e.g.
# "sip.ports = 5060:off" to see this test fail without the ALG).
# E2E_CAPTURE=1 runs tcpdump in lan1 and wan1 (lan1.pcap, wan1.pcap in the
# test's directory; keep it with E2E_KEEP=1).

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

PORT=5060			# the phone's: outside the NAT range
SIPTCP=$E2E_DIR/siptcp.py
PROVDIR=$E2E_TMP/prov
PHONEDIR=$E2E_TMP/phone
NFT=sipnat_tcpstream_$E2E_ID	# the drop rules and counters
# Requests in siptcp.py's steps (as many responses).
NMSG=$("$E2E_PYTHON" -B -c 'import sys; sys.path.insert(0, sys.argv[1]); import siptcp
print(sum(len(s.reqs) for s in siptcp.STEPS))' "$E2E_DIR") || exit 1
cd "$E2E_TMP" || exit 1

# A counter from sipnatctl stats (0 if absent).
stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}

# The packets a named nftables counter in NS has counted.
nft_count() {
	e2e_exec "$1" nft list counter ip "$NFT" "$2" |
	    awk '$1 == "packets" { print $2 }'
}

# A string as an nftables hex constant.
hex() {
	printf '0x%s' "$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')"
}

# RULE once for each TCP header length (doff 5 to 15), with %PAY% the
# offset of the payload in the TCP header, in bits, and %LEN1% the IP
# length of a segment that carries one byte: segments sipnatd builds carry
# the options of the sender's last segment, SACK blocks included.
per_doff() {
	local d r

	for d in $(seq 5 15); do
		r=${1//%PAY%/$((d * 32))}
		r=${r//%LEN1%/$((20 + d * 4 + 1))}
		echo "tcp doff $d $r"
	done
}

# Rules (chain c-NAME) that drop, once, the first TCP segment whose
# payload starts with WORD (at most 16 bytes) and that matches MATCH,
# remembering it in the dynamic set NAME; counters NAME (dropped) and
# NAME_passed (matched later).
drop_once() {
	local match=$1 word=$2 name=$3 bits=$((${#2} * 8))

	echo "counter $name { }"
	echo "counter ${name}_passed { }"
	echo "set $name { type inet_service; flags dynamic; }"
	echo "chain c-$name {"
	per_doff "$match @th,%PAY%,$bits $(hex "$word") tcp dport != @$name add @$name { tcp dport } counter name \"$name\" drop"
	per_doff "$match @th,%PAY%,$bits $(hex "$word") tcp dport @$name counter name \"${name}_passed\""
	echo "}"
}

# --- the topology, the drop rules and counters
e2e_setup

# The ends send segments of one MSS (no GSO), so that nftables on the
# way sees each segment as sipnatd will.
for ns in lan1 wan1; do
	e2e_exec $ns ip link set dev eth0 gso_max_segs 1 ||
	    fail "cannot turn GSO off on $ns's eth0"
done

# gw, ahead of sipnatd: the phone's INFO, and the first segment from the
# phone that starts inside the body of "Z"s (its second of three).
e2e_exec gw nft -f - <<EOF || fail "cannot load the drop rules in gw"
table ip $NFT {
	$(drop_once "ip saddr $LAN1 ip daddr $WAN1 tcp sport $PORT tcp dport 5060" "INFO" lost_info)
	$(drop_once "ip saddr $LAN1 ip daddr $WAN1 tcp sport $PORT tcp dport 5060" "ZZZZZZZZ" lost_zzz)
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		iifname "br0" jump c-lost_info
		iifname "br0" jump c-lost_zzz
	}
}
EOF
# inet, ahead of sipnatd: the first segment from the provider that starts
# inside the body of "Y"s (its second of three).
e2e_exec inet nft -f - <<EOF || fail "cannot load the drop rule in inet"
table ip $NFT {
	$(drop_once "ip saddr $WAN1 ip daddr $GW_WAN tcp sport 5060" "YYYYYYYY" lost_yyy)
	chain through {
		type filter hook forward priority -300; policy accept;
		jump c-lost_yyy
	}
}
EOF
# wan1, after sipnatd: the rewritten NOTIFY and the rewritten PUBLISH's
# first segment (of three) are lost on the way to the provider; 1-byte
# segments from the provider; RSTs to it.
e2e_exec wan1 nft -f - <<EOF || fail "cannot load the rules in wan1"
table ip $NFT {
	$(drop_once "ip saddr $GW_WAN ip daddr $WAN1 tcp dport 5060" "NOTIFY" lost_notify)
	$(drop_once "ip saddr $GW_WAN ip daddr $WAN1 tcp dport 5060" "PUBLISH" lost_publish)
	counter rst { }
	counter one_byte { }
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		iifname "eth0" jump c-lost_notify
		iifname "eth0" jump c-lost_publish
		ip protocol tcp tcp flags & rst != 0 counter name "rst"
	}
	chain out {
		type filter hook output priority -300; policy accept;
		$(per_doff "ip saddr $WAN1 tcp sport 5060 ip length %LEN1% counter name \"one_byte\"")
	}
}
EOF
# lan1, after sipnatd: the rewritten short "SIP/2.0 202" and the long
# one's first segment are lost on the way to the phone; 1-byte segments
# from the phone and its INFOs; RSTs to it.
e2e_exec lan1 nft -f - <<EOF || fail "cannot load the rules in lan1"
table ip $NFT {
	$(drop_once "ip saddr $WAN1 ip daddr $LAN1 tcp sport 5060 ip length < 1000" "SIP/2.0 202 " lost_202)
	$(drop_once "ip saddr $WAN1 ip daddr $LAN1 tcp sport 5060 ip length >= 1000" "SIP/2.0 202 " lost_202_big)
	counter rst { }
	counter one_byte { }
	counter info_out { }
	counter syn_in { }
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		iifname "eth0" jump c-lost_202
		iifname "eth0" jump c-lost_202_big
		ip protocol tcp tcp flags & rst != 0 counter name "rst"
		ip protocol tcp tcp flags & (syn | ack) == syn counter name "syn_in"
	}
	chain out {
		type filter hook output priority -300; policy accept;
		$(per_doff "ip saddr $LAN1 tcp sport $PORT ip length %LEN1% counter name \"one_byte\"")
		$(per_doff "ip saddr $LAN1 tcp sport $PORT @th,%PAY%,32 $(hex INFO) counter name \"info_out\"")
	}
}
EOF

e2e_write_conf "$E2E_TMP/sipnat.ini" ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

declare -A S=()
if e2e_is_sipnatd; then
	for k in tcp_stream.messages tcp_stream.acks_sent tcp_stream.resent \
	    tcp_stream.degraded tcp_stream.out_of_order \
	    tcp_stream.retransmits_seen tcp_stream.syn_in_open \
	    sip.messages.rewritten; do
		S[$k]=$(stat "$k")
	done
fi

# --- the conversation
if [ "${E2E_CAPTURE:-0}" = 1 ]; then
	for ns in lan1 wan1; do
		e2e_bg $ns "$E2E_TMP/$ns.tcpdump" tcpdump -i eth0 -n -U --immediate-mode -s 0 \
		    -w "$E2E_TMP/$ns.pcap" tcp port 5060
		e2e_on_exit "kill -INT $E2E_LAST_PID; sleep 0.2"
	done
	sleep 1
fi
e2e_bg wan1 "$E2E_TMP/prov.log" "$E2E_PYTHON" "$SIPTCP" provider \
    --bind "$WAN1:5060" --private "$LAN1:$PORT" --dir "$PROVDIR" \
    --forge-syn-after pair
PROV=$E2E_LAST_PID
e2e_wait_for 5 grep -q ready "$E2E_TMP/prov.log" ||
    fail "the provider did not start in wan1"
t0=${EPOCHREALTIME/./}
e2e_bg lan1 "$E2E_TMP/phone.log" "$E2E_PYTHON" "$SIPTCP" phone \
    --bind "$LAN1:$PORT" --to "$WAN1:5060" --dir "$PHONEDIR"
PHONE=$E2E_LAST_PID

# Both end by themselves (each waits at most 10 s for the other's bytes).
e2e_wait_for 40 eval '! kill -0 "$PHONE" 2>/dev/null && ! kill -0 "$PROV" 2>/dev/null'
e2e_kill "$PHONE" 1
phone_rc=$?
e2e_kill "$PROV" 1
prov_rc=$?
secs=$(((${EPOCHREALTIME/./} - t0) / 1000))
e2e_log "the conversation took $((secs / 1000)).$(printf %03d $((secs % 1000))) s"

show() {
	echo "--- provider (wan1)"
	cat "$E2E_TMP/prov.log"
	echo "--- phone (lan1)"
	cat "$E2E_TMP/phone.log"
}
pv=$(grep '^verdict' "$E2E_TMP/prov.log")
fv=$(grep '^verdict' "$E2E_TMP/phone.log")
[ "$prov_rc" = 0 ] && [ "$phone_rc" = 0 ] && [ -n "$pv" ] && [ -n "$fv" ] || {
	show
	e2e_sipnatd_alive || echo "--- the gateway is no longer running"
	fail "provider: ${pv:-no verdict (status $prov_rc)}; phone: ${fv:-no verdict (status $phone_rc)}"
}
e2e_log "provider: $pv"
e2e_log "phone: $fv"

# --- what each end kept, compared again
pub=$(awk '$1 == "public" { print $2 }' "$E2E_TMP/prov.log")
[[ $pub == "$GW_WAN":+([0-9]) ]] ||
    fail "the provider got the connection from '$pub', not from $GW_WAN"
"$E2E_PYTHON" "$SIPTCP" compare --sent "$PHONEDIR" --got "$PROVDIR" \
    --prefix req --replace "$LAN1:$PORT" "$pub" >"$E2E_TMP/cmp-req.log" || {
	cat "$E2E_TMP/cmp-req.log"
	fail "the requests the provider kept are not the phone's with $LAN1:$PORT turned into $pub"
}
"$E2E_PYTHON" "$SIPTCP" compare --sent "$PROVDIR" --got "$PHONEDIR" \
    --prefix resp --replace "$pub" "$LAN1:$PORT" >"$E2E_TMP/cmp-resp.log" || {
	cat "$E2E_TMP/cmp-resp.log"
	fail "the responses the phone kept are not the provider's with $pub turned into $LAN1:$PORT"
}
e2e_log "again from the files: $(tail -n 1 "$E2E_TMP/cmp-req.log"), $(tail -n 1 "$E2E_TMP/cmp-resp.log")"

# --- the way the bytes went
n=$(grep -c '^closed: FIN both ways' "$E2E_TMP/prov.log" "$E2E_TMP/phone.log" |
    awk -F: '{ s += $2 } END { print s }')
[ "$n" = 2 ] || { show; fail "the connection did not close cleanly at both ends"; }
for ns in lan1 wan1; do
	n=$(nft_count $ns rst)
	[ "${n:-0}" = 0 ] || fail "$ns got $n RST segments"
done
want=$(awk '/^step bytes: sent/ { print $(NF - 1) }' "$E2E_TMP/phone.log")
n=$(nft_count lan1 one_byte)
[ "$n" -ge "${want:-1}" ] ||
    fail "lan1 sent $n 1-byte segments, the OPTIONS has $want bytes: the phone's bytes were coalesced"
want2=$(awk '/^step lost-lan:.*answered \(bytes\)/ { print $(NF - 1) }' "$E2E_TMP/prov.log")
n2=$(nft_count wan1 one_byte)
[ "$n2" -ge "${want2:-1}" ] ||
    fail "wan1 sent $n2 1-byte segments, the INFO's answer has $want2 bytes: the provider's bytes were coalesced"
for r in "gw lost_info" "gw lost_zzz" "inet lost_yyy" "wan1 lost_notify" \
    "wan1 lost_publish" "lan1 lost_202" "lan1 lost_202_big"; do
	read -r ns rule <<<"$r"
	n3=$(nft_count "$ns" "$rule")
	[ "${n3:-0}" = 1 ] || fail "the $rule rule in $ns dropped ${n3:-0} segments, not 1"
	[ "$(nft_count "$ns" "${rule}_passed")" -ge 1 ] ||
	    fail "the $rule rule in $ns: nothing of that message passed afterwards"
done
rp=$(awk '/^closed:/ { print $NF }' "$E2E_TMP/phone.log")
rv=$(awk '/^closed:/ { print $NF }' "$E2E_TMP/prov.log")
[ "${rp:-0}" -ge 2 ] && [ "${rv:-0}" -ge 1 ] ||
    fail "retransmits: phone ${rp:-0} (expected 2 or more), provider ${rv:-0} (expected 1 or more)"
# The INFO leaves lan1 twice (once lost in gw); a third time means the
# phone saw no ACK for it in time: the provider's ACK came on segments
# sipnatd held (the answer, a byte a segment), and was not passed on.
n4=$(nft_count lan1 info_out)
[ "${n4:-0}" -le 2 ] ||
    fail "the phone sent the INFO $n4 times, not 2: the provider's ACK of it rode on held bytes of its answer and did not reach the phone until the phone sent it again"
n5=$(nft_count lan1 syn_in)
[ "${n5:-0}" = 1 ] ||
    fail "the phone got ${n5:-0} SYNs without ACK, not 1: the forged SYN did not reach it"
e2e_log "one byte a segment: $n from the phone ($want bytes), $n2 from the provider ($want2 bytes); one segment dropped by each of the 7 rules; retransmits: phone $rp, provider $rv; no RST"

# --- sipnatd's counters
if e2e_is_sipnatd; then
	d=()
	for k in "${!S[@]}"; do
		d+=("$k +$(($(stat "$k") - ${S[$k]}))")
	done
	e2e_log "sipnatctl: $(printf '%s\n' "${d[@]}" | sort | paste -sd, - | sed 's/,/, /g')"
	n=$(($(stat tcp_stream.messages) - ${S[tcp_stream.messages]}))
	[ "$n" = $((2 * NMSG)) ] ||
	    fail "tcp_stream.messages grew by $n, expected $((2 * NMSG)) ($NMSG requests, $NMSG responses)"
	[ "$(stat tcp_stream.acks_sent)" -gt "${S[tcp_stream.acks_sent]}" ] ||
	    fail "tcp_stream.acks_sent did not grow: sipnatd never acknowledged held bytes"
	[ "$(stat tcp_stream.resent)" -gt "${S[tcp_stream.resent]}" ] ||
	    fail "tcp_stream.resent did not grow: the lost rewritten segments were not sent again by sipnatd"
	[ "$(stat tcp_stream.out_of_order)" -gt "${S[tcp_stream.out_of_order]}" ] ||
	    fail "tcp_stream.out_of_order did not grow: sipnatd never saw the segments after a lost one"
	n=$(($(stat tcp_stream.syn_in_open) - ${S[tcp_stream.syn_in_open]}))
	[ "$n" = 1 ] ||
	    fail "tcp_stream.syn_in_open grew by $n, not 1 (the forged SYN)"
	[ "$(stat tcp_stream.degraded)" = "${S[tcp_stream.degraded]}" ] ||
	    fail "tcp_stream.degraded grew: the connection was passed unparsed"
	n=$(($(stat sip.messages.rewritten) - ${S[sip.messages.rewritten]}))
	[ "$n" -ge $((2 * NMSG)) ] ||
	    fail "sip.messages.rewritten grew by $n, expected at least $((2 * NMSG))"
fi

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
if grep -qE 'AddressSanitizer|runtime error|LeakSanitizer' "$E2E_LOG"; then
	fail "sanitizer report in $E2E_LOG"
fi
pass "SIP over TCP a byte at a time, two to a segment, lost and re-cut, and a forged SYN: every byte as it should be"
