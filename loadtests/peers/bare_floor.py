"""The floor: bare gevent, no HTTP parsing, one greenlet per connection.

Each connection's greenlet reads until CRLFCRLF, writes a canned
``Hello, World!`` response, and goes back to blocking in ``recv`` (a request
that says ``Connection: close`` gets the reply and the close). Nothing a
real HTTP server can do costs less per connection on gevent, so
loadtests/bench_idle.py uses it as the floor gkit is measured against.

    python loadtests/peers/bare_floor.py --port 8080
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse
import socket
from typing import Any

from gevent.server import StreamServer

BODY = b"Hello, World!"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
REPLY = HEAD + b"\r\n" + BODY
REPLY_CLOSE = HEAD + b"Connection: close\r\n\r\n" + BODY
HEAD_END = b"\r\n\r\n"


def handle(sock: socket.socket, address: Any) -> None:
    """Answer one canned reply per request head, until the peer goes away."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
            heads = buffer.count(HEAD_END)
            if not heads:
                continue
            if b"connection: close" in buffer.lower():
                sock.sendall(REPLY * (heads - 1) + REPLY_CLOSE)
                return
            buffer = buffer[buffer.rindex(HEAD_END) + len(HEAD_END):]
            sock.sendall(REPLY * heads)
    except OSError:
        return  # the client reset the connection: nothing to answer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    StreamServer((args.ip, args.port), handle, backlog=2048).serve_forever()


if __name__ == "__main__":
    main()
