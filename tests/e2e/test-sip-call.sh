#!/bin/bash
#
# test-sip-call.sh: an outbound call through the SIP ALG.  A phone (sipp
# in lan1, audio on 10.0.0.11:6000) calls the provider (sipp in wan1,
# audio on 198.51.100.10:7000) and both send RTP for a few seconds from
# their media ports, each to the address the other's SDP named as it was
# received (the phone to what the 200 OK says, the provider to what the
# INVITE says after the gateway).  Asserts: the call completes (both
# sipps succeed); the provider received no private address (nothing in
# its received messages names 10.0.0.x, neither in Via, Contact, c= or o=
# nor anywhere else: the scenario puts the phone's address nowhere else)
# and the INVITE's c= is the public address; the provider gets the
# phone's RTP from exactly the address and port its SDP named; the phone
# gets the provider's RTP at its private port 6000 from 198.51.100.10:7000.
# sipnatd only: during the call sipnatctl -j calls shows one confirmed
# outgoing call with one audio stream inside 10.0.0.11:6000, public as in
# the SDP, RTCP on the next port (as a=rtcp said), remote
# 198.51.100.10:7000 and packets both ways; after the BYE no call is left
# and no pinhole is open.
#
# E2E_SIP_CONF="section.key = value" adds a key to the config (e.g.
# "sip.ports = 5060:off" to see this test fail without the ALG).

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp ss
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
PHONE_RTP=6000
PROV_RTP=7000
CALL_MS=4000		# how long the call lasts once answered
MIN_RTP=50		# RTP packets each end must get (~200 are sent)

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

# --- the test

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# RTP endpoints: each sends to the address its sipp wrote, once known,
# and counts what comes in on the same socket (symmetric RTP).
rtp_bg lan1 phone "$LAN1:$PHONE_RTP" --until "$E2E_TMP/rtp.stop"
PHONE_RTP_PID=$E2E_LAST_PID
rtp_bg wan1 prov "$WAN1:$PROV_RTP" --until "$E2E_TMP/rtp.stop"
PROV_RTP_PID=$E2E_LAST_PID

start_provider prov call-uas.xml
start_phone phone call-uac.xml -d "$CALL_MS"
e2e_log "the phone calls the provider for $((CALL_MS / 1000)) s"

# During the call.
if e2e_is_sipnatd; then
	wait_until 10 call_flowing || {
		e2e_ctl calls
		fail "sipnatctl never showed the call confirmed with media both ways"
	}
	call=$LAST_CALL
	e2e_log "sipnatctl calls: $call"
	# The call in full: its events say what was rewritten and opened.
	cid=$(e2e_ctl -j calls | "$E2E_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["calls"][0]["call_id"])')
	e2e_ctl call "$cid" >"$E2E_TMP/call.txt"
	sed 's/^/#   /' "$E2E_TMP/call.txt"
	grep -qE "rewrote Via $LAN1:[0-9]+ -> $GW_WAN:" "$E2E_TMP/call.txt" &&
	    grep -q "rewrote SDP m=audio $PHONE_RTP -> " "$E2E_TMP/call.txt" &&
	    grep -q "opened pinholes" "$E2E_TMP/call.txt" ||
	    fail "sipnatctl call $cid does not show the rewrites and pinholes"
fi

sipp_done "$PHONE_PID" phone
sipp_done "$PROV_PID" prov
e2e_log "the call completed (both sipps succeeded)"

# Right after the BYE.
if e2e_is_sipnatd; then
	assert_all_closed "after the BYE"
	e2e_log "after the BYE: no call, no pinhole"
fi

e2e_wait_for 5 not_running "$PHONE_RTP_PID" || e2e_kill "$PHONE_RTP_PID"
e2e_wait_for 5 not_running "$PROV_RTP_PID" || e2e_kill "$PROV_RTP_PID"

# --- what the provider received
assert_no_leak "$E2E_TMP/prov.msg"
inv=$(received_invites "$E2E_TMP/prov.msg")
[ "$(wc -l <<<"$inv")" = 1 ] || fail "the provider received $(wc -l <<<"$inv") INVITEs, not 1: $inv"
read -r c_addr m_port _ a_rtcp <<<"$inv"
[ "$c_addr" = "$GW_WAN" ] ||
    fail "the INVITE's c= names $c_addr at the provider, not the public $GW_WAN"
[ "$m_port" != - ] || fail "the INVITE reached the provider without m=audio"
e2e_log "the provider got c=$c_addr m=audio $m_port a=rtcp:$a_rtcp, no private address"

# --- RTP at each end
grep -q "^tx $GW_WAN:$m_port\$" "$E2E_TMP/prov.rtp" ||
    fail "the provider did not send RTP to $GW_WAN:$m_port: $(cat "$E2E_TMP/prov.rtp")"
grep -q "^tx $WAN1:$PROV_RTP\$" "$E2E_TMP/phone.rtp" ||
    fail "the phone did not send RTP to $WAN1:$PROV_RTP: $(cat "$E2E_TMP/phone.rtp")"

got=$(rtp_received "$E2E_TMP/prov.rtp")
n=$(awk -v s="$GW_WAN:$m_port" '$2 == s { print $1 }' <<<"$got")
[ "${n:-0}" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/prov.rtp"
	fail "the provider got ${n:-0} RTP packets from $GW_WAN:$m_port (its SDP's address), expected at least $MIN_RTP"
}
other=$(awk -v s="$GW_WAN:$m_port" '$2 != s' <<<"$got")
[ -z "$other" ] || fail "the provider got RTP from elsewhere than its SDP's $GW_WAN:$m_port: $other"
e2e_log "the provider got $n RTP packets from $GW_WAN:$m_port"

got=$(rtp_received "$E2E_TMP/phone.rtp")
n=$(awk -v s="$WAN1:$PROV_RTP" '$2 == s { print $1 }' <<<"$got")
[ "${n:-0}" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/phone.rtp"
	fail "the phone got ${n:-0} RTP packets at $LAN1:$PHONE_RTP from $WAN1:$PROV_RTP, expected at least $MIN_RTP"
}
e2e_log "the phone got $n RTP packets at its private $LAN1:$PHONE_RTP from $WAN1:$PROV_RTP"

# --- sipnatd's view of the call, taken while it was up
if e2e_is_sipnatd; then
	read -r state direction nmedia type inside public remote rtcp pout pin <<<"$call"
	[ "$direction" = outgoing ] && [ "$nmedia" = 1 ] && [ "$type" = audio ] ||
	    fail "sipnatctl: '$call', expected one outgoing call with one audio stream"
	[ "$inside" = "$LAN1:$PHONE_RTP" ] ||
	    fail "sipnatctl: the stream's inside is $inside, not $LAN1:$PHONE_RTP"
	[ "$public" = "$GW_WAN:$m_port" ] ||
	    fail "sipnatctl: the stream's public is $public, the SDP said $GW_WAN:$m_port"
	[ "$remote" = "$WAN1:$PROV_RTP" ] ||
	    fail "sipnatctl: the stream's remote is $remote, not $WAN1:$PROV_RTP"
	[ "$rtcp" = $((m_port + 1)) ] && [ "$a_rtcp" = "$rtcp" ] ||
	    fail "sipnatctl: RTCP public port $rtcp, a=rtcp at the provider $a_rtcp, expected both $((m_port + 1))"
	[ "$m_port" -ge 10000 ] && [ "$m_port" -le 32767 ] ||
	    fail "the public media port $m_port is outside the NAT range"
	e2e_log "sipnatctl showed $state $direction audio $inside -> $public -> $remote ($pout out, $pin in)"
	case ${SIPP_TRANSPORT:-u1} in
	t*)	n=$(stat tcp_stream.messages)
		[ "${n:-0}" -ge 5 ] ||
		    fail "SIP over TCP: tcp_stream.messages is ${n:-0}: the ALG did not read the stream"
		e2e_log "the ALG read $n SIP messages from TCP streams" ;;
	esac
fi

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "outbound SIP call with RTP both ways through the ALG"
