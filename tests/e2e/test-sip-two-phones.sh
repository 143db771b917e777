#!/bin/bash
#
# test-sip-two-phones.sh: two phones behind the NAT on the same local port
# (lan1 and lan2, both 5060) register different AORs (phone1, phone2) with
# the provider (kamailio in wan1):
#   - the provider sees two different Contacts, both the public address,
#     each the public address and port its REGISTER came from;
#   - a call to phone1 (sipp in wan2, through the provider) is answered by
#     lan1 while lan2 hears nothing; then a call to phone2 is answered by
#     lan2: each phone's sipp got exactly one INVITE, for its own AOR, with
#     its own inside address in the Request-URI;
#   - sipnatctl registrations lists both, inside 10.0.0.11:5060 and
#     10.0.0.12:5060, with the public endpoints the provider saw.
# Assertions on sipnatctl are only made when the gateway is sipnatd.

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp kamailio
e2e_require_sipnatd

SIPDIR=$E2E_DIR/sip
EXPIRES=120
KAMLOG=$E2E_TMP/kamailio.log
cd "$E2E_TMP" || exit 1

# The registration of an AOR from sipnatctl -j registrations, as
# "INSIDE PUBLIC EXPIRES_IN", or nothing.
registration() {
	e2e_ctl -j registrations | "$E2E_PYTHON" -c '
import json, sys
for r in json.load(sys.stdin)["registrations"]:
    if r["aor"] == sys.argv[1]:
        print(r["inside"], r["public"], r["expires_in"])
' "$1"
}

# Wait for a background process to end, at most SECS; its exit status
# (killed if it takes longer).
wait_pid() {
	local pid=$1 secs=$2 i

	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	e2e_kill "$pid" 1
}

# Is something listening on UDP ADDR:PORT in NS?
udp_listening() {
	e2e_exec "$1" ss -Hunl "src $2" | grep -q .
}

# sipp in NS with the log and message trace under NAME in E2E_TMP;
# E2E_LAST_PID is its pid.
sipp_bg() {
	local ns=$1 name=$2

	shift 2
	e2e_bg "$ns" "$E2E_TMP/$name.log" sipp -nostdin -m 1 \
	    -timeout 30 -timeout_error -recv_timeout 20000 \
	    -trace_msg -message_file "$E2E_TMP/$name.msg" \
	    -trace_err -error_file "$E2E_TMP/$name.err" "$@"
}

# Run sipp to its end; shows its trace on failure.
sipp_run() {
	local name=$2 pid

	sipp_bg "$@"
	pid=$E2E_LAST_PID
	wait_pid "$pid" 35 || {
		sipp_show "$name"
		return 1
	}
}

# What a sipp run saw, for a failure report.
sipp_show() {
	echo "--- $1: log"
	tail -n 15 "$E2E_TMP/$1.log"
	echo "--- $1: messages"
	tail -n 60 "$E2E_TMP/$1.msg" 2>/dev/null
	[ -s "$E2E_TMP/$1.err" ] && { echo "--- $1: errors"; tail -n 30 "$E2E_TMP/$1.err"; }
	echo "--- kamailio"
	grep -E "e2e:|ERROR" "$KAMLOG" | tail -n 20
}

# INVITEs in a phone's message trace.
invites() {
	grep -c "^INVITE " "$E2E_TMP/$1.msg" 2>/dev/null
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

mkdir -p "$E2E_TMP/kamailio"
e2e_bg wan1 "$KAMLOG" kamailio -f "$SIPDIR/kamailio.cfg" -DD -E \
    -A "LISTEN=udp:$WAN1:5060" -m 32 -M 4 -Y "$E2E_TMP/kamailio" \
    -w "$E2E_TMP/kamailio"
KAMPID=$E2E_LAST_PID
e2e_wait_for 10 udp_listening wan1 "$WAN1:5060" || {
	tail -n 20 "$KAMLOG"
	fail "kamailio did not start in wan1"
}
e2e_log "kamailio (pid $KAMPID) listens on $WAN1:5060"

# --- both phones register from local port 5060
declare -A CONTACT
for i in 1 2; do
	ns=lan$i
	addr=$LAN1
	[ "$i" = 2 ] && addr=$LAN2
	sipp_run "$ns" "reg$i" -sf "$SIPDIR/register-phone.xml" \
	    -i "$addr" -p 5060 "$WAN1:5060" -key aor "phone$i" \
	    -cid_str "reg-phone$i-$E2E_ID@$addr" -key regseq 1 \
	    -key expires "$EXPIRES" ||
	    fail "the REGISTER of phone$i from $addr:5060 did not get a 200"
	line=$(grep "e2e: register aor phone$i " "$KAMLOG" | tail -n 1)
	[ -n "$line" ] || fail "kamailio logged no REGISTER for phone$i"
	contact=$(sed -n 's/.* contact <sip:[^@]*@\([0-9.]*:[0-9]*\)>.*/\1/p' <<<"$line")
	src=$(sed -n 's/.* from \([0-9.]*:[0-9]*\)$/\1/p' <<<"$line")
	[ "${contact%:*}" = "$GW_WAN" ] ||
	    fail "the provider got Contact '$contact' for phone$i, not the public address"
	[ "$contact" = "$src" ] ||
	    fail "the provider got Contact $contact for phone$i, but the REGISTER came from $src"
	CONTACT[$i]=$contact
	e2e_log "phone$i ($addr:5060) registered, the provider sees $contact"
done
[ "${CONTACT[1]}" != "${CONTACT[2]}" ] ||
    fail "both phones got the same public Contact ${CONTACT[1]}"

if e2e_is_sipnatd; then
	for i in 1 2; do
		addr=$LAN1
		[ "$i" = 2 ] && addr=$LAN2
		reg=$(registration "sip:phone$i@$WAN1")
		read -r rin rpub _ <<<"$reg"
		[ "$rin" = "$addr:5060" ] && [ "$rpub" = "${CONTACT[$i]}" ] || {
			e2e_ctl registrations
			fail "sipnatctl lists phone$i as '$reg', expected inside $addr:5060 public ${CONTACT[$i]}"
		}
	done
	e2e_log "sipnatctl: phone1 $LAN1:5060 -> ${CONTACT[1]}, phone2 $LAN2:5060 -> ${CONTACT[2]}"
fi

# --- both phones wait for a call
sipp_bg lan1 phone1 -sf "$SIPDIR/phone-uas.xml" -i "$LAN1" -p 5060 \
    -key aor phone1
PHONE1=$E2E_LAST_PID
sipp_bg lan2 phone2 -sf "$SIPDIR/phone-uas.xml" -i "$LAN2" -p 5060 \
    -key aor phone2
PHONE2=$E2E_LAST_PID
e2e_wait_for 5 udp_listening lan1 "$LAN1:5060" &&
    e2e_wait_for 5 udp_listening lan2 "$LAN2:5060" ||
    fail "the phones' sipp did not start"

# --- call phone1: lan1 answers, lan2 does not hear it
sipp_run wan2 call1 -sf "$SIPDIR/provider-caller.xml" -i "$WAN2" -p 5060 \
    "$WAN1:5060" -key aor phone1 || {
	sipp_show phone1
	sipp_show phone2
	fail "the call to phone1 did not complete"
}
wait_pid "$PHONE1" 10 || {
	sipp_show phone1
	fail "lan1 did not complete the call to phone1"
}
kill -0 "$PHONE2" 2>/dev/null || {
	sipp_show phone2
	fail "lan2's sipp ended during the call to phone1"
}
n=$(invites phone2)
[ "${n:-0}" = 0 ] || fail "lan2 got $n INVITEs during the call to phone1"
e2e_log "the call to phone1 was answered by lan1; lan2 got nothing"

# --- call phone2: lan2 answers
sipp_run wan2 call2 -sf "$SIPDIR/provider-caller.xml" -i "$WAN2" -p 5060 \
    "$WAN1:5060" -key aor phone2 || {
	sipp_show phone2
	fail "the call to phone2 did not complete"
}
wait_pid "$PHONE2" 10 || {
	sipp_show phone2
	fail "lan2 did not complete the call to phone2"
}

# --- each phone got exactly its own call
for i in 1 2; do
	addr=$LAN1
	[ "$i" = 2 ] && addr=$LAN2
	n=$(invites "phone$i")
	[ "$n" = 1 ] || fail "phone$i ($addr) got ${n:-0} INVITEs, expected one"
	ruri=$(grep -m 1 "^INVITE " "$E2E_TMP/phone$i.msg")
	[[ $ruri == "INVITE sip:phone$i@$addr:5060 SIP/2.0"* ]] ||
	    fail "phone$i got '$ruri', not its own AOR and address $addr:5060"
	grep -qiE "^To: *<sip:phone$i@" "$E2E_TMP/phone$i.msg" ||
	    fail "the call phone$i got is not addressed to phone$i"
	grep -q "^BYE " "$E2E_TMP/phone$i.msg" || fail "phone$i got no BYE"
	grep "e2e: lookup phone$i -> " "$KAMLOG" | tail -n 1 |
	    grep -qF "sip:phone$i@${CONTACT[$i]}" ||
	    fail "the provider did not forward the call for phone$i to ${CONTACT[$i]}"
done
e2e_log "each phone got exactly one call, its own: phone1 on $LAN1, phone2 on $LAN2"

e2e_kill "$KAMPID" 5
e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "two phones on the same local port each get their own calls"
