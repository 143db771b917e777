#!/bin/bash
#
# test-sip-tcp.sh: the outbound call of test-sip-call.sh with SIP over TCP
# (sipp -t t1: one connection), then again with a connection per call
# (-t tn).  The call must complete, the provider must receive no private
# address (the phone's Via, Contact, o= and c= rewritten inside the TCP
# stream, whose sequence numbers sipnatd shifts by the length changes),
# and RTP must flow both ways, exactly as over UDP: every assertion of
# test-sip-call.sh holds.

here=$(dirname "$0")
for t in t1 tn; do
	echo "# SIP over TCP, sipp -t $t"
	SIPP_TRANSPORT=$t bash "$here/test-sip-call.sh" || exit
done
