"""gevent.pywsgi with TCP_NODELAY on every accepted socket.

Stock pywsgi writes the response head and body in two ``send`` calls; without
TCP_NODELAY the second one waits for a delayed ACK and keep-alive throughput
drops to a few thousand requests per second (see shared/PERF-NOTES.md). Setting
NODELAY makes the comparison with gkit fair. The access log is off, as it is
in gkit, gunicorn and granian by default.

    python loadtests/peers/pywsgi_nodelay.py examples.hello:app --port 8080
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse
import importlib
import socket
import sys
from collections.abc import Callable
from typing import Any

from gevent.pywsgi import WSGIServer


class NoDelayWSGIServer(WSGIServer):
    """A WSGIServer that sets TCP_NODELAY before handling a connection."""

    def handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def load_app(target: str) -> Callable[..., Any]:
    """Import ``module:attribute`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr or "app")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="WSGI app as module:attribute")
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-nodelay", action="store_true", help="stock pywsgi: leave Nagle on")
    args = parser.parse_args(argv)
    sys.path.insert(0, ".")
    server_class = WSGIServer if args.no_nodelay else NoDelayWSGIServer
    server = server_class((args.ip, args.port), load_app(args.app), log=None, backlog=2048)
    server.serve_forever()


if __name__ == "__main__":
    main()
