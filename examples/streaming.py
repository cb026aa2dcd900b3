"""Streaming: a message every 200 ms for 10 s, then the server closes
(the http-kit seed's streaming example, with ``schedule_task``).

    python -m gkit examples.streaming:app --port 8080
    curl -N http://127.0.0.1:8080/              # 50 lines, one every 0.2 s, then the end
    python -m websockets ws://127.0.0.1:8080/   # the same as 50 WebSocket messages

The same handler serves both transports: over HTTP each ``send`` is one
chunk of a chunked response and ``close()`` writes the last chunk; over a
WebSocket each ``send`` is one text message and ``close()`` sends close code
1000. ``?interval=0.05&duration=1`` changes the pace (seconds; bounded).

The seed schedules ten sends at ``id * 200`` ms and the close at 10 s; here
the sends go on for the whole ten seconds, as the seed's text describes. A
client that leaves early cancels the tasks still pending.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable
from typing import Any

from gkit import Channel, schedule_task, with_channel

INTERVAL = 0.2  # seconds between messages
DURATION = 10.0  # seconds until the server closes
LIMITS = {"interval": (0.01, 10.0), "duration": (0.0, 600.0)}


def _param(environ: dict[str, Any], name: str, default: float) -> float:
    """A float query parameter, clamped to LIMITS; the default if absent or bad."""
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    try:
        value = float(query[name][0])
    except (KeyError, ValueError):
        return default
    low, high = LIMITS[name]
    return default if math.isnan(value) else min(max(value, low), high)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Channel:
    """Stream ``message from server #N`` every ``interval`` s, close after ``duration`` s."""
    interval = _param(environ, "interval", INTERVAL)
    duration = _param(environ, "duration", DURATION)
    ch = with_channel(environ)
    if not ch.is_open:  # a refused WebSocket handshake: already answered 400
        return ch
    if not ch.is_websocket:
        # Status and headers go with the first send; later ones are chunks.
        # nosniff: browsers then show text/plain chunks as they come.
        ch.send(
            {
                "status": 200,
                "headers": {
                    "Content-Type": "text/plain; charset=utf-8",
                    "X-Content-Type-Options": "nosniff",
                },
                "body": "",
            },
            close_after_send=False,
        )
    newline = "" if ch.is_websocket else "\n"
    count = int(duration / interval + 1e-9)
    tasks = [
        schedule_task(i * interval, ch.send, f"message from server #{i}{newline}", False)
        for i in range(count)
    ]
    tasks.append(schedule_task(duration, ch.close))

    def closed(status: str) -> None:
        for task in tasks:
            task.cancel()  # no-op for tasks that already ran

    ch.on_close(closed)
    return ch
