#!/bin/bash
#
# test-reload.sh: reloading the configuration of a running sipnatd.
#   - "sipnatd -t -c broken.ini" prints "broken.ini:LINE: ..." and exits 1;
#   - SIGHUP with that broken config (which also asks for endpoint-
#     independent filtering and a 4 s UDP timeout) keeps the daemon and
#     everything running: the error is logged as file:line, reloads.failed
#     is 1, the TCP connection and the UDP flows carry traffic on the same
#     sessions, and nothing of the broken file was applied (an unsolicited
#     datagram from wan2 is still filtered);
#   - "sipnatctl reload" with the broken file says "reload failed" and exits
#     1 (reloads.failed 2);
#   - with the file fixed, "sipnatctl reload" answers "reload OK" and the
#     live settings take effect: wan2's datagram now reaches lan1 through
#     the mapping (endpoint-independent filtering), and an idle UDP session
#     goes after the new, shorter timeout; the TCP connection never broke.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd
e2e_is_sipnatd || skip "sipnatd only: it checks sipnatctl sessions and stats"

FLOW=$E2E_DIR/flow.py
NEW_UDP_TO=4
LATER=

ctr() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# Fail only at the end, so that the rest is still tested.
later() {
	e2e_log "WRONG: $*"
	LATER="$LATER${LATER:+; }$*"
}

# The public endpoint of a session: session PROTO INSIDE REMOTE.
session() {
	e2e_ctl sessions | awk -v p="$1" -v i="$2" -v r="$3" \
	    '$1 == p && $2 == i && $4 == r { print $3 }'
}

# Poll a command until it succeeds or SECS (wall clock) pass.
wait_until() {
	local end=$((SECONDS + $1))

	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

no_session() {
	[ -z "$(session "$@")" ]
}

# Lines in a file matching a pattern (0 if none).
count() {
	grep -c "$1" "$2"
}

count_above() {
	[ "$(count "$1" "$2")" -gt "$3" ]
}

# A long-lived UDP application in lan1: one socket, a keepalive to DST every
# second, every datagram received printed as "IP:PORT TEXT", until FILE.
cat >"$E2E_TMP/keepalive.py" <<'EOF'
import os, socket, sys, time
port, dst, dport, stop = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), \
    sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
s.settimeout(0.1)
n, next_send = 0, 0
while not os.path.exists(stop):
    if time.monotonic() >= next_send:
        s.sendto(b"keepalive %d" % n, (dst, dport))
        n += 1
        next_send = time.monotonic() + 1
    try:
        data, peer = s.recvfrom(65535)
        print("%s:%d %s" % (peer[0], peer[1], data.decode(errors="replace")),
              flush=True)
    except socket.timeout:
        pass
EOF

e2e_setup
CONF=$E2E_TMP/sipnat.ini
NEW=$E2E_TMP/new.ini
BROKEN=$E2E_TMP/broken.ini
e2e_write_conf "$NEW" "nat.filtering = endpoint-independent" \
    "timeouts.udp = $NEW_UDP_TO" || fail "cannot write the new config"
{
	cat "$NEW"
	echo "[nat]"
	echo "no_such_key = 1"
} >"$BROKEN"
BAD_LINE=$(wc -l <"$BROKEN")
e2e_write_conf "$CONF" "nat.filtering = address-and-port-dependent" \
    "timeouts.udp = 60" || fail "cannot write the config"

# --- sipnatd -t on the broken file.
out=$("$SIPNATD" -t -c "$BROKEN" 2>&1)
rc=$?
[ $rc = 1 ] || fail "sipnatd -t on a broken config exits $rc, not 1"
grep -q "^$BROKEN:$BAD_LINE: .*no_such_key" <<<"$out" || {
	echo "$out"
	fail "sipnatd -t does not say '$BROKEN:$BAD_LINE: ...'"
}
e2e_log "sipnatd -t: $out"

e2e_start_sipnatd "$CONF"
e2e_bg wan1 "$E2E_TMP/tcp-echo.log" "$E2E_PYTHON" "$FLOW" tcp-echo \
    --bind "$WAN1:8000" --timeout 60
e2e_bg wan1 "$E2E_TMP/udp-echo.log" "$E2E_PYTHON" "$FLOW" udp-echo \
    --bind "$WAN1:7000" --timeout 60
e2e_wait_for 5 grep -q ready "$E2E_TMP/tcp-echo.log" || fail "tcp-echo did not start"
e2e_wait_for 5 grep -q ready "$E2E_TMP/udp-echo.log" || fail "udp-echo did not start"

# A TCP connection exchanging a line every half second.
STOP=$E2E_TMP/stop
CHAT=$E2E_TMP/tcp-chat.log
e2e_bg lan1 "$CHAT" "$E2E_PYTHON" "$FLOW" tcp-chat --to "$WAN1:8000" \
    --interval 0.5 --until "$STOP" --timeout 3
CHAT_PID=$E2E_LAST_PID
e2e_wait_for 5 grep -q "^echo 0" "$CHAT" || fail "no TCP connection lan1 -> wan1"
TCP_IN=$(awk '/^connected/ { print $2 }' "$CHAT")
TCP_PUB=$(session tcp "$TCP_IN" "$WAN1:8000")
[ -n "$TCP_PUB" ] || fail "no tcp session for $TCP_IN"

# A UDP application with keepalives (A), and an idle UDP flow (B).
KA=$E2E_TMP/keepalive.log
e2e_bg lan1 "$KA" "$E2E_PYTHON" "$E2E_TMP/keepalive.py" 5500 "$WAN1" 7000 "$STOP"
KA_PID=$E2E_LAST_PID
e2e_wait_for 5 grep -q "^$WAN1:7000 seen " "$KA" || fail "no echo for lan1's keepalives"
PUB_A=$(awk '/ seen / { print $3; exit }' "$KA")
[ "$(session udp "$LAN1:5500" "$WAN1:7000")" = "$PUB_A" ] ||
    fail "sessions do not show $LAN1:5500 as $PUB_A"
out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:7000" \
    --bind "$LAN1:5600" --timeout 2) || fail "no echo for lan1:5600"
PUB_B=${out%% *}
T_B=$(date +%s)
e2e_log "tcp $TCP_IN as $TCP_PUB, udp A as $PUB_A, udp B as $PUB_B"

# An unsolicited datagram from wan2 to A's public port: is it in A's log?
UNSOL=0
unsolicited() {
	UNSOL=$((UNSOL + 1))
	e2e_exec wan2 "$E2E_PYTHON" -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('$WAN2', 9000))
h, p = '$PUB_A'.split(':')
s.sendto(b'unsolicited $UNSOL', (h, int(p)))"
}

# --- SIGHUP with the broken file.
cp "$BROKEN" "$CONF"
chat0=$(count "^echo" "$CHAT")
ka0=$(count " seen " "$KA")
kill -HUP "$E2E_SIPNATD_PID"
logged_error() {
	grep -F "$CONF:$BAD_LINE: " "$E2E_LOG" | grep -q no_such_key
}
e2e_wait_for 5 logged_error ||
    fail "the reload error is not logged as $CONF:$BAD_LINE: ..."
sleep 0.5
e2e_sipnatd_alive || fail "sipnatd died on SIGHUP with a broken config"
grep -q "reload: .* applied" "$E2E_LOG" && fail "the broken config was applied"
[ "$(ctr reloads)" = 1 ] || fail "reloads is $(ctr reloads), not 1"
[ "$(ctr reloads.failed)" = 1 ] || fail "reloads.failed is $(ctr reloads.failed), not 1"
e2e_log "SIGHUP, broken config: $(grep -F "$CONF:$BAD_LINE:" "$E2E_LOG" | head -n 1)"

# Everything still there and flowing.
[ "$(session tcp "$TCP_IN" "$WAN1:8000")" = "$TCP_PUB" ] ||
    fail "the tcp session is gone or moved after the failed reload"
[ "$(session udp "$LAN1:5500" "$WAN1:7000")" = "$PUB_A" ] ||
    fail "udp session A is gone or moved after the failed reload"
[ "$(session udp "$LAN1:5600" "$WAN1:7000")" = "$PUB_B" ] ||
    fail "udp session B is gone or moved after the failed reload"
e2e_wait_for 3 count_above "^echo" "$CHAT" $((chat0 + 2)) ||
    fail "the TCP connection stopped carrying data after the failed reload"
e2e_wait_for 3 count_above " seen " "$KA" $((ka0 + 1)) ||
    fail "udp flow A stopped getting echoes after the failed reload"
grep " seen " "$KA" | awk '{ print $3 }' | sort -u | grep -qvxF "$PUB_A" &&
    fail "wan1 saw flow A from another public endpoint"

# Nothing of the broken file applies: filtering is still port dependent.
# shellcheck disable=SC2034  # f0 is used in the eval below
f0=$(ctr drop.filtered)
unsolicited
wait_until 2 eval '[ "$(ctr drop.filtered)" -gt "$f0" ]' ||
    fail "wan2's unsolicited datagram was not filtered after the failed reload"
sleep 0.3
grep -q "unsolicited" "$KA" &&
    fail "wan2's unsolicited datagram reached lan1: the broken config was applied"
e2e_log "failed reload: daemon, sessions, traffic and old settings kept"

# --- sipnatctl reload with the broken file.
out=$(e2e_ctl reload 2>&1)
rc=$?
[ $rc = 1 ] || fail "sipnatctl reload of a broken config exits $rc, not 1 ($out)"
case $out in
"reload failed"*) ;;
*) fail "sipnatctl reload of a broken config says '$out'" ;;
esac
[ "$(ctr reloads.failed)" = 2 ] || fail "reloads.failed is $(ctr reloads.failed), not 2"
e2e_sipnatd_alive || fail "sipnatd died on sipnatctl reload with a broken config"
e2e_log "sipnatctl reload, broken config: $out"

# --- the fixed file: reload OK, the new settings take effect.
cp "$NEW" "$CONF"
E2E_CONF=$CONF
out=$(e2e_ctl reload 2>&1) || fail "sipnatctl reload of a good config failed: $out"
[ "$out" = "reload OK" ] || fail "sipnatctl reload of a good config says '$out'"
T_RELOAD=$(date +%s)
[ "$(ctr reloads)" = 3 ] || fail "reloads is $(ctr reloads), not 3"
[ "$(ctr reloads.failed)" = 2 ] || fail "reloads.failed is $(ctr reloads.failed), not 2"
[ "$(session tcp "$TCP_IN" "$WAN1:8000")" = "$TCP_PUB" ] ||
    fail "the tcp session is gone or moved after reload OK"
[ "$(session udp "$LAN1:5500" "$WAN1:7000")" = "$PUB_A" ] ||
    fail "udp session A is gone or moved after reload OK"
unsolicited
e2e_wait_for 3 grep -q "^$WAN2:9000 unsolicited $UNSOL" "$KA" ||
    fail "after the reload to endpoint-independent filtering wan2's datagram does not reach lan1"
e2e_log "reload OK: endpoint-independent filtering lets wan2 in"

# The shorter UDP timeout: a new idle session C goes after it, and so
# must B (idle since before the reload), while A (a keepalive every
# second) stays.
out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:7000" \
    --bind "$LAN1:5700" --timeout 2) || fail "no echo for lan1:5700"
T_C=$(date +%s)
if wait_until $((NEW_UDP_TO + 4)) no_session udp "$LAN1:5700" "$WAN1:7000"; then
	e2e_log "new idle udp session C gone $(($(date +%s) - T_C)) s after its packet (timeouts.udp = $NEW_UDP_TO)"
else
	later "new idle udp session C still there $(($(date +%s) - T_C)) s after its packet: the reload did not apply timeouts.udp = $NEW_UDP_TO"
fi
if wait_until $((T_RELOAD + NEW_UDP_TO + 3 - $(date +%s))) \
    no_session udp "$LAN1:5600" "$WAN1:7000"; then
	e2e_log "idle udp session B from before the reload gone $(($(date +%s) - T_RELOAD)) s after the reload"
else
	later "idle udp session B, created before the reload, still there $(($(date +%s) - T_RELOAD)) s after the reload to timeouts.udp = $NEW_UDP_TO and $(($(date +%s) - T_B)) s after its only packet: the new timeout does not reach existing sessions (their timers keep the old 60 s deadline)"
fi
[ "$(session udp "$LAN1:5500" "$WAN1:7000")" = "$PUB_A" ] ||
    fail "udp session A, refreshed every second, is gone"

# --- the TCP connection lived through all of it.
[ "$(session tcp "$TCP_IN" "$WAN1:8000")" = "$TCP_PUB" ] ||
    fail "the tcp session is gone or moved after the reloads"
n=$(count "^echo" "$CHAT")
touch "$STOP"
for ((i = 0; i < 50; i++)); do
	kill -0 "$CHAT_PID" 2>/dev/null || break
	sleep 0.1
done
wait "$CHAT_PID" || {
	cat "$CHAT"
	fail "the TCP connection broke"
}
e2e_kill "$KA_PID"
e2e_log "tcp connection alive throughout: $n lines echoed"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
[ -z "$LATER" ] || fail "$LATER"
pass "reload: a broken config changes nothing, a good one applies live settings"
