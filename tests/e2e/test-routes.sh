#!/bin/bash
#
# test-routes.sh: scripts/sipnat-routes in the gw namespace of the standard
# topology.  "up" builds what the data path needs and is idempotent, "down"
# restores exactly what was there, a failing "up" leaves nothing behind, and
# the nftables marks catch what they should (checked with real packets).
#
# Uses the built sipnatd for "sipnatd -t -v" when there is one, otherwise a
# stand-in that prints the config file the way sipnatd would.

. "$(dirname "$0")/lib.sh"

e2e_require_root socat

# A stand-in for "sipnatd -t -v -c FILE": the files e2e_write_conf writes
# are already canonical INI.
fake_sipnatd() {
	cat >"$E2E_TMP/fake-sipnatd" <<'EOF'
#!/bin/sh
# fake sipnatd: only -t -v -c FILE
conf=
while [ $# -gt 0 ]; do
	case $1 in
	-c) conf=$2; shift ;;
	-t | -v) ;;
	*) echo "fake sipnatd: only -t -v -c FILE" >&2; exit 1 ;;
	esac
	shift
done
[ -r "$conf" ] || { echo "fake sipnatd: cannot read $conf" >&2; exit 1; }
grep -v '^[;#]' "$conf"
echo "configuration OK"
EOF
	chmod +x "$E2E_TMP/fake-sipnatd"
	SIPNATD=$E2E_TMP/fake-sipnatd
}

REAL=0
if [ -x "$SIPNATD" ]; then
	REAL=1
	e2e_log "using the real sipnatd: $SIPNATD"
else
	e2e_log "no sipnatd at $SIPNATD: using a stand-in for sipnatd -t -v"
	fake_sipnatd
fi

TUN=$E2E_TUN
NFT=sipnat_$TUN
STATE=$SIPNAT_STATE_DIR/routes-$TUN.state

# Everything in gw that sipnat-routes may change, in a file.
snapshot() {
	{
		echo "== ip rule"
		e2e_exec gw ip rule show
		echo "== ip route show table all"
		e2e_exec gw ip route show table all
		echo "== nft list ruleset"
		e2e_exec gw nft -s list ruleset
		echo "== sysctls"
		e2e_exec gw sh -c 'cd /proc/sys/net/ipv4 &&
		    for f in ip_forward ip_local_reserved_ports conf/*/rp_filter \
			conf/*/accept_local; do
			printf "%s = %s\n" "$f" "$(cat "$f")"
		    done'
		echo "== links"
		e2e_exec gw ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'
	} >"$1" 2>&1
}

# The same checks for the root namespace, which must never change.
snapshot_root() {
	{
		ip rule show
		ip route show table all
		nft list tables
		cat /proc/sys/net/ipv4/ip_forward \
		    /proc/sys/net/ipv4/ip_local_reserved_ports
	} >"$1" 2>&1
}

# Fail unless two snapshots are the same.
same() {
	diff -u "$1" "$2" >"$E2E_TMP/diff" || {
		cat "$E2E_TMP/diff"
		fail "$3"
	}
}

# Packets counted by the rule of our nft table with this comment.
nft_count() {
	e2e_exec gw nft list table ip "$NFT" |
	    awk -v c="comment \"$1\"" 'index($0, c) {
		for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit }
	    }'
}

# Wait until a rule's counter passes a value.
count_above() {
	local n

	n=$(nft_count "$1")
	[ -n "$n" ] && [ "$n" -gt "$2" ]
}

# The output of "ip route get" in gw, for a routing decision.
route_get() {
	e2e_exec gw ip -o route get "$@" 2>&1
}

# Send one UDP datagram: udp_send NS DST PORT BYTES [socat address options].
udp_send() {
	local ns=$1 dst=$2 port=$3 bytes=$4 opts=${5:+,$5}

	head -c "$bytes" /dev/zero |
	    e2e_exec "$ns" socat -u -b 65000 - "UDP4-SENDTO:$dst:$port$opts"
}

snapshot_root "$E2E_TMP/root.before"
e2e_setup

# --- the topology alone
e2e_ping wan1 "$GW_WAN" >/dev/null || fail "wan1 cannot ping $GW_WAN"
e2e_ping lan1 "$GW_LAN" >/dev/null || fail "lan1 cannot ping $GW_LAN"
e2e_ping lan1 "$LAN2" >/dev/null || fail "lan1 cannot ping lan2"
e2e_ping wan1 "$LAN1" -W 0.5 >/dev/null && fail "wan1 reaches $LAN1"
e2e_log "topology ok"

# Something reserved already, partly inside the NAT range: must survive.
e2e_sysctl gw net.ipv4.ip_local_reserved_ports 5060,30000-40000 ||
    fail "cannot set ip_local_reserved_ports in gw"

CONF=$E2E_TMP/sipnat.ini
e2e_write_conf "$CONF" "tun.mtu = 1400" || fail "cannot write the config"
snapshot "$E2E_TMP/s0"

# --- down without up does nothing
e2e_routes down "$CONF" >"$E2E_TMP/out" 2>&1 || {
	cat "$E2E_TMP/out"
	fail "down without up failed"
}
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s0" "$E2E_TMP/s" "down without up changed something"
[ -e "$STATE" ] && fail "down without up left a state file"
e2e_log "down without up: no-op"

# --- up with an unknown WAN interface and no address fails cleanly
e2e_write_conf "$E2E_TMP/bad.ini" "tun.mtu = 1400" "wan.interface = nosuch0" \
    "wan.address =" 2>/dev/null
e2e_routes up "$E2E_TMP/bad.ini" >"$E2E_TMP/out" 2>&1 &&
    fail "up with a missing WAN interface succeeded"
grep -q nosuch0 "$E2E_TMP/out" || {
	cat "$E2E_TMP/out"
	fail "the error does not name the WAN interface"
}
e2e_log "expected error: $(head -n 1 "$E2E_TMP/out")"
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s0" "$E2E_TMP/s" "a failed up left something behind"
[ -e "$STATE" ] && fail "a failed up left a state file"

# --- up failing midway (table not empty) rolls back what it did
e2e_exec gw ip route add blackhole 192.0.2.0/24 table "$E2E_TABLE" ||
    fail "cannot add a route to table $E2E_TABLE"
snapshot "$E2E_TMP/s0b"
e2e_routes up "$CONF" >"$E2E_TMP/out" 2>&1 && fail "up with table $E2E_TABLE in use succeeded"
grep -q "rolling back" "$E2E_TMP/out" || {
	cat "$E2E_TMP/out"
	fail "up did not fail midway as planned"
}
e2e_log "expected error: $(head -n 1 "$E2E_TMP/out")"
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s0b" "$E2E_TMP/s" "rollback of a failed up left something behind"
[ -e "$STATE" ] && fail "a rolled back up left a state file"
e2e_exec gw ip route del blackhole 192.0.2.0/24 table "$E2E_TABLE"
e2e_log "failed up rolled back"

# --- up, twice
e2e_routes up "$CONF" >"$E2E_TMP/out" 2>&1 || {
	cat "$E2E_TMP/out"
	fail "up failed"
}
snapshot "$E2E_TMP/s1"
cp "$STATE" "$E2E_TMP/state1" || fail "up wrote no state file"
e2e_routes up "$CONF" >"$E2E_TMP/out" 2>&1 || {
	cat "$E2E_TMP/out"
	fail "second up failed"
}
snapshot "$E2E_TMP/s2"
same "$E2E_TMP/s1" "$E2E_TMP/s2" "a second up changed something"
same "$E2E_TMP/state1" "$STATE" "a second up changed the state file"
e2e_log "up is idempotent"

# --- what is in place
rules=$(e2e_exec gw ip rule show)
P=$E2E_RULE_PRIORITY
for want in "$P:	from all fwmark $E2E_MARK lookup $E2E_TABLE" \
    "$((P + 1)):	from all lookup local" \
    "$((P + 2)):	from all to $LAN_NET lookup main" \
    "$((P + 3)):	from $LAN_NET iif br0 lookup $E2E_TABLE"; do
	grep -qxF "$want" <<<"$rules" || {
		echo "$rules"
		fail "rule missing: $want"
	}
done
grep -q "^0:.*lookup local" <<<"$rules" && fail "lookup local still at pref 0"
fwmark_pref=$(awk -F: '/fwmark/ { print $1; exit }' <<<"$rules")
local_pref=$(awk -F: '/lookup local/ { print $1; exit }' <<<"$rules")
lan_pref=$(awk -F: '/from 10\./ { print $1; exit }' <<<"$rules")
main_pref=$(awk -F: '/from all lookup main/ { print $1; exit }' <<<"$rules")
[ "$fwmark_pref" -lt "$local_pref" ] &&
    [ "$local_pref" -lt "$lan_pref" ] &&
    [ "$lan_pref" -lt "$main_pref" ] || {
	echo "$rules"
	fail "rules out of order"
}

t=$(e2e_exec gw ip route show table "$E2E_TABLE")
[ "$(awk '{ print $1, $2, $3 }' <<<"$t")" = "default dev $TUN" ] || {
	echo "$t"
	fail "table $E2E_TABLE is not just 'default dev $TUN'"
}

link=$(e2e_exec gw ip -o link show dev "$TUN") || fail "no $TUN device"
grep -q "<[^>]*\bUP\b" <<<"$link" || fail "$TUN is not up: $link"
grep -q " mtu 1400 " <<<"$link" || fail "$TUN has not mtu 1400: $link"
e2e_exec gw ip -d link show dev "$TUN" | grep -q "tun type tun" ||
    fail "$TUN is not a TUN device"

sysctl_is() {
	local v

	v=$(e2e_exec gw cat "/proc/sys/net/ipv4/$1")
	[ "$v" = "$2" ] || fail "net.ipv4.${1//\//.} is '$v', not '$2'"
}
sysctl_is ip_forward 1
sysctl_is "conf/$TUN/rp_filter" 2
sysctl_is "conf/$TUN/accept_local" 1
sysctl_is ip_local_reserved_ports 5060,10000-40000

nftab=$(e2e_exec gw nft list table ip "$NFT") || fail "no nft table ip $NFT"
for want in "type filter hook prerouting priority mangle" \
    "iifname \"$TUN\" return" "ip daddr != $GW_WAN return" \
    "meta mark set 0x00005060"; do
	grep -qF "$want" <<<"$nftab" || {
		echo "$nftab"
		fail "nft table lacks: $want"
	}
done
e2e_log "rules, table, device, sysctls and nft table in place"

# Routing decisions.
r=$(route_get "$WAN1" from "$LAN1" iif br0)
grep -q " dev $TUN " <<<"$r" || fail "LAN to WAN does not go to the TUN: $r"
r=$(route_get "$LAN2" from "$LAN1" iif br0)
grep -q " dev br0 " <<<"$r" || fail "LAN to LAN does not stay on br0: $r"
r=$(route_get "$GW_LAN" from "$LAN1" iif br0)
grep -q "^local " <<<"$r" || fail "LAN to the router is not local: $r"
r=$(route_get "$GW_WAN" from "$LAN1" iif br0)
grep -q "^local " <<<"$r" || fail "LAN to the public address (unmarked) is not local: $r"
r=$(route_get "$GW_WAN" from "$WAN1" iif wan0 mark "$E2E_MARK")
grep -q " dev $TUN " <<<"$r" || fail "marked WAN packets do not go to the TUN: $r"
r=$(route_get "$GW_WAN" from "$WAN1" iif wan0)
grep -q "^local " <<<"$r" || fail "unmarked WAN packets are not local: $r"
e2e_log "routing decisions right"

# --- the marks, with real packets
c=$(nft_count "tcp/udp to a nat port")
udp_send wan1 "$GW_WAN" 20000 100 || fail "cannot send UDP from wan1"
e2e_wait_for 2 count_above "tcp/udp to a nat port" "$c" ||
    fail "UDP to a NAT port was not marked"
c=$(nft_count "tcp/udp to a nat port")
udp_send wan1 "$GW_WAN" 9999 100
sleep 0.2
[ "$(nft_count "tcp/udp to a nat port")" = "$c" ] ||
    fail "UDP to port 9999 was marked"

f=$(nft_count "non-first fragments")
udp_send wan1 "$GW_WAN" 20000 3000
e2e_wait_for 2 count_above "non-first fragments" "$f" ||
    fail "non-first fragments were not marked"
e2e_wait_for 2 count_above "tcp/udp to a nat port" "$c" ||
    fail "the first fragment was not marked"

c=$(nft_count "icmp error about tcp/udp from a nat port")
udp_send gw "$WAN1" 9 10 "bind=$GW_WAN:20001"
e2e_wait_for 2 count_above "icmp error about tcp/udp from a nat port" "$c" ||
    fail "port unreachable about a NAT port was not marked"

c=$(nft_count "echo reply to a nat id")
e2e_ping gw "$WAN1" -I "$GW_WAN" -i 20002 -W 0.5 >/dev/null &&
    fail "an echo reply with an id in the NAT range reached gw itself"
count_above "echo reply to a nat id" "$c" ||
    fail "an echo reply with an id in the NAT range was not marked"
e2e_ping gw "$WAN1" -I "$GW_WAN" -i 5000 >/dev/null ||
    fail "an echo reply with an id outside the NAT range was diverted"

c=$(nft_count "icmp error about an echo request with a nat id")
e2e_ping gw "$WAN1" -I "$GW_WAN" -i 20003 -t 1 -W 0.5 >/dev/null
e2e_wait_for 2 count_above "icmp error about an echo request with a nat id" "$c" ||
    fail "time exceeded about an echo with a NAT id was not marked"

e2e_ping wan1 "$GW_WAN" >/dev/null || fail "wan1 cannot ping $GW_WAN with routes up"
e2e_ping lan1 "$GW_LAN" >/dev/null || fail "lan1 cannot ping $GW_LAN with routes up"
e2e_ping lan1 "$LAN2" >/dev/null || fail "lan1 cannot ping lan2 with routes up"
e2e_log "nftables marks what sipnatd must get, and only that"

# --- status
e2e_routes status "$CONF" >"$E2E_TMP/out" 2>&1 || {
	cat "$E2E_TMP/out"
	fail "status says something is missing"
}

# --- up repairs what went missing
e2e_exec gw ip rule del pref "$P" fwmark "$E2E_MARK" lookup "$E2E_TABLE"
e2e_routes status "$CONF" >/dev/null 2>&1 && fail "status did not see a missing rule"
e2e_routes up "$CONF" >"$E2E_TMP/out" 2>&1 || {
	cat "$E2E_TMP/out"
	fail "up after a rule went missing failed"
}
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s1" "$E2E_TMP/s" "up did not repair a missing rule"

# --- down, twice
e2e_routes down "$CONF" >"$E2E_TMP/out" 2>&1 || {
	cat "$E2E_TMP/out"
	fail "down failed"
}
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s0" "$E2E_TMP/s" "down did not restore everything"
[ -e "$STATE" ] && fail "down left the state file"
e2e_routes down "$CONF" >"$E2E_TMP/out" 2>&1 || {
	cat "$E2E_TMP/out"
	fail "second down failed"
}
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s0" "$E2E_TMP/s" "a second down changed something"
e2e_routes status "$CONF" >/dev/null 2>&1
[ $? = 3 ] || fail "status after down does not say 'not up'"
e2e_log "down restores the snapshot exactly"

# --- with the real sipnatd: it attaches to the device up made, and up
# run after sipnatd made the device leaves the device alone.
if [ "$REAL" = 1 ] && [ -x "$SIPNATCTL" ]; then
	e2e_start_sipnatd "$CONF"
	e2e_wait_for 5 sh -c "ip netns exec $(e2e_ns gw) ip link show dev $TUN |
	    grep -q LOWER_UP" || fail "sipnatd did not attach to $TUN"
	e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
	snapshot "$E2E_TMP/s"
	same "$E2E_TMP/s0" "$E2E_TMP/s" "routes and sipnatd left something behind"

	e2e_bg gw "$E2E_LOG" "$SIPNATD" -f -c "$CONF"
	E2E_SIPNATD_PID=$E2E_LAST_PID
	e2e_wait_for 15 e2e_sipnatd_ready || fail "sipnatd did not start"
	e2e_routes up "$CONF" >"$E2E_TMP/out" 2>&1 || {
		cat "$E2E_TMP/out"
		fail "up with sipnatd running failed"
	}
	grep -q "^tun " "$STATE" && fail "up recorded sipnatd's device as its own"
	E2E_ROUTES_UP=1
	e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
	snapshot "$E2E_TMP/s"
	same "$E2E_TMP/s0" "$E2E_TMP/s" "down after sipnatd left something behind"
	e2e_log "sipnatd works with the device either way"
fi

snapshot_root "$E2E_TMP/root.after"
same "$E2E_TMP/root.before" "$E2E_TMP/root.after" "the root namespace changed"
pass "sipnat-routes"
