# shellcheck shell=bash
#
# tests/e2e/sip-lib.sh: helpers shared by the SIP call tests (sourced after
# lib.sh, with SIPDIR, FLOW and the test's variables set): sipp in the
# background, waiting, reading sipp's message logs, RTP counts, sipnatctl.

# Start sipp in NS as NAME (log NAME.log, messages NAME.msg) with a
# scenario of tests/e2e/sip and more arguments; E2E_LAST_PID is its pid.
# SIPP_TRANSPORT (u1, t1, tn) picks sipp's transport: UDP by default.
sipp_bg() {
	local ns=$1 name=$2 sf=$3

	shift 3
	e2e_bg "$ns" "$E2E_TMP/$name.log" sipp -sf "$SIPDIR/$sf" -nostdin \
	    -t "${SIPP_TRANSPORT:-u1}" -max_socket 100 \
	    -m 1 -timeout 40 -timeout_error \
	    -trace_msg -message_file "$E2E_TMP/$name.msg" \
	    -trace_err -error_file "$E2E_TMP/$name.err" \
	    -trace_logs -log_file "$E2E_TMP/$name.actions" "$@"
}

# The provider in wan1 (UAS) and the phone in lan1 (UAC) with SCENARIO.
start_provider() {
	# sipp listens with one socket whatever its callers use (tn: t1).
	SIPP_TRANSPORT=${SIPP_TRANSPORT/tn/t1} \
	    sipp_bg wan1 "$1" "$2" -i "$WAN1" -p 5060 -mp 17000 "${@:3}"
	PROV_PID=$E2E_LAST_PID
	wait_until 5 sip_listening wan1 5060 ||
	    fail "the provider's sipp does not listen on $WAN1:5060"
}
start_phone() {
	sipp_bg lan1 "$1" "$2" -i "$LAN1" -p 5060 -mp 16000 \
	    -cid_str "%u-%p@phone.example.net" "${@:3}" "$WAN1:5060"
	PHONE_PID=$E2E_LAST_PID
}

# Start a symmetric RTP endpoint (flow.py rtp) in NS as NAME: output in
# NAME.rtp, bound to ADDR:PORT, sending to the address in NAME.target once
# that exists; more flow.py options follow (--until FILE, --mark FILE).
# Returns once it is ready; E2E_LAST_PID is its pid.
rtp_bg() {
	local ns=$1 name=$2 bind=$3

	shift 3
	e2e_bg "$ns" "$E2E_TMP/$name.rtp" "$E2E_PYTHON" "$FLOW" rtp \
	    --bind "$bind" --to-file "$E2E_TMP/$name.target" --timeout 0 "$@"
	e2e_wait_for 5 grep -q ready "$E2E_TMP/$name.rtp" ||
	    fail "the RTP endpoint $name ($bind in $ns) did not start"
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

# Listening on the SIP transport sipp uses (SIPP_TRANSPORT).
sip_listening() {
	case ${SIPP_TRANSPORT:-u1} in
	t*) e2e_exec "$1" ss -Htln "sport = :$2" | grep -q . ;;
	*) udp_listening "$@" ;;
	esac
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

