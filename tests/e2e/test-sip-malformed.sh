#!/bin/bash
#
# test-sip-malformed.sh: what the SIP ALG cannot parse is passed on
# unchanged (or, if told so, dropped), counted, and never stops it.
# lan1 sends to 5060 in wan1, whose receiver keeps every datagram and
# sends the short ones back (so both directions are seen), with
# sip.max_message = 8192:
#   - by default (sip.on_error = forward) these arrive byte for byte as sent
#     at wan1, and their echoes at lan1: a truncated request ("INVITE
#     sip:x SIP/2.0\r\nVia: broken", no empty line), random bytes, an
#     INVITE naming 10.0.0.11 whose body is shorter than its Content-Length
#     (a cut datagram, RFC 3261 18.3: to be discarded, not parsed), a 20 KB
#     OPTIONS naming 10.0.0.11 (longer than max_message: not parsed, so not
#     rewritten), and a CRLF keep-alive ("\r\n\r\n");
#     with sipnatd: sip.errors.parse counts the three unparsable ones each
#     way (6), sip.errors.oversized the big one, sip.keepalives the
#     keep-alive, and nothing is dropped;
#   - with sip.on_error = drop (sipnatctl reload; sipnatd only) the four
#     bad ones are dropped (nothing arrives, sip.errors.dropped 4) and the
#     keep-alive still passes;
#   - then (still dropping errors) a normal call, sipp UAC in lan1 to a sipp
#     UAS in wan1 on 5060, completes, and its messages went through the ALG
#     (sip.messages.rewritten, sip.dialogs.created).

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp
e2e_require_sipnatd

PORT=40001			# lan1's port for the crafted messages
RAW=$E2E_DIR/sipraw.py
RECVDIR=$E2E_TMP/recv
RECVLOG=$E2E_TMP/recv.log
cd "$E2E_TMP" || exit 1

# A counter from sipnatctl stats (0 if absent).
stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}

# Check that a counter went up by exactly N since BEFORE.
delta() {
	local name=$1 before=$2 n=$3 now

	now=$(stat "$name")
	[ "$now" -eq $((before + n)) ] ||
	    fail "$name went from $before to $now, expected +$n"
}

# Wait for a background process to end, at most SECS; its exit status
# (killed if it takes longer).
wait_pid() {
	local pid=$1 secs=$2 i

	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	e2e_kill "$pid" 1
}

# Is something listening on UDP ADDR:PORT in NS?
udp_listening() {
	e2e_exec "$1" ss -Hunl "src $2" | grep -q .
}


# Make a message file from a template on stdin.
mkmsg() {
	"$E2E_PYTHON" "$RAW" mkmsg "$E2E_TMP/$1.sip"
}

# The sha256 of a file.
sha() {
	sha256sum "$1" | awk '{ print $1 }'
}

# Datagrams the receiver logged so far.
received() {
	grep -c " from " "$RECVLOG"
}

# Send the messages NAME... in one go from lan1:PORT to wan1:5060 and
# keep lan1's output (the echoes) in E2E_TMP/sent.log.
send_msgs() {
	local args=() name

	for name in "$@"; do
		args+=("$E2E_TMP/$name.sip")
	done
	e2e_exec lan1 "$E2E_PYTHON" "$RAW" send --bind "$LAN1:$PORT" \
	    --to "$WAN1:5060" --pmtudisc dont --echo-wait 1.5 "${args[@]}" \
	    >"$E2E_TMP/sent.log" || fail "lan1 could not send $*"
}

# Did message NAME arrive at wan1 byte for byte (its sha256 logged)?
arrived() {
	grep -q " len $(stat_size "$E2E_TMP/$1.sip") sha256 $(sha "$E2E_TMP/$1.sip")\$" \
	    "$RECVLOG"
}

# Did its echo come back to lan1 byte for byte?
echoed() {
	grep -q "^echo len $(stat_size "$E2E_TMP/$1.sip") sha256 $(sha "$E2E_TMP/$1.sip") from $WAN1:5060\$" \
	    "$E2E_TMP/sent.log"
}

stat_size() {
	wc -c <"$1" | tr -d ' '
}

# --- the messages
printf 'INVITE sip:x SIP/2.0\r\nVia: broken' >"$E2E_TMP/trunc.sip"
"$E2E_PYTHON" -c '
import random, sys
r = random.Random(5060)
b = bytes(r.randrange(256) for _ in range(700))
open(sys.argv[1], "wb").write(b"\x00\xff" + b)
' "$E2E_TMP/random.sip"
printf '\r\n\r\n' >"$E2E_TMP/keepalive.sip"
mkmsg cut <<EOF
INVITE sip:bob@$WAN1 SIP/2.0
Via: SIP/2.0/UDP $LAN1:$PORT;branch=z9hG4bK-cut-$E2E_ID;rport
Max-Forwards: 70
From: <sip:alice@$WAN1>;tag=cut
To: <sip:bob@$WAN1>
Call-ID: cut-$E2E_ID@$LAN1
CSeq: 1 INVITE
Contact: <sip:alice@$LAN1:$PORT>
Content-Type: application/sdp
Content-Length: 400

v=0
o=alice 1 1 IN IP4 $LAN1
s=-
c=IN IP4 $LAN1
t=0 0
m=audio 40010 RTP/AVP 0
EOF
{
	cat <<EOF
OPTIONS sip:bob@$WAN1 SIP/2.0
Via: SIP/2.0/UDP $LAN1:$PORT;branch=z9hG4bK-big-$E2E_ID;rport
Max-Forwards: 70
From: <sip:alice@$WAN1>;tag=big
To: <sip:bob@$WAN1>
Call-ID: big-$E2E_ID@$LAN1
CSeq: 1 OPTIONS
Contact: <sip:alice@$LAN1:$PORT>
Content-Type: text/plain
Content-Length: auto

EOF
	for ((i = 0; i < 320; i++)); do
		printf 'padding line %03d: the quick brown fox jumps over the lazy dog\n' "$i"
	done
} | mkmsg big
size=$(stat_size "$E2E_TMP/big.sip")
[ "$size" -gt 16384 ] && [ "$size" -lt 30000 ] ||
    fail "the big message is $size bytes, not about 20 KB"

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" "sip.max_message = 8192" ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

e2e_bg wan1 "$RECVLOG" "$E2E_PYTHON" "$RAW" recv --bind "0.0.0.0:5060" \
    --dir "$RECVDIR" --timeout 60 --echo
RECV=$E2E_LAST_PID
e2e_wait_for 5 grep -q ready "$RECVLOG" || fail "the receiver did not start in wan1"

# --- on_error = forward: everything passes unchanged, both ways
if e2e_is_sipnatd; then
	parse0=$(stat sip.errors.parse)
	big0=$(stat sip.errors.oversized)
	ka0=$(stat sip.keepalives)
	drop0=$(stat sip.errors.dropped)
	rw0=$(stat sip.messages.rewritten)
fi
BAD="trunc random cut big"
send_msgs $BAD keepalive
e2e_wait_for 3 eval '[ "$(received)" -ge 5 ]'
# Check them all before failing: the list says what a gateway does wrong.
bad=
for m in $BAD keepalive; do
	arrived "$m" || bad="$bad $m ($(stat_size "$E2E_TMP/$m.sip") bytes)"
done
[ -z "$bad" ] || {
	echo "--- sent"
	for m in $BAD keepalive; do
		echo "$m len $(stat_size "$E2E_TMP/$m.sip") sha256 $(sha "$E2E_TMP/$m.sip")"
	done
	echo "--- received at wan1"
	cat "$RECVLOG"
	fail "not received at wan1 byte for byte:$bad"
}
[ "$(received)" = 5 ] || {
	cat "$RECVLOG"
	fail "wan1 received $(received) datagrams, expected 5"
}
for m in trunc random cut keepalive; do
	echoed "$m" || bad="$bad $m"
done
[ -z "$bad" ] || {
	cat "$E2E_TMP/sent.log"
	fail "echoes not back at lan1 byte for byte:$bad"
}
e2e_log "forwarded unchanged both ways: truncated, random, cut, keep-alive; to wan1: 20 KB ($size bytes)"
if e2e_is_sipnatd; then
	delta sip.errors.parse "$parse0" 6
	delta sip.errors.oversized "$big0" 1
	delta sip.errors.dropped "$drop0" 0
	delta sip.messages.rewritten "$rw0" 0
	[ "$(stat sip.keepalives)" -ge $((ka0 + 2)) ] ||
	    fail "sip.keepalives did not count the keep-alive both ways"
	e2e_log "sipnatctl: sip.errors.parse +6, sip.errors.oversized +1, sip.keepalives +2"
fi

# --- on_error = drop (sipnatd only)
if e2e_is_sipnatd; then
	e2e_write_conf "$E2E_TMP/sipnat.ini" "sip.max_message = 8192" \
	    "sip.on_error = drop" ||
	    fail "cannot write the config"
	out=$(e2e_ctl reload 2>&1) || fail "sipnatctl reload failed: $out"
	drop0=$(stat sip.errors.dropped)
	n0=$(received)
	send_msgs $BAD
	send_msgs keepalive
	e2e_wait_for 3 eval '[ "$(received)" -gt "$n0" ]' ||
	    fail "the keep-alive did not pass with sip.on_error = drop"
	sleep 0.3
	n=$(received)
	[ "$n" = $((n0 + 1)) ] || {
		cat "$RECVLOG"
		fail "with sip.on_error = drop wan1 received $((n - n0)) datagrams, expected only the keep-alive"
	}
	tail -n 1 "$RECVLOG" | grep -q " len 4 sha256 $(sha "$E2E_TMP/keepalive.sip")\$" ||
	    fail "with sip.on_error = drop the datagram that arrived is not the keep-alive"
	delta sip.errors.dropped "$drop0" 4
	e2e_log "sip.on_error = drop: the four bad ones dropped (sip.errors.dropped +4), the keep-alive passed"
fi
e2e_kill "$RECV" 2

# --- a normal call still works (with sipnatd, still dropping errors)
if e2e_is_sipnatd; then
	dlg0=$(stat sip.dialogs.created)
	rw0=$(stat sip.messages.rewritten)
fi
e2e_bg wan1 "$E2E_TMP/uas.log" sipp -nostdin -sn uas -i "$WAN1" -p 5060 \
    -m 1 -timeout 20 -timeout_error -trace_msg -message_file "$E2E_TMP/uas.msg"
UAS=$E2E_LAST_PID
e2e_wait_for 5 udp_listening wan1 "$WAN1:5060" || fail "the UAS did not start in wan1"
e2e_bg lan1 "$E2E_TMP/uac.log" sipp -nostdin -sn uac -i "$LAN1" -p 5060 \
    -m 1 -d 200 -timeout 20 -timeout_error -recv_timeout 10000 \
    -trace_msg -message_file "$E2E_TMP/uac.msg" "$WAN1:5060"
UAC=$E2E_LAST_PID
wait_pid "$UAC" 25 || {
	tail -n 15 "$E2E_TMP/uac.log"
	tail -n 60 "$E2E_TMP/uac.msg"
	fail "the call from lan1 to wan1 did not complete"
}
wait_pid "$UAS" 10 || {
	tail -n 60 "$E2E_TMP/uas.msg"
	fail "the UAS in wan1 did not complete the call"
}
grep -q "^INVITE sip:service@$WAN1:5060 SIP/2.0" "$E2E_TMP/uas.msg" &&
    grep -q "^BYE " "$E2E_TMP/uas.msg" || fail "the UAS's trace lacks the INVITE or the BYE"
e2e_log "a normal call from $LAN1 to $WAN1 completes"
if e2e_is_sipnatd; then
	e2e_sipnatd_alive || fail "sipnatd is gone"
	[ "$(stat sip.dialogs.created)" -gt "$dlg0" ] &&
	    [ "$(stat sip.messages.rewritten)" -gt "$rw0" ] ||
	    fail "the call did not go through the SIP ALG (no dialog, nothing rewritten)"
	grep -q "^c=IN IP4 $GW_WAN" "$E2E_TMP/uas.msg" ||
	    fail "the UAS got an SDP not rewritten to $GW_WAN"
fi

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "malformed SIP passes (or is dropped), is counted, and does no harm"
