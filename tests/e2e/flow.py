#!/usr/bin/env python3
"""Traffic endpoints for the end-to-end tests: real sockets in namespaces.

  udp-echo  --bind A:P [--timeout S]        answer each datagram with
            [--reply-size N]                 "seen IP:PORT <payload>"
                                             (padded or cut to N bytes)
  udp-send  --to A:P [--bind A:P] [--count N] [--interval S] [--timeout S]
            [--size N] [--no-reply]          send; print each reply's text;
                                             exit 0 if every datagram got one
                                             (with --no-reply, if none did)
  udp-recv  --bind A:P [--timeout S] [--count N]
                                             print "IP:PORT len" per datagram;
                                             exit 0 if any arrived
  tcp-sink  --bind A:P [--timeout S] [--mss] take one connection, print
                                             "peer IP:PORT bytes N sha256 H"
                                             (--mss: then " mss M", the
                                             connection's TCP_MAXSEG)
  tcp-send  --to A:P --bytes N [--bind A:P]  send N seeded bytes, print
                                             "bytes N sha256 H"
  tcp-echo  --bind A:P [--timeout S]         echo every connection (several
                                             at once) until idle S seconds
  tcp-chat  --to A:P [--bind A:P] [--interval S] [--until FILE] [--count N]
            [--timeout S]                    one connection: send a numbered
                                             line every S seconds and check
                                             its echo, printing "connected
                                             IP:PORT" then "echo I" each;
                                             with --until, go on until FILE
                                             exists (the wait ends early when
                                             it appears), then one last line;
                                             else N lines.  Exit 0 if every
                                             line came back, else print
                                             "error ..." and exit 1
  tcp-serve --bind A:P --bytes N [--timeout S] [--until FILE]
                                             take one connection, send it N
                                             seeded bytes (with --until,
                                             once FILE exists), then print
                                             "peer IP:PORT bytes N sha256 H"
  tcp-fetch --to A:P [--bind A:P] [--timeout S]
                                             connect, print "connected
                                             IP:PORT", read to the end, print
                                             "local IP:PORT bytes N sha256 H"
  udp-recv --to A:P first sends one datagram ("punch", --size bytes) to
  A:P from the receiving socket (hole punching).
  udp-send --print-peer adds " from IP:PORT" (the reply's source) to each
  reply line.
  UDP modes take --pmtudisc want|dont|do|probe (IP_MTU_DISCOVER: "dont"
  sends without DF).
  rtp       --bind A:P [--to A:P | --to-file F] [--count N] [--interval S]
            [--until F] [--mark F] [--timeout S] [--pt N]
                                             symmetric RTP on one socket:
                                             send N packets (--count 0, the
                                             default: no limit) every S
                                             seconds (0.02) to --to, or to
                                             the "A:P" written in F once F
                                             exists (F is read again before
                                             each packet: a new A:P moves the
                                             stream), and count the RTP that
                                             arrives.  Prints "ready", then
                                             "tx IP:PORT" when sending starts
                                             or moves, "rx IP:PORT" at the
                                             first packet from a source; at
                                             the end "sent N" and per source
                                             "received N from IP:PORT" and,
                                             with --mark F, "before-mark N
                                             from IP:PORT" and "after-mark N
                                             from IP:PORT" (F did not exist,
                                             or did, when the packet came).
                                             Ends when --until F exists, on
                                             SIGTERM or SIGINT, or once there
                                             is nothing left to send and
                                             nothing came for --timeout S
                                             (0: never).  Exit 0 if any RTP
                                             came or, when sending, all N
                                             were sent
  rtp-send  the same as rtp (--to or --to-file)
  rtp-count the same as rtp, receiving only: exit 0 if any RTP came
"""
import argparse
import hashlib
import os
import random
import select
import signal
import socket
import struct
import sys
import time

PMTUDISC = {"dont": 0, "want": 1, "do": 2, "probe": 3}
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def udp_sock(bind, pmtudisc=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if pmtudisc:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC[pmtudisc])
    if bind:
        s.bind(addr(bind))
    return s


def udp_echo(a):
    s = udp_sock(a.bind, a.pmtudisc)
    s.settimeout(a.timeout)
    print("ready", flush=True)
    try:
        while True:
            data, peer = s.recvfrom(65535)
            reply = b"seen %s:%d " % (peer[0].encode(), peer[1]) + data
            if a.reply_size:
                reply = reply.ljust(a.reply_size, b"x")[:a.reply_size]
            s.sendto(reply, peer)
    except socket.timeout:
        return 0


def udp_send(a):
    s = udp_sock(a.bind, a.pmtudisc)
    s.settimeout(a.timeout)
    got = 0
    for i in range(a.count):
        payload = (b"ping %d " % i).ljust(a.size, b"x")
        s.sendto(payload, addr(a.to))
        try:
            data, peer = s.recvfrom(65535)
            words = data.split(b" ")
            extra = " from %s:%d" % peer if a.print_peer else ""
            print("%s %d%s" % (words[1].decode(), len(data), extra),
                  flush=True)
            got += 1
        except socket.timeout:
            print("timeout", flush=True)
        except OSError as e:
            print("error %s" % e, flush=True)
        if i + 1 < a.count:
            time.sleep(a.interval)
    if a.no_reply:
        return 0 if got == 0 else 1
    return 0 if got == a.count else 1


def udp_recv(a):
    s = udp_sock(a.bind, a.pmtudisc)
    s.settimeout(a.timeout)
    n = 0
    if a.to:
        s.sendto(b"punch".ljust(a.size, b"x"), addr(a.to))
    print("ready", flush=True)
    try:
        while a.count == 0 or n < a.count:
            data, peer = s.recvfrom(65535)
            print("%s:%d %d" % (peer[0], peer[1], len(data)), flush=True)
            n += 1
    except socket.timeout:
        pass
    return 0 if n > 0 else 1


def tcp_sink(a):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(addr(a.bind))
    ls.listen(1)
    ls.settimeout(a.timeout)
    print("ready", flush=True)
    c, peer = ls.accept()
    c.settimeout(a.timeout)
    h = hashlib.sha256()
    n = 0
    while True:
        data = c.recv(65536)
        if not data:
            break
        h.update(data)
        n += len(data)
    line = "peer %s:%d bytes %d sha256 %s" % (peer[0], peer[1], n,
                                             h.hexdigest())
    if a.mss:
        line += " mss %d" % c.getsockopt(socket.IPPROTO_TCP,
                                         socket.TCP_MAXSEG)
    print(line, flush=True)
    return 0


def tcp_send(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if a.bind:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr(a.bind))
    s.settimeout(a.timeout)
    s.connect(addr(a.to))
    rng = random.Random(a.seed)
    h = hashlib.sha256()
    left = a.bytes
    while left > 0:
        n = min(left, 65536)
        chunk = rng.randbytes(n)
        s.sendall(chunk)
        h.update(chunk)
        left -= n
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    print("bytes %d sha256 %s" % (a.bytes, h.hexdigest()), flush=True)
    return 0


def tcp_echo(a):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(addr(a.bind))
    ls.listen(16)
    print("ready", flush=True)
    conns = []
    while True:
        r = select.select([ls] + conns, [], [], a.timeout)[0]
        if not r:
            return 0
        for c in r:
            if c is ls:
                conns.append(ls.accept()[0])
                continue
            try:
                data = c.recv(65536)
            except OSError:
                data = b""
            if data:
                c.sendall(data)
            else:
                conns.remove(c)
                c.close()


def tcp_chat(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if a.bind:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr(a.bind))
    s.settimeout(a.timeout)
    try:
        s.connect(addr(a.to))
    except OSError as e:
        print("error connect: %s" % e, flush=True)
        return 1
    print("connected %s:%d" % s.getsockname(), flush=True)
    i, last = 0, False
    while True:
        line = b"line %d\n" % i
        try:
            s.sendall(line)
            got = b""
            while len(got) < len(line):
                data = s.recv(len(line) - len(got))
                if not data:
                    raise OSError("connection closed")
                got += data
        except OSError as e:
            print("error line %d: %s" % (i, e or "timeout"), flush=True)
            return 1
        if got != line:
            print("error line %d: echo %r" % (i, got), flush=True)
            return 1
        print("echo %d" % i, flush=True)
        i += 1
        if last or (not a.until and i >= a.count):
            break
        end = time.monotonic() + a.interval
        while time.monotonic() < end:
            if a.until and os.path.exists(a.until):
                break
            time.sleep(min(0.05, max(0, end - time.monotonic())))
        if a.until and os.path.exists(a.until):
            last = True
    s.close()
    return 0


def tcp_serve(a):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(addr(a.bind))
    ls.listen(1)
    ls.settimeout(a.timeout)
    print("ready", flush=True)
    c, peer = ls.accept()
    c.settimeout(a.timeout)
    if a.until:
        end = time.monotonic() + a.timeout
        while not os.path.exists(a.until):
            if time.monotonic() > end:
                print("error no %s" % a.until, flush=True)
                return 1
            time.sleep(0.05)
    rng = random.Random(a.seed)
    h = hashlib.sha256()
    left = a.bytes
    while left > 0:
        n = min(left, 65536)
        chunk = rng.randbytes(n)
        c.sendall(chunk)
        h.update(chunk)
        left -= n
    c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
    c.close()
    print("peer %s:%d bytes %d sha256 %s" % (peer[0], peer[1], a.bytes,
                                             h.hexdigest()), flush=True)
    return 0


def tcp_fetch(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if a.bind:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr(a.bind))
    s.settimeout(a.timeout)
    s.connect(addr(a.to))
    local = s.getsockname()
    print("connected %s:%d" % local, flush=True)
    h = hashlib.sha256()
    n = 0
    while True:
        data = s.recv(65536)
        if not data:
            break
        h.update(data)
        n += len(data)
    s.close()
    print("local %s:%d bytes %d sha256 %s" % (local[0], local[1], n,
                                              h.hexdigest()), flush=True)
    return 0


class RtpStop(Exception):
    pass


def rtp_stop(signum, frame):
    raise RtpStop()


def rtp_target(a, cur):
    """Where RTP goes: --to, or the A:P in --to-file once it is valid."""
    if a.to:
        return addr(a.to)
    if not a.to_file:
        return None
    try:
        with open(a.to_file) as f:
            host, port = addr(f.read().strip())
        socket.inet_aton(host)
        if 0 < port < 65536:
            return host, port
    except (OSError, ValueError):
        pass
    return cur


def rtp(a):
    s = udp_sock(a.bind, a.pmtudisc)
    signal.signal(signal.SIGTERM, rtp_stop)
    signal.signal(signal.SIGINT, rtp_stop)
    rng = random.Random("%d %s" % (os.getpid(), a.bind))
    ssrc, seq, ts = rng.getrandbits(32), rng.getrandbits(16), 0
    payload = b"\xff" * 160		# 20 ms of PCMU silence
    sending = a.mode != "rtp-count" and bool(a.to or a.to_file)
    target, sent, other = None, 0, 0
    got = {}				# source: [before mark, after mark]
    now = time.monotonic()
    next_tx = last = now
    print("ready", flush=True)
    try:
        while not (a.until and os.path.exists(a.until)):
            now = time.monotonic()
            more = sending and (a.count == 0 or sent < a.count)
            if more and now >= next_tx:
                t = rtp_target(a, target)
                if t is not None and t != target:
                    target = t
                    print("tx %s:%d" % target, flush=True)
                if target is not None:
                    pkt = struct.pack("!BBHII", 0x80, a.pt & 0x7f,
                                      seq & 0xffff, ts & 0xffffffff, ssrc)
                    try:
                        s.sendto(pkt + payload, target)
                        sent += 1
                    except OSError as e:
                        print("error %s" % e, flush=True)
                    seq, ts, last = seq + 1, ts + 160, now
                next_tx = max(next_tx + a.interval, now)
                continue
            if not more and a.timeout > 0 and now - last >= a.timeout:
                break
            wait = min(max(next_tx - now, 0), 0.05) if more else 0.05
            if not select.select([s], [], [], wait)[0]:
                continue
            try:
                data, peer = s.recvfrom(65535)
            except OSError:
                continue
            last = time.monotonic()
            if len(data) < 12 or data[0] >> 6 != 2:
                other += 1
                continue
            src = "%s:%d" % peer
            if src not in got:
                got[src] = [0, 0]
                print("rx %s" % src, flush=True)
            got[src][1 if a.mark and os.path.exists(a.mark) else 0] += 1
    except RtpStop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    print("sent %d" % sent, flush=True)
    for src in sorted(got):
        print("received %d from %s" % (sum(got[src]), src))
        if a.mark:
            print("before-mark %d from %s" % (got[src][0], src))
            print("after-mark %d from %s" % (got[src][1], src))
    if other:
        print("not-rtp %d" % other)
    sys.stdout.flush()
    if a.mode == "rtp-count" or not sending:
        return 0 if got else 1
    return 0 if got or (a.count and sent >= a.count) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["udp-echo", "udp-send", "udp-recv",
                                    "tcp-sink", "tcp-send", "tcp-echo",
                                    "tcp-chat", "tcp-serve", "tcp-fetch",
                                    "rtp", "rtp-send", "rtp-count"])
    p.add_argument("--bind")
    p.add_argument("--to")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--bytes", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-reply", action="store_true")
    p.add_argument("--pmtudisc", choices=sorted(PMTUDISC))
    p.add_argument("--reply-size", type=int, default=0)
    p.add_argument("--mss", action="store_true")
    p.add_argument("--until")
    p.add_argument("--print-peer", action="store_true")
    p.add_argument("--to-file")
    p.add_argument("--mark")
    p.add_argument("--pt", type=int, default=0)
    a = p.parse_args()
    if a.mode == "udp-recv" and "--count" not in sys.argv:
        a.count = 0
    if a.mode.startswith("rtp"):
        if "--count" not in sys.argv:
            a.count = 0
        if "--interval" not in sys.argv:
            a.interval = 0.02
    fn = {"udp-echo": udp_echo, "udp-send": udp_send, "udp-recv": udp_recv,
          "tcp-sink": tcp_sink, "tcp-send": tcp_send, "tcp-echo": tcp_echo,
          "tcp-chat": tcp_chat, "tcp-serve": tcp_serve,
          "tcp-fetch": tcp_fetch, "rtp": rtp, "rtp-send": rtp,
          "rtp-count": rtp}[a.mode]
    return fn(a)


if __name__ == "__main__":
    sys.exit(main())
