#!/bin/bash
#
# test-hairpin.sh: two LAN hosts talk through their public endpoints
# (RFC 4787 REQ-9), as peer-to-peer applications do after learning them
# from a server (STUN): lan2 (B) and lan1 (A) learn their public ports
# from an echo on wan1; B sends one datagram to A's public endpoint (hole
# punch: under address-and-port-dependent filtering it is itself dropped,
# and counted as filtered, since A never sent to B); then A sends to B's
# public endpoint: B receives it from A's PUBLIC address and port, never
# from 10.0.0.11; and B's answer reaches A from B's public endpoint.
# sipnatctl stats counts packets.hairpin.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
PA=41000	# A's local port
PB=42000	# B's local port

wait_line() {
	e2e_wait_for "$3" grep -qE "$2" "$1"
}

stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

stat_above() {
	[ "$(stat "$1")" -gt "$2" ]
}

# Packets gw's kernel dropped in its reverse-path filter (for diagnosis).
rpf_drops() {
	e2e_exec gw awk '$1 == "TcpExt:" {
		if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1; next }
		for (i = 2; i <= NF; i++) if (n[i] == "IPReversePathFilter") print $i
	}' /proc/net/netstat
}

# The public endpoint the echo on wan1 sees for NS bound to SRC.
public_of() {
	local out

	out=$(e2e_exec "$1" "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:7000" \
	    --bind "$2" --timeout 2) || {
		echo "no echo: $out"
		return 1
	}
	echo "${out%% *}"
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

ECHO=$E2E_TMP/echo.log
e2e_bg wan1 "$ECHO" "$E2E_PYTHON" "$FLOW" udp-echo --bind "0.0.0.0:7000" --timeout 30
wait_line "$ECHO" ready 5 || fail "the echo server did not start in wan1"

pubB=$(public_of lan2 "$LAN2:$PB") || fail "lan2 (B): $pubB"
pubA=$(public_of lan1 "$LAN1:$PA") || fail "lan1 (A): $pubA"
[ "${pubA%:*}" = "$GW_WAN" ] && [ "${pubB%:*}" = "$GW_WAN" ] ||
    fail "the public endpoints are $pubA and $pubB, not on $GW_WAN"
e2e_log "A $LAN1:$PA is $pubA, B $LAN2:$PB is $pubB"

# --- B punches a hole towards A's public endpoint and listens.
h=$(stat packets.hairpin)
f=$(stat drop.filtered)
RB=$E2E_TMP/recv-b.log
e2e_bg lan2 "$RB" "$E2E_PYTHON" "$FLOW" udp-recv --bind "$LAN2:$PB" \
    --to "$pubA" --size 50 --timeout 10
RB_PID=$E2E_LAST_PID
wait_line "$RB" ready 5 || fail "B's receiver did not start"
e2e_wait_for 2 stat_above packets.hairpin "$h" ||
    fail "B's punch to $pubA did not count in packets.hairpin ($h)"
e2e_wait_for 2 stat_above drop.filtered "$f" ||
    fail "B's punch reached A's mapping unfiltered, though A never sent to B"
e2e_log "B's punch hairpinned and was filtered (A never sent to B)"

# --- A sends to B's public endpoint and listens for the answer.
h=$(stat packets.hairpin)
RA=$E2E_TMP/recv-a.log
e2e_bg lan1 "$RA" "$E2E_PYTHON" "$FLOW" udp-recv --bind "$LAN1:$PA" \
    --to "$pubB" --size 60 --timeout 10
wait_line "$RA" ready 5 || fail "A's receiver did not start"
wait_line "$RB" " 60\$" 3 || {
	e2e_ctl stats | grep -E "hairpin|drop|out.lan" | grep -v " 0$"
	fail "A's datagram to $pubB did not reach B" \
	    "(gw's kernel counts $(rpf_drops) reverse-path filter drops)"
}
from=$(awk '$2 == 60 { print $1; exit }' "$RB")
[ "$from" = "$pubA" ] ||
    fail "B got A's datagram from $from, not from A's public endpoint $pubA"
e2e_log "B got A's datagram from $from"
e2e_kill "$RB_PID"

# --- B answers A.
e2e_exec lan2 "$E2E_PYTHON" "$FLOW" udp-send --bind "$LAN2:$PB" --to "$pubA" \
    --size 70 --no-reply --timeout 0.1 >/dev/null
wait_line "$RA" " 70\$" 3 || fail "B's answer to $pubA did not reach A"
from=$(awk '$2 == 70 { print $1; exit }' "$RA")
[ "$from" = "$pubB" ] ||
    fail "A got B's answer from $from, not from B's public endpoint $pubB"
e2e_log "A got B's answer from $from"
grep -q "^10\." "$RA" "$RB" && fail "a private address showed up as a source"

h2=$(stat packets.hairpin)
[ "$h2" -ge $((h + 2)) ] ||
    fail "packets.hairpin went from $h to $h2 for two hairpinned datagrams"
e2e_log "packets.hairpin $h2"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "hairpinning with public source addresses"
