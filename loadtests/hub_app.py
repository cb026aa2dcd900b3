"""The gkit side of bench_hub.py and c100k.py: ``/sub`` subscribes a WebSocket
to topic ``bench`` (first frame ``subscribed``); every text frame sent to
``/pub`` is published on it.

    gkit loadtests.hub_app:app --hub redis://127.0.0.1:6379/0 --workers 4
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable

import gkit.hub
from gkit import with_channel


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/sub":
        ch = with_channel(environ)
        gkit.hub.subscribe("bench", ch)
        ch.send("subscribed")
        return ch
    if path == "/pub":
        ch = with_channel(environ)
        ch.on_receive(lambda message: gkit.hub.publish("bench", message))
        return ch
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
