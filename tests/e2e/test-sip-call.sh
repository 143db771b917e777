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

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} ||
    fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# RTP endpoints: each sends to the address its sipp wrote, once known,
# and counts what comes in on the same socket (symmetric RTP).
e2e_bg lan1 "$E2E_TMP/phone.rtp" "$E2E_PYTHON" "$FLOW" rtp \
    --bind "$LAN1:$PHONE_RTP" --to-file "$E2E_TMP/phone.target" \
    --until "$E2E_TMP/rtp.stop" --timeout 0
PHONE_RTP_PID=$E2E_LAST_PID
e2e_bg wan1 "$E2E_TMP/prov.rtp" "$E2E_PYTHON" "$FLOW" rtp \
    --bind "$WAN1:$PROV_RTP" --to-file "$E2E_TMP/prov.target" \
    --until "$E2E_TMP/rtp.stop" --timeout 0
PROV_RTP_PID=$E2E_LAST_PID
e2e_wait_for 5 grep -q ready "$E2E_TMP/phone.rtp" ||
    fail "the phone's RTP endpoint did not start"
e2e_wait_for 5 grep -q ready "$E2E_TMP/prov.rtp" ||
    fail "the provider's RTP endpoint did not start"

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
fi

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "outbound SIP call with RTP both ways through the ALG"
