#!/bin/bash
#
# test-sip-hold.sh: hold and resume on a new port through the SIP ALG.
# The phone (sipp in lan1) calls the provider (sipp in wan1) with audio on
# 10.0.0.11:6000 and both send RTP; the phone puts the call on hold
# (re-INVITE, a=sendonly; the provider answers a=recvonly), then resumes
# with a re-INVITE whose SDP moves its audio to a NEW private port, 6002,
# with a=sendrecv.  The provider always sends to the media address of the
# latest INVITE as it received it.  Asserts: the call completes (both
# sipps succeed); the provider received no private address; it received
# three INVITEs, all with c= the public address and the SAME public media
# port (sendrecv, sendonly, sendrecv); RTP went both ways before the hold
# (the phone's at 6000 from 198.51.100.10:7000; the provider's from the
# public port); after the resume the provider's RTP to the unchanged
# public port arrives at the phone's new private port 6002, and the
# phone's RTP from 6002 arrives at the provider from that same public
# port.  sipnatd only: sipnatctl -j calls shows the stream inside
# 10.0.0.11:6000 before the hold and 10.0.0.11:6002 after the resume, on
# the same public port, with packets both ways each time;
# sip.media.moved counted the move; after the BYE no call is left and no
# pinhole is open.
#
# E2E_SIP_CONF="section.key = value" adds a key to the config (e.g.
# "sip.ports = 5060:off" to see this test fail without the ALG).

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp ss
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
PHONE_RTP=6000
PHONE_RTP2=6002		# the phone's port after the resume
PROV_RTP=7000
TALK_MS=2500		# talking before the hold and after the resume
MIN_RTP=40		# RTP packets each end must get in each phase (~125)

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

# --- the test

# The call in sipnatctl is confirmed, its stream inside at PORT with
# packets both ways.
call_flowing_at() {
	local s

	s=$(call_summary)
	LAST_CALL=$s
	set -- $s
	[ "$1" = confirmed ] && [ "${5:-}" = "$LAN1:$want_port" ] &&
	    [ "${9:-0}" -gt 0 ] && [ "${10:-0}" -gt 0 ]
}

# RTP counted by a flow.py rtp output: rtp_count FILE WORD SOURCE.
rtp_count() {
	awk -v w="$2" -v s="$3" '$1 == w && $4 == s { n += $2 } END { print n + 0 }' "$1"
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# The phone's RTP on 6000 until just before the resume, on 6002 after it;
# the provider follows prov.target and counts before and after "resumed".
e2e_bg lan1 "$E2E_TMP/phone1.rtp" "$E2E_PYTHON" "$FLOW" rtp \
    --bind "$LAN1:$PHONE_RTP" --to-file "$E2E_TMP/phone.target" \
    --until "$E2E_TMP/resuming" --timeout 0
PHONE1_PID=$E2E_LAST_PID
e2e_bg lan1 "$E2E_TMP/phone2.rtp" "$E2E_PYTHON" "$FLOW" rtp \
    --bind "$LAN1:$PHONE_RTP2" --to-file "$E2E_TMP/phone2.target" \
    --until "$E2E_TMP/rtp.stop" --timeout 0
PHONE2_PID=$E2E_LAST_PID
e2e_bg wan1 "$E2E_TMP/prov.rtp" "$E2E_PYTHON" "$FLOW" rtp \
    --bind "$WAN1:$PROV_RTP" --to-file "$E2E_TMP/prov.target" \
    --mark "$E2E_TMP/resumed" --until "$E2E_TMP/rtp.stop" --timeout 0
PROV_RTP_PID=$E2E_LAST_PID
for f in phone1 phone2 prov; do
	e2e_wait_for 5 grep -q ready "$E2E_TMP/$f.rtp" ||
	    fail "the RTP endpoint $f did not start"
done

start_provider prov hold-uas.xml
start_phone phone hold-uac.xml -d "$TALK_MS"
e2e_log "the phone calls, holds, resumes on $PHONE_RTP2"

if e2e_is_sipnatd; then
	want_port=$PHONE_RTP
	wait_until 10 call_flowing_at || {
		e2e_ctl calls
		fail "sipnatctl never showed the call flowing at $LAN1:$PHONE_RTP"
	}
	before=$LAST_CALL
	e2e_log "sipnatctl calls, before the hold: $before"
	want_port=$PHONE_RTP2
	wait_until 15 call_flowing_at || {
		e2e_ctl calls
		fail "sipnatctl never showed the call flowing at $LAN1:$PHONE_RTP2 after the resume"
	}
	after=$LAST_CALL
	e2e_log "sipnatctl calls, after the resume: $after"
fi

sipp_done "$PHONE_PID" phone
sipp_done "$PROV_PID" prov
e2e_log "the call completed (both sipps succeeded)"

if e2e_is_sipnatd; then
	assert_all_closed "after the BYE"
	e2e_log "after the BYE: no call, no pinhole"
fi

for p in "$PHONE1_PID" "$PHONE2_PID" "$PROV_RTP_PID"; do
	e2e_wait_for 5 not_running "$p" || e2e_kill "$p"
done

# --- the three INVITEs as the provider received them
assert_no_leak "$E2E_TMP/prov.msg"
inv=$(received_invites "$E2E_TMP/prov.msg")
[ "$(wc -l <<<"$inv")" = 3 ] || fail "the provider received $(wc -l <<<"$inv") INVITEs, not 3: $inv"
{
	read -r c1 m1 d1 _
	read -r c2 m2 d2 _
	read -r c3 m3 d3 _
} <<<"$inv"
[ "$c1 $c2 $c3" = "$GW_WAN $GW_WAN $GW_WAN" ] ||
    fail "the INVITEs' c= at the provider: $c1, $c2, $c3; expected $GW_WAN"
[ "$d1 $d2 $d3" = "sendrecv sendonly sendrecv" ] ||
    fail "the INVITEs' directions at the provider: $d1 $d2 $d3"
[ "$m1" != - ] || fail "the first INVITE reached the provider without m=audio"
[ "$m2" = "$m1" ] && [ "$m3" = "$m1" ] ||
    fail "the public media port changed: $m1 at the call, $m2 at the hold, $m3 at the resume"
pub=$GW_WAN:$m1
e2e_log "the provider saw the audio at $pub in all three INVITEs (sendrecv, sendonly, sendrecv)"

# --- before the hold
grep -q "^tx $pub\$" "$E2E_TMP/prov.rtp" ||
    fail "the provider did not send RTP to $pub: $(cat "$E2E_TMP/prov.rtp")"
n=$(rtp_count "$E2E_TMP/phone1.rtp" received "$WAN1:$PROV_RTP")
[ "$n" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/phone1.rtp"
	fail "before the hold the phone got $n RTP packets at $LAN1:$PHONE_RTP, expected at least $MIN_RTP"
}
m=$(rtp_count "$E2E_TMP/prov.rtp" before-mark "$pub")
[ "$m" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/prov.rtp"
	fail "before the resume the provider got $m RTP packets from $pub, expected at least $MIN_RTP"
}
e2e_log "before the hold: the phone got $n at $LAN1:$PHONE_RTP, the provider $m from $pub"

# --- after the resume
n=$(rtp_count "$E2E_TMP/phone2.rtp" received "$WAN1:$PROV_RTP")
[ "$n" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/phone2.rtp"
	fail "after the resume the phone got $n RTP packets at its new $LAN1:$PHONE_RTP2, expected at least $MIN_RTP"
}
grep -q "^tx $WAN1:$PROV_RTP\$" "$E2E_TMP/phone2.rtp" ||
    fail "the phone did not send RTP from $PHONE_RTP2 to $WAN1:$PROV_RTP"
m=$(rtp_count "$E2E_TMP/prov.rtp" after-mark "$pub")
[ "$m" -ge "$MIN_RTP" ] || {
	cat "$E2E_TMP/prov.rtp"
	fail "after the resume the provider got $m RTP packets from $pub (the phone's $LAN1:$PHONE_RTP2), expected at least $MIN_RTP"
}
# RTP the phone sends from its new port before its re-INVITE has passed
# the gateway leaves by a mapping of its own, as from any new port: a
# packet or two, never the stream.
other=$(awk -v s="$pub" '$1 == "received" && $4 != s { n += $2 } END { print n + 0 }' "$E2E_TMP/prov.rtp")
[ "$other" -le 3 ] || fail "the provider got $other RTP packets from elsewhere than $pub: $(grep '^received' "$E2E_TMP/prov.rtp")"
e2e_log "after the resume: the phone got $n at $LAN1:$PHONE_RTP2, the provider $m from the same $pub"

if e2e_is_sipnatd; then
	read -r _ _ n1 _ in1 pub1 rem1 _ <<<"$before"
	read -r _ _ n2 _ in2 pub2 rem2 _ <<<"$after"
	[ "$n1 $n2" = "1 1" ] || fail "sipnatctl: $n1 then $n2 media streams, expected one"
	[ "$pub1" = "$pub" ] && [ "$pub2" = "$pub" ] ||
	    fail "sipnatctl: the stream's public was $pub1 then $pub2; the SDP said $pub"
	[ "$rem1 $rem2" = "$WAN1:$PROV_RTP $WAN1:$PROV_RTP" ] ||
	    fail "sipnatctl: the stream's remote was $rem1 then $rem2"
	moved=$(stat sip.media.moved)
	[ "${moved:-0}" -ge 1 ] || fail "sip.media.moved is ${moved:-0}, expected the move counted"
	e2e_log "sipnatctl: $in1 then $in2, both on $pub; sip.media.moved $moved"
fi

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "hold and resume on a new port keep the public media port"
