"""A long-poll hub with broadcast (the http-kit seed's long-polling example).

    python -m gkit examples.longpoll:app --port 8080
    curl http://127.0.0.1:8080/poll                              # parks...
    curl -d 'hello everyone' http://127.0.0.1:8080/broadcast     # ...answers it

Routes:

- ``GET /poll`` parks the request on a channel until the next broadcast,
  which answers it with the broadcast's body (200, text/plain). After
  ``?timeout=`` seconds (default 30, at most 3600) without one it gets
  ``204 No Content`` so that the client polls again before a proxy cuts it.
- ``POST /broadcast`` (or ``/send``; the body, or ``?msg=``, is the message)
  answers every parked poll and itself answers ``{"delivered": n}``.
- ``GET /stats`` answers ``{"waiting": n}``: how many polls are parked.

A parked poll holds a channel, not a worker greenlet: ``--thread 4`` serves
thousands of them. Everything runs in gevent's one thread, so the hub is a
plain dict with no lock. ``async_response(environ)`` would do as well as
``with_channel`` for the parking; the channel is used here for its
``on_close``, which takes a client that gives up off the hub at once.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from gkit import Channel, schedule_task, with_channel

POLL_TIMEOUT = 30.0  # seconds a poll stays parked without a broadcast
MAX_POLL_TIMEOUT = 3600.0
MAX_MESSAGE = 65536  # bytes a broadcast may carry

TEXT = {"Content-Type": "text/plain; charset=utf-8"}

# The parked polls: channel -> its timeout task.
waiting: dict[Channel, Any] = {}


def broadcast(message: bytes) -> int:
    """Answer every parked poll with ``message``; returns how many got it."""
    parked = list(waiting.items())
    waiting.clear()
    delivered = 0
    for ch, timeout_task in parked:
        timeout_task.cancel()
        if ch.send({"status": 200, "headers": TEXT, "body": message}):
            delivered += 1
    return delivered


def _park(environ: dict[str, Any]) -> Channel:
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    try:
        timeout = float(query["timeout"][0])
    except (KeyError, ValueError):
        timeout = POLL_TIMEOUT
    if not 0.0 <= timeout <= MAX_POLL_TIMEOUT:  # also false for nan
        timeout = POLL_TIMEOUT
    ch = with_channel(environ)

    def expire() -> None:
        if waiting.pop(ch, None) is not None:
            ch.send({"status": 204, "headers": {}, "body": b""})

    waiting[ch] = schedule_task(timeout, expire)

    def gone(status: str) -> None:  # the client left, or the server stops
        task = waiting.pop(ch, None)
        if task is not None:
            task.cancel()

    ch.on_close(gone)
    return ch


def _json(start_response: Callable[..., Any], status: str, data: Any) -> list[bytes]:
    body = json.dumps(data).encode() + b"\n"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _read_message(environ: dict[str, Any]) -> bytes | None:
    """The broadcast's message: ``?msg=`` or the request body; None if too big."""
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if "msg" in query:
        return query["msg"][0].encode("utf-8")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_MESSAGE:
        return None
    return environ["wsgi.input"].read(length) if length else b""


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | Channel:
    """The hub's routes: GET /poll, POST /broadcast (or /send), GET /stats."""
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "/")
    if path == "/poll" and method == "GET":
        return _park(environ)
    if path in ("/broadcast", "/send"):
        if method != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
            return []
        message = _read_message(environ)
        if message is None:
            return _json(
                start_response,
                "413 Content Too Large",
                {"error": f"a broadcast carries at most {MAX_MESSAGE} bytes"},
            )
        return _json(start_response, "200 OK", {"delivered": broadcast(message)})
    if path == "/stats" and method == "GET":
        return _json(start_response, "200 OK", {"waiting": len(waiting)})
    return _json(
        start_response, "404 Not Found", {"error": "try GET /poll, POST /broadcast or GET /stats"}
    )
