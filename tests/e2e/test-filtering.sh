#!/bin/bash
#
# test-filtering.sh: which datagrams from outside a mapping lets in.
#  - Default, address-and-port-dependent filtering: once lan1 has a mapping
#    to wan1:7000, a datagram from wan3 to that public port does not reach
#    lan1, nor does one from wan1 from another port; sipnatctl stats
#    drop.filtered counts each.  One from wan1:7000 does reach lan1.
#  - "sipnatctl reload" with nat.filtering = endpoint-independent, no
#    restart: wan3's datagram now reaches lan1, from wan3's address.
#  - SIGHUP back to address-and-port-dependent: wan2, which lan1 never
#    sent to, is kept out again.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
PORT=40000
CONF=$E2E_TMP/sipnat.ini

wait_line() {
	e2e_wait_for "$3" grep -qE "$2" "$1"
}

stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

stat_above() {
	[ "$(stat "$1")" -gt "$2" ]
}

# One datagram of SIZE bytes from NS bound to SRC to the public port.
poke() {
	e2e_exec "$1" "$E2E_PYTHON" "$FLOW" udp-send --bind "$2" \
	    --to "$GW_WAN:$PUBPORT" --size "$3" --no-reply --timeout 0.1 >/dev/null
}

# A datagram must be kept out: poke it, check drop.filtered went up and
# lan1's receiver got nothing of that size.
must_drop() {
	local ns=$1 src=$2 size=$3 f

	f=$(stat drop.filtered)
	poke "$ns" "$src" "$size"
	e2e_wait_for 2 stat_above drop.filtered "$f" ||
	    fail "drop.filtered did not count the datagram from $src (still $f)"
	sleep 0.3
	grep -q " $size\$" "$RECV" && fail "a datagram from $src reached lan1 through $PUBPORT: $(cat "$RECV")"
	e2e_log "from $src: dropped, drop.filtered $f -> $(stat drop.filtered)"
}

# A datagram must get in, from its real source.
must_pass() {
	local ns=$1 src=$2 size=$3

	poke "$ns" "$src" "$size"
	wait_line "$RECV" "^${src%:*}:[0-9]+ $size\$" 3 ||
	    fail "the datagram from $src did not reach lan1 through $PUBPORT: $(cat "$RECV")"
	e2e_log "from $src: reached lan1 as $(grep " $size\$" "$RECV" | head -n 1)"
}

e2e_setup
e2e_write_conf "$CONF" || fail "cannot write the config"
e2e_start_sipnatd "$CONF"

# --- lan1 opens a mapping to wan1:7000 and learns its public port.
ECHO=$E2E_TMP/echo.log
e2e_bg wan1 "$ECHO" "$E2E_PYTHON" "$FLOW" udp-echo --bind "0.0.0.0:7000" --timeout 30
ECHO_PID=$E2E_LAST_PID
wait_line "$ECHO" ready 5 || fail "the echo server did not start in wan1"
out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:7000" \
    --bind "$LAN1:$PORT" --timeout 2) || fail "lan1 got no echo from wan1: $out"
PUBPORT=${out%% *}
PUBPORT=${PUBPORT##*:}
e2e_log "lan1's mapping: $LAN1:$PORT is $GW_WAN:$PUBPORT"
e2e_kill "$ECHO_PID"

RECV=$E2E_TMP/recv.log
e2e_bg lan1 "$RECV" "$E2E_PYTHON" "$FLOW" udp-recv --bind "$LAN1:$PORT" --timeout 40
wait_line "$RECV" ready 5 || fail "the receiver did not start in lan1"

# --- address-and-port-dependent (the default)
must_drop wan3 "$WAN3:7000" 101
must_drop wan1 "$WAN1:7001" 102
must_pass wan1 "$WAN1:7000" 103

# --- endpoint-independent, by sipnatctl reload
r=$(stat reloads)
e2e_write_conf "$CONF" "nat.filtering = endpoint-independent" ||
    fail "cannot write the endpoint-independent config"
out=$(e2e_ctl reload 2>&1) || fail "sipnatctl reload failed: $out"
[ "$(stat reloads)" -gt "$r" ] || fail "sipnatctl reload did not count a reload"
e2e_log "reloaded with endpoint-independent filtering: $out"
must_pass wan3 "$WAN3:7000" 104
e2e_ctl -j sessions | grep -q "\"inside\":\"$LAN1:$PORT\",\"public\":\"$GW_WAN:$PUBPORT\",\"remote\":\"$WAN3:7000\"" || {
	e2e_ctl sessions
	fail "no session for wan3's datagram on $GW_WAN:$PUBPORT"
}

# --- back to address-and-port-dependent, by SIGHUP
r=$(stat reloads)
e2e_write_conf "$CONF" || fail "cannot write the default config"
kill -HUP "$E2E_SIPNATD_PID" || fail "cannot send SIGHUP to sipnatd"
e2e_wait_for 3 stat_above reloads "$r" || fail "SIGHUP did not reload sipnatd"
e2e_log "SIGHUP: back to address-and-port-dependent filtering"
must_drop wan2 "$WAN2:7000" 105

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "address-and-port-dependent and endpoint-independent filtering"
