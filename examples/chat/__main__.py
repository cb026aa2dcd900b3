"""``python -m examples.chat [--ip 127.0.0.1] [--port 8090] [--redis URL]``

Serves the chat with gkit and prints the URL. Without ``--redis`` (or
``REDIS_URL``) the rooms live in this process; with it (which is also the server's
gkit.hub), every process that
points at the same Redis shares them.
"""
from gevent import monkey

monkey.patch_all()  # first: redis-py and everything below get cooperative sockets

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any, List, Optional  # noqa: E402

import gevent  # noqa: E402

from gkit import run_server  # noqa: E402

from .app import ChatApp  # noqa: E402
from .hub import LocalHub  # noqa: E402

log = logging.getLogger("gkit.chat")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.chat",
        description="A realtime chat (WebSocket with long-polling fallback) served by gkit.")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; "
                        "0.0.0.0 to let others in)")
    p.add_argument("--port", type=int, default=8090, help="port (default 8090; 0 picks a free one)")
    p.add_argument("--redis", default=os.environ.get("REDIS_URL") or None, metavar="URL",
                   help="share rooms through Redis, e.g. redis://127.0.0.1:6379/0 "
                        "(default: $REDIS_URL, else rooms live in this process)")
    p.add_argument("--redis-prefix", default="gkit-chat",
                   help="prefix of the Redis keys and channel (default gkit-chat)")
    p.add_argument("--poll-timeout", type=float, default=25.0, metavar="SECONDS",
                   help="how long a long poll waits for a message (default 25)")
    p.add_argument("--poll-grace", type=float, default=15.0, metavar="SECONDS",
                   help="a polling client that stopped polling is announced as gone "
                        "after this long (default 15)")
    p.add_argument("--max-buffered", type=int, default=1024 * 1024, metavar="BYTES",
                   help="drop a client once this many bytes wait unsent to it (default 1 MiB)")
    p.add_argument("--access-log", action="store_true",
                   help="also log every HTTP request (gkit.access logger)")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gkit.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    hub: Any
    if args.redis:
        from .redis_hub import RedisHub
        try:
            hub = RedisHub(args.redis, prefix=args.redis_prefix)
        except ValueError as e:
            print(f"bad --redis URL {args.redis!r}: {e} (expected redis://host:port/db)",
                  file=sys.stderr)
            return 2
        log.info("hub: Redis at %s (rooms shared with every process using it)", hub.safe_url)
    else:
        hub = LocalHub()
        log.info("hub: in-process (start with --redis URL to share rooms between processes)")
    app = ChatApp(hub, poll_timeout=args.poll_timeout, poll_grace=args.poll_grace)
    server = run_server(app, ip=args.ip, port=args.port, thread=None, hub=hub.url,
                        max_ws=64 * 1024, max_body=64 * 1024, max_buffered=args.max_buffered)
    host = f"[{args.ip}]" if ":" in args.ip else args.ip
    url = f"http://{host}:{server.port}/"
    log.info("chat serving on %s", url)
    print(f"gkit chat on {url}", flush=True)

    def stop() -> None:
        log.info("stopping: closing connections")
        server.stop(timeout=2.0)

    gevent.signal_handler(signal.SIGTERM, stop)
    try:
        server.join()
    except KeyboardInterrupt:
        stop()
    app.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
