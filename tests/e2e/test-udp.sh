#!/bin/bash
#
# test-udp.sh: UDP request/response through the NAT.  lan1 sends requests
# to an echo server on wan1; every reply comes back to lan1 from wan1's
# address and port, intact, and says the request came from the public
# address 203.0.113.1; all requests from one inside endpoint use one
# mapping (the same public port each time, also from a new socket on the
# same local port a while later), another local port gets another public
# port, and sipnatctl shows one session with the packets counted.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
PORT=40000	# lan1's local port (outside the NAT range: no preservation)
COUNT=5
SIZE=300

wait_line() {
	e2e_wait_for "$3" grep -qE "$2" "$1"
}

# The session of PROTO INSIDE REMOTE from sipnatctl -j sessions, as
# "PUBLIC PKTS_OUT PKTS_IN", or nothing.
session_of() {
	e2e_ctl -j sessions | "$E2E_PYTHON" -c '
import json, sys
proto, inside, remote = sys.argv[1:4]
for s in json.load(sys.stdin)["sessions"]:
    if s["proto"] == proto and s["inside"] == inside and s["remote"] == remote:
        print(s["public"], s["packets_out"], s["packets_in"])
' "$@"
}

# A counter from sipnatctl stats.
stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# Requests from lan1: udp_requests LOCALPORT COUNT; prints the reply lines
# "PUBLIC LEN from IP:PORT".
udp_requests() {
	e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:7000" \
	    --bind "$LAN1:$1" --count "$2" --interval 0.05 --size "$SIZE" \
	    --timeout 2 --print-peer
}

# Check reply lines: all COUNT arrived, from wan1:7000, full length, and
# all name the same public endpoint, which is printed.
check_replies() {
	local out=$1 count=$2 what=$3 n pubs pub want_len

	n=$(grep -c " from " <<<"$out")
	[ "$n" = "$count" ] || {
		echo "$out"
		fail "$what: $n of $count replies came back"
	}
	grep -v " from $WAN1:7000\$" <<<"$out" | grep -q . && {
		echo "$out"
		fail "$what: a reply came from somewhere other than $WAN1:7000"
	}
	pubs=$(awk '{ print $1 }' <<<"$out" | sort -u)
	[ "$(wc -l <<<"$pubs")" = 1 ] || {
		echo "$out"
		fail "$what: the requests used several public endpoints: $(echo $pubs)"
	}
	pub=$pubs
	[ "${pub%:*}" = "$GW_WAN" ] || fail "$what: wan1 saw the requests from $pub, not from $GW_WAN"
	# The echo is "seen PUBLIC " and the request.
	want_len=$((5 + ${#pub} + 1 + SIZE))
	awk -v l="$want_len" '$2 != l { exit 1 }' <<<"$out" || {
		echo "$out"
		fail "$what: a reply is not $want_len bytes long: damaged on the way"
	}
	echo "$pub"
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

ECHO=$E2E_TMP/echo.log
e2e_bg wan1 "$ECHO" "$E2E_PYTHON" "$FLOW" udp-echo --bind "0.0.0.0:7000" \
    --timeout 30
wait_line "$ECHO" ready 5 || fail "the echo server did not start in wan1"

# --- several requests from one socket
out=$(udp_requests "$PORT" "$COUNT")
pub=$(check_replies "$out" "$COUNT" "first socket") || { echo "$pub"; exit 1; }
e2e_log "$COUNT requests from $LAN1:$PORT: all seen from $pub, replies intact from $WAN1:7000"
pubport=${pub##*:}
[ "$pubport" -ge 10000 ] && [ "$pubport" -le 32767 ] ||
    fail "public port $pubport is outside the NAT range 10000-32767"

# --- a new socket on the same local port: the same mapping
out=$(udp_requests "$PORT" 2)
pub2=$(check_replies "$out" 2 "second socket") || { echo "$pub2"; exit 1; }
[ "$pub2" = "$pub" ] ||
    fail "the same inside endpoint got $pub2 the second time, $pub the first"
e2e_log "a new socket on $LAN1:$PORT reuses $pub"

# --- another local port: another mapping
out=$(udp_requests $((PORT + 1)) 1)
pub3=$(check_replies "$out" 1 "other port") || { echo "$pub3"; exit 1; }
[ "$pub3" != "$pub" ] ||
    fail "$LAN1:$((PORT + 1)) got the same public endpoint as $LAN1:$PORT: $pub"
e2e_log "$LAN1:$((PORT + 1)) gets its own $pub3"

# --- what sipnatctl says
sess=$(session_of udp "$LAN1:$PORT" "$WAN1:7000")
[ -n "$sess" ] || {
	e2e_ctl sessions
	fail "no udp session $LAN1:$PORT -> $WAN1:7000"
}
read -r spub pout pin <<<"$sess"
[ "$spub" = "$pub" ] || fail "the session's public endpoint is $spub, wan1 saw $pub"
want=$((COUNT + 2))
[ "$pout" -ge "$want" ] && [ "$pin" -ge "$want" ] ||
    fail "the session counted $pout packets out, $pin in; expected $want each"
n=$(e2e_ctl -j sessions | grep -o "\"inside\":\"$LAN1:$PORT\"" | wc -l)
[ "$n" = 1 ] || fail "$n sessions for $LAN1:$PORT, expected one"
m=$(stat mappings.created)
[ "$m" = 2 ] || fail "mappings.created is $m, expected 2 (one per inside port)"
e2e_log "one session $LAN1:$PORT -> $spub -> $WAN1:7000 ($pout out, $pin in)"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "UDP request/response through the NAT"
