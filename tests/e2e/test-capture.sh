#!/bin/bash
#
# test-capture.sh: sipnatctl capture during an outbound call through the
# SIP ALG (the phone, sipp in lan1 with audio on 10.0.0.11:6000, calls the
# provider, sipp in wan1 with audio on 198.51.100.10:7000, RTP both ways as
# in test-sip-call.sh), while lan2 also talks UDP to wan2 (unrelated).
# One capture runs at a time, so the call is captured in two phases: a
# "sip" capture from before the INVITE until the call is confirmed with
# RTP both ways (sipnatctl counted RTP each way while it ran), then a "call CALL-ID" capture, started with a RELATIVE
# file name from another directory, until after the BYE.  Asserts:
#  - with no capture running, "capture" says "no capture" and "capture
#    stop" is an error (sipnatctl exits non-zero);
#  - while a capture runs, "capture" (and -j capture) names its absolute
#    file, its filter and a packet count, and a second "capture start" is
#    refused (exit non-zero, its file not created);
#  - the relative name is made absolute from sipnatctl's directory;
#  - a file that exists (or a symlink) is refused and left as it was, and
#    so is an unknown filter;
#  - "capture stop" reports as many packets as the file holds;
#  - both files are whole pcap files (2.4, microseconds, link type raw
#    IP; every record one whole IPv4 packet, none cut short) that tshark
#    reads without a warning;
#  - the sip capture holds only SIP (every packet to or from port 5060, no
#    RTP, nothing of lan2's flow), all of it parsed by tshark as SIP; each
#    INVITE the provider received is in it twice: first as read from the
#    phone (10.0.0.11:5060 -> 198.51.100.10:5060, Via and Contact
#    10.0.0.11:5060, c= 10.0.0.11, m= 6000), then as sent (from
#    203.0.113.1:PUB, Via and Contact 203.0.113.1:PUB, c= 203.0.113.1, m=
#    the public media port) with the same Via branch; the provider's 200 OK
#    likewise, first as read (to 203.0.113.1:PUB, Via 203.0.113.1:PUB),
#    then as sent to the phone (to 10.0.0.11:5060, Via 10.0.0.11:5060);
#  - the call capture holds the call's RTP on both sides of the
#    translation, each way exactly as many packets read as sent
#    (10.0.0.11:6000 -> 198.51.100.10:7000 as read, 203.0.113.1:MPORT ->
#    198.51.100.10:7000 as sent; 198.51.100.10:7000 -> 203.0.113.1:MPORT
#    as read, -> 10.0.0.11:6000 as sent), parsed by tshark as RTP with the
#    same sequence numbers on both sides; the phone's BYE and the
#    provider's 200 OK to it, each as read and as sent (Via 10.0.0.11:5060
#    on the phone's side, 203.0.113.1:PUB on the provider's); only SIP of
#    this Call-ID; nothing of lan2's flow;
#  - the call itself completes and sipnatd exits cleanly (no sanitizer
#    report).
#
# E2E_CAPTURE_KEEP=DIR copies the two pcap files to DIR.

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp ss tshark
e2e_require_sipnatd
e2e_is_sipnatd || skip "capture is a sipnatd command (E2E_GATEWAY=$E2E_GATEWAY)"

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
PHONE_RTP=6000
PROV_RTP=7000
CALL_MS=4500		# how long the call lasts once answered
MIN_RTP=40		# RTP packets each way the call capture must hold
OTHER_PORT=9000		# lan2 -> wan2, not SIP, not the call

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

SIP_PCAP=$E2E_TMP/sip.pcap
RELDIR=$E2E_TMP/rel
CALL_PCAP=$RELDIR/call.pcap

# tshark -r FILE ARGS.  Status 1 on an error or any warning (a truncated
# or malformed file) apart from the one about running as root, which
# pcap_check turns into a failure; the field extractions below run in
# subshells on files pcap_check has passed.
tsh() {
	local f=$1 out err

	shift
	out=$(tshark -r "$f" "$@" 2>"$E2E_TMP/tshark.err") || {
		cat "$E2E_TMP/tshark.err" >&2
		echo "tshark cannot read $f" >&2
		return 1
	}
	err=$(grep -v -e 'Running as user "root"' -e '^ *$' "$E2E_TMP/tshark.err")
	[ -z "$err" ] || {
		echo "$err" >&2
		echo "tshark warns about $f" >&2
		return 1
	}
	printf '%s\n' "$out"
}

# The SIP packets of FILE, one a line: "SRC:PORT>DST:PORT WHAT VIA BRANCH
# CONTACT C M CALLID" (WHAT is the method, or the status code and the
# CSeq method; "-" for what is absent).
sip_rows() {
	tsh "$1" -Y sip -T fields -E separator=/t -E occurrence=f \
	    -e ip.src -e udp.srcport -e ip.dst -e udp.dstport \
	    -e sip.Method -e sip.Status-Code -e sip.CSeq.method \
	    -e sip.Via.sent-by.address -e sip.Via.sent-by.port \
	    -e sip.Via.branch -e sip.contact.uri \
	    -e sdp.connection_info.address -e sdp.media.port -e sip.Call-ID |
	    awk -F'\t' '
	function d(s) { return s == "" ? "-" : s }
	{
		what = $5 != "" ? $5 : $6 "/" $7
		print $1 ":" $2 ">" $3 ":" $4, what, d($8) ":" d($9), d($10),
		    d($11), d($12), d($13), d($14)
	}'
}

# The UDP packets of FILE, one a line: "SRC:PORT>DST:PORT" with the RTP
# sequence number if tshark took it for RTP ("-" if not).
udp_rows() {
	tsh "$1" -o rtp.heuristic_rtp:TRUE -Y udp -T fields -E separator=/t \
	    -e ip.src -e udp.srcport -e ip.dst -e udp.dstport -e rtp.seq |
	    awk -F'\t' '{ print $1 ":" $2 ">" $3 ":" $4, ($5 == "" ? "-" : $5) }'
}

# FILE is a whole classic pcap file of raw IPv4 (link type 101 or 228):
# its header, then records that each hold a whole packet (caplen = len <=
# snaplen, an IPv4 header whose total length is the packet's), up to the
# end of the file; and tshark reads it without a word.  PCAP_N is the
# number of packets.
pcap_check() {
	local f=$1 n

	n=$("$E2E_PYTHON" - "$f" 2>&1 <<'EOF'
import struct, sys

data = open(sys.argv[1], "rb").read()
if len(data) < 24:
    sys.exit("%d bytes: no pcap header" % len(data))
for e in "<>":
    if struct.unpack(e + "I", data[:4])[0] == 0xa1b2c3d4:
        break
else:
    sys.exit("magic %s: not a microsecond pcap file" % data[:4].hex())
major, minor, _, _, snap, link = struct.unpack(e + "HHiIII", data[4:24])
if (major, minor) != (2, 4) or link not in (101, 228):
    sys.exit("version %d.%d link type %d, expected 2.4 and 101 (raw IP)"
             % (major, minor, link))
off, n = 24, 0
while off < len(data):
    if off + 16 > len(data):
        sys.exit("record %d: header cut short at byte %d" % (n + 1, off))
    _, usec, caplen, length = struct.unpack(e + "IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + caplen]
    if usec >= 1000000 or caplen != length or caplen > snap or \
            len(pkt) != caplen:
        sys.exit("record %d at byte %d: usec %d caplen %d len %d snaplen %d"
                 % (n + 1, off, usec, caplen, length, snap))
    if caplen < 20 or pkt[0] >> 4 != 4 or \
            struct.unpack("!H", pkt[2:4])[0] != caplen:
        sys.exit("record %d at byte %d: not one whole IPv4 packet"
                 % (n + 1, off))
    off += 16 + caplen
    n += 1
print(n)
EOF
) || fail "$f is not a sound pcap file: $n"
	tsh "$f" >/dev/null || fail "tshark does not read $f cleanly (above)"
	PCAP_N=$n
}

# How many lines of stdin are exactly LINE.
count_lines() {
	grep -cxF -- "$1"
}

# lan2 sends a few datagrams to wan2 and gets them echoed: traffic that
# neither capture should take.
other_flow() {
	e2e_exec lan2 "$E2E_PYTHON" "$FLOW" udp-send --to "$WAN2:$OTHER_PORT" \
	    --count 5 --interval 0.02 --timeout 2 >>"$E2E_TMP/other.log" 2>&1 ||
	    fail "lan2's UDP to $WAN2:$OTHER_PORT got no echo: $(cat "$E2E_TMP/other.log")"
}

# The capture status line.
capture_status() {
	e2e_ctl capture
}

# --- set-up

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"
mkdir -p "$RELDIR" || fail "cannot make $RELDIR"

e2e_bg wan2 "$E2E_TMP/other-echo.log" "$E2E_PYTHON" "$FLOW" udp-echo \
    --bind "$WAN2:$OTHER_PORT" --timeout 30
e2e_wait_for 5 udp_listening wan2 "$OTHER_PORT" ||
    fail "the UDP echo in wan2 does not listen"

# --- nothing running
out=$(capture_status) || fail "sipnatctl capture failed: $out"
[ "$out" = "no capture" ] || fail "sipnatctl capture with none running says '$out'"
if out=$(e2e_ctl capture stop 2>&1); then
	fail "sipnatctl capture stop with none running exits 0: '$out'"
fi
e2e_log "no capture: capture stop says '$out' and exits non-zero"

# --- phase 1: the sip capture, before the call
out=$(e2e_ctl capture start "$SIP_PCAP" sip) ||
    fail "sipnatctl capture start $SIP_PCAP sip failed: $out"
[ -f "$SIP_PCAP" ] || fail "capture start did not create $SIP_PCAP"

# Only one at a time.
if out=$(e2e_ctl capture start "$E2E_TMP/second.pcap" all 2>&1); then
	fail "a second capture started while one runs: '$out'"
fi
[ ! -e "$E2E_TMP/second.pcap" ] ||
    fail "the refused second capture created its file"
e2e_log "a second capture is refused: $out"

other_flow

# The call, with RTP both ways (as test-sip-call.sh).
rtp_bg lan1 phone "$LAN1:$PHONE_RTP" --until "$E2E_TMP/rtp.stop"
PHONE_RTP_PID=$E2E_LAST_PID
rtp_bg wan1 prov "$WAN1:$PROV_RTP" --until "$E2E_TMP/rtp.stop"
PROV_RTP_PID=$E2E_LAST_PID

start_provider prov call-uas.xml
start_phone phone call-uac.xml -d "$CALL_MS"
e2e_log "the phone calls the provider for $((CALL_MS / 1000)).$((CALL_MS % 1000 / 100)) s"

wait_until 10 call_flowing || {
	e2e_ctl calls
	fail "sipnatctl never showed the call confirmed with media both ways"
}
read -r _ _ _ _ _ public _ _ _ _ <<<"$LAST_CALL"
m_port=${public##*:}
cid=$(e2e_ctl -j calls | "$E2E_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["calls"][0]["call_id"])') ||
    fail "cannot read the Call-ID from sipnatctl -j calls"
e2e_log "call $cid up, public media port $m_port"

# Status while it runs, text and JSON.
out=$(capture_status)
[[ $out =~ ^capture\ to\ $SIP_PCAP\ \(sip\):\ ([0-9]+)\ packets$ ]] ||
    fail "sipnatctl capture while running says '$out'"
[ "${BASH_REMATCH[1]}" -gt 0 ] || fail "the running sip capture counts no packets: '$out'"
e2e_log "status: $out"
out=$(e2e_ctl -j capture | "$E2E_PYTHON" -c '
import json, sys
c = json.load(sys.stdin)["capture"]
print(c["file"], c["filter"], c["packets"])') ||
    fail "sipnatctl -j capture is not the expected JSON"
[[ $out =~ ^$SIP_PCAP\ sip\ [0-9]+$ ]] ||
    fail "sipnatctl -j capture says '$out'"

other_flow
out=$(e2e_ctl capture stop) || fail "sipnatctl capture stop failed: $out"
[[ $out =~ ^capture\ stopped:\ ([0-9]+)\ packets$ ]] ||
    fail "sipnatctl capture stop says '$out'"
sip_stopped=${BASH_REMATCH[1]}
e2e_log "sip capture: $out"

# --- phase 2: the call capture, relative file name from another directory
out=$(cd "$RELDIR" && e2e_ctl capture start call.pcap call "$cid") ||
    fail "sipnatctl capture start call.pcap call $cid (in $RELDIR) failed: $out"
[ -f "$CALL_PCAP" ] || fail "the relative call.pcap is not at $CALL_PCAP"
[ ! -e "$E2E_TMP/call.pcap" ] || fail "call.pcap landed in sipnatd's directory"
out=$(capture_status)
[[ $out == "capture to $CALL_PCAP (call $cid): "*" packets" ]] ||
    fail "sipnatctl capture says '$out', expected the absolute $CALL_PCAP"
e2e_log "status: $out"
other_flow

sipp_done "$PHONE_PID" phone
sipp_done "$PROV_PID" prov
e2e_log "the call completed (both sipps succeeded)"
e2e_wait_for 5 not_running "$PHONE_RTP_PID" || e2e_kill "$PHONE_RTP_PID"
e2e_wait_for 5 not_running "$PROV_RTP_PID" || e2e_kill "$PROV_RTP_PID"
other_flow

out=$(e2e_ctl capture stop) || fail "sipnatctl capture stop failed: $out"
[[ $out =~ ^capture\ stopped:\ ([0-9]+)\ packets$ ]] ||
    fail "sipnatctl capture stop says '$out'"
call_stopped=${BASH_REMATCH[1]}
e2e_log "call capture: $out"

# --- refusals once stopped
if out=$(e2e_ctl capture stop 2>&1); then
	fail "capture stop after the stop exits 0: '$out'"
fi
sum=$(md5sum <"$SIP_PCAP")
if out=$(e2e_ctl capture start "$SIP_PCAP" sip 2>&1); then
	e2e_ctl capture stop >/dev/null 2>&1
	fail "capture start on the existing $SIP_PCAP succeeded: '$out'"
fi
[ "$(md5sum <"$SIP_PCAP")" = "$sum" ] || fail "the refused capture changed $SIP_PCAP"
e2e_log "an existing file is refused and kept: $out"
ln -s "$E2E_TMP/target.pcap" "$E2E_TMP/link.pcap"
if out=$(e2e_ctl capture start "$E2E_TMP/link.pcap" 2>&1); then
	e2e_ctl capture stop >/dev/null 2>&1
	fail "capture start through a symlink succeeded: '$out'"
fi
[ ! -e "$E2E_TMP/target.pcap" ] || fail "a capture through a symlink created its target"
if out=$(e2e_ctl capture start "$E2E_TMP/bogus.pcap" bogus 2>&1); then
	e2e_ctl capture stop >/dev/null 2>&1
	fail "capture start with an unknown filter succeeded: '$out'"
fi
[ ! -e "$E2E_TMP/bogus.pcap" ] || fail "a capture with an unknown filter created its file"
out=$(capture_status)
[ "$out" = "no capture" ] || fail "after the refusals sipnatctl capture says '$out'"

# The rest reads the files: sipnatd can go (and must exit cleanly).
e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"

if [ -n "${E2E_CAPTURE_KEEP:-}" ]; then
	cp "$SIP_PCAP" "$CALL_PCAP" "$E2E_CAPTURE_KEEP/"
fi

# --- the sip capture
pcap_check "$SIP_PCAP"
n=$PCAP_N
[ "$n" = "$sip_stopped" ] ||
    fail "$SIP_PCAP holds $n packets, capture stop said $sip_stopped"
ipv4=$(tsh "$SIP_PCAP" -Y ip -T fields -e frame.number | wc -l)
[ "$ipv4" = "$n" ] || fail "$SIP_PCAP: tshark sees $ipv4 of $n packets as IPv4"
sip_n=$(tsh "$SIP_PCAP" -Y sip -T fields -e frame.number | wc -l)
[ "$sip_n" = "$n" ] || {
	tsh "$SIP_PCAP" -Y '!sip' | head -n 20
	fail "$SIP_PCAP: $sip_n of $n packets parse as SIP (the others above)"
}
udp=$(udp_rows "$SIP_PCAP")
bad=$(awk '$1 !~ /:5060>/ && $1 !~ />[0-9.]+:5060$/' <<<"$udp")
[ -z "$bad" ] || fail "$SIP_PCAP holds packets not to or from port 5060: $bad"
bad=$(awk '$2 != "-"' <<<"$udp")
[ -z "$bad" ] || fail "$SIP_PCAP holds RTP: $bad"
bad=$(grep -E "(^|>)($LAN2|$WAN2):" <<<"$udp")
[ -z "$bad" ] || fail "$SIP_PCAP holds lan2's flow: $bad"

# The public signalling port: in the Via the provider received.
pub=$(received_msgs "$E2E_TMP/prov.msg" |
    sed -n "s/^Via: SIP\/2.0\/UDP $GW_WAN:\([0-9]*\);.*/\1/p" | head -n 1)
[ -n "$pub" ] || fail "no Via naming $GW_WAN in what the provider received"
ninv=$(received_invites "$E2E_TMP/prov.msg" | wc -l)
rows=$(sip_rows "$SIP_PCAP")
sed 's/^/#   /' <<<"$rows"
branch=$(awk -v s="$LAN1:5060>$WAN1:5060" '$1 == s && $2 == "INVITE" { print $4; exit }' <<<"$rows")
[ -n "$branch" ] && [ "$branch" != - ] ||
    fail "$SIP_PCAP has no INVITE from $LAN1:5060 to $WAN1:5060 with a Via branch"
inv_in="$LAN1:5060>$WAN1:5060 INVITE $LAN1:5060 $branch sip:phone@$LAN1:5060 $LAN1 $PHONE_RTP $cid"
inv_out="$GW_WAN:$pub>$WAN1:5060 INVITE $GW_WAN:$pub $branch sip:phone@$GW_WAN:$pub $GW_WAN $m_port $cid"
a=$(count_lines "$inv_in" <<<"$rows")
b=$(count_lines "$inv_out" <<<"$rows")
[ "$a" = "$ninv" ] && [ "$b" = "$ninv" ] ||
    fail "$SIP_PCAP: the provider got $ninv INVITE(s); as read '$inv_in' $a time(s), as sent '$inv_out' $b time(s)"
# Read, then sent.
first=$(awk '$2 == "INVITE" { print $1; exit }' <<<"$rows")
[ "$first" = "$LAN1:5060>$WAN1:5060" ] ||
    fail "$SIP_PCAP: the INVITE as sent comes before the INVITE as read"
e2e_log "the INVITE (branch $branch) as read and as sent, public port $pub"

ok_in=$(awk -v s="$WAN1:5060>$GW_WAN:$pub" -v v="$GW_WAN:$pub" -v b="$branch" \
    '$1 == s && $2 == "200/INVITE" && $3 == v && $4 == b && $6 == w' w="$WAN1" <<<"$rows" | wc -l)
ok_out=$(awk -v s="$WAN1:5060>$LAN1:5060" -v v="$LAN1:5060" -v b="$branch" \
    '$1 == s && $2 == "200/INVITE" && $3 == v && $4 == b && $6 == w' w="$WAN1" <<<"$rows" | wc -l)
[ "$ok_in" -ge 1 ] && [ "$ok_in" = "$ok_out" ] ||
    fail "$SIP_PCAP: the 200 OK as read ($WAN1:5060 -> $GW_WAN:$pub, Via $GW_WAN:$pub) $ok_in time(s), as sent ($WAN1:5060 -> $LAN1:5060, Via $LAN1:5060) $ok_out time(s)"
first=$(awk '$2 == "200/INVITE" { print $1; exit }' <<<"$rows")
[ "$first" = "$WAN1:5060>$GW_WAN:$pub" ] ||
    fail "$SIP_PCAP: the first 200 OK is $first, not the one as read"
e2e_log "the 200 OK as read ($ok_in) and as sent ($ok_out)"
bad=$(awk -v c="$cid" '$8 != c' <<<"$rows")
[ -z "$bad" ] || fail "$SIP_PCAP holds SIP of another Call-ID: $bad"

# --- the call capture
pcap_check "$CALL_PCAP"
n=$PCAP_N
[ "$n" = "$call_stopped" ] ||
    fail "$CALL_PCAP holds $n packets, capture stop said $call_stopped"
udp=$(udp_rows "$CALL_PCAP")
bad=$(grep -E "(^|>)($LAN2|$WAN2):" <<<"$udp")
[ -z "$bad" ] || fail "$CALL_PCAP holds lan2's flow: $bad"
# Each way: the packets as read and as sent, with their RTP sequence
# numbers; the same ones on both sides.
rtp_way() {
	awk -v s="$1" '$1 == s { print $2 }' <<<"$udp"
}
for way in out in; do
	if [ "$way" = out ]; then
		rd="$LAN1:$PHONE_RTP>$WAN1:$PROV_RTP"
		sn="$GW_WAN:$m_port>$WAN1:$PROV_RTP"
	else
		rd="$WAN1:$PROV_RTP>$GW_WAN:$m_port"
		sn="$WAN1:$PROV_RTP>$LAN1:$PHONE_RTP"
	fi
	r=$(rtp_way "$rd")
	s=$(rtp_way "$sn")
	nr=$(grep -c . <<<"$r")
	ns=$(grep -c . <<<"$s")
	[ "$nr" -ge "$MIN_RTP" ] && [ "$ns" -ge "$MIN_RTP" ] ||
	    fail "$CALL_PCAP: RTP $way: $nr packets $rd (as read), $ns $sn (as sent), expected at least $MIN_RTP each"
	! grep -qx -- - <<<"$r$(printf '\n')$s" ||
	    fail "$CALL_PCAP: RTP $way: tshark does not parse every packet as RTP"
	[ "$r" = "$s" ] || {
		diff <(echo "$r") <(echo "$s") | head -n 10
		fail "$CALL_PCAP: RTP $way: the sequence numbers read ($nr, $rd) and sent ($ns, $sn) differ (above)"
	}
	e2e_log "call capture: RTP $way $nr packets as read ($rd) and as sent ($sn)"
done
other=$(awk -v a="$LAN1:$PHONE_RTP>$WAN1:$PROV_RTP" -v b="$GW_WAN:$m_port>$WAN1:$PROV_RTP" \
    -v c="$WAN1:$PROV_RTP>$GW_WAN:$m_port" -v d="$WAN1:$PROV_RTP>$LAN1:$PHONE_RTP" \
    '$1 != a && $1 != b && $1 != c && $1 != d && $1 !~ /:5060>/ && $1 !~ />[0-9.]+:5060$/' <<<"$udp")
[ -z "$other" ] || fail "$CALL_PCAP holds UDP that is neither the call's RTP nor SIP: $other"

rows=$(sip_rows "$CALL_PCAP")
sed 's/^/#   /' <<<"$rows"
bad=$(awk -v c="$cid" '$8 != c' <<<"$rows")
[ -z "$bad" ] || fail "$CALL_PCAP holds SIP of another Call-ID: $bad"
# The teardown, as read and as sent: the phone's BYE and the provider's
# 200 OK to it, on the phone's signalling mapping.
missing=
for m in "$LAN1:5060>$WAN1:5060 BYE $LAN1:5060" \
    "$GW_WAN:$pub>$WAN1:5060 BYE $GW_WAN:$pub" \
    "$WAN1:5060>$GW_WAN:$pub 200/BYE $GW_WAN:$pub" \
    "$WAN1:5060>$LAN1:5060 200/BYE $LAN1:5060"; do
	awk -v m="$m" '$1 " " $2 " " $3 == m { f = 1 } END { exit !f }' \
	    <<<"$rows" || missing="$missing${missing:+; }$m"
done
[ -z "$missing" ] ||
    fail "$CALL_PCAP lacks the call's teardown: $missing (Via as given)"
e2e_log "call capture: the BYE and its 200 OK as read and as sent, only SIP of $cid"

pass "captures of SIP and of one call, both sides of the translation"
