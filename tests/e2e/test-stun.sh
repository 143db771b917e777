#!/bin/bash
#
# test-stun.sh: the NAT as a real STUN client classifies it (RFC 3489
# tests, stun-client's "stun" in lan1 against stun-server's "stund" in wan1,
# which has a second address for the "change IP" tests):
#   - default filtering (address-and-port-dependent): "Independent Mapping,
#     Port Dependent Filter" (port restricted cone); sipnatd counts the
#     change-IP/port answers it filtered (drop.filtered);
#   - nat.filtering = endpoint-independent: "Independent Mapping,
#     Independent Filter" (full cone); the answers from the other address
#     open sessions of the same mapping;
#   - "preserves ports" from a source port inside the NAT port range,
#     "random port" from one outside it (the NAT cannot keep it);
#   - "will hairpin" (RFC 4787 REQ-9): the client sends to its own public
#     mapping and must get it back.
# The exit status of stun says the same: bits 1-3 the type (2 independent
# filter, 4 address dependent, 6 port dependent, 8 dependent mapping), bit
# 0 "preserves ports", bit 4 "no hairpin".

. "$(dirname "$0")/lib.sh"

e2e_require_root stun stund ss
e2e_require_sipnatd
e2e_is_sipnatd || skip "sipnatd only: it checks sipnatctl sessions and stats"

STUN1=$WAN1			# stund's primary address, port 3478
STUN2=198.51.100.11		# and its alternate, port 3479

ctr() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# What gw's kernel dropped in its reverse path filter.
rpf_drops() {
	e2e_exec gw cat /proc/net/netstat | awk '$1 == "TcpExt:" {
		if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1; next }
		for (i = 2; i <= NF; i++) if (n[i] == "IPReversePathFilter") print $i
	}'
}

stund_ready() {
	[ "$(e2e_exec wan1 ss -Hlun | grep -cE ":347[89]\b")" -ge 4 ]
}

# Run stun from lan1 with a source port: sets OUT (the classification line)
# and RC (the exit status).
run_stun() {
	e2e_exec lan1 stun "$STUN1" -p "$1" >"$E2E_TMP/stun.out" 2>&1
	RC=$?
	OUT=$(grep "^Primary:" "$E2E_TMP/stun.out" | tr -d '\t')
	[ -n "$OUT" ] || {
		cat "$E2E_TMP/stun.out"
		fail "stun -p $1 printed no classification (exit $RC)"
	}
	e2e_log "stun -p $1: $OUT (exit $(printf 0x%02x "$RC"))"
}

# expect TYPE-TEXT TYPE-BITS PORT-TEXT PORT-BIT: check OUT and RC.
expect() {
	case $OUT in
	"Primary: $1, "*) ;;
	*) fail "stun says '$OUT', expected '$1'" ;;
	esac
	[ $((RC & 0x0e)) = "$2" ] ||
	    fail "stun's exit status $(printf 0x%02x "$RC") has not type $2"
	case $OUT in
	*", $3,"*) ;;
	*) fail "stun says '$OUT', expected '$3'" ;;
	esac
	[ $((RC & 1)) = "$4" ] ||
	    fail "stun's exit status $(printf 0x%02x "$RC") disagrees on '$3'"
}

HAIRPIN_FAIL=

# Note a missing hairpin, checked last so that it does not hide the rest.
check_hairpin() {
	case $OUT in
	*", will hairpin") ;;
	*) HAIRPIN_FAIL="$HAIRPIN_FAIL -p $1" ;;
	esac
}

e2e_setup
e2e_exec wan1 ip addr add "$STUN2/24" dev eth0 ||
    fail "cannot give wan1 a second address"
e2e_bg wan1 "$E2E_TMP/stund.log" stund -h "$STUN1" -a "$STUN2"
e2e_wait_for 5 stund_ready || {
	cat "$E2E_TMP/stund.log"
	fail "stund does not listen on $STUN1 and $STUN2, ports 3478 and 3479"
}

# Without the NAT: wan2, on the same side, sees an open internet.
e2e_exec wan2 stun "$STUN1" >"$E2E_TMP/stun.out" 2>&1
grep -q "^Primary: Open" "$E2E_TMP/stun.out" || {
	cat "$E2E_TMP/stun.out"
	fail "stund misbehaves: wan2 is not 'Open'"
}

# --- address-and-port-dependent filtering (the default).
CONF=$E2E_TMP/sipnat.ini
e2e_write_conf "$CONF" || fail "cannot write the config"
e2e_start_sipnatd "$CONF"
f0=$(ctr drop.filtered)
run_stun 20000
expect "Independent Mapping, Port Dependent Filter" 6 "preserves ports" 1
check_hairpin 20000
e2e_ctl sessions | grep -q "^udp  *$LAN1:20000  *$GW_WAN:20000 " ||
    fail "sessions do not show $LAN1:20000 mapped to $GW_WAN:20000"
[ "$(ctr drop.filtered)" -gt "$f0" ] ||
    fail "drop.filtered did not count the answers from the other address"
run_stun 5000
expect "Independent Mapping, Port Dependent Filter" 6 "random port" 0
check_hairpin 5000
e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"

# --- endpoint-independent filtering.
e2e_write_conf "$CONF" "nat.filtering = endpoint-independent" ||
    fail "cannot write the config"
e2e_start_sipnatd "$CONF"
run_stun 20100
expect "Independent Mapping, Independent Filter" 2 "preserves ports" 1
check_hairpin 20100
# Tests II and III go from the next port: the answers from the other
# address made sessions of their own (sent nothing, received).
e2e_ctl sessions | awk -v m="$GW_WAN:20101" -v r="$STUN2:" \
    '$1 == "udp" && $3 == m && index($4, r) == 1 && $7 == 0 && $8 > 0 { f = 1 }
    END { exit !f }' || {
	e2e_ctl sessions
	fail "no inbound session from $STUN2 on mapping $GW_WAN:20101"
}
run_stun 5100
expect "Independent Mapping, Independent Filter" 2 "random port" 0
check_hairpin 5100

[ -z "$HAIRPIN_FAIL" ] || {
	n=$(rpf_drops)
	msg="no hairpin (stun$HAIRPIN_FAIL): packets to the own public mapping do not come back"
	[ "${n:-0}" -gt 0 ] &&
	    msg="$msg; gw's reverse path filter dropped $n packets (TcpExtIPReversePathFilter; rp_filter $(e2e_exec gw cat "/proc/sys/net/ipv4/conf/$E2E_TUN/rp_filter") on $E2E_TUN): hairpinned ones come from $GW_WAN"
	fail "$msg"
}

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "stun: port restricted cone by default, full cone with endpoint-independent filtering, ports preserved, hairpin"
