#!/bin/bash
#
# test-sip-early-media.sh: early media through the SIP ALG.  The phone
# (sipp in lan1, audio on 10.0.0.11:6000) calls the provider (sipp in
# wan1), which answers 183 Session Progress with SDP (audio on
# 198.51.100.10:7000), sends RTP for 3 s to the media address of the
# INVITE as it received it, and only then answers 200 OK.  Asserts: the
# call completes (both sipps succeed); the provider received no private
# address and the INVITE's c= is the public address; the phone got the
# provider's RTP at its private port 6000 from 198.51.100.10:7000 BEFORE
# the 200 OK reached it (counted until the phone's sipp saw the 200: at
# least MIN_EARLY of the ~150 sent), and the media goes on both ways after
# the answer.  sipnatd only: while the call is early (183, no 200 yet)
# sipnatctl -j calls shows it "early" with packets in on its audio stream
# and none out; after the BYE no call is left and no pinhole is open.
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
CALL_MS=1500		# how long the call lasts once answered
MIN_EARLY=50		# early RTP packets the phone must get (~150 are sent)
MIN_RTP=20		# RTP packets each end must get after the answer

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

# --- the test

# The call in sipnatctl is early with media coming in (and none out).
call_early_media() {
	local s

	s=$(call_summary)
	LAST_CALL=$s
	[ "${s%% *}" = early ] || return 1
	set -- $s
	[ "${10:-0}" -gt 0 ]
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# The phone counts RTP before and after its sipp saw the 200 (got200).
rtp_bg lan1 phone "$LAN1:$PHONE_RTP" --mark "$E2E_TMP/got200" --until "$E2E_TMP/rtp.stop"
PHONE_RTP_PID=$E2E_LAST_PID
rtp_bg wan1 prov "$WAN1:$PROV_RTP" --mark "$E2E_TMP/got200" --until "$E2E_TMP/rtp.stop"
PROV_RTP_PID=$E2E_LAST_PID

start_provider prov early-uas.xml
start_phone phone early-uac.xml -d "$CALL_MS"
e2e_log "the phone calls; the provider plays 3 s of early media, then answers"

# While the call is early.
if e2e_is_sipnatd; then
	wait_until 3 call_early_media || {
		e2e_ctl calls
		fail "sipnatctl never showed the call early with media coming in"
	}
	early=$LAST_CALL
	e2e_log "sipnatctl calls, before the answer: $early"
fi

sipp_done "$PHONE_PID" phone
sipp_done "$PROV_PID" prov
e2e_log "the call completed (both sipps succeeded)"

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
read -r c_addr m_port _ <<<"$inv"
[ "$c_addr" = "$GW_WAN" ] ||
    fail "the INVITE's c= names $c_addr at the provider, not the public $GW_WAN"
e2e_log "the provider got c=$c_addr m=audio $m_port, no private address"
grep -q "^tx $GW_WAN:$m_port\$" "$E2E_TMP/prov.rtp" ||
    fail "the provider did not send RTP to $GW_WAN:$m_port: $(cat "$E2E_TMP/prov.rtp")"

# --- early media at the phone
early_n=$(awk -v s="$WAN1:$PROV_RTP" '$1 == "before-mark" && $4 == s { print $2 }' "$E2E_TMP/phone.rtp")
late_n=$(awk -v s="$WAN1:$PROV_RTP" '$1 == "after-mark" && $4 == s { print $2 }' "$E2E_TMP/phone.rtp")
[ "${early_n:-0}" -ge "$MIN_EARLY" ] || {
	cat "$E2E_TMP/phone.rtp"
	fail "the phone got ${early_n:-0} RTP packets at $LAN1:$PHONE_RTP from $WAN1:$PROV_RTP before the 200 OK, expected at least $MIN_EARLY"
}
e2e_log "the phone got $early_n early RTP packets at its private $LAN1:$PHONE_RTP before the 200 OK"
[ "${late_n:-0}" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/phone.rtp"
	fail "the phone got ${late_n:-0} RTP packets after the 200 OK, expected at least $MIN_RTP"
}
n=$(awk -v s="$GW_WAN:$m_port" '$1 == "received" && $4 == s { print $2 }' "$E2E_TMP/prov.rtp")
[ "${n:-0}" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/prov.rtp"
	fail "the provider got ${n:-0} RTP packets from $GW_WAN:$m_port after the answer, expected at least $MIN_RTP"
}
e2e_log "after the answer: the phone got $late_n, the provider $n RTP packets"

if e2e_is_sipnatd; then
	read -r _ _ nmedia _ inside public remote _ pout pin <<<"$early"
	[ "$nmedia" = 1 ] && [ "$inside" = "$LAN1:$PHONE_RTP" ] &&
	    [ "$public" = "$GW_WAN:$m_port" ] ||
	    fail "sipnatctl, early: '$early', expected one stream $LAN1:$PHONE_RTP -> $GW_WAN:$m_port"
	[ "$remote" = "$WAN1:$PROV_RTP" ] ||
	    fail "sipnatctl, early: remote $remote, the 183's SDP said $WAN1:$PROV_RTP"
	[ "$pout" = 0 ] ||
	    fail "sipnatctl, early: $pout packets out before the phone sent any"
	e2e_log "sipnatctl showed the call early with $pin packets in"
fi

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "early media (183 with SDP) reaches the phone before the answer"
