#!/bin/bash
#
# test-sip-tcp-inbound.sh: an inbound call over SIP over TCP, to a phone
# registered over TCP, with RTP both ways; run with sipp -t t1, then -t tn
# (SIPP_TRANSPORT=t1 or tn runs one of them).  The phone keeps the
# connection its REGISTER opened, and the provider's INVITE comes back over
# it.  Its port is 5060 with -t t1 (sipp binds it), an ephemeral one with
# -t tn; the phone's Contact names it either way.
#   - The phone (sipp in lan1, phone-reg-answer.xml) REGISTERs over TCP
#     with the provider, kamailio in wan1 listening on TCP only, with a
#     Contact 10.0.0.11:PORT;transport=tcp.  Asserts: kamailio took the
#     REGISTER over TCP and logged a Contact naming the public address
#     203.0.113.1 and the port of the connection it came on; the phone's
#     200 names its own Contact again, granting 120 s; sipnatctl -j
#     registrations lists the AOR with inside 10.0.0.11:PORT and that
#     public Contact.
#   - Someone in wan2 (sipp, inbound-caller.xml) calls the AOR through
#     kamailio over TCP, offering audio at 198.51.100.20:7000.  Asserts:
#     kamailio's lookup sent it to the registered public Contact; the phone
#     got one INVITE whose Request-URI names its own inside address
#     10.0.0.11:PORT; the call completes and is hung up by the caller (both
#     sipps succeed); the phone answers with audio 10.0.0.11:6000 and
#     a=rtcp:6001, and the caller got c=203.0.113.1 and a=rtcp on the next
#     port after m=audio; neither the caller (its sipp message log) nor
#     kamailio (it logs every message it gets whole) received 10.0.0.x
#     anywhere.
#   - RTP for about 4 s, each end sending to the address the other's SDP
#     named as it received it: the caller got at least 50 packets, all
#     from 203.0.113.1 and the port its 200's SDP named; the phone got at
#     least 50 at 10.0.0.11:6000 from 198.51.100.20:7000.
#   - sipnatd only: during the call sipnatctl -j calls showed it confirmed,
#     incoming, audio inside 10.0.0.11:6000, public as in the caller's SDP,
#     remote 198.51.100.20:7000, packets both ways; right after the BYE no
#     call or dialog is left and only the registration's pinholes are
#     open; after the phone's unREGISTER (Expires 0, 200) no registration,
#     call or pinhole is left; tcp_stream.messages counted every SIP
#     message of the test and tcp_stream.degraded stayed 0; sipnatd exits
#     cleanly (no sanitizer report).
#
# E2E_SIP_CONF="section.key = value" adds a key to the config (e.g.
# "sip.ports = 5060:off" to see this test fail without the ALG).

if [ -z "${SIPP_TRANSPORT:-}" ]; then
	for t in t1 tn; do
		echo "# SIP over TCP, sipp -t $t"
		SIPP_TRANSPORT=$t bash "$0" || exit
	done
	exit 0
fi

. "$(dirname "$0")/lib.sh"

case $SIPP_TRANSPORT in
t1 | tn) ;;
*) fail "SIPP_TRANSPORT=$SIPP_TRANSPORT: this test is for TCP (t1 or tn)" ;;
esac

e2e_require_root sipp kamailio ss
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
AOR=phone1
REGID=reg-$AOR-$E2E_ID@phone.example.net	# no private address in it
PHONE_RTP=6000
CALLER_RTP=7000
CALL_MS=4000		# how long the call lasts once answered
MIN_RTP=50		# RTP packets each end must get (~200 are sent)
MIN_MSGS=10		# SIP messages through sipnatd: 2 REGISTERs, INVITE, ACK, BYE, 5 answers
KAMLOG=$E2E_TMP/kamailio.log
# For E2E_GATEWAY=kernel: the kernel's SIP helper on TCP too.
export E2E_KERNEL_SIP_TCP=${E2E_KERNEL_SIP_TCP:-1}

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

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

# What a sipp saw, and kamailio's lines, for a failure report.
sipp_show() {
	echo "--- $1: screen"
	grep -v '^\s*$' "$E2E_TMP/$1.log" | tail -n 15
	echo "--- $1: messages"
	tail -n 60 "$E2E_TMP/$1.msg" 2>/dev/null
	[ -s "$E2E_TMP/$1.err" ] && { echo "--- $1: errors"; tail -n 30 "$E2E_TMP/$1.err"; }
	echo "--- kamailio"
	grep -E "e2e: (register|lookup|request|reply)|ERROR" "$KAMLOG" | tail -n 20
}

# A sipp must succeed: like sipp_done, with kamailio's side on failure.
sipp_ok() {
	local pid=$1 name=$2 rc

	e2e_wait_for 45 not_running "$pid" || {
		e2e_kill "$pid" 2
		sipp_show "$name"
		fail "$name: sipp did not finish within 45 s"
	}
	e2e_kill "$pid"
	rc=$?
	[ "$rc" = 0 ] || {
		sipp_show "$name"
		fail "$name: sipp exited with status $rc (the call failed)"
	}
}

# A number from sipnatctl stats (0 if absent).
stat0() {
	local v

	v=$(stat "$1")
	echo "${v:-0}"
}

# --- the test

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# The provider: kamailio as registrar and proxy in wan1, on TCP only,
# logging every message it receives.
mkdir -p "$E2E_TMP/kamailio"
e2e_bg wan1 "$KAMLOG" kamailio -f "$SIPDIR/kamailio.cfg" -DD -E \
    -A WITH_TCP -A LOG_MESSAGES -A "LISTEN=tcp:$WAN1:5060" -m 32 -M 4 \
    -Y "$E2E_TMP/kamailio" -w "$E2E_TMP/kamailio"
KAMPID=$E2E_LAST_PID
wait_until 10 sip_listening wan1 5060 || {
	tail -n 20 "$KAMLOG"
	fail "kamailio does not listen on TCP $WAN1:5060"
}
e2e_log "kamailio (pid $KAMPID) listens on TCP $WAN1:5060"

# RTP endpoints: each sends to the address its sipp wrote, once known,
# and counts what comes in on the same socket (symmetric RTP).
rtp_bg lan1 phone "$LAN1:$PHONE_RTP" --until "$E2E_TMP/rtp.stop"
PHONE_RTP_PID=$E2E_LAST_PID
rtp_bg wan2 caller "$WAN2:$CALLER_RTP" --until "$E2E_TMP/rtp.stop"
CALLER_RTP_PID=$E2E_LAST_PID

# --- the phone registers over TCP
sipp_bg lan1 phone phone-reg-answer.xml -i "$LAN1" -p 5060 \
    -cid_str "$REGID" -key aor "$AOR" "$WAN1:5060"
PHONE_PID=$E2E_LAST_PID
e2e_wait_for 10 test -e "$E2E_TMP/registered" || {
	sipp_show phone
	fail "the phone's REGISTER over TCP got no 200"
}
line=$(grep "e2e: register aor $AOR " "$KAMLOG" | tail -n 1)
[ -n "$line" ] || fail "kamailio logged no REGISTER for $AOR"
e2e_log "provider: ${line#*e2e: }"
# "register aor phone1 contact <sip:phone1@203.0.113.1:P;transport=tcp>..."
contact=$(sed -n 's/.* contact <sip:[^@]*@\([0-9.]*:[0-9]*\)[;>].*/\1/p' <<<"$line")
src=$(sed -n 's/.* from \([0-9.]*:[0-9]*\)$/\1/p' <<<"$line")
[ "${contact%:*}" = "$GW_WAN" ] ||
    fail "the provider got Contact '${contact:-?}' (line above), not the public address $GW_WAN"
[[ $line == *" contact <sip:$AOR@$contact;transport=tcp>"* ]] ||
    fail "the registered Contact lost its ;transport=tcp (line above)"
grep -q "e2e: message REGISTER over tcp from $src\$" "$KAMLOG" ||
    fail "kamailio did not get the REGISTER over TCP from $src"
# The phone's Contact names the port of its connection (t1: bound to 5060).
[ "$contact" = "$src" ] ||
    fail "the provider got Contact $contact, the REGISTER came over the connection from $src"
e2e_log "registered over TCP: the provider reaches $AOR at $contact (REGISTER from $src)"

if e2e_is_sipnatd; then
	reg=$(registration "sip:$AOR@$WAN1")
	[ -n "$reg" ] || {
		e2e_ctl registrations
		fail "sipnatctl registrations does not list sip:$AOR@$WAN1"
	}
	read -r rin rpub rexp <<<"$reg"
	# sipp -t tn names the port of its connection in the Contact.
	want=$LAN1:5060
	[ "$SIPP_TRANSPORT" = tn ] && want=$LAN1:${rin#*:}
	[ "$rin" = "$want" ] || fail "the registration's inside is $rin, not $want"
	[ "$rpub" = "$contact" ] ||
	    fail "the registration's public is $rpub, the provider got $contact"
	pin_reg=$(stat0 pinholes)
	e2e_log "sipnatctl: $AOR inside $rin public $rpub expires_in $rexp ($pin_reg pinholes)"
fi

# --- someone in wan2 calls the phone through the provider
sipp_bg wan2 caller inbound-caller.xml -i "$WAN2" -p 5060 \
    -cid_str "$REGID" -key aor "$AOR" -d "$CALL_MS" "$WAN1:5060"
CALLER_PID=$E2E_LAST_PID
e2e_log "wan2 calls $AOR through the provider for $((CALL_MS / 1000)) s"

# During the call.
if e2e_is_sipnatd; then
	wait_until 10 call_flowing || {
		e2e_ctl calls
		sipp_show phone
		fail "sipnatctl never showed the call confirmed with media both ways"
	}
	call=$LAST_CALL
	e2e_log "sipnatctl calls: $call"
fi

# Right after the BYE, before the phone's unREGISTER.
e2e_wait_for 15 test -e "$E2E_TMP/hungup" || {
	sipp_show phone
	sipp_show caller
	fail "the phone did not get the BYE"
}
if e2e_is_sipnatd; then
	c=$(call_summary)
	d=$(stat0 sip.dialogs)
	p=$(stat0 pinholes)
	[ "$c" = none ] && [ "$d" = 0 ] && [ "$p" -le "$pin_reg" ] || {
		e2e_ctl calls
		fail "after the BYE: sipnatctl shows '$c', $d dialogs, $p pinholes ($pin_reg before the call)"
	}
	e2e_log "after the BYE: no call, no dialog, $p pinholes (the registration's)"
fi

sipp_ok "$CALLER_PID" caller
sipp_ok "$PHONE_PID" phone
e2e_log "the call completed and the phone unregistered (both sipps succeeded)"

# After the unREGISTER.
if e2e_is_sipnatd; then
	assert_all_closed "after the unREGISTER"
	reg=$(registration "sip:$AOR@$WAN1")
	[ -z "$reg" ] || fail "after the unREGISTER sipnatctl still lists $AOR: $reg"
	e2e_log "after the unREGISTER: no registration, no call, no pinhole"
fi

e2e_wait_for 5 not_running "$PHONE_RTP_PID" || e2e_kill "$PHONE_RTP_PID"
e2e_wait_for 5 not_running "$CALLER_RTP_PID" || e2e_kill "$CALLER_RTP_PID"

# --- the REGISTER's 200 at the phone: its own Contact, and the port it
# listens on (5060 with -t t1; with -t tn its connection's)
ok=$(received_msgs "$E2E_TMP/phone.msg" | awk '
/^SIP\/2\.0 / { n++ } n == 1')
ct=$(grep -iE "^Contact:" <<<"$ok" | head -n 1)
phone_port=$(sed -n "s/^Contact: *<sip:$AOR@$LAN1:\([0-9]*\);transport=tcp>;expires=120\$/\1/ip" <<<"$ct")
[ -n "$phone_port" ] || {
	echo "$ok"
	fail "the 200 to the REGISTER at the phone does not grant its own Contact $LAN1:PORT;transport=tcp 120 s"
}
[ "$SIPP_TRANSPORT" = tn ] || [ "$phone_port" = 5060 ] ||
    fail "the phone's Contact names port $phone_port, not 5060"
if e2e_is_sipnatd; then
	[ "$rin" = "$LAN1:$phone_port" ] ||
	    fail "the registration's inside is $rin, the phone's Contact $LAN1:$phone_port"
fi

# --- the INVITE: through kamailio over TCP, to the phone's own address
line=$(grep "e2e: lookup $AOR -> " "$KAMLOG" | tail -n 1)
[[ $line == *"-> sip:$AOR@$contact;transport=tcp" ]] ||
    fail "the provider did not forward the call to $contact over TCP: '${line:-no lookup logged}'"
grep -q "e2e: message INVITE over tcp from $WAN2:" "$KAMLOG" ||
    fail "kamailio did not get the caller's INVITE over TCP"
grep -q "e2e: message 200 OK over tcp from $GW_WAN:" "$KAMLOG" ||
    fail "kamailio did not get the phone's 200 over TCP from $GW_WAN"
ruri=$(grep -m 1 -E "^INVITE " "$E2E_TMP/phone.msg")
[[ $ruri == "INVITE sip:$AOR@$LAN1:$phone_port;transport=tcp SIP/2.0"* ]] ||
    fail "the phone got '${ruri:-no INVITE}', not its own address $LAN1:$phone_port"
n=$(grep -c "^INVITE " "$E2E_TMP/phone.msg")
[ "$n" = 1 ] || fail "the phone got $n INVITEs, expected one"
e2e_log "the call reached the phone over TCP: '${ruri%% SIP*}'"

# --- nothing private reached the WAN
assert_no_leak "$E2E_TMP/caller.msg"
leak=$(grep -nE '(^|[^0-9])10\.0\.0\.[0-9]+' "$KAMLOG")
[ -z "$leak" ] || {
	echo "$leak"
	fail "kamailio received the phone's private address (above)"
}
grep -q "e2e: message 200 OK over tcp" "$KAMLOG" ||
    fail "kamailio's log has no whole messages to check"
ok=$(received_msgs "$E2E_TMP/caller.msg" | awk '
/^SIP\/2\.0 / { ok = $2 == 200 } ok')
[ -n "$ok" ] || fail "the caller's message log has no 200"
target=$(cat "$E2E_TMP/caller.target")
c_addr=${target%:*}
m_port=${target#*:}
[ "$c_addr" = "$GW_WAN" ] ||
    fail "the 200's c= names $c_addr at the caller, not the public $GW_WAN"
a_rtcp=$(sed -n 's/^a=rtcp:\([0-9]*\).*/\1/p' <<<"$ok" | head -n 1)
[ "$a_rtcp" = $((m_port + 1)) ] ||
    fail "the 200 at the caller says m=audio $m_port but a=rtcp:${a_rtcp:-none}"
e2e_log "the caller got c=$c_addr m=audio $m_port a=rtcp:$a_rtcp, no private address anywhere"

# --- RTP at each end
grep -q "^tx $GW_WAN:$m_port\$" "$E2E_TMP/caller.rtp" ||
    fail "the caller did not send RTP to $GW_WAN:$m_port: $(cat "$E2E_TMP/caller.rtp")"
grep -q "^tx $WAN2:$CALLER_RTP\$" "$E2E_TMP/phone.rtp" ||
    fail "the phone did not send RTP to $WAN2:$CALLER_RTP: $(cat "$E2E_TMP/phone.rtp")"

got=$(rtp_received "$E2E_TMP/caller.rtp")
n=$(awk -v s="$GW_WAN:$m_port" '$2 == s { print $1 }' <<<"$got")
[ "${n:-0}" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/caller.rtp"
	fail "the caller got ${n:-0} RTP packets from $GW_WAN:$m_port (its SDP's address), expected at least $MIN_RTP"
}
other=$(awk -v s="$GW_WAN:$m_port" '$2 != s' <<<"$got")
[ -z "$other" ] || fail "the caller got RTP from elsewhere than its SDP's $GW_WAN:$m_port: $other"
e2e_log "the caller got $n RTP packets from $GW_WAN:$m_port"

got=$(rtp_received "$E2E_TMP/phone.rtp")
n=$(awk -v s="$WAN2:$CALLER_RTP" '$2 == s { print $1 }' <<<"$got")
[ "${n:-0}" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/phone.rtp"
	fail "the phone got ${n:-0} RTP packets at $LAN1:$PHONE_RTP from $WAN2:$CALLER_RTP, expected at least $MIN_RTP"
}
e2e_log "the phone got $n RTP packets at its private $LAN1:$PHONE_RTP from $WAN2:$CALLER_RTP"

# --- sipnatd's view of the call, taken while it was up, and its counters
if e2e_is_sipnatd; then
	read -r state direction nmedia type inside public remote rtcp pout pin <<<"$call"
	[ "$direction" = incoming ] && [ "$nmedia" = 1 ] && [ "$type" = audio ] ||
	    fail "sipnatctl: '$call', expected one incoming call with one audio stream"
	[ "$inside" = "$LAN1:$PHONE_RTP" ] ||
	    fail "sipnatctl: the stream's inside is $inside, not $LAN1:$PHONE_RTP"
	[ "$public" = "$GW_WAN:$m_port" ] ||
	    fail "sipnatctl: the stream's public is $public, the SDP said $GW_WAN:$m_port"
	[ "$remote" = "$WAN2:$CALLER_RTP" ] ||
	    fail "sipnatctl: the stream's remote is $remote, not $WAN2:$CALLER_RTP"
	[ "$rtcp" = "$a_rtcp" ] ||
	    fail "sipnatctl: RTCP public port $rtcp, a=rtcp at the caller $a_rtcp"
	[ "$m_port" -ge 10000 ] && [ "$m_port" -le 32767 ] ||
	    fail "the public media port $m_port is outside the NAT range"
	e2e_log "sipnatctl showed $state $direction audio $inside -> $public -> $remote ($pout out, $pin in)"
	n=$(stat0 tcp_stream.messages)
	[ "$n" -ge "$MIN_MSGS" ] ||
	    fail "tcp_stream.messages is $n, expected at least $MIN_MSGS: the ALG did not read the TCP streams"
	deg=$(stat0 tcp_stream.degraded)
	[ "$deg" = 0 ] || {
		e2e_ctl stats | grep '^tcp_stream\.'
		fail "tcp_stream.degraded is $deg: a SIP stream was passed on unread"
	}
	e2e_log "the ALG read $n SIP messages from TCP streams, none degraded"
fi

e2e_kill "$KAMPID" 5
e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$E2E_LOG"; then
	fail "sipnatd's log has a sanitizer report"
fi
pass "inbound call over SIP over TCP (sipp -t $SIPP_TRANSPORT) with RTP both ways"
