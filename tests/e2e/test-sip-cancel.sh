#!/bin/bash
#
# test-sip-cancel.sh: calls that never get answered close their media at
# once.  (a) The phone (sipp in lan1, audio on 10.0.0.11:6000) calls the
# provider (sipp in wan1), gets 180 Ringing and CANCELs: 200 to the
# CANCEL, 487 to the INVITE, ACK.  (b) The phone (audio on 6010) calls and
# the provider answers 486 Busy Here.  In each case, while the INVITE is
# pending, wan1 sends RTP from port 7002 to the public media address the
# INVITE's SDP gave it: it must reach the phone's private port (the
# control: the public port really was open and the phone's receiver
# works).  Asserts: both sipps succeed; the provider received no private
# address and c= is the public address; the control RTP arrived; after
# the call failed, RTP from wan1:7000 to the same public media port does
# NOT reach the phone.  sipnatd only: while pending, sipnatctl -j calls
# shows the call with its audio stream on that public port; (a) once the
# CANCEL has reached the provider, before the 487 (held back 2 s), no call
# is left and no pinhole is open; right after the last message (well
# before any timeout: sip_dialog is 7200 s) no call is left, the pinholes
# gauge and sip.dialogs are 0, no dialog timed out, and the RTP sent
# afterwards was counted as filtered (drop.filtered): it reached the
# gateway and was refused there (default address-and-port-dependent
# filtering).
#
# E2E_SIP_CONF="section.key = value" adds a key to the config.

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp ss
e2e_require_sipnatd

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
CTL_RTP=7002		# wan1's port for the control RTP, while pending
LATE_RTP=7000		# wan1's port for the RTP after the call failed
NPKT=25			# packets of each
MIN_CTL=10		# control packets the phone must get

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

# --- the test

# The call in sipnatctl has a media stream.
call_has_media() {
	local s

	s=$(call_summary)
	LAST_CALL=$s
	set -- $s
	[ "${3:-0}" -ge 1 ]
}

# One failed call: run_case NAME UAC UAS PHONE_PORT WHAT.
run_case() {
	local name=$1 uac=$2 uas=$3 port=$4 what=$5 pending="" rtp mark
	local inv c_addr m_port filtered n ph state public

	rtp=$E2E_TMP/phone-$name.rtp
	mark=$E2E_TMP/mark-$name
	rm -f "$E2E_TMP/prov.target"
	e2e_bg lan1 "$rtp" "$E2E_PYTHON" "$FLOW" rtp-count \
	    --bind "$LAN1:$port" --mark "$mark" --timeout 0
	local phone_rtp=$E2E_LAST_PID
	e2e_bg wan1 "$E2E_TMP/ctl-$name.rtp" "$E2E_PYTHON" "$FLOW" rtp-send \
	    --bind "$WAN1:$CTL_RTP" --to-file "$E2E_TMP/prov.target" \
	    --count "$NPKT" --timeout 0.2
	e2e_wait_for 5 grep -q ready "$rtp" ||
	    fail "$name: the phone's RTP endpoint did not start"
	e2e_wait_for 5 grep -q ready "$E2E_TMP/ctl-$name.rtp" ||
	    fail "$name: the provider's RTP endpoint did not start"

	start_provider "prov-$name" "$uas"
	start_phone "phone-$name" "$uac"
	e2e_log "$name: $what"

	if e2e_is_sipnatd; then
		wait_until 5 call_has_media || {
			e2e_ctl calls
			fail "$name: sipnatctl never showed the pending call with its media"
		}
		pending=$LAST_CALL
		e2e_log "$name: sipnatctl calls, pending: $pending"
	fi

	# The CANCEL alone ends the call: look before the 487 comes.
	if [ "$name" = cancel ] && e2e_is_sipnatd; then
		e2e_wait_for 10 test -e "$E2E_TMP/got-cancel" ||
		    fail "$name: the provider got no CANCEL"
		n=$(call_summary)
		ph=$(stat pinholes)
		[ ! -e "$E2E_TMP/sending-487" ] ||
		    fail "$name: too slow to look between the CANCEL and the 487"
		[ "$n" = none ] && [ "$ph" = 0 ] ||
		    fail "$name: after the CANCEL (before the 487) sipnatctl shows '$n', $ph pinholes"
		e2e_log "$name: once the CANCEL passed (before the 487): no call, no pinhole"
	fi

	sipp_done "$PHONE_PID" "phone-$name" 20
	sipp_done "$PROV_PID" "prov-$name" 10
	e2e_log "$name: both sipps went through the scenario"

	# At once, long before any timeout.
	if e2e_is_sipnatd; then
		assert_all_closed "$name: right after the call failed"
		n=$(stat sip.dialogs.timed_out)
		[ "$n" = 0 ] || fail "$name: $n dialogs timed out: the call did not end on its messages"
		filtered=$(($(stat drop.filtered) + $(stat drop.no_mapping)))
		e2e_log "$name: right after, no call and no pinhole left"
	fi

	assert_no_leak "$E2E_TMP/prov-$name.msg"
	inv=$(received_invites "$E2E_TMP/prov-$name.msg")
	[ "$(wc -l <<<"$inv")" = 1 ] ||
	    fail "$name: the provider received $(wc -l <<<"$inv") INVITEs, not 1: $inv"
	read -r c_addr m_port _ <<<"$inv"
	[ "$c_addr" = "$GW_WAN" ] ||
	    fail "$name: the INVITE's c= names $c_addr at the provider, not the public $GW_WAN"
	[ "$m_port" != - ] || fail "$name: the INVITE reached the provider without m=audio"

	# After the call: RTP to the public media port must not get in.
	touch "$mark"
	e2e_exec wan1 "$E2E_PYTHON" "$FLOW" rtp-send --bind "$WAN1:$LATE_RTP" \
	    --to "$GW_WAN:$m_port" --count "$NPKT" --timeout 0.3 >/dev/null
	sleep 0.3
	e2e_kill "$phone_rtp"

	grep -q "^tx $GW_WAN:$m_port\$" "$E2E_TMP/ctl-$name.rtp" ||
	    fail "$name: the control RTP was not sent to $GW_WAN:$m_port: $(cat "$E2E_TMP/ctl-$name.rtp")"
	n=$(awk -v s="$WAN1:$CTL_RTP" '$1 == "before-mark" && $4 == s { print $2 }' "$rtp")
	[ "${n:-0}" -ge "$MIN_CTL" ] || {
		cat "$rtp"
		fail "$name: while the call was pending, the phone got ${n:-0} of $NPKT RTP packets sent to $GW_WAN:$m_port, expected at least $MIN_CTL"
	}
	e2e_log "$name: while pending, $n RTP packets to $GW_WAN:$m_port reached $LAN1:$port"
	n=$(awk '$1 == "after-mark" { n += $2 } END { print n + 0 }' "$rtp")
	[ "$n" = 0 ] || {
		cat "$rtp"
		fail "$name: after the call failed, $n RTP packets sent to $GW_WAN:$m_port still reached the phone"
	}
	e2e_log "$name: afterwards, none of $NPKT RTP packets from $WAN1:$LATE_RTP to $GW_WAN:$m_port got in"

	if e2e_is_sipnatd; then
		# Refused by the filter, or finding no mapping at all: the
		# dialog's end took the media mappings with it.
		n=$(($(stat drop.filtered) + $(stat drop.no_mapping) - filtered))
		[ "$n" -ge "$NPKT" ] ||
		    fail "$name: drop.filtered + drop.no_mapping went up by $n, expected $NPKT: the late RTP was not refused"
		read -r state _ _ _ _ public _ <<<"$pending"
		[ "$public" = "$GW_WAN:$m_port" ] ||
		    fail "$name: sipnatctl showed the stream on $public, the SDP said $GW_WAN:$m_port"
		e2e_log "$name: sipnatd filtered them ($n); the call was $state on $public"
	fi
}

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

run_case cancel cancel-uac.xml cancel-uas.xml 6000 \
    "the phone calls, hears ringing, CANCELs (200, 487)"
run_case busy cancel-busy-uac.xml cancel-busy-uas.xml 6010 \
    "the phone calls, the provider answers 486 Busy Here"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "cancelled and refused calls close their media at once"
