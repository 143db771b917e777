#!/bin/bash
#
# test-mapping.sh: how sipnatd maps inside endpoints to public ports.
#  - Endpoint-independent mapping (RFC 4787 REQ-1): one socket of lan1
#    (local port 40000) sends to wan1 and to wan2; both see it as the same
#    public address and port.
#  - Two LAN hosts using the same source port (15000, inside the NAT range)
#    get distinct public ports; the first keeps 15000 (port preservation),
#    the second gets another port of the same parity (RFC 4787 REQ-4).
#  - Datagrams from wan1 to each public port reach the right host only.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
EIM_PORT=40000
SAME_PORT=15000

wait_line() {
	e2e_wait_for "$3" grep -qE "$2" "$1"
}

# One request from NS bound to SRC to the echo at DST:7000; prints the
# public endpoint the echo saw.
seen_by() {
	local out

	out=$(e2e_exec "$1" "$E2E_PYTHON" "$FLOW" udp-send --to "$3:7000" \
	    --bind "$2" --timeout 2 --print-peer) || {
		echo "no reply: $out"
		return 1
	}
	[[ $out == *" from $3:7000" ]] || {
		echo "reply not from $3:7000: $out"
		return 1
	}
	echo "${out%% *}"
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

E1=$E2E_TMP/echo-wan1.log
E2=$E2E_TMP/echo-wan2.log
e2e_bg wan1 "$E1" "$E2E_PYTHON" "$FLOW" udp-echo --bind "0.0.0.0:7000" --timeout 30
ECHO1_PID=$E2E_LAST_PID
e2e_bg wan2 "$E2" "$E2E_PYTHON" "$FLOW" udp-echo --bind "0.0.0.0:7000" --timeout 30
wait_line "$E1" ready 5 && wait_line "$E2" ready 5 ||
    fail "the echo servers did not start"

# --- endpoint-independent mapping
p1=$(seen_by lan1 "$LAN1:$EIM_PORT" "$WAN1") || fail "lan1 -> wan1: $p1"
p2=$(seen_by lan1 "$LAN1:$EIM_PORT" "$WAN2") || fail "lan1 -> wan2: $p2"
[ "${p1%:*}" = "$GW_WAN" ] || fail "wan1 saw lan1 as $p1, not from $GW_WAN"
[ "$p1" = "$p2" ] ||
    fail "mapping is not endpoint-independent: wan1 saw $LAN1:$EIM_PORT as $p1, wan2 as $p2"
n=$(e2e_ctl -j sessions | grep -o "\"inside\":\"$LAN1:$EIM_PORT\",\"public\":\"$p1\"" | wc -l)
[ "$n" = 2 ] || {
	e2e_ctl sessions
	fail "expected two sessions of $LAN1:$EIM_PORT on $p1, found $n"
}
e2e_log "$LAN1:$EIM_PORT is $p1 for wan1 and wan2 alike"

# --- the same source port on two hosts
pa=$(seen_by lan1 "$LAN1:$SAME_PORT" "$WAN1") || fail "lan1:$SAME_PORT -> wan1: $pa"
pb=$(seen_by lan2 "$LAN2:$SAME_PORT" "$WAN1") || fail "lan2:$SAME_PORT -> wan1: $pb"
e2e_log "$LAN1:$SAME_PORT is $pa, $LAN2:$SAME_PORT is $pb"
[ "${pa%:*}" = "$GW_WAN" ] && [ "${pb%:*}" = "$GW_WAN" ] ||
    fail "not the public address: $pa, $pb"
[ "$pa" != "$pb" ] || fail "lan1 and lan2 got the same public endpoint $pa"
[ "${pa##*:}" = "$SAME_PORT" ] ||
    fail "port not preserved: the first host's port $SAME_PORT became ${pa##*:}"
portb=${pb##*:}
[ "$portb" -ge 10000 ] && [ "$portb" -le 32767 ] ||
    fail "lan2's public port $portb is outside the NAT range"
[ $((portb % 2)) = $((SAME_PORT % 2)) ] ||
    fail "lan2's public port $portb lost the parity of $SAME_PORT"

# --- replies go to the right host: from wan1:7000 (the sessions' remote
# endpoint) to each public port, datagrams of different sizes.
e2e_kill "$ECHO1_PID"
R1=$E2E_TMP/recv-lan1.log
R2=$E2E_TMP/recv-lan2.log
e2e_bg lan1 "$R1" "$E2E_PYTHON" "$FLOW" udp-recv --bind "$LAN1:$SAME_PORT" --timeout 10
e2e_bg lan2 "$R2" "$E2E_PYTHON" "$FLOW" udp-recv --bind "$LAN2:$SAME_PORT" --timeout 10
wait_line "$R1" ready 5 && wait_line "$R2" ready 5 || fail "the receivers did not start"
for x in "${pa##*:} 111" "$portb 222"; do
	read -r port size <<<"$x"
	e2e_exec wan1 "$E2E_PYTHON" "$FLOW" udp-send --bind "$WAN1:7000" \
	    --to "$GW_WAN:$port" --size "$size" --no-reply --timeout 0.1 >/dev/null
done
wait_line "$R1" "^$WAN1:7000 111\$" 3 ||
    fail "the datagram to $pa did not reach lan1 ($(cat "$R1"))"
wait_line "$R2" "^$WAN1:7000 222\$" 3 ||
    fail "the datagram to $pb did not reach lan2 ($(cat "$R2"))"
sleep 0.2
grep -q " 222\$" "$R1" && fail "lan1 got lan2's datagram"
grep -q " 111\$" "$R2" && fail "lan2 got lan1's datagram"
e2e_log "datagrams to $pa and $pb reached lan1 and lan2 respectively"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "endpoint-independent mapping, distinct ports, port preservation"
