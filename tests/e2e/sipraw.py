#!/usr/bin/env python3
"""Raw UDP for the SIP ALG tests.
  mkmsg OUT        stdin (LF lines) -> OUT with CRLF; "Content-Length: auto"
                   becomes the body's length
  recv --bind A:P [--bind A:P ...] --dir D [--timeout S] [--echo]
                   keep each datagram as D/N.bin, print "N from IP:PORT to
                   PORT len L sha256 H"; --echo sends datagrams up to 1400
                   bytes back as they came
  send --bind A:P --to A:P FILE... [--echo-wait S] [--pmtudisc dont]
                   send each file, print "sent FILE len L sha256 H"; with
                   --echo-wait, then print "echo len L sha256 H from IP:PORT"
                   for each datagram back within S seconds
"""
import hashlib, os, select, socket, sys, time

def hp(s):
    a, p = s.rsplit(":", 1)
    return (a, int(p))

def h(b):
    return hashlib.sha256(b).hexdigest()

def mkmsg(out):
    text = sys.stdin.read()
    if "\n\n" in text:
        head, body = text.split("\n\n", 1)
    else:
        head, body = text.rstrip("\n"), ""
    body = body.replace("\n", "\r\n").encode()
    head = head.replace("Content-Length: auto",
                        "Content-Length: %d" % len(body))
    data = head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body
    open(out, "wb").write(data)

def recv(args):
    binds, d, timeout, echo = [], None, 30.0, False
    while args:
        k = args.pop(0)
        if k == "--bind":
            binds.append(hp(args.pop(0)))
        elif k == "--dir":
            d = args.pop(0)
        elif k == "--timeout":
            timeout = float(args.pop(0))
        elif k == "--echo":
            echo = True
    os.makedirs(d, exist_ok=True)
    socks = []
    for b in binds:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind(b)
        socks.append(s)
    print("ready", flush=True)
    n = 0
    while True:
        r = select.select(socks, [], [], timeout)[0]
        if not r:
            break
        for s in r:
            data, peer = s.recvfrom(65535)
            n += 1
            open(os.path.join(d, "%d.bin" % n), "wb").write(data)
            print("%d from %s:%d to %d len %d sha256 %s" % (
                n, peer[0], peer[1], s.getsockname()[1], len(data), h(data)),
                flush=True)
            if echo and len(data) <= 1400:
                s.sendto(data, peer)

def send(args):
    bind, to, files, wait, pmtu = None, None, [], 0.0, None
    while args:
        k = args.pop(0)
        if k == "--bind":
            bind = hp(args.pop(0))
        elif k == "--to":
            to = hp(args.pop(0))
        elif k == "--echo-wait":
            wait = float(args.pop(0))
        elif k == "--pmtudisc":
            pmtu = args.pop(0)
        else:
            files.append(k)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if pmtu == "dont":
        s.setsockopt(socket.IPPROTO_IP, 10, 0)	# IP_MTU_DISCOVER: DONT
    if bind:
        s.bind(bind)
    for f in files:
        data = open(f, "rb").read()
        s.sendto(data, to)
        print("sent %s len %d sha256 %s" % (f, len(data), h(data)),
              flush=True)
        time.sleep(0.05)
    end = time.monotonic() + wait
    while wait:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        data, peer = s.recvfrom(65535)
        print("echo len %d sha256 %s from %s:%d" % (len(data), h(data),
              peer[0], peer[1]), flush=True)

mode = sys.argv[1]
if mode == "mkmsg":
    mkmsg(sys.argv[2])
elif mode == "recv":
    recv(sys.argv[2:])
elif mode == "send":
    send(sys.argv[2:])
else:
    sys.exit("sipraw: unknown mode %s" % mode)
