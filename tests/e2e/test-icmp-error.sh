#!/bin/bash
#
# test-icmp-error.sh: ICMP errors about NATed flows reach the host that sent
# the packet, with the quoted header translated back (RFC 5508 REQ-3/4):
#   (a) time exceeded: lan1 sends with TTL 2, so the packet dies at inet
#       (gw takes one hop, sipnatd none).  lan1 gets "time exceeded" from
#       inet's address quoting ITS OWN inside address and port (UDP) or
#       echo id (ping), never the public ones; the checksums are right;
#   (b) port unreachable: lan1's connected UDP socket to a closed port of
#       wan1 gets ECONNREFUSED: the kernel matched the quoted 4-tuple, so
#       the quote was translated back entirely;
#   (c) the other way: wan1's connected socket to lan1's public mapping gets
#       ECONNREFUSED when lan1's port is closed (lan1's error, translated
#       on its way out);
# and errors never end a session: the sessions are still there and the
# flow that got "port unreachable" goes on with the same public port and
# no new session.

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd
e2e_is_sipnatd || skip "sipnatd only: it checks sipnatctl sessions and stats"

FLOW=$E2E_DIR/flow.py
P_TTL=5001		# inside ports outside the NAT range: never preserved
P_UNREACH=5002
P_BACK=5003
ECHO_ID=4343
CLOSED=9		# nothing listens there on wan1

ctr() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# The public endpoint of a session: session PROTO INSIDE [REMOTE].
session() {
	e2e_ctl sessions | awk -v p="$1" -v i="$2" -v r="${3:-}" \
	    '$1 == p && $2 == i && (r == "" || $4 == r) { print $3 }'
}

# Send one probe with a small TTL from lan1 and wait for the time exceeded
# it causes: probe udp|echo DST DPORT|ID SPORT TTL.  Prints "SRC TYPE/CODE
# inner ISRC:IPORT -> IDST:IDPORT proto P ipsum OK|BAD icmpsum OK|BAD".
cat >"$E2E_TMP/probe.py" <<'EOF'
import select, socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s >> 16) + (s & 0xffff)
    return ~s & 0xffff

mode, dst, port, sport, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
if mode == "udp":
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", sport))
    u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    u.sendto(b"ttl probe", (dst, port))
else:
    r.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    payload = b"ttl probe"
    hdr = struct.pack("!BBHHH", 8, 0, 0, port, 1)
    r.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), port, 1) +
             payload, (dst, 0))
end = time.monotonic() + 3
while time.monotonic() < end:
    if not select.select([r], [], [], end - time.monotonic())[0]:
        break
    data, src = r.recvfrom(65535)
    hl = (data[0] & 15) * 4
    icmp = data[hl:]
    if icmp[0] not in (3, 11, 12) or len(icmp) < 8 + 20 + 8:
        continue
    inner = icmp[8:]
    ihl = (inner[0] & 15) * 4
    iproto = inner[9]
    isrc = socket.inet_ntoa(inner[12:16])
    idst = socket.inet_ntoa(inner[16:20])
    if idst != dst:
        continue
    if iproto == 17:
        a, b = struct.unpack("!HH", inner[ihl:ihl + 4])
    elif iproto == 1:
        a = b = struct.unpack("!H", inner[ihl + 4:ihl + 6])[0]
    else:
        continue
    print("%s %d/%d inner %s:%d -> %s:%d proto %d ipsum %s icmpsum %s" % (
        src[0], icmp[0], icmp[1], isrc, a, idst, b, iproto,
        "OK" if csum(inner[:ihl]) == 0 else "BAD",
        "OK" if csum(icmp) == 0 else "BAD"), flush=True)
    sys.exit(0)
print("nothing", flush=True)
sys.exit(1)
EOF

# A connected UDP socket: send, then recv; prints "refused", "reply",
# "timeout" or the error.  conn_udp [--wait] LOCALPORT DST:PORT; with
# --wait, first wait for a datagram on LOCALPORT and connect to its sender.
cat >"$E2E_TMP/conn.py" <<'EOF'
import socket, sys
wait = sys.argv[1] == "--wait"
if wait:
    sys.argv.pop(1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(5)
if wait:
    print("ready", flush=True)
    data, peer = s.recvfrom(65535)
    print("from %s:%d" % peer, flush=True)
else:
    h, p = sys.argv[2].rsplit(":", 1)
    peer = (h, int(p))
s.settimeout(2)
s.connect(peer)
s.send(b"hello")
try:
    s.recv(65535)
    print("reply", flush=True)
except ConnectionRefusedError:
    print("refused", flush=True)
except socket.timeout:
    print("timeout", flush=True)
except OSError as e:
    print("error %s" % e, flush=True)
EOF

e2e_setup
CONF=$E2E_TMP/sipnat.ini
e2e_write_conf "$CONF" || fail "cannot write the config"
e2e_start_sipnatd "$CONF"

# --- (a) time exceeded at inet, about UDP.
e2e_bg wan1 "$E2E_TMP/udp-echo.log" "$E2E_PYTHON" "$FLOW" udp-echo \
    --bind "$WAN1:7000" --timeout 60
e2e_wait_for 5 grep -q ready "$E2E_TMP/udp-echo.log" || fail "udp-echo did not start"
tl0=$(ctr icmp.errors.to_lan)
out=$(e2e_exec lan1 "$E2E_PYTHON" "$E2E_TMP/probe.py" udp "$WAN1" 7000 "$P_TTL" 2)
e2e_log "udp, ttl 2: $out"
pub=$(session udp "$LAN1:$P_TTL" "$WAN1:7000")
[ -n "$pub" ] || fail "no udp session for the TTL 2 datagram after its time exceeded"
[ "${pub#*:}" != "$P_TTL" ] || fail "public port $pub is the inside port: choose another"
read -r src tc _ inner _ idst _ proto _ ipsum _ icmpsum <<<"$out"
[ "$src" != nothing ] || fail "lan1 got no ICMP error for a datagram with TTL 2"
[ "$src" = "$INET_GW" ] || fail "time exceeded came from $src, not inet ($INET_GW)"
[ "$tc" = 11/0 ] || fail "got ICMP $tc, not time exceeded (11/0)"
[ "$proto" = 17 ] || fail "the quote is protocol $proto, not UDP"
[ "$inner" = "$LAN1:$P_TTL" ] ||
    fail "the quoted source is $inner, not lan1's own $LAN1:$P_TTL (public was $pub)"
[ "$idst" = "$WAN1:7000" ] || fail "the quoted destination is $idst, not $WAN1:7000"
[ "$ipsum" = OK ] || fail "the quoted IP header checksum is wrong"
[ "$icmpsum" = OK ] || fail "the ICMP checksum is wrong"
e2e_log "time exceeded about udp: quotes $inner (public $pub)"

# The same TTL plus one reaches wan1: the NAT itself costs no hop.
e2e_exec lan1 "$E2E_PYTHON" - <<EOF || fail "a datagram with TTL 3 did not reach wan1 and back"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 3)
s.settimeout(2)
s.sendto(b"ttl 3", ("$WAN1", 7000))
s.recvfrom(100)
EOF

# --- (a) time exceeded at inet, about an echo request.
out=$(e2e_exec lan1 "$E2E_PYTHON" "$E2E_TMP/probe.py" echo "$WAN1" "$ECHO_ID" 0 2)
e2e_log "echo, ttl 2: $out"
pub=$(session icmp "$LAN1:$ECHO_ID")
[ -n "$pub" ] || fail "no icmp session for the TTL 2 echo request after its time exceeded"
read -r src tc _ inner _ idst _ proto _ ipsum _ icmpsum <<<"$out"
[ "$src" != nothing ] || fail "lan1 got no ICMP error for an echo request with TTL 2"
[ "$src" = "$INET_GW" ] || fail "time exceeded came from $src, not inet ($INET_GW)"
[ "$tc" = 11/0 ] || fail "got ICMP $tc, not time exceeded (11/0)"
[ "$proto" = 1 ] || fail "the quote is protocol $proto, not ICMP"
[ "$inner" = "$LAN1:$ECHO_ID" ] ||
    fail "the quoted echo is from $inner, not lan1's own id $LAN1:$ECHO_ID (public $pub)"
[ "$ipsum" = OK ] || fail "the quoted IP header checksum is wrong"
[ "$icmpsum" = OK ] || fail "the ICMP checksum is wrong"
[ "$(ctr icmp.errors.to_lan)" -ge $((tl0 + 2)) ] ||
    fail "icmp.errors.to_lan did not count the two errors"
e2e_log "time exceeded about an echo: quotes id ${inner#*:} (public ${pub#*:})"

# --- (b) port unreachable from wan1: ECONNREFUSED on lan1's socket.
out=$(e2e_exec lan1 "$E2E_PYTHON" "$E2E_TMP/conn.py" "$P_UNREACH" "$WAN1:$CLOSED")
[ "$out" = refused ] ||
    fail "lan1's connected UDP socket to a closed port of wan1 got '$out', not ECONNREFUSED"
pub=$(session udp "$LAN1:$P_UNREACH" "$WAN1:$CLOSED")
[ -n "$pub" ] || fail "the session lan1:$P_UNREACH -> wan1:$CLOSED is gone after port unreachable"
e2e_log "port unreachable reached lan1's socket (ECONNREFUSED), session kept ($pub)"

# The flow goes on: same public port, no new session.
e2e_bg wan1 "$E2E_TMP/echo9.log" "$E2E_PYTHON" "$FLOW" udp-echo \
    --bind "$WAN1:$CLOSED" --timeout 60
e2e_wait_for 5 grep -q ready "$E2E_TMP/echo9.log" || fail "udp-echo on port $CLOSED did not start"
created=$(ctr sessions.created)
out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:$CLOSED" \
    --bind "$LAN1:$P_UNREACH" --timeout 2) || fail "no echo after the port opened"
[ "${out%% *}" = "$pub" ] || fail "after the error wan1 sees ${out%% *}, before $pub"
[ "$(ctr sessions.created)" = "$created" ] ||
    fail "a new session was created: the error ended the old one"
e2e_log "the flow goes on through the same session"

# --- (c) lan1's port unreachable on its way out: ECONNREFUSED on wan1.
tw0=$(ctr icmp.errors.to_wan)
e2e_bg wan1 "$E2E_TMP/back.log" "$E2E_PYTHON" "$E2E_TMP/conn.py" --wait 7001
BACK_PID=$E2E_LAST_PID
e2e_wait_for 5 grep -q ready "$E2E_TMP/back.log" || fail "wan1's socket did not start"
e2e_exec lan1 "$E2E_PYTHON" -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', $P_BACK))
s.sendto(b'open', ('$WAN1', 7001))
s.close()"
e2e_wait_for 8 grep -qE "^(refused|reply|timeout|error)" "$E2E_TMP/back.log"
e2e_kill "$BACK_PID"
pub=$(session udp "$LAN1:$P_BACK" "$WAN1:7001")
grep -q "^from $pub$" "$E2E_TMP/back.log" || {
	cat "$E2E_TMP/back.log"
	fail "wan1 did not get lan1's datagram from the public mapping $pub"
}
grep -q "^refused$" "$E2E_TMP/back.log" || {
	cat "$E2E_TMP/back.log"
	fail "wan1's socket to lan1's closed port did not get ECONNREFUSED"
}
[ "$(ctr icmp.errors.to_wan)" -gt "$tw0" ] || fail "icmp.errors.to_wan did not grow"
[ -n "$(session udp "$LAN1:$P_BACK" "$WAN1:7001")" ] ||
    fail "the session is gone after lan1's port unreachable"
e2e_log "lan1's port unreachable reached wan1's socket (ECONNREFUSED)"

# --- errors ended no session.
for s in "udp $LAN1:$P_TTL" "icmp $LAN1:$ECHO_ID" "udp $LAN1:$P_UNREACH" \
    "udp $LAN1:$P_BACK"; do
	# shellcheck disable=SC2086
	[ -n "$(session $s)" ] || fail "session $s is gone after an ICMP error"
done
[ "$(ctr sessions.expired)" = 0 ] || fail "sessions expired during the test"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "ICMP errors translated both ways, quotes included; sessions kept"
