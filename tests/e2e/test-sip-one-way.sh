#!/bin/bash
#
# test-sip-one-way.sh: the one-way audio alarm ([sip] one_way_alarm, 2 s
# here).  Four outbound calls in a row through one sipnatd, each the
# phone (sipp in lan1, audio on 10.0.0.11:6000) calling the provider
# (sipp in wan1, audio on 198.51.100.10:7000) for 6 s, the phone always
# sending RTP to what the 200 OK says:
#   normal  the provider sends RTP to the public address and port the
#           INVITE's SDP named (RTP both ways, as in test-sip-call.sh);
#   silent  the provider sends no RTP at all;
#   wrong   the provider sends RTP from 7000, but to the public port the
#           SDP named plus 10 (an unmapped port of the NAT range);
#   rtcp    the provider sends its RTP to the RTCP port (the SDP's plus 1,
#           a mapped port: only the packets' RTP headers tell).
# Asserts: every call completes (both sipps succeed) and after each BYE no
# call is left and no pinhole is open.  normal: RTP arrives both ways, no
# alarm is logged, sipnatctl never shows one, and sip.alarms.one_way_audio
# stays 0.  silent and wrong: the provider gets the phone's RTP and the
# phone gets none; within a few seconds of the answer sipnatctl -j calls
# shows the stream's one_way_alarm "inbound", and sipnatd has logged
# "one-way audio on call CALL-ID" naming the missing direction ("nothing
# from the far end reaches the phone") and the cause: silent "nothing ever
# arrived at public port N", wrong "the far end sends to public port N+10,
# not to N as the SDP says", N being the public RTP port of the SDP the
# provider got; sipnatctl call CALL-ID lists the same ALARM event; wrong
# also shows stray > 0 and stray_port N+10 for the stream; rtcp "the far
# end sends RTP to the RTCP port N+1, not to N as the SDP says".
# sip.alarms.one_way_audio counts one alarm per faulty call (1 after
# silent, 2 after wrong, 3 after rtcp).  sipnatd exits cleanly, with no sanitizer
# report.
#
# E2E_SIP_CONF="section.key = value" adds a key to the config (e.g.
# "sip.one_way_alarm = 0" to see this test fail without the alarm).

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp ss
e2e_require_sipnatd
e2e_is_sipnatd || skip "asserts sipnatd's own alarm: nothing to compare"

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
PHONE_RTP=6000
PROV_RTP=7000
ALARM=2			# sip.one_way_alarm, seconds
CALL_MS=6000		# how long each call lasts once answered
ALARM_SECS=5		# the alarm must show within this after the answer
MIN_RTP=50		# RTP packets the receiving ends must get (~300 sent)
WRONG_OFFSET=10		# wrong: the provider's port error

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

# A Python expression on the one call of sipnatctl -j calls (c: the call,
# m: its first stream); "none" when there is not exactly one call.
call_eval() {
	e2e_ctl -j calls | "$E2E_PYTHON" -c '
import json, sys
calls = json.load(sys.stdin)["calls"]
if len(calls) != 1 or not calls[0]["media"]:
    print("none")
    sys.exit()
c = calls[0]
m = c["media"][0]
print(eval(sys.argv[1]))' "$1"
}

# The stream shows a one-way alarm; ALARM_SEEN is what it shows.
alarm_shown() {
	ALARM_SEEN=$(call_eval 'm["one_way_alarm"]')
	[ "$ALARM_SEEN" != None ] && [ "$ALARM_SEEN" != none ]
}

# The one call is confirmed.
call_confirmed() {
	[ "$(call_eval 'c["state"]')" = confirmed ]
}

# RTP counted by a flow.py rtp output: rtp_count FILE [SOURCE] (any).
rtp_count() {
	awk -v s="${2:-}" '$1 == "received" && (s == "" || $4 == s) { n += $2 }
	    END { print n + 0 }' "$1"
}

# One call, MODE normal, silent or wrong; leaves PUB_PORT (the public RTP
# port of the provider's SDP), CID and the RTP outputs phone-MODE.rtp and
# prov-MODE.rtp.
run_call() {
	local mode=$1 target shown=None n

	rm -f phone.target prov.target prov.wrong rtp.stop
	e2e_bg lan1 "$E2E_TMP/phone-$mode.rtp" "$E2E_PYTHON" "$FLOW" rtp \
	    --bind "$LAN1:$PHONE_RTP" --to-file "$E2E_TMP/phone.target" \
	    --until "$E2E_TMP/rtp.stop" --timeout 0
	PHONE_RTP_PID=$E2E_LAST_PID
	case $mode in
	normal)	set -- rtp --to-file "$E2E_TMP/prov.target" ;;
	silent)	set -- rtp-count ;;
	wrong|rtcp) set -- rtp --to-file "$E2E_TMP/prov.wrong" ;;
	esac
	e2e_bg wan1 "$E2E_TMP/prov-$mode.rtp" "$E2E_PYTHON" "$FLOW" "$@" \
	    --bind "$WAN1:$PROV_RTP" --until "$E2E_TMP/rtp.stop" --timeout 0
	PROV_RTP_PID=$E2E_LAST_PID
	e2e_wait_for 5 grep -q ready "$E2E_TMP/phone-$mode.rtp" ||
	    fail "$mode: the phone's RTP endpoint did not start"
	e2e_wait_for 5 grep -q ready "$E2E_TMP/prov-$mode.rtp" ||
	    fail "$mode: the provider's RTP endpoint did not start"

	start_provider "prov-$mode" call-uas.xml
	start_phone "phone-$mode" call-uac.xml -d "$CALL_MS"
	e2e_log "$mode: the phone calls the provider for $((CALL_MS / 1000)) s"

	e2e_wait_for 10 test -s prov.target ||
	    fail "$mode: the provider got no INVITE with SDP"
	target=$(cat prov.target)
	[ "${target%:*}" = "$GW_WAN" ] ||
	    fail "$mode: the provider's SDP names $target, not the public $GW_WAN"
	PUB_PORT=${target##*:}
	if [ "$mode" = rtcp ]; then
		WRONG_PORT=$((PUB_PORT + 1))
		echo "$GW_WAN:$WRONG_PORT" >prov.wrong.tmp
		mv prov.wrong.tmp prov.wrong
		e2e_log "$mode: the provider sends to $GW_WAN:$WRONG_PORT, its SDP said $target"
	fi
	if [ "$mode" = wrong ]; then
		WRONG_PORT=$((PUB_PORT + WRONG_OFFSET))
		[ "$WRONG_PORT" -le 32767 ] ||
		    WRONG_PORT=$((PUB_PORT - WRONG_OFFSET))
		echo "$GW_WAN:$WRONG_PORT" >prov.wrong.tmp
		mv prov.wrong.tmp prov.wrong
		e2e_log "$mode: the provider sends to $GW_WAN:$WRONG_PORT, its SDP said $target"
	fi

	wait_until 10 call_confirmed ||
	    fail "$mode: sipnatctl never showed the call confirmed"
	CID=$(call_eval 'c["call_id"]')
	[ "$CID" != none ] || fail "$mode: sipnatctl shows no call"

	if [ "$mode" = normal ]; then
		# The whole call: the alarm would show by now if it fired.
		SECONDS=0
		while [ "$SECONDS" -lt $((CALL_MS / 1000 - 1)) ]; do
			shown=$(call_eval 'm["one_way_alarm"]')
			[ "$shown" = None ] || [ "$shown" = none ] || break
			sleep 0.5
		done
		[ "$shown" = None ] || [ "$shown" = none ] || {
			e2e_ctl call "$CID"
			fail "normal: sipnatctl shows one_way_alarm $shown with RTP both ways"
		}
	else
		wait_until "$ALARM_SECS" alarm_shown || {
			e2e_ctl call "$CID"
			fail "$mode: no one-way alarm in sipnatctl -j calls within ${ALARM_SECS}s of the answer"
		}
		[ "$ALARM_SEEN" = inbound ] ||
		    fail "$mode: sipnatctl -j calls shows one_way_alarm '$ALARM_SEEN', not 'inbound'"
		e2e_ctl call "$CID" >"$E2E_TMP/call-$mode.txt"
		STRAY=$(call_eval '"%d %d" % (m["stray"], m["stray_port"])')
		e2e_log "$mode: sipnatctl: one_way_alarm $ALARM_SEEN, stray/port $STRAY"
	fi

	sipp_done "$PHONE_PID" "phone-$mode"
	sipp_done "$PROV_PID" "prov-$mode"
	assert_all_closed "$mode: after the BYE"
	e2e_wait_for 5 not_running "$PHONE_RTP_PID" || e2e_kill "$PHONE_RTP_PID"
	e2e_wait_for 5 not_running "$PROV_RTP_PID" || e2e_kill "$PROV_RTP_PID"
	e2e_log "$mode: the call completed, nothing left open"

	# The phone's RTP reached the provider from the public port in all
	# three calls.
	n=$(rtp_count "prov-$mode.rtp" "$GW_WAN:$PUB_PORT")
	[ "$n" -ge "$MIN_RTP" ] || {
		cat "prov-$mode.rtp"
		fail "$mode: the provider got $n RTP packets from $GW_WAN:$PUB_PORT, expected at least $MIN_RTP"
	}
}

# The one line the alarm logged for CID.
alarm_line() {
	grep -F "one-way audio on call $CID " "$E2E_LOG"
}

# --- the test

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" "sip.one_way_alarm = $ALARM" \
    ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# --- normal: RTP both ways, no alarm
run_call normal
n=$(rtp_count phone-normal.rtp "$WAN1:$PROV_RTP")
[ "$n" -ge "$MIN_RTP" ] ||
    fail "normal: the phone got $n RTP packets from $WAN1:$PROV_RTP, expected at least $MIN_RTP"
! grep -F "one-way audio" "$E2E_LOG" ||
    fail "normal: sipnatd logged a one-way alarm for a call with RTP both ways"
a=$(stat sip.alarms.one_way_audio)
[ "$a" = 0 ] || fail "normal: sip.alarms.one_way_audio is '$a', not 0"
e2e_log "normal: RTP both ways, no alarm, sip.alarms.one_way_audio 0"

# --- silent: the far end sends nothing
run_call silent
n=$(rtp_count phone-silent.rtp)
[ "$n" = 0 ] || fail "silent: the phone got $n RTP packets, expected none"
line=$(alarm_line) || fail "silent: sipnatd logged no one-way audio on call $CID"
e2e_log "silent: $line"
[ "$(wc -l <<<"$line")" = 1 ] || fail "silent: the alarm was logged more than once"
[[ $line == *"nothing from the far end reaches the phone"* ]] ||
    fail "silent: the alarm does not name the missing direction (far end to phone)"
[[ $line == *": nothing ever arrived at public port $PUB_PORT" ]] ||
    fail "silent: the alarm's cause is not 'nothing ever arrived at public port $PUB_PORT'"
grep -qF "ALARM one-way audio (audio): no inbound RTP: nothing ever arrived at public port $PUB_PORT" \
    call-silent.txt || {
	cat call-silent.txt
	fail "silent: sipnatctl call $CID does not list the alarm"
}
a=$(stat sip.alarms.one_way_audio)
[ "$a" = 1 ] || fail "silent: sip.alarms.one_way_audio is '$a', not 1"
e2e_log "silent: one_way_alarm inbound, cause right, sip.alarms.one_way_audio 1"

# --- wrong: the far end sends to another public port
run_call wrong
n=$(rtp_count phone-wrong.rtp)
[ "$n" = 0 ] || fail "wrong: the phone got $n RTP packets, expected none"
grep -q "^tx $GW_WAN:$WRONG_PORT\$" prov-wrong.rtp ||
    fail "wrong: the provider did not send to $GW_WAN:$WRONG_PORT: $(cat prov-wrong.rtp)"
line=$(alarm_line) || fail "wrong: sipnatd logged no one-way audio on call $CID"
e2e_log "wrong: $line"
[ "$(wc -l <<<"$line")" = 1 ] || fail "wrong: the alarm was logged more than once"
[[ $line == *"nothing from the far end reaches the phone"* ]] ||
    fail "wrong: the alarm does not name the missing direction (far end to phone)"
cause="the far end sends to public port $WRONG_PORT, not to $PUB_PORT as the SDP says"
[[ $line == *": $cause" ]] || fail "wrong: the alarm's cause is not '$cause'"
grep -qF "ALARM one-way audio (audio): no inbound RTP: $cause" call-wrong.txt || {
	cat call-wrong.txt
	fail "wrong: sipnatctl call $CID does not list the alarm"
}
read -r stray stray_port <<<"$STRAY"
[ "$stray" -gt 0 ] && [ "$stray_port" = "$WRONG_PORT" ] ||
    fail "wrong: sipnatctl -j calls shows stray $stray, stray_port $stray_port; expected > 0 and $WRONG_PORT"
a=$(stat sip.alarms.one_way_audio)
[ "$a" = 2 ] || fail "wrong: sip.alarms.one_way_audio is '$a', not 2"
e2e_log "wrong: one_way_alarm inbound, cause right, $stray stray packets, sip.alarms.one_way_audio 2"

# --- rtcp: the far end sends its RTP to the RTCP port
run_call rtcp
n=$(rtp_count phone-rtcp.rtp)
[ "$n" = 0 ] || fail "rtcp: the phone got $n RTP packets at $PHONE_RTP, expected none"
line=$(alarm_line) || fail "rtcp: sipnatd logged no one-way audio on call $CID"
e2e_log "rtcp: $line"
cause="the far end sends RTP to the RTCP port $WRONG_PORT, not to $PUB_PORT as the SDP says"
[[ $line == *": $cause" ]] || fail "rtcp: the alarm's cause is not '$cause'"
a=$(stat sip.alarms.one_way_audio)
[ "$a" = 3 ] || fail "rtcp: sip.alarms.one_way_audio is '$a', not 3"
e2e_log "rtcp: cause right, sip.alarms.one_way_audio 3"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$E2E_LOG"; then
	fail "sipnatd's log has a sanitizer report"
fi
pass "the one-way audio alarm fires with the right cause, and only then"
