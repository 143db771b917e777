#!/bin/bash
#
# test-sip-register.sh: a registered phone stays reachable for the whole
# registration, however long it idles.  With a 5 s UDP timeout:
#   - a phone (sipp in lan1, port 5060) REGISTERs with the provider, a real
#     registrar (kamailio in wan1), asking for 120 s; the registrar answers
#     200 granting 120 s and saw the phone's public address and port in the
#     Contact (the one the REGISTER came from), and the phone's 200 names
#     its own Contact again;
#   - the phone idles 12 s: longer than the UDP timeout, so the plain UDP
#     session is gone (sipnatctl sessions);
#   - someone (sipp in wan2) calls the phone's AOR through the provider,
#     which forwards the INVITE to the registered public Contact: the call
#     reaches the phone with its own inside address in the Request-URI,
#     is answered, ACKed and hung up (BYE, 200) through the provider;
#   - sipnatctl registrations listed the AOR with inside 10.0.0.11:5060 and
#     expires_in about 120, and still does after the idle time; after an
#     unREGISTER (Expires: 0, 200) the registration is gone.
# The phone is one sipp per step (REGISTER, answer a call, unREGISTER), all
# on 10.0.0.11:5060: to the NAT one endpoint, as one phone's socket is.
# Assertions on sipnatctl are only made when the gateway is sipnatd
# (E2E_GATEWAY=kernel runs the same calls through the kernel's SIP helper).

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp kamailio
e2e_require_sipnatd

SIPDIR=$E2E_DIR/sip
IDLE=12			# longer than timeouts.udp
UDP_TO=5
EXPIRES=120
AOR=phone1
REGID=reg-$AOR-$E2E_ID@$LAN1
KAMLOG=$E2E_TMP/kamailio.log
cd "$E2E_TMP" || exit 1

# A counter from sipnatctl stats (0 if absent).
stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}

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

# Sessions of an inside endpoint (sipnatctl -j sessions), "PROTO REMOTE".
sessions_of() {
	e2e_ctl -j sessions | "$E2E_PYTHON" -c '
import json, sys
for s in json.load(sys.stdin)["sessions"]:
    if s["inside"] == sys.argv[1]:
        print(s["proto"], s["remote"])
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

# Run sipp in the foreground; shows its trace on failure.
sipp_run() {
	local ns=$1 name=$2 pid

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

# The phone registers (cseq, expires) with the provider from lan1:5060.
register() {
	sipp_run lan1 "$1" -sf "$SIPDIR/register-phone.xml" \
	    -i "$LAN1" -p 5060 "$WAN1:5060" -key aor "$AOR" -cid_str "$REGID" \
	    -key regseq "$2" -key expires "$3"
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" "timeouts.udp = $UDP_TO" ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# --- the provider: kamailio as registrar and proxy in wan1
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

# --- REGISTER, 120 s
t0=$SECONDS
register reg1 1 "$EXPIRES" || fail "the REGISTER of $AOR did not get a 200"
line=$(grep "e2e: register aor $AOR " "$KAMLOG" | tail -n 1)
[ -n "$line" ] || fail "kamailio logged no REGISTER for $AOR"
e2e_log "provider: ${line#*e2e: }"
# "register aor phone1 contact <sip:phone1@203.0.113.1:P>;expires=120 ..."
contact=$(sed -n 's/.* contact <sip:[^@]*@\([0-9.]*:[0-9]*\)>.*/\1/p' <<<"$line")
src=$(sed -n 's/.* from \([0-9.]*:[0-9]*\)$/\1/p' <<<"$line")
[ "${contact%:*}" = "$GW_WAN" ] ||
    fail "the provider got Contact $contact, not the public address $GW_WAN"
[ "$contact" = "$src" ] ||
    fail "the provider got Contact $contact but the REGISTER came from $src"
# The 200 the phone got: the Contact granted 120 s, with its own address.
ok=$(awk '/^SIP\/2.0 200/,/^$/' "$E2E_TMP/reg1.msg")
grep -qiE "^Contact:.*expires=$EXPIRES" <<<"$ok" || {
	echo "$ok"
	fail "the 200 to the REGISTER does not grant $EXPIRES s"
}
grep -qiE "^Contact: *<sip:$AOR@$LAN1:5060>" <<<"$ok" || {
	echo "$ok"
	fail "the 200 the phone got does not name its own Contact $LAN1:5060"
}
e2e_log "registered: the provider reaches $AOR at $contact for $EXPIRES s"

if e2e_is_sipnatd; then
	reg=$(registration "sip:$AOR@$WAN1")
	[ -n "$reg" ] || {
		e2e_ctl registrations
		fail "sipnatctl registrations does not list sip:$AOR@$WAN1"
	}
	read -r rin rpub rexp <<<"$reg"
	[ "$rin" = "$LAN1:5060" ] || fail "the registration's inside is $rin, not $LAN1:5060"
	[ "$rpub" = "$contact" ] || fail "the registration's public is $rpub, the provider got $contact"
	# Granted 120 s at most (SECONDS - t0) + 1 s ago.
	[ "$rexp" -ge $((EXPIRES - (SECONDS - t0) - 2)) ] &&
	    [ "$rexp" -le "$EXPIRES" ] ||
	    fail "expires_in is $rexp $((SECONDS - t0)) s after the REGISTER, expected about $EXPIRES"
	[ "$(stat sip.registrations.accepted)" -ge 1 ] ||
	    fail "sip.registrations.accepted did not count the registration"
	e2e_log "sipnatctl: $AOR inside $rin public $rpub expires_in $rexp"
fi

# --- the phone waits for calls, idle
sipp_bg lan1 phone -sf "$SIPDIR/phone-uas.xml" -i "$LAN1" -p 5060 \
    -key aor "$AOR" -timeout $((IDLE + 25))
PHONE=$E2E_LAST_PID
e2e_log "idle for $IDLE s (UDP timeout $UDP_TO s)"
sleep "$IDLE"
kill -0 "$PHONE" 2>/dev/null || {
	sipp_show phone
	fail "the phone's sipp ended while idle"
}
if e2e_is_sipnatd; then
	s=$(sessions_of "$LAN1:5060")
	[ -z "$s" ] || {
		e2e_ctl sessions
		fail "after $IDLE s idle $LAN1:5060 still has sessions: $s"
	}
	reg=$(registration "sip:$AOR@$WAN1")
	read -r rin rpub rexp <<<"$reg"
	[ "$rpub" = "$contact" ] ||
	    fail "after the idle time the registration is '$reg', not public $contact"
	e2e_log "sipnatctl: no session for $LAN1:5060, registration kept ($rexp s left)"
fi

# --- the provider calls the phone
sipp_run wan2 caller -sf "$SIPDIR/provider-caller.xml" -i "$WAN2" -p 5060 \
    "$WAN1:5060" -key aor "$AOR" || {
	sipp_show phone
	fail "the call to $AOR through the provider did not complete"
}
wait_pid "$PHONE" 10 || {
	sipp_show phone
	fail "the phone did not complete the call"
}
grep "e2e: lookup $AOR -> " "$KAMLOG" | tail -n 1 | grep -qF "sip:$AOR@$contact" ||
    fail "the provider did not forward the call to $contact"
ruri=$(grep -m 1 -E "^INVITE " "$E2E_TMP/phone.msg")
[ -n "$ruri" ] || fail "the phone's trace has no INVITE"
[[ $ruri == "INVITE sip:$AOR@$LAN1:5060 SIP/2.0"* ]] ||
    fail "the phone got '$ruri', not its own address $LAN1:5060"
n=$(grep -c "^INVITE " "$E2E_TMP/phone.msg")
[ "$n" = 1 ] || fail "the phone got $n INVITEs, expected one"
grep -q "^BYE " "$E2E_TMP/phone.msg" || fail "the phone got no BYE"
e2e_log "the call reached the phone after $IDLE s idle: '${ruri%% SIP*}', answered, hung up"

# --- unREGISTER
register reg2 2 0 || fail "the unREGISTER of $AOR did not get a 200"
grep -q "e2e: register aor $AOR .* expires 0 " "$KAMLOG" ||
    fail "kamailio logged no unREGISTER for $AOR"
if e2e_is_sipnatd; then
	reg=$(registration "sip:$AOR@$WAN1")
	[ -z "$reg" ] || fail "after the unREGISTER sipnatctl still lists $AOR: $reg"
	[ "$(stat sip.registrations.removed)" -ge 1 ] ||
	    fail "sip.registrations.removed did not count the unREGISTER"
	[ "$(stat sip.registrations)" = 0 ] ||
	    fail "sip.registrations is $(stat sip.registrations) after the unREGISTER"
	e2e_log "sipnatctl: the registration is gone after the unREGISTER"
fi

e2e_kill "$KAMPID" 5
e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "a registered phone gets its call after idling past the UDP timeout"
