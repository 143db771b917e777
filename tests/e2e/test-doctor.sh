#!/bin/bash
#
# test-doctor.sh: scripts/sipnat-doctor in the gw namespace of the standard
# topology.  With sipnat-routes up and sipnatd running it finds nothing and
# exits 0.  Then one thing at a time is broken in gw: a kernel SIP helper in
# nftables (and in iptables, through a stand-in iptables-nft-save),
# ip_forward, forwarding on the LAN bridge, rp_filter on the TUN, a policy
# rule, the nftables table, the NAT range in ip_local_port_range, a stuck
# sipnatd, a stopped one, and the routes taken down.  Each must come out as
# a "problem: ... -- fix: ..." line with exit status 1, and once put right
# the doctor must say ok again.  The doctor itself changes nothing in gw,
# and nothing changes in the root namespace.
#
# SIPNAT_DOCTOR runs another copy of the script (to check that the test
# fails when the doctor is broken).

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

SIPNAT_DOCTOR=${SIPNAT_DOCTOR:-$SRCDIR/scripts/sipnat-doctor}
[ -r "$SIPNAT_DOCTOR" ] || fail "no $SIPNAT_DOCTOR"
TUN=$E2E_TUN
NFT=sipnat_$TUN
OUT=$E2E_TMP/doctor.out
DOCTOR_PATH=$PATH
P=$E2E_RULE_PRIORITY
PORT_LO=${E2E_PORT_RANGE%-*}
PORT_HI=${E2E_PORT_RANGE#*-}

# Run the doctor in a namespace (gw unless DOCTOR_NS says otherwise) on
# $CONF; output in $OUT, its exit status returned.
doctor() {
	e2e_exec "${DOCTOR_NS:-gw}" env PATH="$DOCTOR_PATH" SIPNATD="$SIPNATD" \
	    SIPNATCTL="$SIPNATCTL" SIPNAT_STATE_DIR="$SIPNAT_STATE_DIR" \
	    SIPNAT_CTL_TIMEOUT=2 bash "$SIPNAT_DOCTOR" -c "$CONF" "$@" \
	    >"$OUT" 2>&1
}

# Fail, showing what the doctor said.
dfail() {
	echo "--- sipnat-doctor said:"
	cat "$OUT"
	fail "$*"
}

# The doctor, run now, finds nothing: exit 0, every check ok.
expect_healthy() {
	local rc want

	doctor
	rc=$?
	[ "$rc" = 0 ] || dfail "$1: sipnat-doctor exits $rc, not 0"
	grep -q '^problem:' "$OUT" && dfail "$1: sipnat-doctor reports a problem"
	grep -qvE '^(ok|result): ' "$OUT" &&
	    dfail "$1: a line of the output is neither 'ok:' nor 'result:'"
	grep -qx 'result: no problems' "$OUT" || dfail "$1: no 'result: no problems'"
	for want in "no kernel SIP helper" "configuration $CONF is valid" \
	    "net.ipv4.ip_forward = 1" "TUN device $TUN is up" \
	    "rp_filter on $TUN is 2" "accept_local on $TUN is 1" \
	    "sipnat-routes is up with this configuration" \
	    "policy rules in place" "route table $E2E_TABLE: default dev $TUN" \
	    "nftables table ip $NFT marks" "NAT ports $PORT_LO-$PORT_HI" \
	    "sipnatd is running in this network namespace" \
	    "control socket $E2E_SOCK answers"; do
		grep -qF "ok: $want" "$OUT" || dfail "$1: no 'ok: $want'"
	done
}

# Is there a problem line matching ERE WHAT, with a fix matching ERE FIX?
has_problem() {
	grep -qE "^problem: .*$1.* -- fix: .*$2" "$OUT" ||
	    dfail "no 'problem: ...$1... -- fix: ...$2...'"
	e2e_log "found: $(grep -E "^problem: .*$1" "$OUT" | head -n 1)"
}

# The doctor, run now, reports the problem WHAT with the fix FIX, exit 1.
expect_problem() {
	local rc

	doctor
	rc=$?
	[ "$rc" = 1 ] || dfail "sipnat-doctor exits $rc, not 1, when it should find: $1"
	grep -qE '^result: [0-9]+ problem' "$OUT" || dfail "no 'result: N problem(s)'"
	has_problem "$1" "$2"
}

# Everything in gw the doctor might touch, in a file.
snapshot() {
	{
		echo "== ip rule"
		e2e_exec gw ip rule show
		echo "== ip route show table all"
		e2e_exec gw ip route show table all
		echo "== nft list ruleset"
		e2e_exec gw nft -s list ruleset
		echo "== sysctls"
		e2e_exec gw sh -c 'cd /proc/sys/net && for f in ipv4/ip_forward \
			ipv4/ip_local_port_range ipv4/ip_local_reserved_ports \
			ipv4/conf/*/rp_filter ipv4/conf/*/accept_local \
			ipv4/conf/*/forwarding netfilter/nf_conntrack_helper; do
			[ -e "$f" ] && printf "%s = %s\n" "$f" "$(cat "$f")"
		    done'
		echo "== links"
		e2e_exec gw ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'
		echo "== addresses"
		e2e_exec gw ip -o -4 addr show
		echo "== state"
		cat "$SIPNAT_STATE_DIR/routes-$TUN.state"
	} >"$1" 2>&1
}

# The same for the root namespace, which must never change.
snapshot_root() {
	{
		ip rule show
		ip route show table all
		nft list tables
		cat /proc/sys/net/ipv4/ip_forward \
		    /proc/sys/net/ipv4/ip_local_port_range \
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

snapshot_root "$E2E_TMP/root.before"
e2e_setup
CONF=$E2E_TMP/sipnat.ini
e2e_write_conf "$CONF" || fail "cannot write the config"
e2e_start_sipnatd "$CONF"

# --- healthy, and read-only
snapshot "$E2E_TMP/s0"
expect_healthy "with routes up and sipnatd running"
doctor -q || dfail "sipnat-doctor -q exits $? on a healthy router"
[ -s "$OUT" ] && dfail "sipnat-doctor -q prints something on a healthy router"
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s0" "$E2E_TMP/s" "sipnat-doctor changed something in gw"
e2e_log "healthy router: no problems, exit 0, nothing changed"

# --- a kernel SIP helper in nftables, as a classic NAT router has it
cat >"$E2E_TMP/kernelsip.nft" <<'EOF'
table ip kernelsip {
	ct helper sip-udp { type "sip" protocol udp; l3proto ip; }
	ct helper ftp-tcp { type "ftp" protocol tcp; l3proto ip; }
	chain pre {
		type filter hook prerouting priority filter; policy accept;
		udp dport 5060 ct helper set "sip-udp"
		tcp dport 21 ct helper set "ftp-tcp"
	}
}
EOF
e2e_exec gw nft -f "$E2E_TMP/kernelsip.nft" >"$E2E_TMP/nft.err" 2>&1 ||
    skip "cannot make ct helpers in gw (no nf_conntrack_sip or nf_conntrack_ftp?): $(head -n 1 "$E2E_TMP/nft.err")"
snapshot "$E2E_TMP/s1"
expect_problem 'kernel SIP helper: nftables ct helper "sip-udp" \(type "sip"\) in table ip kernelsip' \
    'nft delete rule ip kernelsip pre handle [0-9]+; nft delete ct helper ip kernelsip sip-udp$'
grep -q 'ftp-tcp' "$OUT" && dfail "the ftp helper was reported as a SIP helper"
[ "$(grep -c '^problem:' "$OUT")" = 1 ] || dfail "more than one problem with one SIP helper"
snapshot "$E2E_TMP/s"
same "$E2E_TMP/s1" "$E2E_TMP/s" "sipnat-doctor changed something in gw"
doctor -q
[ $? = 1 ] || dfail "sipnat-doctor -q does not exit 1 with a problem"
grep -qv '^problem: ' "$OUT" && dfail "sipnat-doctor -q prints more than problems"
grep -q '^problem: kernel SIP helper' "$OUT" || dfail "sipnat-doctor -q hides the problem"

# Its fix, as printed, removes it.
fix=$(sed -n 's/^problem: kernel SIP helper.* -- fix: //p' "$OUT")
e2e_exec gw sh -c "$fix" || fail "the doctor's fix '$fix' fails"
e2e_exec gw nft list table ip kernelsip | grep -q '"sip"' &&
    fail "the doctor's fix '$fix' left the SIP helper"
e2e_exec gw nft list table ip kernelsip | grep -q 'ct helper set "ftp-tcp"' ||
    fail "the doctor's fix '$fix' removed the ftp helper rule"
expect_healthy "after the doctor's own fix for the SIP helper"
e2e_exec gw nft delete table ip kernelsip || fail "cannot delete table ip kernelsip"
expect_healthy "with the helper table gone"

# --- a kernel SIP helper in iptables (a stand-in iptables-nft-save)
mkdir -p "$E2E_TMP/bin"
cat >"$E2E_TMP/bin/iptables-nft-save" <<'EOF'
#!/bin/sh
# stand-in for iptables-nft-save: a raw table with the kernel's SIP helper
cat <<'T'
# Generated by iptables-nft-save v1.8.9 (nf_tables)
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 5060 -j CT --helper sip
-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp
COMMIT
T
EOF
chmod +x "$E2E_TMP/bin/iptables-nft-save"
DOCTOR_PATH=$E2E_TMP/bin:$PATH
expect_problem "kernel SIP helper: iptables-nft rule '-A PREROUTING -p udp -m udp --dport 5060 -j CT --helper sip'" \
    'iptables-nft -t raw -D PREROUTING -p udp -m udp --dport 5060 -j CT --helper sip$'
grep -q 'helper ftp' "$OUT" && dfail "the iptables ftp helper was reported"
DOCTOR_PATH=$PATH
expect_healthy "without the iptables stand-in"

# --- forwarding
e2e_sysctl gw net.ipv4.ip_forward 0 || fail "cannot set ip_forward in gw"
expect_problem 'net.ipv4.ip_forward = 0' 'sysctl -w net.ipv4.ip_forward=1'
e2e_sysctl gw net.ipv4.ip_forward 1 || fail "cannot set ip_forward in gw"
expect_healthy "with ip_forward back at 1"
e2e_sysctl gw net.ipv4.conf.br0.forwarding 0 || fail "cannot set br0 forwarding"
expect_problem 'forwarding is off on br0' 'sysctl -w net.ipv4.conf.br0.forwarding=1'
e2e_sysctl gw net.ipv4.conf.br0.forwarding 1 || fail "cannot set br0 forwarding"
expect_healthy "with forwarding back on on br0"

# --- rp_filter on the TUN
e2e_sysctl gw "net.ipv4.conf.$TUN.rp_filter" 1 || fail "cannot set rp_filter"
expect_problem "rp_filter on $TUN is strict" "sysctl -w net.ipv4.conf.$TUN.rp_filter=2"
e2e_sysctl gw "net.ipv4.conf.$TUN.rp_filter" 2 || fail "cannot set rp_filter"
expect_healthy "with rp_filter back at 2"

# --- a policy rule missing, and the nftables table changed: the fix,
# sipnat-routes up, puts them right
e2e_exec gw ip rule del pref "$P" fwmark "$E2E_MARK" lookup "$E2E_TABLE" ||
    fail "cannot delete the fwmark rule"
expect_problem "policy rules missing: pref $P fwmark $E2E_MARK lookup $E2E_TABLE" \
    "sipnat-routes up -c $CONF"
e2e_routes up "$CONF" >/dev/null || fail "sipnat-routes up failed"
expect_healthy "after sipnat-routes up put the rule back"
e2e_exec gw nft add rule ip "$NFT" prerouting udp dport 5060 drop ||
    fail "cannot change table ip $NFT"
expect_problem "nftables table ip $NFT was changed since sipnat-routes up" \
    "sipnat-routes up -c $CONF"
e2e_routes up "$CONF" >/dev/null || fail "sipnat-routes up failed"
expect_healthy "after sipnat-routes up loaded the table again"

# --- the NAT range in ip_local_port_range: fine while reserved
range=$(e2e_exec gw cat /proc/sys/net/ipv4/ip_local_port_range | tr '\t' ' ')
reserved=$(e2e_exec gw cat /proc/sys/net/ipv4/ip_local_reserved_ports)
lo=$(((PORT_LO + PORT_HI) / 2))
e2e_sysctl gw net.ipv4.ip_local_port_range "$lo 60999" ||
    fail "cannot set ip_local_port_range in gw"
expect_healthy "with ip_local_port_range overlapping the reserved NAT range"
e2e_sysctl gw net.ipv4.ip_local_reserved_ports "" ||
    fail "cannot clear ip_local_reserved_ports in gw"
expect_problem "NAT ports $lo-$PORT_HI \\(wan.port_range $PORT_LO-$PORT_HI\\) are in net.ipv4.ip_local_port_range" \
    "sipnat-routes up -c $CONF"
e2e_sysctl gw net.ipv4.ip_local_reserved_ports "$reserved" ||
    fail "cannot restore ip_local_reserved_ports in gw"
e2e_sysctl gw net.ipv4.ip_local_port_range "$range" ||
    fail "cannot restore ip_local_port_range in gw"
expect_healthy "with the port ranges restored"

# --- the control socket answered from another namespace
DOCTOR_NS=inet doctor
has_problem "sipnatd is not running in this network namespace" "systemctl start sipnatd"
has_problem "control socket $E2E_SOCK answers, but from a sipnatd in another network namespace" \
    "run sipnat-doctor in the namespace"
DOCTOR_NS=

# --- sipnatd stuck: running, but its control socket silent
kill -STOP "$E2E_SIPNATD_PID" || fail "cannot stop sipnatd"
expect_problem "control socket $E2E_SOCK is silent" "restart sipnatd"
grep -q '^ok: sipnatd is running' "$OUT" || dfail "a stuck sipnatd is not seen running"
kill -CONT "$E2E_SIPNATD_PID" || fail "cannot continue sipnatd"
expect_healthy "with sipnatd going again"

# --- sipnatd stopped
e2e_kill "$E2E_SIPNATD_PID" 10 || fail "sipnatd did not exit cleanly"
E2E_SIPNATD_PID=
expect_problem "sipnatd is not running in this network namespace" "systemctl start sipnatd"
has_problem "control socket $E2E_SOCK" "start sipnatd"

# --- routes down as well
e2e_routes down "$CONF" >/dev/null || fail "sipnat-routes down failed"
# shellcheck disable=SC2034  # read by lib.sh's exit hook
E2E_ROUTES_UP=0
expect_problem "sipnat-routes is not up here" "sipnat-routes up -c $CONF"
has_problem "policy rules missing: pref $P fwmark" "sipnat-routes up -c $CONF"
has_problem "nftables table ip $NFT is missing" "sipnat-routes up -c $CONF"
has_problem "TUN device $TUN does not exist" "sipnat-routes up -c $CONF"

snapshot_root "$E2E_TMP/root.after"
same "$E2E_TMP/root.before" "$E2E_TMP/root.after" "the root namespace changed"
pass "sipnat-doctor"
