#!/bin/bash
#
# test-sip-no-harm.sh: the SIP ALG leaves alone what needs no help.  lan1
# sends crafted SIP from 10.0.0.11:20000, inside the NAT port range, so
# that port preservation maps it to 203.0.113.1:20000; a receiver in wan1
# keeps every datagram and the payloads sent and received are compared
# (sha256):
#   - control: an OPTIONS whose Via and Contact name 10.0.0.11:20000, to
#     port 5060, does arrive rewritten, with 203.0.113.1:20000 (so that the
#     comparison is known to see a change);
#   - an INVITE whose Via, Contact and SDP already name the public address
#     and port (a phone that learned them, as with rport or STUN) arrives
#     byte for byte as sent;
#   - an INVITE whose SDP carries ICE candidates (a=candidate), its default
#     c= line the host candidate 10.0.0.11, arrives byte for byte as sent:
#     ICE finds its own way, its SDP is left alone;
#   - a message to port 5061 (SIP over TLS, not a SIP ALG port) full of
#     10.0.0.11 arrives byte for byte as sent;
#   - every datagram came from 203.0.113.1:20000.
# With sipnatd: sip.untouched.already_public and sip.untouched.ice count the
# two INVITEs, sip.messages.rewritten the control message, and the 5061
# message is not seen by the ALG at all (sip.messages.to_wan unchanged).
# (The kernel's SIP helper, E2E_GATEWAY=kernel, does not know ICE and is
# expected to rewrite the c= line of the ICE INVITE.)

. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_sipnatd

PORT=20000			# lan1's port: in the NAT range, preserved
RAW=$E2E_DIR/sipraw.py
RECVDIR=$E2E_TMP/recv
RECVLOG=$E2E_TMP/recv.log
cd "$E2E_TMP" || exit 1

# A counter from sipnatctl stats (0 if absent).
stat() {
	e2e_ctl stats | awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}


# Make a message file from a template on stdin.
mkmsg() {
	"$E2E_PYTHON" "$RAW" mkmsg "$E2E_TMP/$1.sip"
}

# The sha256 of a file.
sha() {
	sha256sum "$1" | awk '{ print $1 }'
}

# Send message NAME from lan1:PORT to wan1:DPORT; wait for the receiver to
# log it; print its receiver line "N from IP:PORT to PORT len L sha256 H".
send_msg() {
	local name=$1 dport=$2 before line

	before=$(grep -c " from " "$RECVLOG")
	e2e_exec lan1 "$E2E_PYTHON" "$RAW" send --bind "$LAN1:$PORT" \
	    --to "$WAN1:$dport" "$E2E_TMP/$name.sip" >/dev/null ||
	    fail "lan1 could not send $name"
	e2e_wait_for 3 eval '[ "$(grep -c " from " "$RECVLOG")" -gt "$before" ]' ||
	    fail "$name (to port $dport) did not arrive at wan1"
	line=$(grep " from " "$RECVLOG" | sed -n "$((before + 1))p")
	[[ $line == *" from $GW_WAN:$PORT to $dport "* ]] ||
	    fail "$name arrived as '$line', not from $GW_WAN:$PORT to $dport"
	echo "$line"
}

# Check that message NAME arrived (receiver line) byte for byte; if not,
# show the difference and fail at the end (so that all are checked).
LATER=
same() {
	local name=$1 line=$2 n

	n=${line%% *}
	cmp -s "$E2E_TMP/$name.sip" "$RECVDIR/$n.bin" && return 0
	diff -u --label "$name sent" --label "$name received" \
	    <(tr -d '\r' <"$E2E_TMP/$name.sip") <(tr -d '\r' <"$RECVDIR/$n.bin")
	e2e_log "WRONG: $name was changed on the way (sha256 $(sha "$E2E_TMP/$name.sip") sent, $(sha "$RECVDIR/$n.bin") received)"
	LATER="$LATER${LATER:+; }$name changed on the way"
	return 1
}

# --- the messages
CID=$E2E_ID-$RANDOM
mkmsg control <<EOF
OPTIONS sip:bob@$WAN1 SIP/2.0
Via: SIP/2.0/UDP $LAN1:$PORT;branch=z9hG4bK-nh0-$CID;rport
Max-Forwards: 70
From: <sip:alice@$WAN1>;tag=nh0
To: <sip:bob@$WAN1>
Call-ID: noharm-0-$CID@$LAN1
CSeq: 1 OPTIONS
Contact: <sip:alice@$LAN1:$PORT>
Content-Length: 0
EOF

mkmsg public <<EOF
INVITE sip:bob@$WAN1 SIP/2.0
Via: SIP/2.0/UDP $GW_WAN:$PORT;branch=z9hG4bK-nh1-$CID;rport
Max-Forwards: 70
From: "Alice"  <sip:alice@$WAN1>;tag=nh1
To: <sip:bob@$WAN1>
Call-ID: noharm-1-$CID@$GW_WAN
CSeq: 1 INVITE
Contact:   <sip:alice@$GW_WAN:$PORT;transport=udp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>"
Allow: INVITE, ACK, CANCEL, BYE,OPTIONS
x-odd-header:   keep   its    spacing ;and=case
Supported: replaces, timer
User-Agent: sipnat-e2e-noharm
Content-Type: application/sdp
Content-Length: auto

v=0
o=alice 2890844526 2890844526 IN IP4 $GW_WAN
s=-
c=IN IP4 $GW_WAN
t=0 0
m=audio $((PORT + 2)) RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:$((PORT + 3)) IN IP4 $GW_WAN
a=sendrecv
EOF

mkmsg ice <<EOF
INVITE sip:bob@$WAN1 SIP/2.0
Via: SIP/2.0/UDP $GW_WAN:$PORT;branch=z9hG4bK-nh2-$CID;rport
Max-Forwards: 70
From: <sip:alice@$WAN1>;tag=nh2
To: <sip:bob@$WAN1>
Call-ID: noharm-2-$CID@$GW_WAN
CSeq: 1 INVITE
Contact: <sip:alice@$GW_WAN:$PORT>
User-Agent: sipnat-e2e-noharm
Content-Type: application/sdp
Content-Length: auto

v=0
o=alice 2890844527 2890844527 IN IP4 $LAN1
s=-
c=IN IP4 $LAN1
t=0 0
a=ice-ufrag:8hhY
a=ice-pwd:asd88fgpdd777uzjYhagZg
m=audio $((PORT + 10)) RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=rtcp:$((PORT + 11))
a=candidate:1 1 UDP 2130706431 $LAN1 $((PORT + 10)) typ host
a=candidate:1 2 UDP 2130706430 $LAN1 $((PORT + 11)) typ host
a=candidate:2 1 UDP 1694498815 $GW_WAN $((PORT + 10)) typ srflx raddr $LAN1 rport $((PORT + 10))
a=candidate:2 2 UDP 1694498814 $GW_WAN $((PORT + 11)) typ srflx raddr $LAN1 rport $((PORT + 11))
EOF

mkmsg tls <<EOF
INVITE sip:bob@$WAN1:5061 SIP/2.0
Via: SIP/2.0/UDP $LAN1:$PORT;branch=z9hG4bK-nh3-$CID;rport
Max-Forwards: 70
From: <sip:alice@$WAN1>;tag=nh3
To: <sip:bob@$WAN1>
Call-ID: noharm-3-$CID@$LAN1
CSeq: 1 INVITE
Contact: <sip:alice@$LAN1:$PORT>
Content-Type: application/sdp
Content-Length: auto

v=0
o=alice 2890844528 2890844528 IN IP4 $LAN1
s=-
c=IN IP4 $LAN1
t=0 0
m=audio $((PORT + 20)) RTP/AVP 0
EOF

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

e2e_bg wan1 "$RECVLOG" "$E2E_PYTHON" "$RAW" recv --bind "0.0.0.0:5060" \
    --bind "0.0.0.0:5061" --dir "$RECVDIR" --timeout 60
RECV=$E2E_LAST_PID
e2e_wait_for 5 grep -q ready "$RECVLOG" || fail "the receiver did not start in wan1"

# --- control: an inside address on 5060 is rewritten
if e2e_is_sipnatd; then
	rw0=$(stat sip.messages.rewritten)
fi
line=$(send_msg control 5060) || { echo "$line"; exit 1; }
n=${line%% *}
if cmp -s "$E2E_TMP/control.sip" "$RECVDIR/$n.bin"; then
	fail "the control OPTIONS naming $LAN1 arrived unchanged: is the SIP ALG on?"
fi
grep -q "^Via: SIP/2.0/UDP $GW_WAN:$PORT;" "$RECVDIR/$n.bin" &&
    grep -q "^Contact: <sip:alice@$GW_WAN:$PORT>" "$RECVDIR/$n.bin" || {
	cat -A "$RECVDIR/$n.bin"
	fail "the control OPTIONS was not rewritten to $GW_WAN:$PORT"
}
e2e_log "control: an OPTIONS naming $LAN1:$PORT arrives rewritten to $GW_WAN:$PORT"
if e2e_is_sipnatd; then
	[ "$(stat sip.messages.rewritten)" -gt "$rw0" ] ||
	    fail "sip.messages.rewritten did not count the control message"
	pub0=$(stat sip.untouched.already_public)
	ice0=$(stat sip.untouched.ice)
	rw0=$(stat sip.messages.rewritten)
fi

# --- already public: byte for byte
line=$(send_msg public 5060) || { echo "$line"; exit 1; }
same public "$line" &&
    e2e_log "an INVITE already naming $GW_WAN:$PORT arrives unchanged (${line##* })"
if e2e_is_sipnatd; then
	pub1=$(stat sip.untouched.already_public)
	[ "$pub1" -eq $((pub0 + 1)) ] ||
	    fail "sip.untouched.already_public went from $pub0 to $pub1, expected +1"
fi

# --- ICE: byte for byte
line=$(send_msg ice 5060) || { echo "$line"; exit 1; }
same ice "$line" &&
    e2e_log "an INVITE with ICE candidates and c=$LAN1 arrives unchanged (${line##* })"
if e2e_is_sipnatd; then
	ice1=$(stat sip.untouched.ice)
	[ "$ice1" -eq $((ice0 + 1)) ] ||
	    fail "sip.untouched.ice went from $ice0 to $ice1, expected +1"
	[ "$(stat sip.messages.rewritten)" = "$rw0" ] ||
	    fail "sip.messages.rewritten counted a message that arrived unchanged"
	out0=$(stat sip.messages.to_wan)
fi

# --- port 5061 is not a SIP ALG port
line=$(send_msg tls 5061) || { echo "$line"; exit 1; }
same tls "$line" &&
    e2e_log "a message to port 5061 naming $LAN1 arrives unchanged (${line##* })"
if e2e_is_sipnatd; then
	out1=$(stat sip.messages.to_wan)
	[ "$out1" = "$out0" ] ||
	    fail "the SIP ALG looked at a message to port 5061 (sip.messages.to_wan $out0 -> $out1)"
	e2e_log "sipnatctl: already_public $pub0 -> $pub1, ice $ice0 -> $ice1, 5061 not seen by the ALG"
fi

e2e_kill "$RECV" 2
[ -z "$LATER" ] || fail "$LATER"
e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
pass "SIP that needs no help passes unchanged"
