#!/bin/bash
#
# test-expiry.sh: session idle timeouts, per protocol.  With a short UDP
# timeout (5 s):
#   - a UDP flow lan1 -> wan1 that keeps sending every 2 s for 10 s keeps
#     its mapping and the SAME public port (wan1 sees it in every echo,
#     sipnatctl sessions agrees), and nothing expires meanwhile: outbound
#     traffic refreshes the session (nat.inbound_refresh = no, so that the
#     echoes do not);
#   - while it exists, wan1 can send to the public port and reach lan1;
#   - once idle, it is gone from "sipnatctl sessions" after the timeout plus
#     a tick, not before it (3 s < idle < 8 s); sessions.expired and
#     mappings.expired count it; a datagram from wan1 to the old public port
#     no longer reaches lan1 and is counted as drop.no_mapping;
#   - the timeouts are per protocol: an ICMP echo session (timeouts.icmp =
#     10) outlives the UDP one and expires later on its own; an idle TCP
#     connection (established, 120 s) outlives both and still carries data.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd
e2e_is_sipnatd || skip "sipnatd only: it checks sipnatctl sessions and stats"

FLOW=$E2E_DIR/flow.py
UDP_TO=5
ICMP_TO=10
IN_PORT=5555		# outside the NAT range: the public port is not the same
ECHO_ID=4242		# the ICMP echo id, outside the NAT range too
UDP_ECHO=$WAN1:7000
TCP_ECHO=$WAN1:8000

# A counter from "sipnatctl stats" (empty if there is no such line).
ctr() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# The session rows of "sipnatctl sessions" for a protocol and an inside
# endpoint (and remote, if given): "PUBLIC STATE IDLE" each.
session() {
	e2e_ctl sessions | awk -v p="$1" -v i="$2" -v r="${3:-}" \
	    '$1 == p && $2 == i && (r == "" || $4 == r) { print $3, $5, $6 }'
}

# Is a counter above a value?
ctr_above() {
	local v

	v=$(ctr "$1")
	[ -n "$v" ] && [ "$v" -gt "$2" ]
}

# Wait up to SECS for a process started with e2e_bg to exit by itself;
# return its status (124 and kill it if it does not).
wait_exit() {
	local i

	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		e2e_kill "$1"
		return 124
	fi
	wait "$1"
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

has_session() {
	[ -n "$(session "$@")" ]
}

no_session() {
	[ -z "$(session "$@")" ]
}

# Seconds (fractional) since the epoch.
now() {
	date +%s.%N
}

# a - b, with one decimal.
elapsed() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'
}

# Is a <= x <= b (decimals)?
between() {
	awk -v x="$1" -v a="$2" -v b="$3" 'BEGIN { exit !(x >= a && x <= b) }'
}

e2e_setup
CONF=$E2E_TMP/sipnat.ini
e2e_write_conf "$CONF" "timeouts.udp = $UDP_TO" "timeouts.icmp = $ICMP_TO" \
    "timeouts.tcp_established = 120" "timeouts.tcp_transitory = 30" \
    "nat.inbound_refresh = no" ||
    fail "cannot write the config"
e2e_start_sipnatd "$CONF"

e2e_bg wan1 "$E2E_TMP/udp-echo.log" "$E2E_PYTHON" "$FLOW" udp-echo \
    --bind "$UDP_ECHO" --timeout 60
UDP_ECHO_PID=$E2E_LAST_PID
e2e_bg wan1 "$E2E_TMP/tcp-echo.log" "$E2E_PYTHON" "$FLOW" tcp-echo \
    --bind "$TCP_ECHO" --timeout 60
e2e_wait_for 5 grep -q ready "$E2E_TMP/udp-echo.log" || fail "udp-echo did not start"
e2e_wait_for 5 grep -q ready "$E2E_TMP/tcp-echo.log" || fail "tcp-echo did not start"

# --- an idle TCP connection: one line now, the next when $GO appears.
GO=$E2E_TMP/go
e2e_bg lan1 "$E2E_TMP/tcp-chat.log" "$E2E_PYTHON" "$FLOW" tcp-chat \
    --to "$TCP_ECHO" --interval 120 --until "$GO" --timeout 5
TCP_PID=$E2E_LAST_PID
e2e_wait_for 5 grep -q "^echo 0" "$E2E_TMP/tcp-chat.log" || {
	cat "$E2E_TMP/tcp-chat.log"
	fail "no TCP connection lan1 -> wan1"
}
TCP_IN=$(awk '/^connected/ { print $2 }' "$E2E_TMP/tcp-chat.log")
wait_until 2 has_session tcp "$TCP_IN" "$TCP_ECHO" ||
    fail "no tcp session for $TCP_IN"
read -r TCP_PUB TCP_STATE _ <<<"$(session tcp "$TCP_IN" "$TCP_ECHO")"
[ "$TCP_STATE" = established ] || fail "tcp session is '$TCP_STATE', not established"
e2e_log "tcp $TCP_IN -> $TCP_PUB established, now idle"

# --- UDP, refreshed by outbound traffic every 2 s for 10 s.
expired0=$(ctr sessions.expired)
PUB=
for i in 1 2 3 4 5 6; do
	out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$UDP_ECHO" \
	    --bind "$LAN1:$IN_PORT" --timeout 2) ||
	    fail "send $i: no echo from wan1 ($out)"
	T0=$(now)
	seen=${out%% *}
	[ -n "$PUB" ] || PUB=$seen
	[ "$seen" = "$PUB" ] ||
	    fail "send $i: wan1 saw $seen, before $PUB: the mapping changed"
	read -r spub _ sidle <<<"$(session udp "$LAN1:$IN_PORT" "$UDP_ECHO")"
	[ "$spub" = "$PUB" ] ||
	    fail "send $i: sessions shows public '$spub', wan1 saw $PUB"
	[ "${sidle:-99}" -le 1 ] || fail "send $i: session idle $sidle s right after a packet"
	[ $i = 6 ] || sleep 2
done
[ "${PUB%:*}" = "$GW_WAN" ] || fail "wan1 saw $PUB, not the public address"
[ "${PUB#*:}" != "$IN_PORT" ] || fail "public port $PUB is the inside port: use another"
[ "$(ctr sessions.expired)" = "$expired0" ] ||
    fail "a session expired while it was refreshed every 2 s (timeout $UDP_TO s)"
e2e_log "udp $LAN1:$IN_PORT -> $PUB kept for 10 s by traffic every 2 s"

# --- while the mapping exists, wan1 reaches lan1 through it.
e2e_kill "$UDP_ECHO_PID"
e2e_bg lan1 "$E2E_TMP/udp-recv.log" "$E2E_PYTHON" "$FLOW" udp-recv \
    --bind "$LAN1:$IN_PORT" --timeout 30
e2e_wait_for 5 grep -q ready "$E2E_TMP/udp-recv.log" || fail "udp-recv did not start"
e2e_exec wan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$PUB" --bind "$UDP_ECHO" \
    --no-reply --timeout 0.1 >/dev/null
e2e_wait_for 2 grep -q "^$WAN1:7000 " "$E2E_TMP/udp-recv.log" ||
    fail "wan1 -> $PUB did not reach lan1 while the mapping existed"
e2e_log "wan1 -> $PUB reaches lan1 while the mapping lives"

# An ICMP echo session, a moment after the UDP one's last packet.
e2e_ping lan1 "$WAN1" -i "$ECHO_ID" >/dev/null || fail "lan1 cannot ping wan1"
T_ICMP=$(now)
has_session icmp "$LAN1:$ECHO_ID" || fail "no icmp session for id $ECHO_ID"

# --- idle: still there well before the timeout, gone after it.
sleep 2
has_session udp "$LAN1:$IN_PORT" "$UDP_ECHO" ||
    fail "udp session gone after $(elapsed "$(now)" "$T0") s idle (timeout $UDP_TO s)"
wait_until 10 no_session udp "$LAN1:$IN_PORT" "$UDP_ECHO" ||
    fail "udp session still there $(elapsed "$(now)" "$T0") s after its last packet (timeout $UDP_TO s)"
idle=$(elapsed "$(now)" "$T0")
between "$idle" $((UDP_TO - 2)) $((UDP_TO + 3)) ||
    fail "udp session expired after $idle s idle, timeout $UDP_TO s"
[ "$(ctr sessions.expired)" -gt "$expired0" ] || fail "sessions.expired did not grow"
[ "$(ctr mappings.expired)" -ge 1 ] || fail "mappings.expired did not grow"
e2e_log "udp session gone after $idle s idle (timeout $UDP_TO s), counted"

# The other protocols' sessions did not go with it.
has_session icmp "$LAN1:$ECHO_ID" ||
    fail "the icmp session (timeout $ICMP_TO s) went with the udp one after $(elapsed "$(now)" "$T_ICMP") s"
has_session tcp "$TCP_IN" "$TCP_ECHO" ||
    fail "the idle tcp session went with the udp one"

# --- the old public port leads nowhere now.
nm0=$(ctr drop.no_mapping)
e2e_exec wan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$PUB" --bind "$UDP_ECHO" \
    --no-reply --timeout 0.1 >/dev/null
wait_until 2 ctr_above drop.no_mapping "$nm0" ||
    fail "wan1 -> $PUB after expiry: drop.no_mapping did not grow"
sleep 0.5
n=$(grep -c "^$WAN1:7000 " "$E2E_TMP/udp-recv.log")
[ "$n" = 1 ] || fail "wan1 -> $PUB reached lan1 after the mapping expired"
e2e_log "wan1 -> $PUB after expiry: dropped (no mapping)"

# --- ICMP expires on its own timeout.
wait_until $((ICMP_TO + 2)) no_session icmp "$LAN1:$ECHO_ID" ||
    fail "icmp session still there $(elapsed "$(now)" "$T_ICMP") s after the ping (timeout $ICMP_TO s)"
idle=$(elapsed "$(now)" "$T_ICMP")
between "$idle" $((ICMP_TO - 2)) $((ICMP_TO + 3)) ||
    fail "icmp session expired after $idle s idle, timeout $ICMP_TO s"
e2e_log "icmp session gone after $idle s idle (timeout $ICMP_TO s)"

# --- TCP: idle longer than both, still established, same port, works.
read -r pub state idle <<<"$(session tcp "$TCP_IN" "$TCP_ECHO")"
[ "$pub" = "$TCP_PUB" ] || fail "tcp session gone or moved after idling (now '$pub')"
[ "$state" = established ] || fail "idle tcp session is '$state'"
[ "$idle" -gt $ICMP_TO ] || fail "tcp session idle only $idle s: the test did not idle it"
touch "$GO"
wait_exit "$TCP_PID" 10 || {
	cat "$E2E_TMP/tcp-chat.log"
	fail "the idle TCP connection broke"
}
grep -q "^echo 1$" "$E2E_TMP/tcp-chat.log" || fail "no echo after the idle time"
e2e_log "tcp connection idle $idle s (> udp and icmp timeouts) still works"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "idle timeouts per protocol, refresh keeps the port, expiry closes it"
