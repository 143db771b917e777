#!/usr/bin/env python3
"""SIP over TCP, scripted, for test-sip-tcp-stream.sh: a phone and a
provider that play the same fixed series of steps over one connection and
check every byte that arrives.

  provider --bind A:P --private A:P [--dir D] [--timeout S]
           [--forge-syn-after STEP]
           take one connection; print "public IP:PORT" (the peer, as
           accept() gives it); for each step read its requests and check
           each is byte for byte the phone's request with the --private
           A:P (the phone's address and port, as its Via and Contact name
           them) turned into that public IP:PORT; answer each step as the
           step says, with responses built from what arrived (after STEP,
           also send a SYN with a random ISN on the connection's ports
           from a raw socket, as a forger would); then wait for the
           phone's FIN and send its own
  phone    --bind A:P --to A:P [--dir D] [--timeout S] [--pause S]
           connect from --bind (its Via and Contact name it); for each
           step send its requests as the step says and check each
           response is byte for byte the response the provider builds
           from the request as sent (the provider copies Via, From, To,
           Call-ID, CSeq and a REGISTER's Contact, so that this is the
           provider's response with the public IP:PORT turned back into
           --bind); then send its FIN and wait for the provider's
  compare  --sent D --got D --prefix req|resp --replace OLD NEW
           for each PREFIX-NN.bin in --sent, check --got has it with OLD
           turned into NEW (the two ends' --dir after a run: what one end
           sent against what the other received)

Both ends set TCP_NODELAY.  Ways of sending a step's messages: "bytes"
one byte a send with a pause (--pause, 2 ms) after each, so each byte is
its own segment; "whole" all in one send; "straddle" the first message and
half of the second in one send, the rest 0.3 s later.  Each end prints a
line per message ("req 03 ok len 412" or "req 03 WRONG ..." with the
first difference), "closed: FIN both ways" once its FIN is acknowledged
and the other's has arrived, and a last line "verdict ok: ..." (exit 0)
or "verdict FAIL: ..." (exit 1).  With --dir, each end keeps every
message sent and received as D/req-NN.bin and D/resp-NN.bin.

Every message names the phone's address only in the Via sent-by and the
Contact (no body names it), so that a SIP ALG's rewrite changes nothing
else, Content-Length included.  test-sip-tcp-stream.sh drops segments of
some messages with nftables, matching the first bytes of the payload, so
these are unique: a request starting "INFO", "NOTIFY" or "PUBLISH"; a
response starting "SIP/2.0 202" (a short one, then a long one); a segment
starting inside the body of "Z"s of step "gap" (from the phone) or inside
its answer's body of "Y"s (from the provider).
"""
import argparse
import os
import re
import socket
import struct
import sys
import time

TAG = "siptcp"


class Step:
    """Requests, how the phone sends them and how the provider answers.
    A request is (method, body bytes, response code, reason, response
    body bytes, body filler): without a filler a body is numbered lines
    of text, with one it is that byte over and over."""

    def __init__(self, name, reqs, send, answer):
        self.name, self.reqs, self.send, self.answer = name, reqs, send, answer


STEPS = [
    Step("bytes", [("OPTIONS", 0, 200, "OK", 0, None)], "bytes", "whole"),
    Step("pair", [("REGISTER", 0, 200, "OK", 0, None),
                  ("MESSAGE", 120, 200, "OK", 0, None)], "whole", "whole"),
    Step("straddle", [("OPTIONS", 0, 200, "OK", 0, None),
                      ("MESSAGE", 200, 200, "OK", 0, None)],
         "straddle", "straddle"),
    Step("lost-lan", [("INFO", 60, 200, "OK", 0, None)], "whole", "bytes"),
    Step("lost-wan", [("NOTIFY", 0, 200, "OK", 0, None)], "whole", "whole"),
    Step("lost-reply", [("MESSAGE", 80, 202, "Accepted", 0, None)],
         "whole", "whole"),
    Step("big", [("MESSAGE", 3000, 200, "OK", 3000, None)], "whole", "whole"),
    Step("gap", [("MESSAGE", 3600, 200, "OK", 3600, b"Z")], "whole", "whole"),
    Step("lost-big", [("PUBLISH", 3000, 202, "Accepted", 3000, None)],
         "whole", "whole"),
]

TCP_INFO_LEN = 104
TCP_CLOSE = 7
STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
          5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
          9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def text(n, what, fill=None):
    """n bytes of text that name no address."""
    if fill:
        return fill * n
    out = b""
    i = 0
    while len(out) < n:
        out += b"%s line %04d: no address in here, only words.\r\n" % (
            what.encode(), i)
        i += 1
    return out[:n]


def request(n, method, blen, fill, private, provider):
    """The phone's request number n (1-based), as the phone sends it."""
    host = provider[0]
    if method == "REGISTER":
        uri, to = "sip:%s" % host, "<sip:alice@example.net>"
    else:
        uri, to = "sip:bob@%s" % host, "<sip:bob@%s>" % host
    lines = [
        "%s %s SIP/2.0" % (method, uri),
        "Via: SIP/2.0/TCP %s;branch=z9hG4bK-%s-%02d" % (private, TAG, n),
        "Max-Forwards: 70",
        "From: <sip:alice@example.net>;tag=%s-phone" % TAG,
        "To: %s" % to,
        "Call-ID: %s-%02d@phone.example.net" % (TAG, n),
        "CSeq: %d %s" % (n, method),
        "Contact: <sip:alice@%s;transport=tcp>" % private,
    ]
    if method == "REGISTER":
        lines.append("Expires: 60")
    if method == "NOTIFY":
        lines += ["Event: message-summary",
                  "Subscription-State: terminated;reason=timeout"]
    if method == "PUBLISH":
        lines += ["Event: presence", "Expires: 60"]
    lines.append("User-Agent: sipnat-e2e-siptcp")
    body = text(blen, "request %02d" % n, fill)
    if body:
        lines.append("Content-Type: text/plain")
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def header_lines(msg, name):
    """The lines of a message's head whose header is name (lower case)."""
    head = msg.partition(b"\r\n\r\n")[0]
    return [l for l in head.split(b"\r\n")[1:]
            if l.partition(b":")[0].strip().lower() == name]


def response(n, code, reason, blen, fill, req):
    """The provider's response to a request as it arrived: Via, From, To
    (with a tag), Call-ID and CSeq copied, and a REGISTER's Contact with
    ;expires=60."""
    out = [b"SIP/2.0 %d %s" % (code, reason.encode())]
    out += header_lines(req, b"via")
    out += header_lines(req, b"from")
    out += [l + b";tag=%s-prov-%02d" % (TAG.encode(), n)
            for l in header_lines(req, b"to")]
    out += header_lines(req, b"call-id")
    cseq = header_lines(req, b"cseq")
    out += cseq
    if cseq and cseq[0].split()[-1] == b"REGISTER":
        out += [l + b";expires=60" for l in header_lines(req, b"contact")]
    out.append(b"Server: sipnat-e2e-siptcp")
    body = text(blen, "response %02d" % n, fill and bytes([fill[0] - 1]))
    if body:
        out.append(b"Content-Type: text/plain")
    out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def numbered():
    """(step, n, request tuple) for every request, n from 1."""
    n = 0
    for st in STEPS:
        for r in st.reqs:
            n += 1
            yield st, n, r


class Stalled(Exception):
    pass


class Reader:
    """Frames SIP messages from a stream: head, then Content-Length."""

    def __init__(self, sock, timeout):
        self.s, self.buf, self.timeout = sock, b"", timeout

    def fill(self, end, what):
        left = end - time.monotonic()
        if left <= 0:
            raise Stalled("nothing more for %gs while waiting for %s "
                          "(have %d bytes: %r)" % (self.timeout, what,
                                                   len(self.buf),
                                                   self.buf[:80]))
        self.s.settimeout(left)
        try:
            data = self.s.recv(65536)
        except socket.timeout:
            data = None
        except OSError as e:
            raise Stalled("%s while waiting for %s" % (e, what))
        if data == b"":
            raise Stalled("the connection closed while waiting for %s "
                          "(have %d bytes: %r)" % (what, len(self.buf),
                                                   self.buf[:80]))
        if data:
            self.buf += data
            return True
        return False

    def message(self, what):
        end = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            if self.fill(end, what):
                end = time.monotonic() + self.timeout
        head = self.buf.partition(b"\r\n\r\n")[0]
        m = re.search(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*$",
                      head, re.M | re.I)
        if not m:
            raise Stalled("%s has no Content-Length: %r" % (what, head[:200]))
        total = len(head) + 4 + int(m.group(1))
        while len(self.buf) < total:
            if self.fill(end, what):
                end = time.monotonic() + self.timeout
        msg, self.buf = self.buf[:total], self.buf[total:]
        return msg

    def eof(self):
        """Read to the end: the bytes that came after the last message."""
        end = time.monotonic() + self.timeout
        extra = self.buf
        self.buf = b""
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Stalled("no FIN within %gs after the last message"
                              % self.timeout)
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                raise Stalled("%s while waiting for the FIN" % e)
            if not data:
                return extra
            extra += data


def differ(exp, got):
    """Where two messages first differ, with the lines there."""
    i = 0
    while i < min(len(exp), len(got)) and exp[i] == got[i]:
        i += 1
    ls = exp.rfind(b"\n", 0, i) + 1
    return ("first difference at byte %d (expected %d bytes, got %d): "
            "expected %r, got %r" % (i, len(exp), len(got),
                                     exp[ls:exp.find(b"\r", i) if
                                         exp.find(b"\r", i) >= 0 else None],
                                     got[ls:got.find(b"\r", i) if
                                         got.find(b"\r", i) >= 0 else None]))


def send(sock, msgs, how, pause):
    """Send a step's messages as the step says; the number of sends."""
    data = b"".join(msgs)
    if how == "bytes":
        for i in range(len(data)):
            sock.send(data[i:i + 1])
            time.sleep(pause)
        return len(data)
    if how == "straddle" and len(msgs) >= 2:
        cut = len(msgs[0]) + len(msgs[1]) // 2
        sock.sendall(data[:cut])
        time.sleep(0.3)
        sock.sendall(data[cut:])
        return 2
    sock.sendall(data)
    return 1


def keep(d, name, data):
    if d:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def tcp_info(sock):
    """(state, total retransmits) from TCP_INFO."""
    b = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
    total = struct.unpack_from("I", b, 100)[0] if len(b) >= 104 else -1
    return b[0], total


def closed(sock, timeout):
    """Wait for the socket to reach CLOSE: our FIN acknowledged and the
    other's received.  The state it ended in."""
    end = time.monotonic() + timeout
    while True:
        state = tcp_info(sock)[0]
        if state == TCP_CLOSE or time.monotonic() > end:
            return state
        time.sleep(0.02)


class Verdict:
    def __init__(self):
        self.wrong = []

    def check(self, what, exp, got):
        if exp == got:
            print("%s ok len %d" % (what, len(got)), flush=True)
            return
        print("%s WRONG: %s" % (what, differ(exp, got)), flush=True)
        self.wrong.append(what)

    def end(self, ok_text, stalled=None):
        if stalled:
            print("verdict FAIL: %s%s" % (stalled, "; also wrong: " +
                  ", ".join(self.wrong) if self.wrong else ""), flush=True)
            return 1
        if self.wrong:
            print("verdict FAIL: wrong bytes in %s" % ", ".join(self.wrong),
                  flush=True)
            return 1
        print("verdict ok: %s" % ok_text, flush=True)
        return 0


def finish(sock, reader, v, timeout, first):
    """Close both ways: FIN first if first, else after the other's.
    Returns a reason it failed, or None."""
    if first:
        sock.shutdown(socket.SHUT_WR)
    extra = reader.eof()
    if extra:
        v.wrong.append("%d bytes after the last message: %r"
                       % (len(extra), extra[:80]))
    if not first:
        sock.shutdown(socket.SHUT_WR)
    state = closed(sock, timeout)
    if state != TCP_CLOSE:
        return ("the connection did not close: stuck in %s (FIN not "
                "acknowledged)" % STATES.get(state, state))
    print("closed: FIN both ways, retransmits %d" % tcp_info(sock)[1],
          flush=True)
    return None


def checksum(data):
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def forge_syn(src, dst):
    """A SYN from src to dst with a random ISN, sent from a raw socket: the
    kernel's own connection on those ports knows nothing of it."""
    isn = struct.unpack("!I", os.urandom(4))[0]
    hdr = struct.pack("!HHIIBBHHH", src[1], dst[1], isn, 0, 5 << 4, 0x02,
                      65535, 0, 0)
    pseudo = (socket.inet_aton(src[0]) + socket.inet_aton(dst[0])
              + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(hdr)))
    hdr = hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    r.bind((src[0], 0))
    r.sendto(hdr, (dst[0], 0))
    r.close()


def provider(a):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(addr(a.bind))
    ls.listen(1)
    ls.settimeout(a.timeout)
    print("ready", flush=True)
    try:
        c, peer = ls.accept()
    except socket.timeout:
        print("verdict FAIL: no connection within %gs" % a.timeout)
        return 1
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    public = "%s:%d" % peer
    print("public %s" % public, flush=True)
    rd, v = Reader(c, a.timeout), Verdict()
    private = a.private.encode()
    steps = {}
    for st, n, r in numbered():
        steps.setdefault(st, []).append((n, r))
    nmsg = 0
    try:
        for st in STEPS:
            t0 = time.monotonic()
            resps = []
            for n, (method, blen, code, reason, rlen, fill) in steps[st]:
                exp = request(n, method, blen, fill, a.private,
                              addr(a.bind)).replace(private, public.encode())
                got = rd.message("request %02d (%s, step %s)"
                                 % (n, method, st.name))
                keep(a.dir, "req-%02d.bin" % n, got)
                v.check("req %02d %s (step %s)" % (n, method, st.name),
                        exp, got)
                resp = response(n, code, reason, rlen, fill, got)
                keep(a.dir, "resp-%02d.bin" % n, resp)
                resps.append(resp)
                nmsg += 1
            k = send(c, resps, st.answer, a.pause)
            print("step %s: %d requests in %.2fs, answered (%s) in %d sends"
                  " of %d bytes" % (st.name, len(resps),
                                    time.monotonic() - t0, st.answer, k,
                                    sum(map(len, resps))), flush=True)
            if st.name == a.forge_syn_after:
                forge_syn(addr(a.bind), peer)
                print("forged SYN sent to %s" % public, flush=True)
        why = finish(c, rd, v, a.timeout, first=False)
    except Stalled as e:
        return v.end(None, "stalled: %s" % e)
    if why:
        return v.end(None, why)
    return v.end("%d requests arrived byte for byte (%s turned into %s), "
                 "%d responses sent, closed cleanly" % (nmsg, a.private,
                                                        public, nmsg))


def phone(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr(a.bind))
    s.settimeout(a.timeout)
    try:
        s.connect(addr(a.to))
    except OSError as e:
        print("verdict FAIL: connect: %s" % e, flush=True)
        return 1
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("connected %s:%d" % s.getsockname(), flush=True)
    rd, v = Reader(s, a.timeout), Verdict()
    steps = {}
    for st, n, r in numbered():
        steps.setdefault(st, []).append((n, r))
    nmsg = 0
    try:
        for st in STEPS:
            t0 = time.monotonic()
            reqs = []
            for n, (method, blen, code, reason, rlen, fill) in steps[st]:
                reqs.append(request(n, method, blen, fill, a.bind,
                                    addr(a.to)))
                keep(a.dir, "req-%02d.bin" % n, reqs[-1])
            k = send(s, reqs, st.send, a.pause)
            print("step %s: sent %d requests (%s) in %d sends of %d bytes"
                  % (st.name, len(reqs), st.send, k, sum(map(len, reqs))),
                  flush=True)
            for (n, (method, blen, code, reason, rlen, fill)), req in zip(
                    steps[st], reqs):
                exp = response(n, code, reason, rlen, fill, req)
                got = rd.message("the response to request %02d (%s, step "
                                 "%s)" % (n, method, st.name))
                keep(a.dir, "resp-%02d.bin" % n, got)
                v.check("resp %02d %d %s (step %s)" % (n, code, method,
                                                       st.name), exp, got)
                nmsg += 1
            print("step %s: answered in %.2fs" % (st.name,
                                                 time.monotonic() - t0),
                  flush=True)
        why = finish(s, rd, v, a.timeout, first=True)
    except Stalled as e:
        return v.end(None, "stalled: %s" % e)
    if why:
        return v.end(None, why)
    return v.end("%d responses arrived byte for byte (the public address "
                 "turned back into %s), closed cleanly" % (nmsg, a.bind))


def compare(a):
    old, new = a.replace
    bad = n = 0
    for f in sorted(os.listdir(a.sent)):
        if not re.fullmatch(r"%s-[0-9]+\.bin" % re.escape(a.prefix), f):
            continue
        n += 1
        with open(os.path.join(a.sent, f), "rb") as fh:
            exp = fh.read().replace(old.encode(), new.encode())
        try:
            with open(os.path.join(a.got, f), "rb") as fh:
                got = fh.read()
        except OSError:
            print("%s: not received" % f)
            bad += 1
            continue
        if exp != got:
            print("%s: %s" % (f, differ(exp, got)))
            bad += 1
    print("compared %d %s messages: %d differ" % (n, a.prefix, bad))
    return 1 if bad or not n else 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["provider", "phone", "compare"])
    p.add_argument("--bind")
    p.add_argument("--to")
    p.add_argument("--private")
    p.add_argument("--dir")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--pause", type=float, default=0.002)
    p.add_argument("--forge-syn-after", metavar="STEP")
    p.add_argument("--sent")
    p.add_argument("--got")
    p.add_argument("--prefix", choices=["req", "resp"])
    p.add_argument("--replace", nargs=2, metavar=("OLD", "NEW"))
    a = p.parse_args()
    if a.dir:
        os.makedirs(a.dir, exist_ok=True)
    if a.mode == "compare":
        return compare(a)
    if a.mode == "provider":
        return provider(a)
    return phone(a)


if __name__ == "__main__":
    sys.exit(main())
