#!/bin/bash
#
# test-own-traffic.sh: the gateway's own traffic is unaffected while
# sipnatd runs.
#  - A UDP and a TCP server in gw on 203.0.113.1:9999 (outside the NAT
#    range) answer wan1, and see wan1's real address.
#  - ip_local_reserved_ports in gw covers the NAT range, and gw's own
#    sockets stay out of it: gw's ip_local_port_range is widened to
#    20000-40000 (overlapping the NAT range) and 40 TCP connects and 40
#    UDP sockets to wan1 all get local ports outside 10000-32767.
#  - gw's own TCP connection to wan1 carries 1 MB intact.
#  - wan1 pings gw; gw pings wan1 with an echo id outside the NAT range and
#    with one inside it (iputils ping picks its id at random or from its
#    pid, so either happens on a real gateway).

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
LO=10000
HI=32767
SRV=9999

wait_line() {
	e2e_wait_for "$3" grep -qE "$2" "$1"
}

e2e_setup
e2e_sysctl gw net.ipv4.ip_local_port_range "20000 40000" ||
    fail "cannot widen ip_local_port_range in gw"
e2e_write_conf "$E2E_TMP/sipnat.ini" "wan.port_range = $LO-$HI" ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# --- the reservation
res=$(e2e_exec gw cat /proc/sys/net/ipv4/ip_local_reserved_ports)
"$E2E_PYTHON" -c '
import sys
lo, hi, spec = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ports = set()
for part in filter(None, spec.split(",")):
    a, _, b = part.partition("-")
    ports.update(range(int(a), int(b or a) + 1))
sys.exit(0 if all(p in ports for p in range(lo, hi + 1)) else 1)
' "$LO" "$HI" "$res" ||
    fail "ip_local_reserved_ports in gw is '$res': it does not cover $LO-$HI"
e2e_log "ip_local_reserved_ports in gw: $res"

# --- servers in gw on the public address, port 9999
UECHO=$E2E_TMP/gw-udp.log
e2e_bg gw "$UECHO" "$E2E_PYTHON" "$FLOW" udp-echo --bind "$GW_WAN:$SRV" --timeout 30
wait_line "$UECHO" ready 5 || fail "the UDP server in gw did not start"
out=$(e2e_exec wan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$GW_WAN:$SRV" \
    --bind "$WAN1:6000" --count 3 --interval 0.05 --timeout 2 --print-peer) ||
    fail "wan1 gets no answer from gw's UDP server on $GW_WAN:$SRV: $out"
grep -qvx "$WAN1:6000 [0-9]* from $GW_WAN:$SRV" <<<"$out" && {
	echo "$out"
	fail "gw's UDP server saw wan1 wrongly, or answered from elsewhere"
}
e2e_log "UDP $GW_WAN:$SRV in gw answers wan1, sees $WAN1:6000"

TSINK=$E2E_TMP/gw-tcp.log
e2e_bg gw "$TSINK" "$E2E_PYTHON" "$FLOW" tcp-sink --bind "$GW_WAN:$SRV" --timeout 10
wait_line "$TSINK" ready 5 || fail "the TCP server in gw did not start"
out=$(e2e_exec wan1 "$E2E_PYTHON" "$FLOW" tcp-send --to "$GW_WAN:$SRV" \
    --bind "$WAN1:6001" --bytes 1000000 --timeout 10) ||
    fail "wan1 cannot send to gw's TCP server on $GW_WAN:$SRV: $out"
wait_line "$TSINK" "^peer " 5 || fail "gw's TCP server got no connection"
read -r _ peer _ got _ hash <<<"$(grep "^peer " "$TSINK")"
[ "$peer" = "$WAN1:6001" ] || fail "gw's TCP server saw the peer as $peer"
[ "$got $hash" = "1000000 ${out##* }" ] ||
    fail "gw's TCP server got $got bytes (sha256 $hash), wan1 sent: $out"
e2e_log "TCP $GW_WAN:$SRV in gw takes 1 MB intact from $WAN1:6001"

# --- gw's own outgoing TCP
WSINK=$E2E_TMP/wan1-tcp.log
e2e_bg wan1 "$WSINK" "$E2E_PYTHON" "$FLOW" tcp-sink --bind "0.0.0.0:5001" --timeout 10
wait_line "$WSINK" ready 5 || fail "the TCP sink in wan1 did not start"
out=$(e2e_exec gw "$E2E_PYTHON" "$FLOW" tcp-send --to "$WAN1:5001" \
    --bytes 1000000 --timeout 10) ||
    fail "gw's own connection to $WAN1:5001 failed: $out"
wait_line "$WSINK" "^peer " 5 || fail "wan1 got no connection from gw"
read -r _ peer _ got _ hash <<<"$(grep "^peer " "$WSINK")"
[ "$got $hash" = "1000000 ${out##* }" ] ||
    fail "wan1 got $got bytes (sha256 $hash) from gw, which sent: $out"
port=${peer##*:}
[ "${peer%:*}" = "$GW_WAN" ] || fail "gw's connection came from $peer"
[ "$port" -lt "$LO" ] || [ "$port" -gt "$HI" ] ||
    fail "gw's own connection used local port $port, inside the NAT range"
e2e_log "gw -> $WAN1:5001: 1 MB intact from $peer"

# --- many of gw's own sockets: none inside the NAT range
LISTEN=$E2E_TMP/wan1-listen.log
e2e_bg wan1 "$LISTEN" "$E2E_PYTHON" -c '
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5002))
s.listen(128)
print("ready", flush=True)
time.sleep(30)
'
wait_line "$LISTEN" ready 5 || fail "the listener in wan1 did not start"
ports=$(e2e_exec gw "$E2E_PYTHON" -c '
import socket, sys
dst = sys.argv[1]
keep = []
for i in range(40):
    t = socket.socket()
    t.settimeout(1)
    try:
        t.connect((dst, 5002))
        print("tcp %d" % t.getsockname()[1])
    except OSError as e:
        print("tcp %d failed: %s" % (t.getsockname()[1], e))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((dst, 5003))
    print("udp %d" % u.getsockname()[1])
    keep += [t, u]
' "$WAN1" 2>&1)
bad=$(awk -v lo="$LO" -v hi="$HI" '$2 >= lo && $2 <= hi' <<<"$ports")
[ -z "$bad" ] || fail "gw's own sockets got local ports in the NAT range:" \
    "$(echo $bad | cut -c1-300)"
grep -q failed <<<"$ports" &&
    fail "gw's own connects to $WAN1:5002 failed: $(grep failed <<<"$ports" | head -n 3)"
n=$(grep -cE '^(tcp|udp) [0-9]+$' <<<"$ports")
[ "$n" = 80 ] || fail "expected 80 local ports from gw, got $n: $ports"
e2e_log "40 TCP and 40 UDP sockets of gw: ports $(awk '{ print $2 }' <<<"$ports" | sort -n | sed -n '1p;$p' | paste -sd-), none in $LO-$HI"

# --- ICMP
e2e_ping wan1 "$GW_WAN" -c 2 >/dev/null || fail "wan1 cannot ping gw ($GW_WAN)"
out=$(e2e_ping gw "$WAN1" -c 2 -i 5000) ||
    fail "gw cannot ping $WAN1 with echo id 5000 ($out)"
e2e_log "wan1 pings gw; gw pings wan1 with id 5000: $out"
out=$(e2e_ping gw "$WAN1" -c 2 -i 20000) || {
	e2e_ctl stats | grep -E "^drop\." | grep -v " 0$"
	fail "gw cannot ping $WAN1 with echo id 20000, inside the NAT range" \
	    "($out): the replies go to sipnatd, which drops them"
}
e2e_log "gw pings wan1 with id 20000: $out"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "the gateway's own traffic works alongside sipnatd"
