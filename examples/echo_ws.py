"""WebSocket echo: every message comes back to its sender, text as text,
binary as binary (http-kit's ``with-channel`` + ``on-receive`` example).

    python -m gkit examples.echo_ws:app --port 8080
    python -m websockets ws://127.0.0.1:8080/      # type a line, get it back

A plain HTTP request (no ``Upgrade: websocket``) gets a one-line text
answer, so ``curl http://127.0.0.1:8080/`` shows the server is up.
loadtests/bench_ws.py and loadtests/autobahn_limits.py serve this app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gkit import Channel, with_channel

PLAIN_BODY = b"gkit echo: connect with a WebSocket client to get your messages back\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | Channel:
    """Echo every WebSocket message; answer plain HTTP with a short text."""
    if "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(PLAIN_BODY))),
            ],
        )
        return [PLAIN_BODY]
    ch = with_channel(environ)  # a bad handshake is answered 400 and ch comes back closed
    # ch.send sends a str back as a text frame and bytes as a binary frame.
    ch.on_receive(ch.send)
    return ch
