/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "alg.h"

/*
 * libFuzzer target for the TCP stream module (stream.c) under the SIP
 * helper: SIP over TCP to port 5060 between a phone (10.0.0.11) and a
 * provider (198.51.100.10) through nat_input(), public address
 * 203.0.113.1.  Each input gets a fresh gateway (config set by hand) and
 * one or two connections.  The harness plays both TCP endpoints: each
 * has the bytes it means to send (SIP messages from a pool, whole or
 * with a byte changed, CRLF keep-alives, raw bytes from the input),
 * remembers what it sent and the highest ACK it got, and keeps what the
 * gateway sent it by sequence number.  Segments are built whole with
 * valid checksums, so every one reaches the stream code.
 *
 *	bytes 0-7, the set-up:
 *	byte 0	bit 0: clean mode (below); bits 1-2: limits (0 the
 *		defaults; 1 tcp_stream_buffer 64 + byte 6 * 16; 2
 *		tcp_stream_memory byte 7 * 256; 3 both, the memory plus
 *		two buffers); bit 3: sip on_error = drop; bit 4: the
 *		provider sends no SYN-ACK (chaos mode only); bit 5: the
 *		phone's port is 5060, else 40000 + (byte 5 & 0x7f) * 2
 *		(the second connection: one more); bits 6-7: the initial
 *		sequence numbers, near 0, 2^31, 2^32, or from byte 5
 *	byte 1	bits 0-2: WAN MTU, bits 3-5: TUN MTU (mtus[]); bit 6: no
 *		MSS clamping; bit 7: sip max_message 600
 *	byte 2	bits 0-3: the phone's MSS option, 4-7: the provider's
 *		(msss[], 0: none)
 *	byte 3	bits 0-3: messages the phone sends, 4-7: the provider
 *	byte 4	raw bytes kept at the end of the input, / 4
 *	byte 5	the port and sequence numbers; bit 7: the phone's SYN
 *		carries its first bytes (TCP Fast Open; chaos mode only)
 *	byte 6-7  the small limits
 *	then a byte a message, the phone's first: bits 6-7: 0 a pool
 *	message (bits 0-4), 1 the same with a byte changed (where and to
 *	what from the raw bytes), 2 raw bytes ((bits 0-5) + 1) * 8 long,
 *	3 a CRLF CRLF keep-alive then a pool message; then 8 bytes a
 *	segment, at most MAX_RECS:
 *	byte 0	bit 0: from the provider (else the phone); bits 1-3: where
 *		it starts: 0 the first byte never sent, 1 that minus byte
 *		2 + 1 (overlap), 2 at or after the last ACK (retransmission),
 *		3 byte 2 * 4 + 1 past the first byte never sent (a gap), 4
 *		2^29 away (outside any window; made-up bytes), 5 one byte
 *		back (a keep-alive probe), 6 the first byte (with SYN: a SYN
 *		again), 7 as 0, as long as allowed; bit 4: FIN; bit 5: RST;
 *		bit 6: SYN; bit 7: no ACK flag
 *	byte 1	length: n < 192, else (n - 191) * 24; at most an MSS
 *	byte 2	the offset of modes 1-4
 *	byte 3	bits 0-2: the ACK: 0-1 what this side received in order,
 *		2 that minus byte 4 + 1, 3 that plus byte 4 + 1 (a lie), 4
 *		the end of all it received (a lie past a hole), 5 the first
 *		byte, 6 2^29 ahead, 7 the last ACK it sent; bits 3-4: SACK
 *		blocks, bit 5: made up (else what came out of order); bits
 *		6-7, before the segment: 1 a second passes, 2 2-9 seconds,
 *		3 by byte 4 & 3: two days (sessions expire), a reload with a
 *		bigger or a smaller tcp_stream_buffer (and SIP on), a reload
 *		with SIP off
 *	byte 4	ACK and SACK offsets; clock and reload choice
 *	byte 5-6  the window
 *	byte 7	bit 0: the ACKs answering this segment are lost; bit 1:
 *		a timestamp option; bit 2: what the gateway sends on (or
 *		makes) during this segment is lost; bit 3: its own ACKs are
 *		lost; bit 7: the second connection (opened when first used)
 * Then both endpoints close: each sends again whatever was not
 * acknowledged and a FIN, six rounds two seconds apart (the gateway
 * resends its batches on its clock).
 *
 * Clean mode (byte 0 bit 0) is one connection without loss: the segments
 * only say who sends next and how much (byte 0 bit 0, byte 1), always in
 * order; the rest and the FINs follow.  The same messages then go
 * through a fresh gateway whole, in the order the first run completed
 * them, and each side must receive the same bytes: where TCP cuts a
 * message changes nothing the helper makes of it.  (Only when the order
 * is known: pool messages only, or data one way; and no limit reached.)
 *
 * Checks (a broken one says which on stderr and traps; libFuzzer reports
 * a crash; FUZZ_STREAM_DUMP=1 also prints what each endpoint got, and
 * FUZZ_STREAM_TRACE=1 every segment in and out as it goes):
 *   - every packet sent parses, has valid IP and TCP checksums, belongs
 *     to its connection, is no fragment and fits the MTU of its side;
 *     with the receiver's MSS known, data and options fit in it; a SYN
 *     carries the MSS as clamped;
 *   - the gateway's own ACKs (TTL 64; what it sends on keeps the sender's
 *     TTL) go only to the sender of the segment being fed, are bare
 *     (a timestamp option at most) and acknowledge nothing the sender has
 *     not sent at least once; in clean mode their sequence number is the
 *     next byte the sender is to receive;
 *   - ACKs passed on never acknowledge what the sender has not sent, as
 *     long as the receiver never acknowledged what it did not have;
 *   - a receiver never gets two different bytes or two FINs at one
 *     sequence number, nor bytes past its FIN;
 *   - an RST in the window gets through, with data or without;
 *   - "tcp_stream.memory" (alg_stats) never exceeds tcp_stream_memory,
 *     and with the gateway freed it is 0 with no stream open;
 *   - after closing, each direction is whole: the sender has its FIN
 *     acknowledged, the receiver has every byte up to the FIN and none
 *     after; where the helper rewrote and dropped nothing, the receiver
 *     has exactly the sender's bytes;
 *   - with whole pool messages only, no stream degraded or limited and
 *     SIP never turned off, the phone's stream no longer names 10.0.0.11
 *     and the provider's no longer names 203.0.113.1.
 * What the harness cannot follow turns checks of a direction off: a SYN
 * in the middle of a connection (passed on as it is while the connection
 * is open, a fresh start once it is closed), an RST,
 * sessions expiring, a provider that never sent its SYN-ACK; a receiver
 * that acknowledged what it did not have turns off the checks after
 * closing.
 *
 * The NAT table takes its hash seed and port choices from getrandom();
 * the one below returns fixed bytes, so each input always runs the same.
 *
 * Run as tests/run does (copy the seeds, so new inputs stay out of the
 * tree):
 *	cp -r tests/fuzz/corpus/stream /tmp/corpus
 *	build-fuzz/tests/fuzz/fuzz-stream -max_total_time=60 /tmp/corpus
 */

#define PHONE		0x0a00000b	/* 10.0.0.11 */
#define PROVIDER	0xc633640a	/* 198.51.100.10 */
#define PUB		0xcb007101	/* 203.0.113.1 */
#define SIP_PORT	5060
#define PORT_LO		20000		/* public ports, 5 digits */
#define PORT_HI		20199

#define TTL_PHONE	60
#define TTL_PROVIDER	50		/* the TUN side gives one back */
#define TTL_OWN		64		/* stream.c's own ACKs */

#define HDR_LEN		8
#define REC_LEN		8
#define MAX_RECS	128
#define MAX_MSGS	15
#define NCONN		2
#define APP_MAX		16384		/* bytes an endpoint sends */
#define RCV_MAX		32768		/* bytes an endpoint receives */
#define MAX_EVENTS	4096
#define SETTLE_ROUNDS	6
#define DRAIN_ROUNDS	64
#define FAR		(1u << 29)

#define TH_FIN		0x01
#define TH_SYN		0x02
#define TH_RST		0x04
#define TH_PSH		0x08
#define TH_ACK		0x10

#define CHECK(x)	do { if (!(x)) check_failed(__LINE__, #x); } while (0)

enum { S_PHONE, S_PROVIDER };

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* One endpoint: what it sends and what it receives. */
struct side {
	uint32_t	 isn;
	uint8_t		*app;		/* the bytes it sends, from isn + 1 */
	size_t		 alen;
	long		 fin_at;	/* where its FIN is, or -1 */
	bool		 fin_sent;
	uint8_t		*sent;		/* a bit a byte: sent at least once */
	size_t		 front;		/* the first byte never sent */
	size_t		 smax;		/* the end of the furthest sent */
	int64_t		 una;		/* the highest ACK it got */
	uint16_t	 mss;		/* its MSS as the gateway passed it */
	uint16_t	 win;
	bool		 honest;	/* never acknowledged bytes it lacked */
	bool		 pending;	/* owes an ACK */
	int64_t		 last_ack;
	/* The other side's bytes as the gateway sent them. */
	uint8_t		*rbuf;
	uint8_t		*rhave;
	size_t		 rnxt;		/* every byte before it came */
	size_t		 rhi;
	long		 rfin;		/* where the FIN came, or -1 */
	bool		 rfin_in;	/* and everything before it */
	/* The ends of its messages, for clean mode's second run. */
	size_t		 bounds[2 * MAX_MSGS + 2];
	unsigned	 nbounds;
	size_t		 ref_sent;
};

struct conn {
	bool		 up;
	uint16_t	 port;		/* the phone's */
	uint16_t	 pub;		/* its public port */
	struct side	 s[2];
	bool		 taint[2];	/* by sender: no longer followed */
	bool		 reset;
};

/* A gauge or counter from alg_stats(). */
struct gauges {
	uint64_t	 memory;
	uint64_t	 open;
	uint64_t	 limit_buffer;
	uint64_t	 limit_memory;
	uint64_t	 degraded;
	uint64_t	 rewritten;
	uint64_t	 dropped;
	uint64_t	 no_mapping;
};

/* A message of the pool; its Content-Length is added when built. */
struct pool_msg {
	const char	*head;
	const char	*body;
	bool		 clean;		/* names the inside or public address
					   only where the helper rewrites */
	bool		 compact;	/* "l:" */
};

static const struct pool_msg pool_out[] = {
	{ "INVITE sip:bob@198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKa1;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: <sip:alice@example.com>;tag=a1\r\n"
	  "To: <sip:bob@example.com>\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>\r\n"
	  "Content-Type: application/sdp\r\n",
	  "v=0\r\no=- 1 1 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\n"
	  "t=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\n"
	  "a=rtpmap:101 telephone-event/8000\r\na=rtcp:6001\r\n"
	  "a=sendrecv\r\n", true, false },
	{ "ACK sip:bob@198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKa2;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: <sip:alice@example.com>;tag=a1\r\n"
	  "To: <sip:bob@example.com>;tag=b1\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 1 ACK\r\n", NULL, true, false },
	{ "BYE sip:bob@198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKa3;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: <sip:alice@example.com>;tag=a1\r\n"
	  "To: <sip:bob@example.com>;tag=b1\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 2 BYE\r\n", NULL, true, false },
	{ "REGISTER sip:example.com;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKr1;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: <sip:alice@example.com>;tag=r1\r\n"
	  "To: <sip:alice@example.com>\r\n"
	  "Call-ID: reg1@example.com\r\n"
	  "CSeq: 1 REGISTER\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>;expires=600\r\n"
	  "Expires: 600\r\n", NULL, true, false },
	{ "OPTIONS sip:198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKo1;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: <sip:alice@example.com>;tag=o1\r\n"
	  "To: <sip:198.51.100.10>\r\n"
	  "Call-ID: opt1@example.com\r\n"
	  "CSeq: 1 OPTIONS\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>\r\n"
	  "Accept: application/sdp\r\n", NULL, true, false },
	{ "SIP/2.0 200 OK\r\n"
	  "Via: SIP/2.0/TCP 198.51.100.10:5060;branch=z9hG4bKp1\r\n"
	  "From: <sip:carol@example.net>;tag=c1\r\n"
	  "To: <sip:alice@example.com>;tag=a9\r\n"
	  "Call-ID: call2@example.net\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>\r\n",
	  NULL, true, false },
	{ "INVITE sip:bob@198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKa4;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: <sip:alice@example.com>;tag=a1\r\n"
	  "To: <sip:bob@example.com>;tag=b1\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 3 INVITE\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>\r\n"
	  "Content-Type: application/sdp\r\n",
	  "v=0\r\no=- 1 2 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\n"
	  "t=0 0\r\nm=audio 6002 RTP/AVP 0\r\na=sendonly\r\n"
	  "m=video 6010 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", true,
	  false },
	{ "INVITE sip:dave@198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKa5;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: \"Alice Example\" <sip:alice@example.com>;tag=a5\r\n"
	  "To: \"Dave\" <sip:dave@example.com>\r\n"
	  "Call-ID: call3-0123456789abcdef0123456789abcdef@example.com\r\n"
	  "CSeq: 101 INVITE\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>;+sip.instance="
	  "\"<urn:uuid:00000000-0000-1000-8000-000000000001>\"\r\n"
	  "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, "
	  "NOTIFY, MESSAGE, PRACK\r\n"
	  "Supported: replaces, timer, 100rel, path, gruu\r\n"
	  "User-Agent: Example Phone 1.0 (a long product token to make the "
	  "head cross a segment or two on small MSS paths)\r\n"
	  "Session-Expires: 1800;refresher=uac\r\n"
	  "Min-SE: 90\r\n"
	  "P-Preferred-Identity: <sip:alice@example.com>\r\n"
	  "Content-Type: application/sdp\r\n",
	  "v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.11\r\n"
	  "s=call\r\nc=IN IP4 10.0.0.11\r\nt=0 0\r\n"
	  "m=audio 6020 RTP/AVP 0 8 9 18 101\r\n"
	  "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
	  "a=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n"
	  "a=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\n"
	  "a=fmtp:101 0-16\r\na=ptime:20\r\na=rtcp:6021\r\na=sendrecv\r\n"
	  "m=video 6030 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\n"
	  "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n"
	  "a=rtpmap:97 VP8/90000\r\na=sendrecv\r\n"
	  "m=text 0 RTP/AVP 98\r\n", true, false },
	{ "SIP/2.0 200 OK\r\n"
	  "Via: SIP/2.0/TCP 198.51.100.10:5060;branch=z9hG4bKp1\r\n"
	  "From: <sip:carol@example.net>;tag=c1\r\n"
	  "To: <sip:alice@example.com>;tag=a9\r\n"
	  "Call-ID: call2@example.net\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>\r\n"
	  "Content-Type: application/sdp\r\n",
	  "v=0\r\no=- 5 5 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\n"
	  "t=0 0\r\nm=audio 6040 RTP/AVP 0\r\n", false, false },
	{ "MESSAGE sip:bob@example.com SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKm1;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: <sip:alice@example.com>;tag=m1\r\n"
	  "To: <sip:bob@example.com>\r\n"
	  "Call-ID: msg1@example.com\r\n"
	  "CSeq: 1 MESSAGE\r\n"
	  "Content-Type: text/plain\r\n",
	  "Hello Bob.\r\n\r\nTwo CRLFs in a body frame nothing.\r\n", true,
	  false },
	{ "OPTIONS sip:198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "v: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKo2;rport\r\n"
	  "f: <sip:alice@example.com>;tag=o2\r\n"
	  "t: <sip:198.51.100.10>\r\n"
	  "i: opt2@example.com\r\n"
	  "CSeq: 2 OPTIONS\r\n"
	  "m: <sip:alice@10.0.0.11:5060;transport=tcp>\r\n", NULL, true,
	  true },
	{ "OPTIONS sip:198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 192.0.2.77:5060;branch=z9hG4bKn1\r\n"
	  "From: <sip:alice@example.com>;tag=n1\r\n"
	  "To: <sip:198.51.100.10>\r\n"
	  "Call-ID: neutral1@example.com\r\n"
	  "CSeq: 1 OPTIONS\r\n"
	  "Contact: <sip:alice@192.0.2.77:5060;transport=tcp>\r\n", NULL,
	  true, false },
	{ "NOTIFY sip:bob@example.com SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 192.0.2.77:5060;branch=z9hG4bKn2\r\n"
	  "From: <sip:alice@example.com>;tag=n2\r\n"
	  "To: <sip:bob@example.com>;tag=n3\r\n"
	  "Call-ID: neutral2@example.com\r\n"
	  "CSeq: 7 NOTIFY\r\n"
	  "Event: dialog\r\n"
	  "Subscription-State: active;expires=300\r\n"
	  "Content-Type: text/plain\r\n", "state: idle\r\n", true, false },
	{ "CANCEL sip:dave@198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKa5;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "From: \"Alice Example\" <sip:alice@example.com>;tag=a5\r\n"
	  "To: \"Dave\" <sip:dave@example.com>\r\n"
	  "Call-ID: call3-0123456789abcdef0123456789abcdef@example.com\r\n"
	  "CSeq: 101 CANCEL\r\n", NULL, true, false },
	{ "INVITE sip:erin@198.51.100.10;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 10.0.0.11:5060;branch=z9hG4bKa6;rport\r\n"
	  "Max-Forwards: 70\r\n"
	  "Record-Route: <sip:10.0.0.11:5060;transport=tcp;lr>\r\n"
	  "From: <sip:alice@example.com>;tag=a6\r\n"
	  "To: <sip:erin@example.com>\r\n"
	  "Call-ID: call4@example.com\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:alice@10.0.0.11:5062;transport=tcp>\r\n", NULL,
	  true, false },
	{ "SIP/2.0 180 Ringing\r\n"
	  "Via: SIP/2.0/TCP 198.51.100.10:5060;branch=z9hG4bKp1\r\n"
	  "From: <sip:carol@example.net>;tag=c1\r\n"
	  "To: <sip:alice@example.com>;tag=a9\r\n"
	  "Call-ID: call2@example.net\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:alice@10.0.0.11:5060;transport=tcp>\r\n", NULL,
	  true, false },
};

/* The provider's; PUBPT becomes the connection's public port. */
static const struct pool_msg pool_in[] = {
	{ "SIP/2.0 100 Trying\r\n"
	  "Via: SIP/2.0/TCP 203.0.113.1:PUBPT;branch=z9hG4bKa1;rport=PUBPT\r\n"
	  "From: <sip:alice@example.com>;tag=a1\r\n"
	  "To: <sip:bob@example.com>\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 1 INVITE\r\n", NULL, true, false },
	{ "SIP/2.0 180 Ringing\r\n"
	  "Via: SIP/2.0/TCP 203.0.113.1:PUBPT;branch=z9hG4bKa1\r\n"
	  "From: <sip:alice@example.com>;tag=a1\r\n"
	  "To: <sip:bob@example.com>;tag=b1\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:bob@198.51.100.10;transport=tcp>\r\n", NULL, true,
	  false },
	{ "SIP/2.0 200 OK\r\n"
	  "Via: SIP/2.0/TCP 203.0.113.1:PUBPT;branch=z9hG4bKa1\r\n"
	  "From: <sip:alice@example.com>;tag=a1\r\n"
	  "To: <sip:bob@example.com>;tag=b1\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:bob@198.51.100.10;transport=tcp>\r\n"
	  "Content-Type: application/sdp\r\n",
	  "v=0\r\no=- 2 2 IN IP4 198.51.100.10\r\ns=-\r\n"
	  "c=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 8\r\n"
	  "a=rtcp:7001\r\na=sendrecv\r\n", true, false },
	{ "INVITE sip:alice@203.0.113.1:PUBPT;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 198.51.100.10:5060;branch=z9hG4bKp1\r\n"
	  "Max-Forwards: 69\r\n"
	  "From: <sip:carol@example.net>;tag=c1\r\n"
	  "To: <sip:alice@example.com>\r\n"
	  "Call-ID: call2@example.net\r\n"
	  "CSeq: 1 INVITE\r\n"
	  "Contact: <sip:carol@198.51.100.10;transport=tcp>\r\n"
	  "Content-Type: application/sdp\r\n",
	  "v=0\r\no=- 3 3 IN IP4 198.51.100.10\r\ns=-\r\n"
	  "c=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 7010 RTP/AVP 0\r\n",
	  true, false },
	{ "BYE sip:alice@203.0.113.1:PUBPT;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 198.51.100.10:5060;branch=z9hG4bKp2\r\n"
	  "Max-Forwards: 69\r\n"
	  "From: <sip:bob@example.com>;tag=b1\r\n"
	  "To: <sip:alice@example.com>;tag=a1\r\n"
	  "Call-ID: call1@example.com\r\n"
	  "CSeq: 9 BYE\r\n", NULL, true, false },
	{ "SIP/2.0 200 OK\r\n"
	  "Via: SIP/2.0/TCP 203.0.113.1:PUBPT;branch=z9hG4bKr1;rport=PUBPT\r\n"
	  "From: <sip:alice@example.com>;tag=r1\r\n"
	  "To: <sip:alice@example.com>;tag=s1\r\n"
	  "Call-ID: reg1@example.com\r\n"
	  "CSeq: 1 REGISTER\r\n"
	  "Contact: <sip:alice@203.0.113.1:PUBPT;transport=tcp>;expires=600\r\n"
	  "Expires: 600\r\n", NULL, true, false },
	{ "SIP/2.0 200 OK\r\n"
	  "Via: SIP/2.0/TCP 203.0.113.1:PUBPT;branch=z9hG4bKo1\r\n"
	  "From: <sip:alice@example.com>;tag=o1\r\n"
	  "To: <sip:198.51.100.10>;tag=s2\r\n"
	  "Call-ID: opt1@example.com\r\n"
	  "CSeq: 1 OPTIONS\r\n"
	  "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n", NULL, true, false },
	{ "SIP/2.0 401 Unauthorized\r\n"
	  "Via: SIP/2.0/TCP 203.0.113.1:PUBPT;branch=z9hG4bKr1\r\n"
	  "From: <sip:alice@example.com>;tag=r1\r\n"
	  "To: <sip:alice@example.com>;tag=s3\r\n"
	  "Call-ID: reg1@example.com\r\n"
	  "CSeq: 1 REGISTER\r\n"
	  "WWW-Authenticate: Digest realm=\"example.com\", "
	  "nonce=\"0123456789abcdef\", algorithm=MD5, qop=\"auth\"\r\n",
	  NULL, true, false },
	{ "NOTIFY sip:alice@example.com SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 198.51.100.10:5060;branch=z9hG4bKp3\r\n"
	  "From: <sip:bob@example.com>;tag=n3\r\n"
	  "To: <sip:alice@example.com>;tag=n2\r\n"
	  "Call-ID: neutral2@example.com\r\n"
	  "CSeq: 8 NOTIFY\r\n"
	  "Event: message-summary\r\n"
	  "Content-Type: application/simple-message-summary\r\n",
	  "Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n", true,
	  false },
	{ "SIP/2.0 200 OK\r\n"
	  "Via: SIP/2.0/TCP 192.0.2.77:5060;branch=z9hG4bKn1\r\n"
	  "From: <sip:alice@example.com>;tag=n1\r\n"
	  "To: <sip:198.51.100.10>;tag=s4\r\n"
	  "Call-ID: neutral1@example.com\r\n"
	  "CSeq: 1 OPTIONS\r\n", NULL, true, false },
	{ "ACK sip:alice@203.0.113.1:PUBPT;transport=tcp SIP/2.0\r\n"
	  "Via: SIP/2.0/TCP 198.51.100.10:5060;branch=z9hG4bKp4\r\n"
	  "Max-Forwards: 69\r\n"
	  "From: <sip:carol@example.net>;tag=c1\r\n"
	  "To: <sip:alice@example.com>;tag=a9\r\n"
	  "Call-ID: call2@example.net\r\n"
	  "CSeq: 1 ACK\r\n", NULL, true, false },
	{ "SIP/2.0 200 OK\r\n"
	  "v: SIP/2.0/TCP 203.0.113.1:PUBPT;branch=z9hG4bKa3\r\n"
	  "f: <sip:alice@example.com>;tag=a1\r\n"
	  "t: <sip:bob@example.com>;tag=b1\r\n"
	  "i: call1@example.com\r\n"
	  "CSeq: 2 BYE\r\n", NULL, true, true },
};

#define NPOOL_OUT	(sizeof pool_out / sizeof pool_out[0])
#define NPOOL_IN	(sizeof pool_in / sizeof pool_in[0])

static const unsigned	 mtus[8] = { 1500, 1400, 1280, 576, 1000, 620, 1492,
			    9000 };
static const uint16_t	 msss[16] = { 0, 1460, 536, 1200, 256, 128, 88, 1000,
			    8960, 500, 1380, 64, 1440, 300, 1360, 0 };

static struct config	 fz_conf, fz_reload;
static struct conn	 conns[NCONN];
static uint8_t		 app_buf[NCONN][2][APP_MAX];
static uint8_t		 sent_bits[NCONN][2][APP_MAX / 8];
static uint8_t		 rcv_buf[NCONN][2][RCV_MAX];
static uint8_t		 rcv_bits[NCONN][2][RCV_MAX / 8];
static uint8_t		 pkt[SIPNAT_MAX_PKT] __attribute__((aligned(8)));
static uint8_t		 copy[SIPNAT_MAX_PKT] __attribute__((aligned(8)));

/* What the input asked for. */
static struct {
	bool		 clean;
	bool		 no_synack;
	bool		 tfo;
	uint16_t	 mss[2];	/* the MSS options, by side */
	unsigned	 wan_mtu;
	unsigned	 tun_mtu;
	bool		 clamp;
	uint32_t	 isn[2];
	uint16_t	 port;
	size_t		 memory_cap;	/* the largest configured */
	bool		 all_framed;	/* pool messages only */
	bool		 all_clean[2];
	bool		 sip_off;	/* a reload turned SIP off */
	uint16_t	 ip_id;
	const uint8_t	*raw;
	size_t		 rawlen;
	size_t		 rawpos;
} in;

/* The state of the one feed under way. */
static struct {
	struct conn	*c;
	int		 side;		/* who sent the segment */
	bool		 lose_data;	/* what the gateway sends on is lost */
	bool		 lose_own;	/* its own ACKs are lost */
	bool		 rst_out;	/* an RST went to the receiver */
	bool		 jumped;	/* sessions may have expired */
} cur;

/* Clean mode: the order in which segments completed messages. */
static struct {
	int		 side;
	size_t		 front;
} events[MAX_EVENTS];
static unsigned		 nevents;
static bool		 recording;

static struct gauges	 g0;		/* when the gateway came up */

static void	 check_failed(int, const char *)
		     __attribute__((noreturn));
static int64_t	 seq_off(uint32_t, uint32_t);
static void	 trace(const char *, const struct conn *, int, const uint8_t *,
		    size_t);
static bool	 same(const char *, const char *);
static void	 stream_cb(const char *, uint64_t, bool, void *);
static void	 gauge_cb(const char *, uint64_t, bool, void *);
static void	 gauges_read(struct gauges *);
static void	 check_memory(void);
static struct conn *conn_by_pub(uint16_t);
static struct conn *conn_by_port(uint16_t);
static size_t	 frontier(const struct side *);
static void	 take_ack(struct side *, int64_t);
static void	 own_ack(struct conn *, int, const struct pkt *);
static void	 deliver(struct conn *, int, const struct pkt *, uint8_t);
static void	 emitted(int, const uint8_t *, size_t);
static int	 io_wan(const uint8_t *, size_t);
static int	 io_lan(const uint8_t *, size_t);
static void	 feed(struct conn *, int, int64_t, uint32_t, uint8_t, uint16_t,
		     const uint8_t *, size_t, const uint8_t *, size_t);
static void	 mark_sent(struct side *, int64_t, size_t, uint8_t);
static size_t	 seg_limit(const struct conn *, int, size_t);
static uint32_t	 ack_value(const struct side *, const struct side *);
static void	 send_data(struct conn *, int, size_t, size_t, uint8_t);
static void	 drain(void);
static void	 tick(unsigned);
static void	 gateway_up(void);
static void	 gateway_down(void);
static size_t	 syn_options(struct side *, int, uint8_t *);
static void	 conn_open(struct conn *, unsigned);
static size_t	 raw_take(uint8_t *, size_t);
static size_t	 pool_build(const struct pool_msg *, uint8_t *, size_t);
static void	 apps_build(const uint8_t *, unsigned, unsigned);
static void	 conn_reset(struct conn *, unsigned);
static void	 chaos_record(const uint8_t *);
static void	 settle(void);
static void	 check_closed(void);
static bool	 has_str(const uint8_t *, size_t, const char *);
static bool	 whole_messages(const struct side *);
static void	 check_names(void);
static void	 clean_run(const uint8_t *, size_t, bool);
static void	 setup(const uint8_t *);

static const struct nat_io fz_io = {
	.to_wan = io_wan,
	.to_lan = io_lan,
};

/*
 * The table's hash seed and port choices come from getrandom(): a fixed
 * one here keeps every run of an input the same.
 */
ssize_t	getrandom(void *, size_t, unsigned int);

ssize_t
getrandom(void *buf, size_t len, unsigned int flags)
{
	memset(buf, 0x5a, len);
	return ((ssize_t)len);
}

/* A broken check: say which, then trap for libFuzzer. */
static void
check_failed(int line, const char *what)
{
	const struct side	*s;
	int			 i, j;

	fprintf(stderr, "fuzz-stream.c:%d: check failed: %s\n", line, what);
	/* FUZZ_STREAM_DUMP=1: what each endpoint sent and received. */
	for (i = 0; i < NCONN && getenv("FUZZ_STREAM_DUMP") != NULL; i++) {
		for (j = 0; j < 2 && conns[i].up; j++) {
			s = &conns[i].s[j];
			fprintf(stderr, "conn %d %s: isn %u front %zu smax %zu "
			    "fin_at %ld una %lld honest %d taint %d; "
			    "received %zu (fin %ld%s) up to %zu:\n", i,
			    j == S_PHONE ? "phone" : "provider", s->isn,
			    s->front, s->smax, s->fin_at, (long long)s->una,
			    s->honest, conns[i].taint[j], s->rnxt, s->rfin,
			    s->rfin_in ? " in" : "", s->rhi);
			fwrite(s->rbuf, 1, s->rnxt, stderr);
			fprintf(stderr, "\n--\n");
		}
	}
	__builtin_trap();
}

/* A sequence number as an offset from base, modulo 2^32 (RFC 793). */
static int64_t
seq_off(uint32_t seq, uint32_t base)
{
	return ((int32_t)(seq - base));
}

/* Is name str?  (Not strcmp: libFuzzer would learn these names.) */
static bool
same(const char *name, const char *str)
{
	while (*name != '\0' && *name == *str) {
		name++;
		str++;
	}
	return (*name == *str);
}

/* Take the stream gauges. */
static void
stream_cb(const char *name, uint64_t v, bool gauge, void *arg)
{
	struct gauges	*g = arg;

	if (same(name, "tcp_stream.memory"))
		g->memory = v;
	else if (same(name, "tcp_stream.open"))
		g->open = v;
}

/* Take the gauges and the helper's counters the checks need. */
static void
gauge_cb(const char *name, uint64_t v, bool gauge, void *arg)
{
	struct gauges	*g = arg;

	if (*name == 't')
		stream_cb(name, v, gauge, arg);
	else if (same(name, "sip.messages.rewritten"))
		g->rewritten = v;
	else if (same(name, "sip.errors.dropped"))
		g->dropped = v;
	else if (same(name, "sip.errors.no_mapping"))
		g->no_mapping = v;
}

/* Read them all. */
static void
gauges_read(struct gauges *g)
{
	memset(g, 0, sizeof *g);
	alg_stats(gauge_cb, g);
	g->limit_buffer = stats[STAT_STREAM_LIMIT_BUFFER];
	g->limit_memory = stats[STAT_STREAM_LIMIT_MEMORY];
	g->degraded = stats[STAT_STREAM_DEGRADED];
}

/* The streams' memory stays within the configured bound. */
static void
check_memory(void)
{
	struct gauges	g;

	/* alg_stats() without the helper's counters: this runs often. */
	g.memory = g.open = 0;
	stream_stats(stream_cb, &g);
	CHECK(g.memory <= in.memory_cap);
	CHECK(g.open <= NCONN);
}

/* The connection with this public port. */
static struct conn *
conn_by_pub(uint16_t port)
{
	struct nat_mapping	*m;
	int			 i;

	for (i = 0; i < NCONN; i++)
		if (conns[i].up && conns[i].pub == port)
			return (&conns[i]);
	/* Its first SYN, or sessions expired: a new public port. */
	for (i = 0; i < NCONN; i++) {
		if (!conns[i].up || (conns[i].pub != 0 && !cur.jumped))
			continue;
		m = nat_mapping_find(IPPROTO_TCP, htonl(PHONE), conns[i].port);
		if (m != NULL && m->pub_port == port) {
			conns[i].pub = port;
			return (&conns[i]);
		}
	}
	return (NULL);
}

/* The connection with this phone port. */
static struct conn *
conn_by_port(uint16_t port)
{
	int	i;

	for (i = 0; i < NCONN; i++)
		if (conns[i].up && conns[i].port == port)
			return (&conns[i]);
	return (NULL);
}

/* How far a sender may be acknowledged: every byte before sent once. */
static size_t
frontier(const struct side *s)
{
	if (s->fin_sent && s->front >= (size_t)s->fin_at)
		return ((size_t)s->fin_at + 1);
	return (s->front);
}

/*
 * FUZZ_STREAM_TRACE=1: each segment fed in (">", by its sender) and sent
 * out ("<", by its receiver), numbers relative to the ISNs.
 */
static void
trace(const char *how, const struct conn *c, int side, const uint8_t *buf,
    size_t len)
{
	const uint8_t	*tcp = buf + IP_HDR_MIN;
	int		 from = *how == '>' ? side : !side;

	if (getenv("FUZZ_STREAM_TRACE") == NULL || len < IP_HDR_MIN + 20)
		return;
	fprintf(stderr, "%s conn %d %s seq %lld ack %lld len %zu flags 0x%02x"
	    " ttl %u\n", how, (int)(c - conns), side == S_PHONE ? "phone" :
	    "provider", (long long)seq_off(pkt_get32(tcp + 4),
	    c->s[from].isn + 1), (long long)seq_off(pkt_get32(tcp + 8),
	    c->s[!from].isn + 1), len - IP_HDR_MIN - (tcp[12] >> 4) * 4,
	    tcp[13], buf[8]);
}

/* An ACK a side got: TCP ignores one for what it never sent. */
static void
take_ack(struct side *s, int64_t a)
{
	if (a > s->una && a <= (int64_t)(s->smax + s->fin_sent))
		s->una = a;
}

/* One of the gateway's own ACKs, to side x. */
static void
own_ack(struct conn *c, int x, const struct pkt *p)
{
	struct side	*s = &c->s[x], *peer = &c->s[!x];
	const uint8_t	*tcp = p->l4;
	int64_t		 a;

	/* A bare ACK: no data, no option but a timestamp (RFC 7323). */
	CHECK(tcp[13] == TH_ACK);
	CHECK((p->l4len == 20 && tcp[12] >> 4 == 5) ||
	    (p->l4len == 32 && tcp[12] >> 4 == 8 &&
	    memcmp(tcp + 20, "\x01\x01\x08\x0a", 4) == 0));
	a = seq_off(pkt_get32(tcp + 8), s->isn + 1);
	if (!c->taint[x])
		CHECK(a >= 0 && a <= (int64_t)frontier(s));
	if (in.clean)
		CHECK(seq_off(pkt_get32(tcp + 4), peer->isn + 1) ==
		    (int64_t)(s->rnxt + s->rfin_in));
	if (!cur.lose_own)
		take_ack(s, a);
}

/* A segment of side !x's bytes (translated) on its way to side x. */
static void
deliver(struct conn *c, int x, const struct pkt *p, uint8_t ttl)
{
	struct side	*s = &c->s[x], *peer = &c->s[!x];
	const uint8_t	*tcp = p->l4, *data;
	unsigned	 thl = (tcp[12] >> 4) * 4, i;
	size_t		 dlen = p->l4len - thl, k;
	uint8_t		 flags = tcp[13];
	int64_t		 o, a, fpos;
	bool		 follow = !c->taint[!x];

	CHECK(ttl == (x == S_PROVIDER ? TTL_PHONE : TTL_PROVIDER + 1));
	/*
	 * No more than the receiver's MSS (options count, RFC 6691), while
	 * the gateway knows it (it forgets with its state).
	 */
	if (dlen > 0 && c->s[x].mss != 0 && follow)
		CHECK(dlen + thl - 20 <= c->s[x].mss);
	if (flags & TH_SYN) {
		/* The MSS option as clamped. */
		for (i = 20; i + 3 < thl && tcp[i] != 0; ) {
			if (tcp[i] == 1) {
				i++;
				continue;
			}
			if (tcp[i] == 2 && tcp[i + 1] == 4)
				CHECK(pkt_get16(tcp + i + 2) == peer->mss ||
				    c->taint[!x]);
			if (tcp[i + 1] < 2)
				break;
			i += tcp[i + 1];
		}
	}
	if (flags & TH_RST)
		cur.rst_out = true;
	if (flags & TH_ACK) {
		a = seq_off(pkt_get32(tcp + 8), s->isn + 1);
		if (!c->taint[x] && peer->honest)
			CHECK(a <= (int64_t)frontier(s));
		if (!cur.lose_data)
			take_ack(s, a);
	}
	if (cur.lose_data)
		return;
	data = tcp + thl;
	o = seq_off(pkt_get32(tcp + 4) + ((flags & TH_SYN) ? 1 : 0),
	    peer->isn + 1);
	if (dlen > 0 || (flags & TH_FIN))
		s->pending = true;
	for (k = 0; k < dlen; k++) {
		if (o + (int64_t)k < 0 || o + (int64_t)k >= RCV_MAX)
			continue;
		i = (unsigned)(o + (int64_t)k);
		if (s->rhave[i / 8] & (1 << (i % 8)))
			CHECK(!follow || s->rbuf[i] == data[k]);
		else {
			s->rbuf[i] = data[k];
			s->rhave[i / 8] |= (uint8_t)(1 << (i % 8));
		}
		if (i + 1 > s->rhi)
			s->rhi = i + 1;
		/* Nothing after the FIN. */
		CHECK(!follow || s->rfin < 0 || (int64_t)i < s->rfin);
	}
	fpos = o + (int64_t)dlen;
	if ((flags & TH_FIN) && fpos >= 0 && fpos <= RCV_MAX) {
		CHECK(!follow || s->rfin < 0 || s->rfin == fpos);
		CHECK(!follow || (int64_t)s->rhi <= fpos);
		if (s->rfin < 0)
			s->rfin = (long)fpos;
	}
	while (s->rnxt < RCV_MAX &&
	    (s->rhave[s->rnxt / 8] & (1 << (s->rnxt % 8))))
		s->rnxt++;
	if (s->rfin >= 0 && (size_t)s->rfin == s->rnxt)
		s->rfin_in = true;
}

/* A packet the gateway sent toward side `to`. */
static void
emitted(int to, const uint8_t *buf, size_t len)
{
	struct pkt	 p;
	struct conn	*c;
	uint8_t		 ttl;

	CHECK(len >= 40 && len <= SIPNAT_MAX_PKT);
	CHECK(len <= (to == S_PROVIDER ? in.wan_mtu : in.tun_mtu));
	memcpy(copy, buf, len);
	CHECK(pkt_parse(&p, copy, len) == PKT_OK);
	CHECK(p.len == len && !p.frag && p.proto == IPPROTO_TCP &&
	    p.l4 != NULL && p.l4len >= 20);
	CHECK(cksum(copy, p.hl, 0) == 0);
	CHECK(cksum_l4(&p) == 0);
	CHECK((p.l4[12] >> 4) * 4 >= 20 && (p.l4[12] >> 4) * 4 <= p.l4len);
	if (to == S_PROVIDER) {
		CHECK(p.src == htonl(PUB) && p.dst == htonl(PROVIDER) &&
		    p.dport == SIP_PORT);
		c = conn_by_pub(p.sport);
	} else {
		CHECK(p.src == htonl(PROVIDER) && p.sport == SIP_PORT &&
		    p.dst == htonl(PHONE));
		c = conn_by_port(p.dport);
	}
	CHECK(c != NULL);
	trace("<", c, to, copy, len);
	ttl = copy[8];
	if (ttl == TTL_OWN) {
		/* Only ever to the side that sent what is being fed. */
		CHECK(cur.c == c && cur.side == to);
		own_ack(c, to, &p);
	} else
		deliver(c, to, &p, ttl);
}

/* The uplink: toward the provider. */
static int
io_wan(const uint8_t *buf, size_t len)
{
	emitted(S_PROVIDER, buf, len);
	return (0);
}

/* The TUN: toward the phone. */
static int
io_lan(const uint8_t *buf, size_t len)
{
	emitted(S_PHONE, buf, len);
	return (0);
}

/*
 * Build a segment of side `side` with valid checksums and feed it in:
 * sequence number isn + 1 + o (minus one for a SYN), options and data.
 */
static void
feed(struct conn *c, int side, int64_t o, uint32_t ack, uint8_t flags,
    uint16_t win, const uint8_t *opt, size_t optlen, const uint8_t *data,
    size_t len)
{
	struct side	*s = &c->s[side];
	struct pkt	 p;
	size_t		 thl = 20 + optlen, total = IP_HDR_MIN + thl + len;
	uint32_t	 a;
	uint16_t	 w;

	CHECK(optlen % 4 == 0 && optlen <= 40);
	memset(pkt, 0, IP_HDR_MIN + 20);
	pkt[0] = 0x45;
	pkt_put16(pkt + 2, (uint16_t)total);
	pkt_put16(pkt + 4, in.ip_id++);
	pkt_put16(pkt + 6, IP_DF);
	pkt[8] = side == S_PHONE ? TTL_PHONE : TTL_PROVIDER;
	pkt[9] = IPPROTO_TCP;
	a = htonl(side == S_PHONE ? PHONE : PROVIDER);
	memcpy(pkt + 12, &a, 4);
	a = htonl(side == S_PHONE ? PROVIDER : PUB);
	memcpy(pkt + 16, &a, 4);
	w = cksum(pkt, IP_HDR_MIN, 0);
	memcpy(pkt + 10, &w, 2);
	pkt_put16(pkt + 20, side == S_PHONE ? c->port : SIP_PORT);
	pkt_put16(pkt + 22, side == S_PHONE ? SIP_PORT : c->pub);
	pkt_put32(pkt + 24, s->isn + 1 + (uint32_t)o -
	    ((flags & TH_SYN) ? 1 : 0));
	pkt_put32(pkt + 28, ack);
	pkt[32] = (uint8_t)((thl / 4) << 4);
	pkt[33] = flags;
	pkt_put16(pkt + 34, win);
	if (optlen > 0)
		memcpy(pkt + 40, opt, optlen);
	if (len > 0)
		memcpy(pkt + IP_HDR_MIN + thl, data, len);
	CHECK(pkt_parse(&p, pkt, total) == PKT_OK);
	w = cksum_l4(&p);
	memcpy(pkt + 36, &w, 2);

	cur.c = c;
	cur.side = side;
	cur.rst_out = false;
	trace(">", c, side, pkt, total);
	nat_input(pkt, total);
	check_memory();
}

/* The sender's record of what it sent. */
static void
mark_sent(struct side *s, int64_t o, size_t len, uint8_t flags)
{
	size_t	i;

	if (o < 0 || (size_t)o > s->alen)
		return;
	for (i = (size_t)o; i < (size_t)o + len && i < s->alen; i++)
		s->sent[i / 8] |= (uint8_t)(1 << (i % 8));
	while (s->front < s->alen &&
	    (s->sent[s->front / 8] & (1 << (s->front % 8))))
		s->front++;
	if ((size_t)o + len > s->smax)
		s->smax = (size_t)o + len;
	if ((flags & TH_FIN) && s->fin_at >= 0 &&
	    (size_t)o + len == (size_t)s->fin_at)
		s->fin_sent = true;
}

/* The most data a segment of this side may carry with optlen options. */
static size_t
seg_limit(const struct conn *c, int side, size_t optlen)
{
	unsigned	mtu = in.wan_mtu < in.tun_mtu ? in.wan_mtu : in.tun_mtu;
	size_t		lim = mtu - 40 - optlen;
	uint16_t	mss = c->s[!side].mss;

	if (mss != 0 && mss < lim + optlen)
		lim = mss > optlen ? mss - optlen : 1;
	return (lim);
}

/* An honest ACK: everything this side received in order. */
static uint32_t
ack_value(const struct side *s, const struct side *peer)
{
	return (peer->isn + 1 + (uint32_t)(s->rnxt + s->rfin_in));
}

/*
 * Send side's bytes [o, o + len) in segments as large as allowed, in
 * order, with honest ACKs; flags (FIN) on the last.
 */
static void
send_data(struct conn *c, int side, size_t o, size_t len, uint8_t flags)
{
	struct side	*s = &c->s[side];
	size_t		 lim = seg_limit(c, side, 0), n, end = o + len;
	uint8_t		 f;

	do {
		n = end - o < lim ? end - o : lim;
		f = TH_ACK | (o + n == end ? flags : 0);
		if (n > 0)
			f |= TH_PSH;
		if ((f & TH_FIN) && s->fin_at < 0) {
			s->fin_at = (long)(o + n);
			s->alen = o + n;
		}
		s->last_ack = (int64_t)(s->rnxt + s->rfin_in);
		mark_sent(s, (int64_t)o, n, f);
		feed(c, side, (int64_t)o, ack_value(s, &c->s[!side]), f, s->win,
		    NULL, 0, s->app + o, n);
		if (recording && n > 0 && nevents < MAX_EVENTS) {
			events[nevents].side = side;
			events[nevents++].front = s->front;
		}
		drain();
		o += n;
	} while (o < end);
}

/* Let every endpoint that owes an ACK send it (bare, honest). */
static void
drain(void)
{
	struct side	*s;
	unsigned	 round, i, j;
	bool		 any = true;

	for (round = 0; any && round < DRAIN_ROUNDS; round++) {
		any = false;
		for (i = 0; i < NCONN; i++) {
			for (j = 0; j < 2; j++) {
				s = &conns[i].s[j];
				if (!conns[i].up || !s->pending)
					continue;
				s->pending = false;
				any = true;
				s->last_ack = (int64_t)(s->rnxt + s->rfin_in);
				feed(&conns[i], (int)j,
				    (int64_t)s->smax + s->fin_sent,
				    ack_value(s, &conns[i].s[!j]), TH_ACK,
				    s->win, NULL, 0, NULL, 0);
			}
		}
	}
}

/* Move the clock on and let the timers run. */
static void
tick(unsigned secs)
{
	uint64_t	now = nat_now() + secs;

	nat_set_now(now);
	cur.c = NULL;
	nat_tick(now);
	check_memory();
}

/* A fresh gateway. */
static void
gateway_up(void)
{
	nat_set_now(1000);
	if (nat_init(&fz_conf, &fz_io) == -1 ||
	    alg_configure(&fz_conf, NULL) == -1)
		__builtin_trap();
	gauges_read(&g0);
	CHECK(g0.memory == 0 && g0.open == 0);
}

/* Free it all: no stream memory may be left counted. */
static void
gateway_down(void)
{
	struct gauges	g;

	alg_shutdown();
	nat_table_free();
	frag_free();
	gauges_read(&g);
	CHECK(g.memory == 0 && g.open == 0);
}

/*
 * The options of a side's SYN into opt (its MSS, if the input gives one,
 * and SACK-permitted); its length.  The side's MSS becomes the one the
 * other side will see, as clamped.
 */
static size_t
syn_options(struct side *s, int side, uint8_t *opt)
{
	size_t	optlen = 0;

	s->mss = in.mss[side];
	if (in.clamp && s->mss > in.wan_mtu - 40)
		s->mss = (uint16_t)(in.wan_mtu - 40);
	if (in.mss[side] != 0) {
		opt[0] = 2;
		opt[1] = 4;
		pkt_put16(opt + 2, in.mss[side]);
		optlen = 4;
	}
	memcpy(opt + optlen, "\x01\x01\x04\x02", 4);
	return (optlen + 4);
}

/* Open a connection: the phone's SYN, the SYN-ACK, the ACK. */
static void
conn_open(struct conn *c, unsigned idx)
{
	struct nat_mapping	*m;
	struct side		*ph = &c->s[S_PHONE], *pr = &c->s[S_PROVIDER];
	uint8_t			 opt[8];
	char			 digits[8];
	size_t			 optlen, n, i;

	c->up = true;
	optlen = syn_options(ph, S_PHONE, opt);
	n = 0;
	if (in.tfo && idx == 0)
		n = ph->alen < seg_limit(c, S_PHONE, optlen) ?
		    ph->alen : seg_limit(c, S_PHONE, optlen);
	mark_sent(ph, 0, n, TH_SYN);
	feed(c, S_PHONE, 0, 0, TH_SYN, 65535, opt, optlen, ph->app, n);
	m = nat_mapping_find(IPPROTO_TCP, htonl(PHONE), c->port);
	CHECK(m != NULL);
	c->pub = m->pub_port;
	/* The provider's messages name the public port. */
	snprintf(digits, sizeof digits, "%u", c->pub);
	for (i = 0; i + 5 <= pr->alen; i++)
		if (memcmp(pr->app + i, "PUBPT", 5) == 0)
			memcpy(pr->app + i, digits, 5);
	pr->pending = false;	/* its SYN-ACK answers */
	if (in.no_synack && !in.clean) {
		c->taint[S_PROVIDER] = true;
		return;
	}
	optlen = syn_options(pr, S_PROVIDER, opt);
	pr->last_ack = (int64_t)(pr->rnxt + pr->rfin_in);
	feed(c, S_PROVIDER, 0, ack_value(pr, ph), TH_SYN | TH_ACK, 65535, opt,
	    optlen, NULL, 0);
	pr->pending = false;
	drain();
	ph->last_ack = (int64_t)(ph->rnxt + ph->rfin_in);
	feed(c, S_PHONE, (int64_t)ph->smax, ack_value(ph, pr), TH_ACK, 65535,
	    NULL, 0, NULL, 0);
	drain();
}

/* Raw bytes from the end of the input, round and round. */
static size_t
raw_take(uint8_t *to, size_t len)
{
	static const char	 filler[] = "Not SIP at all\r\n\r\n";
	size_t			 i;

	for (i = 0; i < len; i++) {
		if (in.rawlen == 0)
			to[i] = (uint8_t)filler[(in.rawpos++) %
			    (sizeof filler - 1)];
		else
			to[i] = in.raw[(in.rawpos++) % in.rawlen];
	}
	return (len);
}

/* A pool message with its Content-Length, into to; its length or 0. */
static size_t
pool_build(const struct pool_msg *m, uint8_t *to, size_t room)
{
	char		 cl[32];
	size_t		 hl = strlen(m->head), bl, cll;

	bl = m->body != NULL ? strlen(m->body) : 0;
	cll = (size_t)snprintf(cl, sizeof cl, "%s: %zu\r\n\r\n",
	    m->compact ? "l" : "Content-Length", bl);
	if (hl + cll + bl > room)
		return (0);
	memcpy(to, m->head, hl);
	memcpy(to + hl, cl, cll);
	if (bl > 0)
		memcpy(to + hl + cll, m->body, bl);
	return (hl + cll + bl);
}

/* Each endpoint's bytes, from the message bytes of the input. */
static void
apps_build(const uint8_t *msgs, unsigned nout, unsigned nin)
{
	const struct pool_msg	*pool, *m;
	struct side		*s;
	uint8_t			 b, flip[3];
	size_t			 npool, n, len;
	unsigned		 side, i, count;

	in.all_framed = true;
	for (side = 0; side < 2; side++) {
		s = &conns[0].s[side];
		pool = side == S_PHONE ? pool_out : pool_in;
		npool = side == S_PHONE ? NPOOL_OUT : NPOOL_IN;
		count = side == S_PHONE ? nout : nin;
		in.all_clean[side] = true;
		s->alen = 0;
		s->nbounds = 0;
		for (i = 0; i < count; i++) {
			b = *msgs++;
			m = &pool[(b & 0x1f) % npool];
			n = 0;
			switch (b >> 6) {
			case 0:
			case 1:
				n = pool_build(m, s->app + s->alen,
				    APP_MAX - s->alen);
				in.all_clean[side] &= m->clean;
				if ((b >> 6) == 0 || n == 0)
					break;
				raw_take(flip, 3);
				s->app[s->alen + pkt_get16(flip) % n] = flip[2];
				in.all_clean[side] = false;
				in.all_framed = false;
				break;
			case 2:
				len = ((size_t)(b & 0x3f) + 1) * 8;
				if (len > APP_MAX - s->alen)
					len = APP_MAX - s->alen;
				n = raw_take(s->app + s->alen, len);
				in.all_clean[side] = false;
				in.all_framed = false;
				break;
			default:
				if (APP_MAX - s->alen < 4)
					break;
				memcpy(s->app + s->alen, "\r\n\r\n", 4);
				n = 4 + pool_build(m, s->app + s->alen + 4,
				    APP_MAX - s->alen - 4);
				in.all_clean[side] &= m->clean;
				break;
			}
			s->alen += n;
			if (n > 0)
				s->bounds[s->nbounds++] = s->alen;
		}
	}
	/* The second connection sends the same. */
	for (side = 0; side < 2; side++) {
		memcpy(conns[1].s[side].app, conns[0].s[side].app,
		    conns[0].s[side].alen);
		conns[1].s[side].alen = conns[0].s[side].alen;
		conns[1].s[side].nbounds = conns[0].s[side].nbounds;
		memcpy(conns[1].s[side].bounds, conns[0].s[side].bounds,
		    sizeof conns[1].s[side].bounds);
	}
}

/* Forget a connection's endpoints (their bytes stay). */
static void
conn_reset(struct conn *c, unsigned idx)
{
	struct side	*s;
	int		 i;

	c->up = false;
	c->port = (uint16_t)(in.port + idx);
	c->pub = 0;
	c->taint[0] = c->taint[1] = false;
	c->reset = false;
	for (i = 0; i < 2; i++) {
		s = &c->s[i];
		s->isn = in.isn[i] + idx * 0x01000000u;
		s->app = app_buf[idx][i];
		s->fin_at = -1;
		s->fin_sent = false;
		s->sent = sent_bits[idx][i];
		memset(s->sent, 0, sizeof sent_bits[idx][i]);
		s->front = s->smax = 0;
		s->una = 0;
		s->mss = 0;
		s->win = 65535;
		s->honest = true;
		s->pending = false;
		s->last_ack = 0;
		s->rbuf = rcv_buf[idx][i];
		s->rhave = rcv_bits[idx][i];
		memset(s->rhave, 0, sizeof rcv_bits[idx][i]);
		s->rnxt = s->rhi = 0;
		s->rfin = -1;
		s->rfin_in = false;
		s->ref_sent = 0;
	}
}

/* One segment as a record of the input describes it (chaos mode). */
static void
chaos_record(const uint8_t *r)
{
	struct conn	*c = &conns[(r[7] >> 7) & 1];
	struct side	*s, *peer;
	static uint8_t	 data[SIPNAT_MAX_PKT];
	uint8_t		 opt[40], flags;
	size_t		 optlen = 0, want, lim, len = 0, i, nsack, avail;
	int64_t		 o, a, rel;
	unsigned	 mode, side, k;
	bool		 far = false;

	/* The clock first. */
	switch (r[3] >> 6) {
	case 1:
		tick(1);
		break;
	case 2:
		tick(2 + (r[4] & 7));
		break;
	case 3:
		switch (r[4] & 3) {
		case 0:
			/* Two days: sessions expire, streams with them. */
			cur.jumped = true;
			for (i = 0; i < NCONN; i++)
				conns[i].taint[0] = conns[i].taint[1] = true;
			tick(86400 * 2);
			break;
		case 1:
		case 2:
			/* A reload with another buffer size, SIP on. */
			fz_reload = fz_conf;
			fz_reload.stream_buffer = (r[4] & 3) == 1 ?
			    fz_conf.stream_buffer * 2 + 64 :
			    fz_conf.stream_buffer / 2 + 1;
			nat_configure(&fz_reload);
			alg_configure(&fz_reload, NULL);
			break;
		default:
			/* A reload with SIP off: the helper lets go. */
			in.sip_off = true;
			fz_reload = fz_conf;
			fz_reload.nsip_ports = 0;
			nat_configure(&fz_reload);
			alg_configure(&fz_reload, NULL);
			break;
		}
		break;
	}
	if (!c->up)
		conn_open(c, (unsigned)(c - conns));

	side = r[0] & 1;
	s = &c->s[side];
	peer = &c->s[!side];
	mode = (r[0] >> 1) & 7;
	flags = (uint8_t)((r[0] & 0x80 ? 0 : TH_ACK) |
	    (r[0] & 0x10 ? TH_FIN : 0) | (r[0] & 0x20 ? TH_RST : 0) |
	    (r[0] & 0x40 ? TH_SYN : 0));
	want = r[1] < 192 ? r[1] : (size_t)(r[1] - 191) * 24;

	/* The ACK, from what this side received. */
	rel = (int64_t)(s->rnxt + s->rfin_in);
	switch (r[3] & 7) {
	case 2:
		a = rel - r[4] - 1;
		break;
	case 3:
		a = rel + r[4] + 1;
		break;
	case 4:
		a = (int64_t)s->rhi;
		break;
	case 5:
		a = 0;
		break;
	case 6:
		a = rel + FAR;
		break;
	case 7:
		a = s->last_ack;
		break;
	default:
		a = rel;
		break;
	}
	if ((flags & TH_ACK) && a > rel)
		s->honest = false;
	s->last_ack = a;

	/* Options: a timestamp, SACK blocks. */
	if (r[7] & 2) {
		memcpy(opt, "\x01\x01\x08\x0a", 4);
		pkt_put32(opt + 4, (uint32_t)nat_now() * 1000 + r[4]);
		pkt_put32(opt + 8, 0);
		optlen = 12;
	}
	nsack = (r[3] >> 3) & 3;
	if (nsack > 0) {
		uint32_t	 left[3], right[3];
		size_t		 n = 0, j = s->rnxt;

		if (r[3] & 0x20) {
			/* Blocks made up, relative to what came. */
			for (n = 0; n < nsack; n++) {
				left[n] = (uint32_t)(j + 1 + (r[4] + n * 37) *
				    8);
				right[n] = left[n] + 1 + r[5] + (uint32_t)n;
			}
		} else {
			/* What came out of order (RFC 2018). */
			while (n < nsack && j < s->rhi) {
				while (j < s->rhi &&
				    !(s->rhave[j / 8] & (1 << (j % 8))))
					j++;
				if (j >= s->rhi)
					break;
				left[n] = (uint32_t)j;
				while (j < s->rhi &&
				    (s->rhave[j / 8] & (1 << (j % 8))))
					j++;
				right[n++] = (uint32_t)j;
			}
		}
		if (n > 0) {
			memcpy(opt + optlen, "\x01\x01\x05", 3);
			opt[optlen + 3] = (uint8_t)(2 + 8 * n);
			optlen += 4;
			for (i = 0; i < n; i++) {
				pkt_put32(opt + optlen, peer->isn + 1 +
				    left[i]);
				pkt_put32(opt + optlen + 4, peer->isn + 1 +
				    right[i]);
				optlen += 8;
			}
		}
	}
	lim = seg_limit(c, (int)side, optlen);
	if (want > lim || mode == 7)
		want = lim;

	/* Where it starts. */
	switch (mode) {
	case 1:
		o = (int64_t)s->front - (int64_t)r[2] - 1;
		break;
	case 2:
		o = s->una;
		if (o < 0)
			o = 0;
		if ((int64_t)s->front > o)
			o += (int64_t)(r[2] * 8) % ((int64_t)s->front - o);
		break;
	case 3:
		o = (int64_t)s->front + 1 + r[2] * 4;
		break;
	case 4:
		far = true;
		o = (int64_t)s->front + ((r[2] & 1) ? -1 : 1) *
		    ((int64_t)FAR + (int64_t)(r[2] >> 1) * 65536);
		break;
	case 5:
		o = (int64_t)s->front - 1;
		break;
	case 6:
		o = 0;
		break;
	default:
		o = (int64_t)s->front;
		break;
	}
	if (!far) {
		if (o < 0)
			o = 0;
		if ((size_t)o > s->alen)
			o = (int64_t)s->alen;
		avail = s->alen - (size_t)o;
		len = want < avail ? want : avail;
		if (mode == 5 && len > 1)
			len = 1;
		if (flags & TH_FIN) {
			/* One place for its FIN, after all it sent. */
			if (s->fin_at < 0 && (size_t)o + len < s->smax)
				flags &= ~TH_FIN;
			else if (s->fin_at < 0) {
				s->fin_at = (long)((size_t)o + len);
				s->alen = (size_t)s->fin_at;
			} else if ((size_t)o + len != (size_t)s->fin_at)
				flags &= ~TH_FIN;
		}
		/* A bare segment after the FIN comes after it. */
		if (len == 0 && !(flags & (TH_FIN | TH_SYN)) && s->fin_sent &&
		    o == s->fin_at)
			o++;
		memcpy(data, s->app + o, len);
	} else {
		len = want;
		for (k = 0; k < len; k++)
			data[k] = (uint8_t)(o * 31 + k * 7);
	}
	if (flags & TH_SYN) {
		/*
		 * A SYN again: harmless as the first one, unchanged; else
		 * passed on as it came while the connection is open, or a
		 * new connection on the same ports once it is closed, which
		 * starts the gateway's state afresh (both ways if it has no
		 * ACK).
		 */
		if (far || o != 0 || s->smax > 0 || s->fin_sent || len > 0)
			c->taint[0] = c->taint[1] = true;
		s->mss = 0;	/* no MSS option on it */
	}
	if (flags & TH_RST) {
		/* The connection is over: what follows is anyone's guess. */
		c->reset = true;
		c->taint[0] = c->taint[1] = true;
	}

	cur.lose_data = (r[7] & 4) != 0;
	cur.lose_own = (r[7] & 8) != 0;
	s->win = pkt_get16(r + 5);
	if (!far)
		mark_sent(s, o, len, flags);
	feed(c, (int)side, o, peer->isn + 1 + (uint32_t)a, flags, s->win, opt,
	    optlen, data, len);
	/* An RST in the window reaches the other side (data or not). */
	if ((flags & TH_RST) && !far && !cur.jumped)
		CHECK(cur.rst_out);
	cur.lose_data = cur.lose_own = false;
	if (r[7] & 1) {
		/* The answers are lost. */
		for (i = 0; i < NCONN; i++)
			conns[i].s[0].pending = conns[i].s[1].pending = false;
	} else
		drain();
}

/*
 * Both endpoints close: each sends again everything not acknowledged,
 * then its FIN, a round a clock tick apart.
 */
static void
settle(void)
{
	struct conn	*c;
	struct side	*s;
	unsigned	 round, i, j;
	size_t		 start;

	for (round = 0; round < SETTLE_ROUNDS; round++) {
		for (i = 0; i < NCONN; i++) {
			c = &conns[i];
			if (!c->up)
				continue;
			for (j = 0; j < 2; j++) {
				s = &c->s[j];
				if (s->fin_at < 0) {
					s->fin_at = (long)s->smax;
					s->alen = s->smax;
				}
				if (s->una > s->fin_at)
					continue;
				start = s->una < 0 ? 0 : (size_t)s->una;
				send_data(c, (int)j, start,
				    (size_t)s->fin_at - start, TH_FIN);
			}
		}
		drain();
		tick(2);
		drain();
	}
}

/*
 * After closing, each followed direction is whole: the FIN acknowledged,
 * everything up to it received and nothing after; where the helper
 * changed nothing, exactly the sender's bytes.
 */
static void
check_closed(void)
{
	struct gauges	 g;
	struct conn	*c;
	struct side	*s, *r;
	size_t		 k;
	unsigned	 i, j;
	bool		 identity;

	gauges_read(&g);
	identity = g.rewritten == g0.rewritten && g.dropped == g0.dropped;
	for (i = 0; i < NCONN; i++) {
		c = &conns[i];
		if (!c->up || c->reset)
			continue;
		for (j = 0; j < 2; j++) {
			s = &c->s[j];
			r = &c->s[!j];
			if (c->taint[j] || !r->honest)
				continue;
			CHECK(s->fin_at >= 0 && s->fin_sent);
			CHECK(s->una == s->fin_at + 1);
			CHECK(r->rfin_in && r->rnxt == (size_t)r->rfin);
			for (k = r->rnxt; k < r->rhi; k++)
				CHECK(!(r->rhave[k / 8] & (1 << (k % 8))));
			if (identity) {
				CHECK(r->rfin == s->fin_at);
				CHECK(memcmp(r->rbuf, s->app,
				    (size_t)s->fin_at) == 0);
			}
		}
	}
}

/* Does the buffer hold the string? */
static bool
has_str(const uint8_t *p, size_t len, const char *str)
{
	return (memmem(p, len, str, strlen(str)) != NULL);
}

/* Did the side close between messages (a message cut goes as it is)? */
static bool
whole_messages(const struct side *s)
{
	unsigned	i;

	if (s->fin_at <= 0)
		return (true);
	for (i = 0; i < s->nbounds; i++)
		if (s->bounds[i] == (size_t)s->fin_at)
			return (true);
	return (false);
}

/*
 * With whole pool messages only and no stream degraded, what arrived no
 * longer names the phone (its way out) or the public address (its way
 * in).
 */
static void
check_names(void)
{
	struct gauges	 g;
	struct conn	*c;
	unsigned	 i;

	/*
	 * With SIP off names pass as they are: that is plain NAT, the
	 * switch working (a connection opened after the reload is never
	 * read, so nothing counts it as degraded).
	 */
	if (in.sip_off)
		return;
	gauges_read(&g);
	/* Past a limit a connection is passed on as it is. */
	if (g.degraded != g0.degraded || g.no_mapping != g0.no_mapping ||
	    g.dropped != g0.dropped || g.limit_memory != g0.limit_memory ||
	    g.limit_buffer != g0.limit_buffer)
		return;
	for (i = 0; i < NCONN; i++) {
		c = &conns[i];
		if (!c->up)
			continue;
		if (in.all_clean[S_PHONE] && !c->taint[S_PHONE] &&
		    whole_messages(&c->s[S_PHONE]))
			CHECK(!has_str(c->s[S_PROVIDER].rbuf,
			    c->s[S_PROVIDER].rnxt, "10.0.0.11"));
		if (in.all_clean[S_PROVIDER] && !c->taint[S_PROVIDER] &&
		    whole_messages(&c->s[S_PROVIDER]))
			CHECK(!has_str(c->s[S_PHONE].rbuf, c->s[S_PHONE].rnxt,
			    "203.0.113.1"));
	}
}

/*
 * Clean mode, one run: cut where the records say (ref false), or send
 * whole messages in the order the cut run completed them (ref true).
 */
static void
clean_run(const uint8_t *recs, size_t nrecs, bool ref)
{
	struct conn	*c = &conns[0];
	struct side	*s;
	size_t		 i, want, b, end;
	unsigned	 side, k, nev = nevents;

	conn_open(c, 0);
	recording = !ref;
	if (!ref) {
		nevents = 0;
		for (i = 0; i < nrecs; i++) {
			const uint8_t	*r = recs + i * REC_LEN;

			side = r[0] & 1;
			s = &c->s[side];
			want = r[1] < 192 ? r[1] : (size_t)(r[1] - 191) * 24;
			if (want == 0)
				want = 1;
			if (s->front >= s->alen)
				continue;
			if (want > s->alen - s->front)
				want = s->alen - s->front;
			send_data(c, (int)side, s->front, want, 0);
		}
	} else {
		for (i = 0; i < nev; i++) {
			side = (unsigned)events[i].side;
			s = &c->s[side];
			/* The messages that segment completed, whole. */
			for (b = s->ref_sent, k = 0; k < s->nbounds; k++)
				if (s->bounds[k] <= events[i].front)
					b = s->bounds[k];
			if (b > s->ref_sent) {
				send_data(c, (int)side, s->ref_sent,
				    b - s->ref_sent, 0);
				s->ref_sent = b;
			}
		}
	}
	recording = false;
	for (side = 0; side < 2; side++) {
		s = &c->s[side];
		end = s->alen;
		if (s->front < end)
			send_data(c, (int)side, s->front, end - s->front, 0);
	}
	for (side = 0; side < 2; side++) {
		s = &c->s[side];
		send_data(c, (int)side, s->alen, 0, TH_FIN);
	}
	drain();
}

/* What the set-up bytes ask for, and the configuration by hand. */
static void
setup(const uint8_t *data)
{
	static const uint32_t	 isns[4] = { 0x00001000, 0x7ffff800,
				    0xfffff000, 0 };
	unsigned		 prof;

	memset(&in, 0, sizeof in);
	memset(&cur, 0, sizeof cur);
	in.clean = data[0] & 1;
	in.no_synack = (data[0] & 0x10) != 0;
	in.tfo = (data[5] & 0x80) != 0 && !in.clean;
	in.port = data[0] & 0x20 ? SIP_PORT : (uint16_t)(40000 +
	    (data[5] & 0x7f) * 2);
	in.isn[S_PHONE] = isns[data[0] >> 6] +
	    (data[0] >> 6 == 3 ? (uint32_t)data[5] << 24 | 0x00abcdef : 0);
	in.isn[S_PROVIDER] = in.isn[S_PHONE] ^ 0x5a5a0000u;
	in.wan_mtu = mtus[data[1] & 7];
	in.tun_mtu = mtus[(data[1] >> 3) & 7];
	in.clamp = (data[1] & 0x40) == 0;
	in.mss[S_PHONE] = msss[data[2] & 0x0f];
	in.mss[S_PROVIDER] = msss[data[2] >> 4];

	config_defaults(&fz_conf);
	fz_conf.wan_addr = htonl(PUB);
	fz_conf.wan_mtu = (int)in.wan_mtu;
	fz_conf.tun_mtu = (int)in.tun_mtu;
	fz_conf.port_lo = PORT_LO;
	fz_conf.port_hi = PORT_HI;
	fz_conf.mss_clamp = in.clamp;
	fz_conf.max_sessions = 64;
	fz_conf.max_sessions_per_host = 64;
	fz_conf.max_pinholes = 256;
	fz_conf.frag_memory = 0;
	fz_conf.to_tcp_est = 86400;
	fz_conf.to_tcp_trans = 86400;
	fz_conf.sip_max_dialogs = 16;
	fz_conf.sip_max_registrations = 16;
	fz_conf.sip_drop_errors = (data[0] & 0x08) != 0;
	if (data[1] & 0x80)
		fz_conf.sip_max_message = 600;
	prof = (data[0] >> 1) & 3;
	if (prof & 1)
		fz_conf.stream_buffer = 64 + (size_t)data[6] * 16;
	if (prof & 2)
		fz_conf.stream_memory = (size_t)data[7] * 256 +
		    (prof & 1 ? 2 * fz_conf.stream_buffer : 0);
	in.memory_cap = fz_conf.stream_memory;
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool		 ready;
	static uint8_t		 got[2][RCV_MAX];
	static size_t		 gotlen[2];
	struct gauges		 g1, g2;
	const uint8_t		*msgs, *recs;
	size_t			 nrecs, rawlen, body;
	unsigned		 nout, nin, side;
	bool			 limited;

	if (!ready) {
		/* Keep the info lines (degraded streams) out of the way. */
		log_init(0, 0);
		setlogmask(LOG_UPTO(LOG_WARNING));
		ready = true;
	}
	if (size < HDR_LEN)
		return (0);
	nout = data[3] & 0x0f;
	nin = data[3] >> 4;
	if (nout > MAX_MSGS)
		nout = MAX_MSGS;
	if (nin > MAX_MSGS)
		nin = MAX_MSGS;
	if (size < HDR_LEN + nout + nin)
		return (0);
	body = size - HDR_LEN - nout - nin;
	rawlen = (size_t)data[4] * 4;
	if (rawlen > body)
		rawlen = body;
	msgs = data + HDR_LEN;
	recs = msgs + nout + nin;
	nrecs = (body - rawlen) / REC_LEN;
	if (nrecs > MAX_RECS)
		nrecs = MAX_RECS;

	setup(data);
	in.raw = data + size - rawlen;
	in.rawlen = rawlen;
	conn_reset(&conns[0], 0);
	conn_reset(&conns[1], 1);
	apps_build(msgs, nout, nin);

	gateway_up();
	if (!in.clean) {
		conn_open(&conns[0], 0);
		for (; nrecs > 0; nrecs--, recs += REC_LEN)
			chaos_record(recs);
		settle();
		check_closed();
		check_names();
		gateway_down();
		return (0);
	}

	/* Clean: cut where the records say, then whole, and compare. */
	clean_run(recs, nrecs, false);
	check_closed();
	check_names();
	gauges_read(&g1);
	limited = g1.limit_buffer != g0.limit_buffer ||
	    g1.limit_memory != g0.limit_memory;
	for (side = 0; side < 2; side++) {
		gotlen[side] = conns[0].s[side].rnxt;
		memcpy(got[side], conns[0].s[side].rbuf, gotlen[side]);
	}
	gateway_down();
	/* Only where the order of messages is known on both sides. */
	if (!in.all_framed && conns[0].s[0].alen > 0 &&
	    conns[0].s[1].alen > 0)
		return (0);
	conn_reset(&conns[0], 0);
	conn_reset(&conns[1], 1);
	in.rawpos = 0;
	apps_build(msgs, nout, nin);
	gateway_up();
	clean_run(recs, nrecs, true);
	check_closed();
	gauges_read(&g2);
	limited |= g2.limit_buffer != g0.limit_buffer ||
	    g2.limit_memory != g0.limit_memory;
	if (!limited) {
		for (side = 0; side < 2; side++) {
			CHECK(conns[0].s[side].rnxt == gotlen[side]);
			CHECK(memcmp(conns[0].s[side].rbuf, got[side],
			    gotlen[side]) == 0);
		}
	}
	gateway_down();
	return (0);
}

