#!/bin/bash
#
# test-ping.sh: ICMP echo through the NAT.  lan1 pings wan1 and gets its
# replies; wan1 sees the requests come from the public address (checked by
# a raw ICMP socket in wan1, not by trusting the daemon); sipnatctl
# sessions shows the icmp session lan1 -> 203.0.113.1 -> wan1, and its
# public id is the one wan1 saw.  Without sipnatd the same ping fails, so
# the test proves the NAT does the work.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

ID=12345	# the echo id lan1 uses: inside the port range, so preserved
COUNT=3

# Echo requests arriving in a namespace, one line each: "SRC ID SEQ".
# Prints "ready" once its socket is open.
icmp_watch() {
	"$E2E_PYTHON" -c '
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
try:
    while True:
        data, addr = s.recvfrom(65535)
        hl = (data[0] & 15) * 4
        t, c, _, ident, seq = struct.unpack("!BBHHH", data[hl:hl + 8])
        if t == 8:
            print("%s %d %d" % (addr[0], ident, seq), flush=True)
except socket.timeout:
    pass
' "$1"
}

# One session from sipnatctl -j sessions: "PUBLIC PKTS_OUT PKTS_IN" of
# the session with this protocol, inside and remote endpoint.
session_of() {
	e2e_ctl -j sessions | "$E2E_PYTHON" -c '
import json, sys
proto, inside, remote = sys.argv[1:4]
for s in json.load(sys.stdin)["sessions"]:
    if s["proto"] == proto and s["inside"] == inside and s["remote"] == remote:
        print(s["public"], s["packets_out"], s["packets_in"])
' "$@"
}

e2e_setup
export -f icmp_watch
export E2E_PYTHON

# Without the NAT, the LAN's private source cannot come back.
e2e_ping lan1 "$WAN1" -W 0.5 -i "$ID" >/dev/null &&
    fail "lan1 reaches $WAN1 without sipnatd: the test would prove nothing"

e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

WATCH=$E2E_TMP/wan1-icmp.log
e2e_bg wan1 "$WATCH" bash -c "icmp_watch 15"
e2e_wait_for 5 grep -q ready "$WATCH" || fail "the ICMP watcher in wan1 did not start"

out=$(e2e_ping lan1 "$WAN1" -c "$COUNT" -W 1 -i "$ID") ||
    fail "lan1 gets no echo reply from $WAN1 through the NAT ($out)"
[ "$out" = "$COUNT/$COUNT replies" ] ||
    fail "lan1 got $out from $WAN1, expected every reply"
e2e_log "lan1 -> $WAN1: $out"

# The session table.
sess=$(session_of icmp "$LAN1:$ID" "$WAN1:0")
[ -n "$sess" ] || {
	e2e_ctl sessions
	fail "no icmp session $LAN1:$ID -> $WAN1 in sipnatctl sessions"
}
read -r pub pout pin <<<"$sess"
e2e_log "session: icmp $LAN1:$ID -> $pub -> $WAN1 (out $pout, in $pin)"
[ "${pub%:*}" = "$GW_WAN" ] || fail "the session's public address is $pub, not $GW_WAN"
pubid=${pub##*:}
[ "$pout" -ge "$COUNT" ] && [ "$pin" -ge "$COUNT" ] ||
    fail "the session counted $pout out and $pin in, expected $COUNT each"
e2e_ctl sessions | grep -qE "^icmp +$LAN1:$ID +$GW_WAN:$pubid +$WAN1:0 " || {
	e2e_ctl sessions
	fail "the plain sipnatctl sessions table does not show the icmp session"
}

# What wan1 saw: every request from the public address with the public id,
# none from the private address.
e2e_wait_for 2 sh -c "[ \$(grep -c '^$GW_WAN $pubid ' '$WATCH') -ge $COUNT ]" || {
	cat "$WATCH"
	fail "wan1 did not see $COUNT echo requests from $GW_WAN id $pubid"
}
grep -q "^$LAN1 " "$WATCH" && fail "wan1 saw the private source $LAN1"
e2e_log "wan1 saw $(grep -c "^$GW_WAN $pubid " "$WATCH") requests from $GW_WAN id $pubid"

# Echo requests to the public address itself are still gw's to answer.
e2e_ping wan1 "$GW_WAN" >/dev/null || fail "gw no longer answers pings to $GW_WAN"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "ping through the NAT"
