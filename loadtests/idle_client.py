"""Client side of bench_idle.py: hold many idle keep-alive connections.

Opens ``--conns`` connections to 127.0.0.1:PORT (at most ``--concurrency``
being opened at once), sends one keep-alive ``GET /`` on each and reads the
whole response, then keeps them all open and idle. It talks to its parent over
stdin/stdout, one JSON object per line:

- when every connection is open (or ``--open-timeout`` passed) it prints
  ``{"opened": n, "failed": m, "seconds": t, "error": first error or null}``;
- on the input line ``check`` it prints ``{"still_open": n}``: connections
  the server has not closed;
- on end of input it resets every connection (SO_LINGER 0: no TIME_WAIT
  left behind) and exits.

SIGALRM bounds the whole run to ``--open-timeout + --hold`` seconds even if
the parent never closes stdin.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time

import gevent
import gevent.pool
import gevent.socket

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HEAD_END = b"\r\n\r\n"


def read_response(sock: gevent.socket.socket) -> None:
    """Read one whole 200 response with a Content-Length; raise unless the
    connection stays open after it."""
    data = b""
    while HEAD_END not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed before the response head")
        data += chunk
    head, _, body = data.partition(HEAD_END)
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200"):
        raise ConnectionError(f"unexpected status line {lines[0]!r}")
    headers = dict(line.lower().split(":", 1) for line in lines[1:])
    if headers.get("connection", "").strip() == "close":
        raise ConnectionError("server answered Connection: close")
    if "content-length" not in headers:
        raise ConnectionError("response has no Content-Length")
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed in the middle of the body")
        body += chunk


def open_one(port: int) -> gevent.socket.socket:
    """Connect, complete one keep-alive request, and return the idle socket."""
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(REQUEST)
        read_response(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def open_all(port: int, conns: int, concurrency: int, timeout: float) -> tuple[list[gevent.socket.socket], dict]:
    """Open ``conns`` connections; returns the open sockets and a report."""
    started = time.monotonic()
    pool = gevent.pool.Pool(concurrency)
    jobs = [pool.spawn(open_one, port) for _ in range(conns)]
    if not pool.join(timeout=timeout):
        pool.kill(block=True, timeout=5)
    sockets = [job.value for job in jobs if job.successful()]
    errors = [repr(job.exception) for job in jobs if job.ready() and job.exception is not None]
    report = {
        "opened": len(sockets),
        "failed": conns - len(sockets),
        "seconds": round(time.monotonic() - started, 2),
        "error": errors[0] if errors else ("timed out" if len(sockets) < conns else None),
    }
    return sockets, report


def count_open(sockets: list[gevent.socket.socket]) -> int:
    """Sockets with nothing to read: a readable idle socket means the server
    closed it (or sent something unasked)."""
    poller = select.poll()
    for sock in sockets:
        poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return len(sockets) - len(poller.poll(0))


def reset_all(sockets: list[gevent.socket.socket]) -> None:
    linger = struct.pack("ii", 1, 0)
    for sock in sockets:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass  # already reset by the server: closing is all that is left
        sock.close()


def say(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=100, help="connections being opened at once")
    parser.add_argument("--open-timeout", type=float, default=120.0)
    parser.add_argument("--hold", type=float, default=120.0, help="longest time to hold the connections")
    args = parser.parse_args(argv)
    signal.alarm(int(args.open_timeout + args.hold) + 1)  # default action: terminate

    sockets, report = open_all(args.port, args.conns, args.concurrency, args.open_timeout)
    say(report)
    for line in sys.stdin:
        if line.strip() == "check":
            say({"still_open": count_open(sockets)})
    reset_all(sockets)


if __name__ == "__main__":
    main()
