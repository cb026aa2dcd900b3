"""A fleet of WebSocket subscribers in one client process (epoll, no asyncio):
used by bench_hub.py and c100k.py, one process per few thousand connections.

    python loadtests/hub_fleet.py --port P --count N --expect K [--src 127.7]

Connects N WebSockets to ``/sub`` (at most ``--window`` handshakes in flight;
with ``--src 127.A`` each socket binds to a source address 127.A.x.y first,
so 100,000 connections do not run out of ephemeral ports), waits for each
one's first frame (the server's "subscribed"), prints one JSON line
``{"held": .., "failed": .., "seconds": ..}``, then reads frames until every
connection got K messages (or ``--wait`` seconds pass) and prints a second
JSON line: per message seq, the latest arrival minus the publish time the
message carries (``"<seq> <time.monotonic() at publish>"``: CLOCK_MONOTONIC
is one clock for all processes), how many arrived, and how many connections
closed. Frames are parsed by hand: the servers send small unmasked frames.
"""
from __future__ import annotations

import argparse
import errno
import json
import resource
import select
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
CONNECTING, HANDSHAKE, WAIT_FIRST, OPEN = range(4)


class Conn:
    __slots__ = ("sock", "state", "buf", "got")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = CONNECTING
        self.buf = b""
        self.got = 0


def frames(buf: bytes):
    """Complete (opcode, payload) frames in buf, and the rest."""
    out = []
    pos = 0
    n = len(buf)
    while n - pos >= 2:
        b1 = buf[pos + 1] & 0x7F
        head = 2
        if b1 == 126:
            if n - pos < 4:
                break
            b1 = int.from_bytes(buf[pos + 2:pos + 4], "big")
            head = 4
        elif b1 == 127:
            if n - pos < 10:
                break
            b1 = int.from_bytes(buf[pos + 2:pos + 10], "big")
            head = 10
        if n - pos < head + b1:
            break
        out.append((buf[pos] & 0x0F, buf[pos + head:pos + head + b1]))
        pos += head + b1
    return out, buf[pos:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="WebSocket subscribers for bench_hub.py / c100k.py")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/sub")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--expect", type=int, default=1, help="messages each connection waits for")
    p.add_argument("--src", default=None, help="bind sources to 127.A.x.y (e.g. 127.7)")
    p.add_argument("--window", type=int, default=256, help="handshakes in flight")
    p.add_argument("--connect-timeout", type=float, default=120.0)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for all messages")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.count + 16 > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 64), hard))
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    ep = select.epoll()
    conns = {}
    started = 0
    inflight = 0
    held = failed = 0
    t_start = time.monotonic()
    deadline = t_start + args.connect_timeout

    def fail(fd: int) -> None:
        nonlocal failed, inflight
        c = conns.pop(fd)
        ep.unregister(fd)
        c.sock.close()
        failed += 1
        inflight -= 1

    while (started < args.count or inflight) and time.monotonic() < deadline:
        while started < args.count and inflight < args.window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            if args.src:
                i = started
                s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((f"{args.src}.{i // 250 % 250}.{i % 250 + 1}", 0))
            err = s.connect_ex((args.host, args.port))
            started += 1
            if err not in (0, errno.EINPROGRESS):
                s.close()
                failed += 1
                continue
            conns[s.fileno()] = Conn(s)
            ep.register(s.fileno(), select.EPOLLOUT)
            inflight += 1
        for fd, ev in ep.poll(0.5):
            c = conns.get(fd)
            if c is None:
                continue
            if ev & (select.EPOLLERR | select.EPOLLHUP):
                fail(fd)
                continue
            try:
                if c.state == CONNECTING:
                    c.sock.send(request)
                    c.state = HANDSHAKE
                    ep.modify(fd, select.EPOLLIN)
                    continue
                data = c.sock.recv(65536)
            except OSError:
                fail(fd)
                continue
            if not data:
                fail(fd)
                continue
            c.buf += data
            if c.state == HANDSHAKE:
                if b"\r\n\r\n" not in c.buf:
                    continue
                head, c.buf = c.buf.split(b"\r\n\r\n", 1)
                if not head.startswith(b"HTTP/1.1 101"):
                    fail(fd)
                    continue
                c.state = WAIT_FIRST
            if c.state == WAIT_FIRST:
                got, c.buf = frames(c.buf)
                if got:
                    c.state = OPEN
                    held += 1
                    inflight -= 1
    for fd in [fd for fd, c in conns.items() if c.state != OPEN]:
        fail(fd)
    seconds = time.monotonic() - t_start
    print(json.dumps({"held": held, "failed": failed, "seconds": round(seconds, 3)}), flush=True)

    # Receive phase.
    latest = {}
    counts = {}
    closed = 0
    done = 0
    need = args.expect
    end = time.monotonic() + args.wait
    while done < len(conns) and time.monotonic() < end:
        events = ep.poll(1.0)
        now = time.monotonic()
        for fd, _ in events:
            c = conns.get(fd)
            if c is None:
                continue
            try:
                data = c.sock.recv(262144)
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                closed += 1
                if c.got < need:
                    done += 1
                continue
            got, c.buf = frames(c.buf + data)
            for opcode, payload in got:
                if opcode not in (1, 2):
                    continue
                seq, t0 = payload.split(b" ", 2)[:2]
                lat = now - float(t0)
                key = int(seq)
                if lat > latest.get(key, -1.0):
                    latest[key] = lat
                counts[key] = counts.get(key, 0) + 1
                c.got += 1
                if c.got == need:
                    done += 1
    print(json.dumps({"latest": latest, "counts": counts, "closed": closed,
                      "complete": sum(1 for c in conns.values() if c.got >= need)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
