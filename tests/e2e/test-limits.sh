#!/bin/bash
#
# test-limits.sh: limits.sessions (5) and limits.sessions_per_host (3).
# Every flow is a UDP socket of its own to its own port of wan1, like an
# application opening connections:
#   - lan1 opens 3 flows, all answered; its 4th is refused: no answer, no
#     session, and lan1's connected socket gets EHOSTUNREACH (the NAT's ICMP
#     "administratively prohibited", RFC 5508 REQ-8) at once instead of
#     waiting for a time-out; sessions.refused.host_limit and drop.limit
#     count it; lan1's first flow still works, with the same public port;
#   - lan2 opens 2 (5 in all); its 3rd, a new socket, is refused by the
#     total limit, and so is a new destination of one of its sockets; both
#     count in sessions.refused.total_limit and drop.limit;
#   - a reload with higher limits (8, 6) answers "reload OK" and both
#     refused flows then work, without losing the others;
#   - a reload back to 5 stops new flows but ends no existing one;
#   - when flows expire (timeouts.udp = 10), new flows work again.
# Every refused flow must get EHOSTUNREACH like the first.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd
e2e_is_sipnatd || skip "sipnatd only: it checks sipnatctl sessions and stats"

FLOW=$E2E_DIR/flow.py
UDP_TO=10		# long enough not to expire flows before the last part

ctr() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# Fail unless counter NAME went from VALUE up by exactly N.  With -l, fail
# only at the end, so that the rest is still tested.
LATER=
grew_by() {
	local v later=

	[ "$1" = -l ] && later=1 && shift
	v=$(ctr "$1")
	[ "$v" = $(($2 + $3)) ] && return 0
	[ -n "$later" ] || fail "$1 went from $2 to ${v:-nothing}, expected +$3 ($4)"
	e2e_log "WRONG: $1 went from $2 to ${v:-nothing}, expected +$3 ($4)"
	LATER="$LATER${LATER:+; }$1 +$((v - $2)), not +$3 ($4)"
}

# The public endpoint of a session: session INSIDE REMOTE.
session() {
	e2e_ctl sessions | awk -v i="$1" -v r="$2" \
	    '$1 == "udp" && $2 == i && $4 == r { print $3 }'
}

# One datagram on a connected socket from NS:PORT to wan1:DPORT, prints
# "reply PUBLIC" (the address wan1 saw), "timeout", or "error ERRNO".
cat >"$E2E_TMP/flowc.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.connect((sys.argv[2], int(sys.argv[3])))
s.settimeout(float(sys.argv[4]))
s.send(b"hello")
try:
    print("reply %s" % s.recv(100).split()[1].decode())
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error %s" % (e.errno == 113 and "EHOSTUNREACH" or e.errno))
EOF

# flow NS PORT DPORT: fail unless answered; PUB is the public endpoint.
flow() {
	local out

	out=$(e2e_exec "$1" "$E2E_PYTHON" "$E2E_TMP/flowc.py" "$2" "$WAN1" "$3" 2)
	[ "${out%% *}" = reply ] ||
	    fail "flow $1:$2 -> wan1:$3 got '$out', not an answer ($(ctr sessions) sessions)"
	PUB=${out#reply }
}

# refused NS PORT DPORT WHY: fail if answered or if a session appears.
refused() {
	local out ip

	ip=$LAN1
	[ "$1" = lan2 ] && ip=$LAN2
	out=$(e2e_exec "$1" "$E2E_PYTHON" "$E2E_TMP/flowc.py" "$2" "$WAN1" "$3" 1)
	[ "${out%% *}" != reply ] ||
	    fail "flow $1:$2 -> wan1:$3 over the $4 was answered"
	[ "$out" = "error EHOSTUNREACH" ] ||
	    fail "flow $1:$2 -> wan1:$3 over the $4: the socket got '$out', not EHOSTUNREACH (ICMP administratively prohibited)"
	[ -z "$(session "$ip:$2" "$WAN1:$3")" ] ||
	    fail "flow $1:$2 -> wan1:$3 over the $4 has a session"
	e2e_log "$1:$2 -> wan1:$3 refused ($4): $out"
}

# Write the config with these limits: conf SESSIONS PER_HOST.
conf() {
	e2e_write_conf "$CONF" "limits.sessions = $1" \
	    "limits.sessions_per_host = $2" "timeouts.udp = $UDP_TO" ||
	    fail "cannot write the config"
}

reload() {
	local out

	out=$(e2e_ctl reload 2>&1)
	[ "$out" = "reload OK" ] || fail "sipnatctl reload: $out"
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

gauge_below() {
	[ "$(ctr sessions)" -lt "$1" ]
}

e2e_setup
CONF=$E2E_TMP/sipnat.ini
conf 5 3
e2e_start_sipnatd "$CONF"
for p in 7001 7002 7003 7004 7005 7006 7007 7008 7009; do
	e2e_bg wan1 "$E2E_TMP/echo-$p.log" "$E2E_PYTHON" "$FLOW" udp-echo \
	    --bind "$WAN1:$p" --timeout 60
done
for p in 7001 7002 7003 7004 7005 7006 7007 7008 7009; do
	e2e_wait_for 5 grep -q ready "$E2E_TMP/echo-$p.log" || fail "echo on $p did not start"
done

# --- the per-host limit.
flow lan1 6001 7001
F1=$PUB
flow lan1 6002 7002
flow lan1 6003 7003
h0=$(ctr sessions.refused.host_limit)
d0=$(ctr drop.limit)
refused lan1 6004 7004 "per-host limit (3)"
grew_by sessions.refused.host_limit "$h0" 1 "lan1's 4th flow"
grew_by drop.limit "$d0" 1 "lan1's 4th flow"
flow lan1 6001 7001
[ "$PUB" = "$F1" ] || fail "lan1's first flow changed its public endpoint"
e2e_log "per-host limit: lan1 has 3 flows, the 4th is refused, the 1st still works"

# --- the total limit.
flow lan2 6101 7005
G1=$PUB
flow lan2 6102 7006
[ "$(ctr sessions)" = 5 ] || fail "$(ctr sessions) sessions, expected 5"
t0=$(ctr sessions.refused.total_limit)
d0=$(ctr drop.limit)
refused lan2 6101 7007 "total limit (5), new destination of a socket"
grew_by sessions.refused.total_limit "$t0" 1 "a new destination of lan2's socket"
refused lan2 6103 7007 "total limit (5), new socket"
grew_by drop.limit "$d0" 2 "lan2's two refused flows"
grew_by -l sessions.refused.total_limit "$t0" 2 "lan2's new socket over the total limit"
for f in "lan1 6001 7001" "lan1 6002 7002" "lan1 6003 7003" "lan2 6101 7005" \
    "lan2 6102 7006"; do
	# shellcheck disable=SC2086
	flow $f
done
e2e_log "total limit: 5 flows, the 6th is refused, the 5 still work"

# --- higher limits by reload: the refused flows work.
conf 8 6
reload
flow lan1 6004 7004
flow lan2 6103 7007
flow lan2 6101 7005
[ "$PUB" = "$G1" ] || { e2e_ctl sessions; fail "lan2's first flow changed its public endpoint: $G1, now $PUB"; }
[ "$(ctr sessions)" = 7 ] || fail "$(ctr sessions) sessions, expected 7"
e2e_log "reload to limits 8/6: the refused flows now work"

# --- lower limits by reload: existing flows stay, new ones are refused.
conf 5 3
reload
for f in "lan1 6001 7001" "lan1 6004 7004" "lan2 6103 7007"; do
	# shellcheck disable=SC2086
	flow $f
done
refused lan2 6104 7008 "lowered total limit (5, 7 in use)"
e2e_log "reload to limits 5/3: 7 flows keep working, new ones refused"

# --- expiry frees room: wait for enough flows to go idle and expire.
wait_until $((UDP_TO + 5)) gauge_below 5 ||
    fail "still $(ctr sessions) sessions $((UDP_TO + 5)) s later (timeouts.udp = $UDP_TO)"
e2e_log "$(ctr sessions) sessions left after expiry"
flow lan2 6104 7008
e2e_log "after expiry a new flow works"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
[ -z "$LATER" ] || fail "$LATER"
pass "session limits per host and in all, changed by reload, freed by expiry"
