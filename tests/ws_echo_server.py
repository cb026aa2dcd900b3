"""A gkit WebSocket echo server for the Autobahn run (``test_autobahn.py``).

Run as ``python tests/ws_echo_server.py [engine]``: it binds 127.0.0.1 on a
free port, prints ``PORT <n>`` on one line of stdout once it accepts, and
serves until its stdin closes (so it never outlives the test that started it).
"""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gkit import as_channel, run_server  # noqa: E402


def echo(environ, start_response):
    return as_channel(environ, on_receive=lambda ch, message: ch.send(message))


def main() -> None:
    engine = sys.argv[1] if len(sys.argv) > 1 else "httptools"
    server = run_server(echo, ip="127.0.0.1", port=0, http=engine, thread=None)
    print(f"PORT {server.port}", flush=True)
    # Serve until the parent closes our stdin (or dies).
    gevent.get_hub().threadpool.spawn(sys.stdin.read).get()
    server.stop(timeout=1)


if __name__ == "__main__":
    main()
