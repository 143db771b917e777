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
e2e_bg lan1 "$E2E_TMP/phone.rtp" "$E2E_PYTHON" "$FLOW" rtp \
    --bind "$LAN1:$PHONE_RTP" --to-file "$E2E_TMP/phone.target" \
    --mark "$E2E_TMP/got200" --until "$E2E_TMP/rtp.stop" --timeout 0
PHONE_RTP_PID=$E2E_LAST_PID
e2e_bg wan1 "$E2E_TMP/prov.rtp" "$E2E_PYTHON" "$FLOW" rtp \
    --bind "$WAN1:$PROV_RTP" --to-file "$E2E_TMP/prov.target" \
    --mark "$E2E_TMP/got200" --until "$E2E_TMP/rtp.stop" --timeout 0
PROV_RTP_PID=$E2E_LAST_PID
e2e_wait_for 5 grep -q ready "$E2E_TMP/phone.rtp" ||
    fail "the phone's RTP endpoint did not start"
e2e_wait_for 5 grep -q ready "$E2E_TMP/prov.rtp" ||
    fail "the provider's RTP endpoint did not start"

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
