#!/bin/bash
#
# test-sip-frag.sh: SIP over UDP in IP fragments, both ways, through an
# uplink MTU (1280, on gw's wan0 and inet's gw0) smaller than the LAN's
# (1500); sipnatd takes it from wan0 (wan.mtu = 0).  The phone in lan1
# (10.0.0.11:5060) sends a 4 KB INVITE, without DF, whose SDP is mostly
# a= lines and names 10.0.0.11 in Via, Contact, o=, c= and a=rtcp, to a
# receiver on 198.51.100.10:5060 in wan1, which keeps every datagram.
# nftables counters, ahead of any reassembly, count the fragments on the
# way (in gw: from lan1 on br0, from wan1 on wan0; in inet: from the
# public address).
# Asserts:
#   - lan1 sent the INVITE in fragments (at least 3 came in on br0);
#   - wan1 gets exactly one datagram, from 203.0.113.1 and a public port:
#     the whole INVITE, rewritten: nothing names 10.0.0.x; the top Via is
#     203.0.113.1 and that public port with the branch and rport kept,
#     Contact too, o=, c= and a=rtcp name 203.0.113.1; every other a=
#     line arrives as sent and in order; Content-Length is the length of
#     the body;
#   - it left the gateway in fragments within the uplink MTU (at least 4
#     from 203.0.113.1 at inet, none longer than 1280 bytes);
#   - then wan1 answers from 5060 with a 200 OK (Via, From, To, Call-ID,
#     CSeq of the INVITE as received; a 3 KB SDP) sent without DF, which
#     wan1 fragments and inet cuts again to 1280 (at least 3 fragments
#     reach gw's wan0); the phone gets exactly one datagram, from
#     198.51.100.10:5060: the 200 OK whole, its top Via translated back
#     to 10.0.0.11:5060 with the branch and rport, Call-ID and CSeq as
#     sent, its SDP byte for byte as sent and Content-Length its length.
# With sipnatd: for the INVITE fragments.in +3 or more,
# fragments.reassembled +1, fragments.out +4 or more (sipnatd cut the
# rewritten INVITE to the uplink MTU), sip.messages.to_wan and
# sip.messages.rewritten +1; for the answer fragments.in +3 or more,
# fragments.reassembled +1, sip.messages.to_lan and
# sip.messages.rewritten +1; no fragment or uplink drops, and no fragments
# left pending.
#
# E2E_SIP_CONF="section.key = value" adds a key to the config (e.g.
# "sip.ports = 5060:off" to see this test fail without the ALG).

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

MTU=1280			# the uplink's; the LAN and wan1 have 1500
PORT=5060			# the phone's
RAW=$E2E_DIR/sipraw.py
RECVDIR=$E2E_TMP/recv		# wan1's receiver
RECVLOG=$E2E_TMP/recv.log
PHONEDIR=$E2E_TMP/phone	# the phone's receiver
PHONELOG=$E2E_TMP/phone.log
NFT=sipnat_frag_$E2E_ID	# the counters' table, in gw and inet
cd "$E2E_TMP" || exit 1

# A counter from sipnatctl stats (0 if absent).
stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}

# Check that a counter went up by N since BEFORE ("N+": at least N).
delta() {
	local name=$1 before=$2 n=${3%+} now

	now=$(stat "$name")
	if [[ $3 == *+ ]]; then
		[ "$now" -ge $((before + n)) ] ||
		    fail "$name went from $before to $now, expected at least +$n"
	else
		[ "$now" -eq $((before + n)) ] ||
		    fail "$name went from $before to $now, expected +$n"
	fi
}

# Take the counters the test looks at, into S[name].
declare -A S=()
snapshot() {
	local k

	for k in fragments.in fragments.reassembled fragments.out \
	    drop.fragment_overlap drop.fragment_timeout drop.fragment_memory \
	    drop.fragment_bad drop.uplink_send drop.tun_write \
	    sip.messages.to_wan sip.messages.to_lan sip.messages.rewritten; do
		S[$k]=$(stat "$k")
	done
}

# Check that no fragment and no packet was dropped since the snapshot.
no_drops() {
	local k

	for k in drop.fragment_overlap drop.fragment_timeout \
	    drop.fragment_memory drop.fragment_bad drop.uplink_send \
	    drop.tun_write; do
		delta "$k" "${S[$k]}" 0
	done
}

# The packets an nftables counter (by its comment) in NS has counted.
nft_count() {
	e2e_exec "$1" nft list table ip "$NFT" |
	    awk -v c="\"$2\"" '$0 ~ "comment " c { for (i = 1; i < NF; i++)
		if ($i == "packets") print $(i + 1) }'
}

# Make a message file from a template on stdin.
mkmsg() {
	"$E2E_PYTHON" "$RAW" mkmsg "$E2E_TMP/$1.sip"
}

# Datagrams a receiver logged so far.
received() {
	grep -c " from " "$1"
}

# A message's lines, without CR.
lines() {
	tr -d '\r' <"$1"
}

# The body of a message (after the first empty line), as it is.
body() {
	"$E2E_PYTHON" -c '
import sys
sys.stdout.buffer.write(open(sys.argv[1], "rb").read().partition(b"\r\n\r\n")[2])
' "$1"
}

# "CL LEN": a message's Content-Length (- if none) and its body's length.
content_length() {
	"$E2E_PYTHON" -c '
import re, sys
head, _, body = open(sys.argv[1], "rb").read().partition(b"\r\n\r\n")
m = re.search(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)", head, re.M | re.I)
print(m.group(1).decode() if m else "-", len(body))
' "$1"
}

# The a= lines of a message but a=rtcp (rewritten), one a line.
a_lines() {
	lines "$1" | grep '^a=' | grep -v '^a=rtcp:'
}

# Fail, showing a message, unless grep -E PATTERN finds a line of it.
has() {
	lines "$1" | grep -Eq "$2" || {
		echo "--- $1"
		lines "$1" | head -n 30
		fail "$3"
	}
}

# --- the messages
CID=$E2E_ID-$RANDOM
PTS="$(seq -s ' ' 96 100) $(seq -s ' ' 102 127)"	# 101: telephone-event
BRANCH=z9hG4bK-frag-$CID
{
	cat <<EOF
INVITE sip:bob@$WAN1 SIP/2.0
Via: SIP/2.0/UDP $LAN1:$PORT;branch=$BRANCH;rport
Max-Forwards: 70
From: "Alice" <sip:alice@$WAN1>;tag=frag-uac
To: <sip:bob@$WAN1>
Call-ID: frag-$CID@phone.example.net
CSeq: 1 INVITE
Contact: <sip:alice@$LAN1:$PORT>
User-Agent: sipnat-e2e-frag
Content-Type: application/sdp
Content-Length: auto

v=0
o=alice 2890844526 2890844526 IN IP4 $LAN1
s=sipnat fragments
c=IN IP4 $LAN1
t=0 0
m=audio 16000 RTP/AVP 0 8 $PTS 101
a=rtcp:16001 IN IP4 $LAN1
EOF
	for pt in $PTS; do
		echo "a=rtpmap:$pt x-codec-$pt/48000/2"
		echo "a=fmtp:$pt maxplaybackrate=48000;stereo=1;useinbandfec=1;x-pad=$pt"
	done
	echo "a=rtpmap:101 telephone-event/8000"
	echo "a=fmtp:101 0-15"
	echo "a=ptime:20"
	echo "a=maxptime:120"
	echo "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	echo "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
	echo "a=sendrecv"
} | mkmsg invite
size=$(wc -c <"$E2E_TMP/invite.sip")
[ "$size" -gt 4000 ] && [ "$size" -lt 6000 ] ||
    fail "the INVITE is $size bytes, not about 4 KB"

e2e_setup
e2e_exec gw ip link set dev wan0 mtu $MTU || fail "cannot set the mtu of gw's wan0"
e2e_exec inet ip link set dev gw0 mtu $MTU || fail "cannot set the mtu of inet's gw0"

# Fragment counters ahead of everything (conntrack would reassemble at
# -400), in gw (from lan1 on br0, from wan1 on wan0) and in inet (from
# the public address to wan1).
e2e_exec gw nft -f - <<EOF || fail "cannot load the counters in gw"
table ip $NFT {
	chain pre {
		type filter hook prerouting priority -500; policy accept;
		iifname "br0" ip saddr $LAN1 ip daddr $WAN1 ip frag-off & 0x3fff != 0 counter comment "lan"
		iifname "wan0" ip saddr $WAN1 ip daddr $GW_WAN ip frag-off & 0x3fff != 0 counter comment "wan-in"
	}
}
EOF
e2e_exec inet nft -f - <<EOF || fail "cannot load the counters in inet"
table ip $NFT {
	chain pre {
		type filter hook prerouting priority -500; policy accept;
		iifname "gw0" ip saddr $GW_WAN ip daddr $WAN1 ip frag-off & 0x3fff != 0 counter comment "wan-out"
		iifname "gw0" ip saddr $GW_WAN meta length > $MTU counter comment "too-big"
	}
}
EOF

e2e_write_conf "$E2E_TMP/sipnat.ini" "wan.mtu = 0" \
    ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"
if e2e_is_sipnatd; then
	e2e_wait_for 3 grep -q "uplink MTU $MTU" "$E2E_LOG" ||
	    fail "sipnatd did not take the uplink MTU $MTU from wan0"
fi

e2e_bg wan1 "$RECVLOG" "$E2E_PYTHON" "$RAW" recv --bind "0.0.0.0:5060" \
    --dir "$RECVDIR" --timeout 60
RECV=$E2E_LAST_PID
e2e_bg lan1 "$PHONELOG" "$E2E_PYTHON" "$RAW" recv --bind "$LAN1:$PORT" \
    --dir "$PHONEDIR" --timeout 60
PHONE=$E2E_LAST_PID
e2e_wait_for 5 grep -q ready "$RECVLOG" || fail "the receiver did not start in wan1"
e2e_wait_for 5 grep -q ready "$PHONELOG" || fail "the phone's receiver did not start in lan1"

# --- the INVITE, out
e2e_is_sipnatd && snapshot
e2e_exec lan1 "$E2E_PYTHON" "$RAW" send --bind "$LAN1:$PORT" \
    --to "$WAN1:5060" --pmtudisc dont "$E2E_TMP/invite.sip" >/dev/null ||
    fail "lan1 could not send the INVITE"
e2e_wait_for 3 eval '[ "$(received "$RECVLOG")" -ge 1 ]' ||
    fail "the $size-byte INVITE did not arrive at wan1 (fragments from lan1 at gw: $(nft_count gw lan))"
sleep 0.5
[ "$(received "$RECVLOG")" = 1 ] || {
	cat "$RECVLOG"
	fail "wan1 received $(received "$RECVLOG") datagrams, expected the INVITE alone"
}
n=$(nft_count gw lan)
[ "${n:-0}" -ge 3 ] || fail "gw saw ${n:-0} fragments from lan1, expected at least 3: was the INVITE fragmented?"
read -r _ _ from _ _ _ len _ _ <<<"$(grep -m 1 " from " "$RECVLOG")"
[[ $from == "$GW_WAN":+([0-9]) ]] || fail "the INVITE came from $from, not from $GW_WAN"
PUB=${from#*:}
INV=$RECVDIR/1.bin
e2e_log "wan1 got one datagram of $len bytes from $from ($size sent, in $n fragments)"

# Rewritten, whole.
if lines "$INV" | grep -n '10\.0\.0\.'; then
	fail "the INVITE reached wan1 naming a 10.0.0.x address (above)"
fi
has "$INV" "^INVITE sip:bob@$WAN1 SIP/2.0\$" "the INVITE's request line changed"
has "$INV" "^Via: SIP/2.0/UDP $GW_WAN:$PUB;branch=$BRANCH;rport\$" \
    "the INVITE's Via is not $GW_WAN:$PUB with its branch and rport"
has "$INV" "^Contact: <sip:alice@$GW_WAN:$PUB>\$" \
    "the INVITE's Contact is not $GW_WAN:$PUB"
has "$INV" "^o=alice 2890844526 2890844526 IN IP4 $GW_WAN\$" \
    "the INVITE's o= does not name $GW_WAN"
has "$INV" "^c=IN IP4 $GW_WAN\$" "the INVITE's c= does not name $GW_WAN"
has "$INV" "^a=rtcp:[0-9]+ IN IP4 $GW_WAN\$" \
    "the INVITE's a=rtcp does not name $GW_WAN"
has "$INV" "^m=audio [0-9]+ RTP/AVP 0 8 $PTS 101\$" \
    "the INVITE's m= line lost its formats"
diff <(a_lines "$E2E_TMP/invite.sip") <(a_lines "$INV") >"$E2E_TMP/a.diff" || {
	cat "$E2E_TMP/a.diff"
	fail "the INVITE's a= lines (but a=rtcp) did not all arrive as sent"
}
read -r cl blen <<<"$(content_length "$INV")"
[ "$cl" = "$blen" ] ||
    fail "the INVITE's Content-Length is $cl, its body $blen bytes"
n=$(nft_count inet wan-out)
[ "${n:-0}" -ge 4 ] ||
    fail "inet saw ${n:-0} fragments from $GW_WAN, expected at least 4: the INVITE was not cut to MTU $MTU"
[ "$(nft_count inet too-big)" = 0 ] ||
    fail "inet got $(nft_count inet too-big) packets longer than $MTU from $GW_WAN"
e2e_log "the INVITE arrived whole and rewritten to $GW_WAN:$PUB ($(wc -l <<<"$(a_lines "$INV")") a= lines as sent, Content-Length $cl), in $n fragments of at most $MTU bytes"
if e2e_is_sipnatd; then
	delta fragments.in "${S[fragments.in]}" 3+
	delta fragments.reassembled "${S[fragments.reassembled]}" 1
	delta fragments.out "${S[fragments.out]}" 4+
	delta sip.messages.to_wan "${S[sip.messages.to_wan]}" 1
	delta sip.messages.rewritten "${S[sip.messages.rewritten]}" 1
	no_drops
	n=$(stat fragments.out)
	e2e_log "sipnatctl: fragments.reassembled +1, fragments.out +$((n - ${S[fragments.out]})), sip.messages.rewritten +1"
fi
e2e_kill "$RECV" 2

# --- the answer, in
{
	echo "SIP/2.0 200 OK"
	lines "$INV" | grep -Ei '^(via|v)[ 	]*:'
	lines "$INV" | grep -Ei '^(from|f)[ 	]*:'
	echo "$(lines "$INV" | grep -Ei '^(to|t)[ 	]*:');tag=frag-uas"
	lines "$INV" | grep -Ei '^(call-id|i)[ 	]*:'
	lines "$INV" | grep -Ei '^cseq[ 	]*:'
	cat <<EOF
Contact: <sip:bob@$WAN1:5060>
Content-Type: application/sdp
Content-Length: auto

v=0
o=bob 1 1 IN IP4 $WAN1
s=-
c=IN IP4 $WAN1
t=0 0
m=audio 17000 RTP/AVP $(seq -s ' ' 96 120)
EOF
	for pt in $(seq 96 120); do
		echo "a=rtpmap:$pt x-codec-$pt/48000/2"
		echo "a=fmtp:$pt maxplaybackrate=48000;stereo=1;useinbandfec=1;x-pad=$pt"
	done
	echo "a=sendrecv"
} | mkmsg answer
asize=$(wc -c <"$E2E_TMP/answer.sip")
[ "$asize" -gt 2500 ] || fail "the answer is $asize bytes, not more than two fragments"
body "$E2E_TMP/answer.sip" >"$E2E_TMP/answer.body"

e2e_is_sipnatd && snapshot
e2e_exec wan1 "$E2E_PYTHON" "$RAW" send --bind "$WAN1:5060" \
    --to "$GW_WAN:$PUB" --pmtudisc dont "$E2E_TMP/answer.sip" >/dev/null ||
    fail "wan1 could not send the answer"
e2e_wait_for 3 eval '[ "$(received "$PHONELOG")" -ge 1 ]' ||
    fail "the $asize-byte 200 OK did not reach the phone (fragments from wan1 at gw: $(nft_count gw wan-in))"
sleep 0.5
[ "$(received "$PHONELOG")" = 1 ] || {
	cat "$PHONELOG"
	fail "the phone received $(received "$PHONELOG") datagrams, expected the 200 OK alone"
}
n=$(nft_count gw wan-in)
[ "${n:-0}" -ge 3 ] || fail "gw saw ${n:-0} fragments from wan1, expected at least 3: was the 200 OK fragmented?"
read -r _ _ from _ _ _ len _ _ <<<"$(grep -m 1 " from " "$PHONELOG")"
[ "$from" = "$WAN1:5060" ] || fail "the 200 OK came to the phone from $from, not $WAN1:5060"
ANS=$PHONEDIR/1.bin
e2e_log "the phone got one datagram of $len bytes from $from ($asize sent, $n fragments at gw)"

has "$ANS" '^SIP/2.0 200 OK$' "the phone's datagram is not the 200 OK"
top=$(lines "$ANS" | grep -Ei -m 1 '^(via|v)[ 	]*:')
[ "$top" = "Via: SIP/2.0/UDP $LAN1:$PORT;branch=$BRANCH;rport" ] || {
	lines "$ANS" | head -n 12
	fail "the 200 OK's top Via is '$top', not $LAN1:$PORT with the branch and rport"
}
has "$ANS" "^Call-ID: frag-$CID@phone.example.net\$" "the 200 OK's Call-ID changed"
has "$ANS" '^CSeq: 1 INVITE$' "the 200 OK's CSeq changed"
body "$ANS" | cmp -s - "$E2E_TMP/answer.body" || {
	diff <(tr -d '\r' <"$E2E_TMP/answer.body") <(body "$ANS" | tr -d '\r') | head -n 20
	fail "the 200 OK's SDP did not reach the phone as wan1 sent it"
}
read -r cl blen <<<"$(content_length "$ANS")"
[ "$cl" = "$blen" ] ||
    fail "the 200 OK's Content-Length is $cl, its body $blen bytes"
e2e_log "the 200 OK reached the phone whole, Via back to $LAN1:$PORT, SDP as sent"
if e2e_is_sipnatd; then
	delta fragments.in "${S[fragments.in]}" 3+
	delta fragments.reassembled "${S[fragments.reassembled]}" 1
	delta sip.messages.to_lan "${S[sip.messages.to_lan]}" 1
	delta sip.messages.rewritten "${S[sip.messages.rewritten]}" 1
	no_drops
	[ "$(stat fragments.pending)" = 0 ] || fail "fragments left pending"
	n=$(stat fragments.in)
	e2e_log "sipnatctl: fragments.in +$((n - ${S[fragments.in]})), fragments.reassembled +1, sip.messages.rewritten +1, none pending"
fi

e2e_kill "$PHONE" 2
e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "SIP in fragments: reassembled, rewritten, cut to MTU $MTU, answered"
