#!/bin/bash
#
# test-mtu.sh: large packets through an uplink MTU (1280) smaller than the
# LAN's and the TUN's (1500).  sipnatd takes the MTU from wan0 (wan.mtu = 0).
#   (a) a 1400-byte UDP datagram without DF from lan1 reaches wan1 whole
#       (sipnatd fragments it: fragments.out) and the 1400-byte echo, cut up
#       by inet, comes back to lan1 whole (fragments.reassembled);
#   (b) with DF the NAT answers "fragmentation needed, MTU 1280" from the
#       public address, quoting lan1's own packet: a connected UDP socket
#       gets EMSGSIZE and IP_MTU 1280, then sends smaller datagrams fine;
#       an echo request -M do -s 1400 gets ICMP 3/4 with MTU 1280 and lan1
#       caches that path MTU (drop.too_big_df, icmp.generated);
#   (c) a 4 MB TCP transfer lan1 -> wan1 completes with the right sha256
#       and without needing path MTU discovery: the MSS is clamped in the
#       SYNs (tcp.mss_clamped, wan1's MSS <= 1240) and no segment was too
#       big for the uplink;
#   (d) a 3000-byte datagram from wan1 to lan1's public mapping arrives in
#       fragments and reaches lan1 whole (fragments.reassembled).

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd
e2e_is_sipnatd || skip "sipnatd only: it checks sipnatctl sessions and stats"

FLOW=$E2E_DIR/flow.py
MTU=1280
BYTES=4000000

ctr() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# Fail unless counter NAME grew by at least N since VALUE.
grew() {
	local v

	v=$(ctr "$1")
	if [ -z "$v" ] || [ "$v" -lt $(($2 + $3)) ]; then
		fail "$1 went from $2 to ${v:-nothing}, expected at least +$3 ($4)"
	fi
}

# Why a packet from the public address into the TUN may not reach the LAN:
# what gw's kernel dropped in its reverse path filter, as "; ..." or "".
rpf_note() {
	local n

	n=$(e2e_exec gw cat /proc/net/netstat | awk '$1 == "TcpExt:" {
		if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1; next }
		for (i = 2; i <= NF; i++) if (n[i] == "IPReversePathFilter") print $i
	}')
	[ "${n:-0}" -gt 0 ] || return 0
	echo "; gw's reverse path filter dropped $n packets (TcpExtIPReversePathFilter; rp_filter $(e2e_exec gw cat "/proc/sys/net/ipv4/conf/$E2E_TUN/rp_filter") on $E2E_TUN): sipnatd's own ICMP errors come from $GW_WAN"
}

e2e_setup
e2e_exec gw ip link set dev wan0 mtu $MTU || fail "cannot set the mtu of gw's wan0"
e2e_exec inet ip link set dev gw0 mtu $MTU || fail "cannot set the mtu of inet's gw0"
CONF=$E2E_TMP/sipnat.ini
e2e_write_conf "$CONF" "wan.mtu = 0" || fail "cannot write the config"
e2e_start_sipnatd "$CONF"
e2e_wait_for 3 grep -q "uplink MTU $MTU" "$E2E_LOG" ||
    fail "sipnatd did not take the uplink MTU $MTU from wan0"

for h in wan1 wan2; do
	e2e_bg "$h" "$E2E_TMP/echo-$h.log" "$E2E_PYTHON" "$FLOW" udp-echo \
	    --bind 0.0.0.0:7000 --pmtudisc dont --timeout 60
done
e2e_bg wan1 "$E2E_TMP/echo-big.log" "$E2E_PYTHON" "$FLOW" udp-echo \
    --bind "$WAN1:7002" --pmtudisc dont --reply-size 3000 --timeout 60
e2e_bg wan1 "$E2E_TMP/sink.log" "$E2E_PYTHON" "$FLOW" tcp-sink \
    --bind "$WAN1:8000" --mss --timeout 30
for l in echo-wan1 echo-wan2 echo-big sink; do
	e2e_wait_for 5 grep -q ready "$E2E_TMP/$l.log" || fail "$l did not start"
done

# --- (a) 1400 bytes without DF, both ways.
fo0=$(ctr fragments.out)
fr0=$(ctr fragments.reassembled)
out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:7000" \
    --bind "$LAN1:5010" --size 1400 --pmtudisc dont --timeout 3) ||
    fail "a 1400-byte datagram without DF got no echo ($out)"
read -r pub len <<<"$out"
want=$((1400 + ${#pub} + 6))	# "seen PUB " + the 1400 bytes sent
[ "$len" = "$want" ] || fail "the echo has $len bytes, not $want: something was lost"
grew fragments.out "$fo0" 2 "sipnatd must cut the 1428-byte packet for MTU $MTU"
grew fragments.reassembled "$fr0" 1 "the echo came back in fragments"
e2e_log "(a) 1400 bytes without DF: fragmented out, echo reassembled ($len bytes)"

# --- (b) DF: fragmentation needed from the NAT.
df0=$(ctr drop.too_big_df)
ig0=$(ctr icmp.generated)
out=$(e2e_exec lan1 "$E2E_PYTHON" - "$WAN2" <<'EOF'
import errno, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)		# IP_MTU_DISCOVER, DO
s.settimeout(2)
s.connect((sys.argv[1], 7000))
s.send(b"x" * 1400)
try:
    s.recv(65535)
    res = "reply"
except socket.timeout:
    res = "timeout"
except OSError as e:
    res = "emsgsize" if e.errno == errno.EMSGSIZE else "error-%d" % e.errno
mtu = s.getsockopt(socket.IPPROTO_IP, 14)	# IP_MTU
try:
    s.send(b"y" * 1200)
    small = "small-%d" % len(s.recv(65535))
except OSError as e:
    small = "small-error-%s" % e
print(res, mtu, small)
EOF
)
e2e_log "(b) udp with DF, 1400 bytes: $out"
read -r res mtu small <<<"$out"
[ "$res" = emsgsize ] ||
    fail "a 1400-byte UDP datagram with DF: '$res', not EMSGSIZE from 'fragmentation needed'$(rpf_note)"
[ "$mtu" = $MTU ] || fail "the socket's path MTU is $mtu, not $MTU"
# The echo of 1200 bytes: "seen 203.0.113.1:PPPPP " and them.
[ "$small" = "small-$((1200 + 23))" ] || fail "a 1200-byte datagram after that: $small"

out=$(e2e_exec lan1 "$E2E_PYTHON" - "$WAN3" <<'EOF'
import os, select, socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s >> 16) + (s & 0xffff)
    return ~s & 0xffff

dst, ident = sys.argv[1], 4444
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setsockopt(socket.IPPROTO_IP, 10, 2)		# IP_MTU_DISCOVER, DO
payload = bytes(i & 0xff for i in range(1400))
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, 1) + payload,
         (dst, 0))
end = time.monotonic() + 3
while time.monotonic() < end:
    if not select.select([s], [], [], end - time.monotonic())[0]:
        break
    data, src = s.recvfrom(65535)
    hl = (data[0] & 15) * 4
    icmp = data[hl:]
    if icmp[0] != 3 or len(icmp) < 36:
        continue
    inner = icmp[8:]
    ihl = (inner[0] & 15) * 4
    iid = struct.unpack("!H", inner[ihl + 4:ihl + 6])[0]
    print("%s %d/%d mtu %d inner %s -> %s id %d icmpsum %s" % (
        src[0], icmp[0], icmp[1], struct.unpack("!H", icmp[6:8])[0],
        socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20]), iid,
        "OK" if csum(icmp) == 0 else "BAD"))
    sys.exit(0)
print("nothing")
EOF
)
e2e_log "(b) echo -M do -s 1400: $out"
read -r src tc _ mtu _ isrc _ idst _ iid _ icmpsum <<<"$out"
[ "$src" != nothing ] || fail "no ICMP error for an echo request -M do -s 1400$(rpf_note)"
[ "$src" = "$GW_WAN" ] || fail "'fragmentation needed' came from $src, not the NAT ($GW_WAN)"
[ "$tc" = 3/4 ] || fail "got ICMP $tc, not fragmentation needed (3/4)"
[ "$mtu" = $MTU ] || fail "the next-hop MTU is $mtu, not $MTU"
[ "$isrc $idst $iid" = "$LAN1 $WAN3 4444" ] ||
    fail "the quote is $isrc -> $idst id $iid, not lan1's own echo"
[ "$icmpsum" = OK ] || fail "the ICMP checksum is wrong"
e2e_exec lan1 ip route get "$WAN3" | grep -q " mtu $MTU" ||
    fail "lan1 did not cache path MTU $MTU for $WAN3: $(e2e_exec lan1 ip route get "$WAN3")"
e2e_ping lan1 "$WAN3" -M "do" -s 1200 >/dev/null || fail "a ping -M do -s 1200 fails"
grew drop.too_big_df "$df0" 2 "two packets with DF too big for the uplink"
grew icmp.generated "$ig0" 2 "each answered with fragmentation needed"
e2e_log "(b) DF too big: fragmentation needed, MTU $MTU, path MTU learned"

# --- (c) TCP, with MSS clamping.
df0=$(ctr drop.too_big_df)
mc0=$(ctr tcp.mss_clamped)
out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" tcp-send --to "$WAN1:8000" \
    --bytes $BYTES --timeout 20) || fail "the TCP transfer failed: $out"
e2e_wait_for 10 grep -q "^peer" "$E2E_TMP/sink.log" || fail "wan1 got no TCP stream"
sent=${out##* }
read -r _ _ _ n _ got _ mss <<<"$(grep "^peer" "$E2E_TMP/sink.log")"
[ "$n" = $BYTES ] || fail "wan1 got $n bytes, not $BYTES"
[ "$got" = "$sent" ] || fail "sha256 differs: sent $sent, got $got"
[ "$mss" -le $((MTU - 40)) ] || fail "wan1's MSS is $mss: the SYN was not clamped to $((MTU - 40))"
grew tcp.mss_clamped "$mc0" 1 "the SYNs carry an MSS for a 1500 MTU"
[ "$(ctr drop.too_big_df)" = "$df0" ] ||
    fail "segments too big for the uplink during the TCP transfer: the MSS was not clamped"
e2e_log "(c) $BYTES bytes over TCP, sha256 ok, MSS $mss, no PMTUD needed"

# --- (d) 3000 bytes from wan1 to lan1's mapping, in fragments.
fi0=$(ctr fragments.in)
fr0=$(ctr fragments.reassembled)
out=$(e2e_exec lan1 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN1:7002" \
    --bind "$LAN1:5011" --size 10 --timeout 3) ||
    fail "no answer to a datagram whose answer is 3000 bytes ($out)"
read -r pub len <<<"$out"
[ "$len" = 3000 ] || fail "lan1 got $len bytes of wan1's 3000"
grew fragments.in "$fi0" 3 "3000 bytes at MTU $MTU are at least 3 fragments"
grew fragments.reassembled "$fr0" 1 "sipnatd reassembles before translating"
[ "$(ctr fragments.pending)" = 0 ] || fail "fragments left pending"
e2e_log "(d) 3000 bytes from wan1 to $pub: reassembled, lan1 got them whole"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "fragmentation, DF handling, MSS clamping and reassembly at MTU $MTU"
