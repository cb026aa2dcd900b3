"""Server-sent events: a numbered tick stream that resumes where the browser left off.

    python -m gkit examples.sse:app --port 8080
    open http://127.0.0.1:8080/                  # the page shows the ticks (EventSource)
    curl -N http://127.0.0.1:8080/events         # the raw stream
    curl -N -H 'Last-Event-ID: 41' http://127.0.0.1:8080/events   # resumes at 42

Routes:

- ``GET /events`` answers with an event stream (``sse_channel``): one event
  ``tick N`` with ``id: N`` every ``?every=`` seconds (default 0.5). A client
  that reconnects sends the last id it saw as ``Last-Event-ID`` (the browser's
  ``EventSource`` does so by itself, after ``retry`` = 1 s), and the stream goes on
  from the next number, so a server restart loses no tick. Each connection
  prints ``events: connected, Last-Event-ID=...`` on stdout.
- ``GET /`` is a page that shows the ticks.

Each stream is one greenlet that sleeps between ticks and stops when ``send_event``
returns False (the client left, or the server stops). Quiet streams would get a
heartbeat comment every 15 s (``sse_channel``'s default), so proxies keep them.
"""
from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import gevent

from gkit import SseChannel, sse_channel

PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>gkit server-sent events</title>
<h1>ticks</h1><p id="state">connecting</p><ol id="log"></ol>
<script>
  window.seen = [];
  const source = new EventSource('/events' + location.search);
  source.onopen = () => { document.getElementById('state').textContent = 'open'; };
  source.onerror = () => { document.getElementById('state').textContent = 'reconnecting'; };
  source.onmessage = (e) => {
    window.seen.push(e.lastEventId);
    const li = document.createElement('li');
    li.textContent = e.data;
    document.getElementById('log').append(li);
  };
</script>
"""


def _ticks(ch: SseChannel, first: int, every: float) -> None:
    n = first
    while ch.send_event(f"tick {n}", id=str(n)):
        n += 1
        gevent.sleep(every)


def _events(environ: dict[str, Any]) -> SseChannel:
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    try:
        every = min(max(float(query["every"][0]), 0.01), 60.0)
    except (KeyError, ValueError):
        every = 0.5
    ch = sse_channel(environ, retry=1.0)
    last = ch.last_event_id
    print(f"events: connected, Last-Event-ID={last}", flush=True)
    first = int(last) + 1 if last is not None and last.isdigit() else 1
    gevent.spawn(_ticks, ch, first, every)
    return ch


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | SseChannel:
    """GET /events: the stream; GET /: the page."""
    path = environ.get("PATH_INFO", "/")
    if path == "/events":
        return _events(environ)
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(PAGE)))])
        return [PAGE]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"try / or /events\n"]
