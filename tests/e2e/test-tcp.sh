#!/bin/bash
#
# test-tcp.sh: TCP through the NAT, both ways over connections lan1 opens.
# An 8 MB upload lan1 -> wan1 and an 8 MB download wan1 -> lan1 arrive
# intact (sha256 on both ends); wan1 sees the peer as the public address
# 203.0.113.1 with the session's public port; sipnatctl sessions shows the
# connection "established" while it is open and "closing" once both sides
# closed, and counted the bytes.  Without sipnatd no connection gets
# through, so the test proves the NAT does the work.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
BYTES=$((8 * 1024 * 1024))
UP_PORT=41001		# lan1's local ports: fixed, to find the sessions
DOWN_PORT=41002

# A line of a log matching an extended regexp appears within SECS.
wait_line() {
	e2e_wait_for "$3" grep -qE "$2" "$1"
}

# The session of PROTO INSIDE REMOTE from sipnatctl -j sessions, as
# "PUBLIC STATE PKTS_OUT PKTS_IN BYTES_OUT BYTES_IN", or nothing.
session_of() {
	e2e_ctl -j sessions | "$E2E_PYTHON" -c '
import json, sys
proto, inside, remote = sys.argv[1:4]
for s in json.load(sys.stdin)["sessions"]:
    if s["proto"] == proto and s["inside"] == inside and s["remote"] == remote:
        print(s["public"], s["state"], s["packets_out"], s["packets_in"],
              s["bytes_out"], s["bytes_in"])
' "$@"
}

# The session's state is STATE.
state_is() {
	local s

	s=$(session_of tcp "$1" "$2")
	[ "$(awk '{ print $2 }' <<<"$s")" = "$3" ]
}

# Fail with the session table and a message.
fail_sessions() {
	e2e_ctl sessions
	fail "$*"
}

e2e_setup

# Without the NAT, lan1's private address cannot get an answer.
e2e_bg wan1 "$E2E_TMP/pre-sink.log" "$E2E_PYTHON" "$FLOW" tcp-sink \
    --bind "0.0.0.0:5000" --timeout 5
wait_line "$E2E_TMP/pre-sink.log" ready 5 || fail "tcp-sink did not start"
e2e_exec lan1 "$E2E_PYTHON" "$FLOW" tcp-send --to "$WAN1:5000" --bytes 1000 \
    --timeout 1 >/dev/null 2>&1 &&
    fail "lan1 connects to $WAN1 without sipnatd: the test would prove nothing"
e2e_kill "$E2E_LAST_PID"

e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# --- upload lan1 -> wan1
SINK=$E2E_TMP/sink.log
e2e_bg wan1 "$SINK" "$E2E_PYTHON" "$FLOW" tcp-sink --bind "0.0.0.0:5001" \
    --timeout 20
wait_line "$SINK" ready 5 || fail "tcp-sink did not start in wan1"
t0=$(date +%s.%N)
send=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" tcp-send --to "$WAN1:5001" \
    --bind "$LAN1:$UP_PORT" --bytes "$BYTES" --timeout 20 \
    2>"$E2E_TMP/send.err") ||
    fail "the upload from lan1 failed: $send $(cat "$E2E_TMP/send.err")"
t1=$(date +%s.%N)
wait_line "$SINK" "^peer " 10 || {
	cat "$SINK"
	fail "wan1's sink did not finish"
}
read -r _ peer _ got _ hash <<<"$(grep "^peer " "$SINK")"
read -r _ sent _ want <<<"$send"
[ "$got" = "$BYTES" ] && [ "$sent" = "$BYTES" ] ||
    fail "upload: lan1 sent $sent bytes, wan1 got $got, expected $BYTES"
[ "$hash" = "$want" ] || fail "upload: corrupted: sha256 $hash at wan1, $want at lan1"
e2e_log "upload: $BYTES bytes intact in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s, wan1 saw peer $peer"

sess=$(session_of tcp "$LAN1:$UP_PORT" "$WAN1:5001")
[ -n "$sess" ] || fail_sessions "no tcp session $LAN1:$UP_PORT -> $WAN1:5001"
read -r pub _ _ _ bout _ <<<"$sess"
[ "${pub%:*}" = "$GW_WAN" ] || fail "upload session's public address is $pub"
[ "$peer" = "$pub" ] ||
    fail "wan1 saw the upload from $peer, the session says $pub"
[ "$bout" -ge "$BYTES" ] ||
    fail "the upload session counted $bout bytes out, fewer than $BYTES"
e2e_wait_for 3 state_is "$LAN1:$UP_PORT" "$WAN1:5001" closing ||
    fail_sessions "the closed upload's session is not 'closing': $sess"
e2e_log "upload session: $LAN1:$UP_PORT -> $pub -> $WAN1:5001, closing"

# --- download wan1 -> lan1, over a connection lan1 opens
SERVE=$E2E_TMP/serve.log
FETCH=$E2E_TMP/fetch.log
GO=$E2E_TMP/go
e2e_bg wan1 "$SERVE" "$E2E_PYTHON" "$FLOW" tcp-serve --bind "0.0.0.0:5002" \
    --bytes "$BYTES" --until "$GO" --timeout 20
SERVE_PID=$E2E_LAST_PID
wait_line "$SERVE" ready 5 || fail "tcp-serve did not start in wan1"
e2e_bg lan1 "$FETCH" "$E2E_PYTHON" "$FLOW" tcp-fetch --to "$WAN1:5002" \
    --bind "$LAN1:$DOWN_PORT" --timeout 20
FETCH_PID=$E2E_LAST_PID
wait_line "$FETCH" "^connected " 5 || {
	cat "$FETCH"
	fail "lan1 cannot connect to $WAN1:5002 through the NAT"
}

# Open, and idle until told to send: established.
e2e_wait_for 3 state_is "$LAN1:$DOWN_PORT" "$WAN1:5002" established ||
    fail_sessions "the open connection's session is not 'established'"
e2e_log "download session established while the connection is open"

t0=$(date +%s.%N)
touch "$GO"
e2e_wait_for 30 grep -q "^local " "$FETCH" || {
	cat "$FETCH" "$SERVE"
	fail "the download did not finish"
}
t1=$(date +%s.%N)
e2e_kill "$FETCH_PID" || fail "tcp-fetch failed: $(cat "$FETCH")"
e2e_kill "$SERVE_PID" 10 || fail "tcp-serve failed: $(cat "$SERVE")"
read -r _ peer _ sent _ want <<<"$(grep "^peer " "$SERVE")"
read -r _ _ _ got _ hash <<<"$(grep "^local " "$FETCH")"
[ "$got" = "$BYTES" ] && [ "$sent" = "$BYTES" ] ||
    fail "download: wan1 sent $sent bytes, lan1 got $got, expected $BYTES"
[ "$hash" = "$want" ] || fail "download: corrupted: sha256 $hash at lan1, $want at wan1"
e2e_log "download: $BYTES bytes intact in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s, wan1 saw peer $peer"

sess=$(session_of tcp "$LAN1:$DOWN_PORT" "$WAN1:5002")
[ -n "$sess" ] || fail_sessions "no tcp session $LAN1:$DOWN_PORT -> $WAN1:5002"
read -r pub _ _ _ _ bin <<<"$sess"
[ "${pub%:*}" = "$GW_WAN" ] || fail "download session's public address is $pub"
[ "$peer" = "$pub" ] ||
    fail "wan1 saw the download's peer as $peer, the session says $pub"
[ "$bin" -ge "$BYTES" ] ||
    fail "the download session counted $bin bytes in, fewer than $BYTES"
e2e_wait_for 3 state_is "$LAN1:$DOWN_PORT" "$WAN1:5002" closing ||
    fail_sessions "the closed download's session is not 'closing'"
e2e_log "download session: $LAN1:$DOWN_PORT -> $pub -> $WAN1:5002, closing"

# Nothing private leaked: no connection to wan1 from a 10/8 address.
grep -q "peer 10\." "$SINK" "$SERVE" && fail "wan1 saw a private peer address"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "TCP both ways through the NAT"
