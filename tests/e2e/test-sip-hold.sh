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

# --- helpers (the same in each test-sip-*.sh)

# Start sipp in NS as NAME (log NAME.log, messages NAME.msg) with a
# scenario of tests/e2e/sip and more arguments; E2E_LAST_PID is its pid.
sipp_bg() {
	local ns=$1 name=$2 sf=$3

	shift 3
	e2e_bg "$ns" "$E2E_TMP/$name.log" sipp -sf "$SIPDIR/$sf" -nostdin \
	    -m 1 -timeout 40 -timeout_error \
	    -trace_msg -message_file "$E2E_TMP/$name.msg" \
	    -trace_err -error_file "$E2E_TMP/$name.err" \
	    -trace_logs -log_file "$E2E_TMP/$name.actions" "$@"
}

# The provider in wan1 (UAS) and the phone in lan1 (UAC) with SCENARIO.
start_provider() {
	sipp_bg wan1 "$1" "$2" -i "$WAN1" -p 5060 -mp 17000 "${@:3}"
	PROV_PID=$E2E_LAST_PID
	wait_until 5 udp_listening wan1 5060 ||
	    fail "the provider's sipp does not listen on $WAN1:5060"
}
start_phone() {
	sipp_bg lan1 "$1" "$2" -i "$LAN1" -p 5060 -mp 16000 \
	    -cid_str "%u-%p@phone.example.net" "${@:3}" "$WAN1:5060"
	PHONE_PID=$E2E_LAST_PID
}

# Like e2e_wait_for, but SECS (whole) of wall-clock time: for checks that
# take a while themselves (sipnatctl and python).
wait_until() {
	local end=$((${EPOCHREALTIME/./} + $1 * 1000000))

	shift
	while :; do
		"$@" && return 0
		[ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
		sleep 0.05
	done
}

udp_listening() {
	e2e_exec "$1" ss -Huln "sport = :$2" | grep -q .
}

not_running() {
	! kill -0 "$1" 2>/dev/null
}

# Wait for a sipp to end (SECS) and check it succeeded.
sipp_done() {
	local pid=$1 name=$2 secs=${3:-45} rc

	e2e_wait_for "$secs" not_running "$pid" || {
		e2e_kill "$pid" 2
		sipp_fail "$name" "did not finish within ${secs}s"
	}
	e2e_kill "$pid"
	rc=$?
	[ "$rc" = 0 ] || sipp_fail "$name" "exited with status $rc (the call failed)"
}

sipp_fail() {
	echo "--- $1: sipp's screen"
	grep -v '^\s*$' "$E2E_TMP/$1.log" | tail -n 25
	[ -s "$E2E_TMP/$1.err" ] && { echo "--- $1: errors"; tail -n 30 "$E2E_TMP/$1.err"; }
	fail "$1: $2"
}

# The messages a sipp received, from its message log.
received_msgs() {
	tr -d '\r' <"$1" | awk '
	/^----------+ / { getline hdr; rcv = hdr ~ /message received/; next }
	rcv'
}

# One line per INVITE a sipp received: "C_ADDR M_PORT DIRECTION A_RTCP".
received_invites() {
	received_msgs "$1" | awk '
	function flush() {
		if (inv)
			print (c ? c : "-"), (m ? m : "-"), (d ? d : "-"),
			    (r ? r : "-")
		inv = 0; c = m = d = r = ""
	}
	/^(INVITE|ACK|BYE|CANCEL|OPTIONS|UPDATE|PRACK|SIP\/2\.0) / { flush(); inv = $1 == "INVITE" }
	inv && /^c=IN IP4 / { c = $3 }
	inv && /^m=audio / { m = $2 }
	inv && /^a=(sendrecv|sendonly|recvonly|inactive)$/ { d = substr($0, 3) }
	inv && /^a=rtcp:/ { r = substr($1, 8) }
	END { flush() }'
}

# Fail if the provider received a private address anywhere.
assert_no_leak() {
	local msgs=$1 leak

	[ -s "$msgs" ] || fail "no message log $msgs"
	leak=$(received_msgs "$msgs" | grep -nE '(^|[^0-9])10\.0\.0\.[0-9]+')
	[ -z "$leak" ] || {
		echo "$leak"
		fail "the provider received the phone's private address (above)"
	}
}

# "A:P" of "received N from A:P" lines of a flow.py rtp output, with N.
rtp_received() {
	awk -v w="${2:-received}" '$1 == w { print $2, $4 }' "$1"
}

# The one call in sipnatctl -j calls, as
# "STATE DIRECTION NMEDIA TYPE INSIDE PUBLIC REMOTE RTCP_PUBLIC OUT IN",
# "none", or "calls N" when there are several.  The wait predicates below
# keep the one they matched in LAST_CALL.
call_summary() {
	e2e_ctl -j calls | "$E2E_PYTHON" -c '
import json, sys
calls = json.load(sys.stdin)["calls"]
if len(calls) != 1:
    print("none" if not calls else "calls %d" % len(calls))
    sys.exit()
c = calls[0]
out = [c["state"], c["direction"], str(len(c["media"]))]
for m in c["media"][:1]:
    out += [m["type"], m["inside"], m["public"], m["remote"],
            str(m["rtcp_public"]), str(m["packets_out"]), str(m["packets_in"])]
print(" ".join(out))'
}

# A counter or gauge from sipnatctl stats.
stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { print $2 }'
}

# The call in sipnatctl is confirmed with media packets both ways.
call_flowing() {
	local s

	s=$(call_summary)
	LAST_CALL=$s
	[ "${s%% *}" = confirmed ] || return 1
	set -- $s
	[ "${9:-0}" -gt 0 ] && [ "${10:-0}" -gt 0 ]
}

# After a call: no call left, no pinhole open.
assert_all_closed() {
	local what=$1 c p d

	c=$(call_summary)
	p=$(stat pinholes)
	d=$(stat sip.dialogs)
	[ "$c" = none ] && [ "$p" = 0 ] && [ "$d" = 0 ] || {
		e2e_ctl calls
		fail "$what: sipnatctl still shows '$c', $p pinholes, $d dialogs"
	}
}

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
