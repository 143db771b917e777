#!/bin/bash
#
# test-sip-loss.sh: RTP loss and jitter as sipnatd measures them (RFC 3550
# A.3, A.8), against loss made on purpose.  The phone (sipp in lan1, audio
# on 10.0.0.11:6000) calls the provider (sipp in wan1, audio on
# 198.51.100.10:7000) and both send RTP, 50 packets a second, each to the
# address the other's SDP named.  Once RTP flows both ways, an nftables
# rule in inet's forward path drops a random tenth of the provider's RTP
# to the public RTP port ("udp dport N numgen random mod 100 < 10 drop",
# with a named counter) for 6 s; then the rule goes, RTP flows half a
# second more without loss and both ends stop.  Only then, with the call
# still up, sipnatctl -j call CALL-ID is read, and the metrics endpoint
# ([metrics] listen, from gw).  As the drops all fall between the first
# and the last packet sipnatd saw, nothing is left to guess: asserts that
# inet saw every packet the provider sent (its counter) and dropped some;
# that the stream's inbound RTP shows expected = what the provider sent,
# packets = that minus the drops, lost = exactly the drops and no
# reordering; outbound: expected = packets = what the phone sent and lost
# 0; jitter_ms both ways between 0 and 20 on these idle links; the
# metrics endpoint's sipnat_rtp_lost and sipnat_rtp_packets for the call
# say the same; the phone got all the provider's RTP the rule let
# through; the call completes, nothing is left open after the BYE, no
# one-way alarm fired, and sipnatd exits cleanly, with no sanitizer
# report.
#
# E2E_SIP_CONF="section.key = value" adds a key to the config.  LOSS_PCT
# (10) is the share dropped, in per cent.

. "$(dirname "$0")/lib.sh"

e2e_require_root sipp ss
e2e_require_sipnatd
e2e_is_sipnatd || skip "asserts sipnatd's own measurements: nothing to compare"

FLOW=$E2E_DIR/flow.py
SIPDIR=$E2E_DIR/sip
PHONE_RTP=6000
PROV_RTP=7000
CALL_MS=10000		# how long the call lasts once answered
LOSS_PCT=${LOSS_PCT:-10}
LOSS_SECS=6		# how long the rule drops
MAX_JITTER=20		# ms
METRICS=127.0.0.1:9464	# in gw
NFT=losstest		# in inet

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"

. "$E2E_DIR/sip-lib.sh"

# A named nftables counter's packets in inet.
nft_packets() {
	e2e_exec inet nft list counter ip "$NFT" "$1" |
	    awk '$1 == "packets" { print $2 }'
}

# "sent N" of a flow.py rtp output.
rtp_sent() {
	awk '$1 == "sent" { print $2 }' "$1"
}

# --- the test

e2e_setup
e2e_write_conf "$E2E_TMP/sipnat.ini" "metrics.listen = $METRICS" \
    ${E2E_SIP_CONF:+"$E2E_SIP_CONF"} || fail "cannot write the config"
e2e_start_sipnatd "$E2E_TMP/sipnat.ini"

# inet counts the provider's RTP to the gateway; the chain "lossy" gets
# the dropping rule later.
e2e_exec inet nft -f - <<EOF || fail "cannot load the nftables table in inet"
table ip $NFT {
	counter rtp_seen {}
	counter rtp_dropped {}
	chain lossy {
	}
	chain transit {
		type filter hook forward priority filter; policy accept;
		ip saddr $WAN1 ip daddr $GW_WAN udp sport $PROV_RTP counter name rtp_seen jump lossy
	}
}
EOF

# RTP endpoints: each sends to the address its sipp wrote, once known,
# until media.stop, which the test makes (the scenario's rtp.stop is
# left unused: the call goes on for a while without RTP).
rtp_bg lan1 phone "$LAN1:$PHONE_RTP" --until "$E2E_TMP/media.stop"
PHONE_RTP_PID=$E2E_LAST_PID
rtp_bg wan1 prov "$WAN1:$PROV_RTP" --until "$E2E_TMP/media.stop"
PROV_RTP_PID=$E2E_LAST_PID

start_provider prov call-uas.xml
start_phone phone call-uac.xml -d "$CALL_MS"
e2e_log "the phone calls the provider for $((CALL_MS / 1000)) s"

wait_until 10 call_flowing || {
	e2e_ctl calls
	fail "sipnatctl never showed the call confirmed with media both ways"
}
SECONDS=0
cid=$(e2e_ctl -j calls | "$E2E_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["calls"][0]["call_id"])')
target=$(cat prov.target)
pub_port=${target##*:}
[ "${target%:*}" = "$GW_WAN" ] && [ -n "$pub_port" ] ||
    fail "the provider's SDP names '$target', not the public $GW_WAN"
e2e_log "RTP flows both ways on call $cid, public RTP port $pub_port"

# The loss: a random share of what goes to the public RTP port.
e2e_exec inet nft add rule ip "$NFT" lossy udp dport "$pub_port" \
    numgen random mod 100 \< "$LOSS_PCT" counter name rtp_dropped drop ||
    fail "cannot add the dropping rule in inet"
e2e_log "inet drops $LOSS_PCT% of the provider's RTP for $LOSS_SECS s"
sleep "$LOSS_SECS"
e2e_exec inet nft flush chain ip "$NFT" lossy ||
    fail "cannot remove the dropping rule in inet"
sleep 0.5
touch media.stop
e2e_wait_for 5 not_running "$PHONE_RTP_PID" || e2e_kill "$PHONE_RTP_PID"
e2e_wait_for 5 not_running "$PROV_RTP_PID" || e2e_kill "$PROV_RTP_PID"
sleep 0.2

# sipnatd's view now that RTP has stopped, the call still up.
e2e_ctl -j call "$cid" >call.json
e2e_exec gw "$E2E_PYTHON" -c '
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://%s/metrics" % sys.argv[1],
                                        timeout=5).read().decode())' \
    "$METRICS" >metrics.txt 2>metrics.err ||
    fail "cannot fetch http://$METRICS/metrics in gw: $(cat metrics.err)"
[ "$SECONDS" -lt $((CALL_MS / 1000)) ] ||
    fail "the test took ${SECONDS}s from the answer: the call may be over"
e2e_ctl call "$cid" | sed 's/^/#   /' | sed -n '1,6p'

sipp_done "$PHONE_PID" phone
sipp_done "$PROV_PID" prov
assert_all_closed "after the BYE"
e2e_log "the call completed, nothing left open"

# --- what was sent, dropped and received
prov_sent=$(rtp_sent prov.rtp)
phone_sent=$(rtp_sent phone.rtp)
seen=$(nft_packets rtp_seen)
dropped=$(nft_packets rtp_dropped)
phone_got=$(awk -v s="$WAN1:$PROV_RTP" '$1 == "received" && $4 == s { print $2 }' phone.rtp)
e2e_log "the provider sent ${prov_sent:-?}, inet saw ${seen:-?} and dropped ${dropped:-?}, the phone got ${phone_got:-0}; the phone sent ${phone_sent:-?}"
[ -n "$prov_sent" ] && [ -n "$phone_sent" ] ||
    fail "an RTP endpoint did not say what it sent: $(cat prov.rtp phone.rtp)"
[ "$seen" = "$prov_sent" ] ||
    fail "inet saw $seen of the provider's $prov_sent RTP packets: the test's path loses packets"
[ "${dropped:-0}" -gt 0 ] || fail "the nftables rule dropped nothing"
passed=$((prov_sent - dropped))

# --- sipnatd's figures
read -r in_pk in_exp in_lost in_reo in_jit out_pk out_exp out_lost out_reo out_jit \
    <<<"$("$E2E_PYTHON" -c '
import json, sys
m = json.load(open(sys.argv[1]))["media"][0]
print(" ".join("%s" % m[d][k] for d in ("in", "out")
               for k in ("packets", "expected", "lost", "reordered", "jitter_ms")))' call.json)"
[ -n "$out_jit" ] || fail "sipnatctl -j call $cid: no media figures: $(cat call.json)"
e2e_log "sipnatd in: packets $in_pk expected $in_exp lost $in_lost reordered $in_reo jitter ${in_jit} ms"
e2e_log "sipnatd out: packets $out_pk expected $out_exp lost $out_lost reordered $out_reo jitter ${out_jit} ms"

[ "$in_exp" = "$prov_sent" ] ||
    fail "sipnatd: inbound expected $in_exp, the provider sent $prov_sent"
[ "$in_pk" = "$passed" ] ||
    fail "sipnatd: inbound packets $in_pk, $passed passed inet ($prov_sent sent, $dropped dropped)"
[ "$in_lost" = "$dropped" ] ||
    fail "sipnatd: inbound lost $in_lost, inet dropped $dropped"
[ "$in_reo" = 0 ] || fail "sipnatd: inbound reordered $in_reo on a path that does not reorder"
[ "$out_exp" = "$phone_sent" ] && [ "$out_pk" = "$phone_sent" ] ||
    fail "sipnatd: outbound expected $out_exp, packets $out_pk; the phone sent $phone_sent"
[ "$out_lost" = 0 ] && [ "$out_reo" = 0 ] ||
    fail "sipnatd: outbound lost $out_lost, reordered $out_reo; expected 0 and 0"
for j in "$in_jit" "$out_jit"; do
	awk -v j="$j" -v m="$MAX_JITTER" 'BEGIN { exit !(j >= 0 && j < m) }' ||
	    fail "sipnatd: jitter $j ms (in $in_jit, out $out_jit), expected 0 to $MAX_JITTER on idle links"
done
[ "${phone_got:-0}" = "$passed" ] ||
    fail "the phone got ${phone_got:-0} RTP packets from $WAN1:$PROV_RTP, $passed passed inet"

# --- the same in the metrics endpoint
series() {
	awk -v n="$1" -v l="{call_id=\"$cid\",stream=\"0\",media=\"audio\",direction=\"$2\"}" \
	    '$1 == n l { print $2 }' metrics.txt
}
m_lost=$(series sipnat_rtp_lost in)
m_pk=$(series sipnat_rtp_packets in)
m_olost=$(series sipnat_rtp_lost out)
[ "$m_lost" = "$in_lost" ] && [ "$m_pk" = "$in_pk" ] && [ "$m_olost" = 0 ] || {
	grep "^sipnat_rtp" metrics.txt
	fail "metrics: sipnat_rtp_lost in '$m_lost', out '$m_olost', sipnat_rtp_packets in '$m_pk'; sipnatctl said $in_lost, 0, $in_pk"
}
e2e_log "metrics: sipnat_rtp_lost in $m_lost, sipnat_rtp_packets in $m_pk"

a=$(stat sip.alarms.one_way_audio)
[ "$a" = 0 ] || fail "sip.alarms.one_way_audio is '$a' after a call with RTP both ways"

e2e_stop_sipnatd || fail "sipnatd did not exit cleanly"
if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$E2E_LOG"; then
	fail "sipnatd's log has a sanitizer report"
fi
pass "sipnatd's RTP loss matches the $dropped packets dropped ($prov_sent sent), jitter $in_jit/$out_jit ms"
