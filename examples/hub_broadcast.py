"""gkit.hub: one publish reaches WebSocket, streaming and long-poll clients
in every process.

    python -m gkit examples.hub_broadcast:app --port 8080                     # one process
    python -m gkit examples.hub_broadcast:app --port 8080 --workers 3 \\
        --hub redis://127.0.0.1:6379/0                                      # shared via Redis

    python -m websockets ws://127.0.0.1:8080/ws        # a WebSocket subscriber
    curl -N http://127.0.0.1:8080/stream               # a streaming subscriber
    curl http://127.0.0.1:8080/poll                    # a long poll: the next message
    curl 'http://127.0.0.1:8080/publish?msg=hello'     # publish from a view
    python -c "import gkit.hub; gkit.hub.publish_to('redis://127.0.0.1:6379/0', 'news', 'hi')"

Every process also runs a plain OS thread (not a greenlet) that publishes
the time on topic ``clock`` every 10 s (``/ws?topic=clock`` to watch it).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Iterable, List
from urllib.parse import parse_qs

from gevent.monkey import get_original

import gkit.hub
from gkit import HubUnavailable, with_channel

_clock_started: List[int] = []


def _clock(hub: gkit.hub.Hub) -> None:   # a real OS thread: the hub hands its
    while not hub.closed:                   # publishes over to the server's loop
        time.sleep(10)
        try:
            hub.publish("clock", f"{time.strftime('%H:%M:%S')} from pid {os.getpid()}")
        except HubUnavailable as exc:
            print(exc)


def _start_clock() -> None:
    if os.getpid() not in _clock_started:     # once per process, after any fork
        _clock_started.append(os.getpid())
        get_original("_thread", "start_new_thread")(_clock, (gkit.hub.current(),))


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    _start_clock()
    query = parse_qs(environ.get("QUERY_STRING", ""))
    topic = query.get("topic", ["news"])[0]
    path = environ["PATH_INFO"]
    if path in ("/ws", "/poll"):
        ch = with_channel(environ)
        gkit.hub.subscribe(topic, ch)     # unsubscribed by itself once closed
        return ch
    if path == "/stream":
        ch = with_channel(environ)
        ch.send({"status": 200, "headers": {"Content-Type": "text/plain; charset=utf-8"},
                 "body": f"subscribed to {topic}\n"}, close_after_send=False)
        gkit.hub.subscribe(topic, ch, close_after_send=False)   # one chunk per message
        return ch
    if path == "/publish":
        message = query.get("msg", ["hello"])[0]
        try:
            gkit.hub.publish(topic, message)
        except HubUnavailable as exc:      # Redis is down: nothing was delivered
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [str(exc).encode()]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"published\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"gkit.hub example: /ws /stream /poll subscribe, /publish?msg=... publishes\n"]


if __name__ == "__main__":   # python examples/hub_broadcast.py [HUB_URL]
    import sys

    from gevent import monkey
    monkey.patch_all()
    from gkit import run_server
    server = run_server(app, port=8080, hub=sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"serving on http://127.0.0.1:{server.port}/ (hub {server.pubsub.safe_url})")
    server.join()
