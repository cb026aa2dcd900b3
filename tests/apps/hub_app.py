"""The app of the gkit.hub tests: subscribers of every kind and publishers
of every kind, in one WSGI app served in-process or by ``python -m gkit``.

- ``/ws?topic=T``: a WebSocket subscriber; its first frame is
  ``subscribed <pid>``, sent once the subscription is in effect.
- ``/stream?topic=T``: an HTTP streaming subscriber (one chunk per message);
  its first chunk is ``subscribed <pid>\\n``.
- ``/sse?topic=T``: a server-sent events subscriber (one event per message).
- ``/poll?topic=T&ready=R``: a long poll answered by the next message; once
  subscribed it publishes ``R`` on topic ``ready`` (so a test knows it is parked).
- ``/publish?topic=T&msg=M[&msg=...]``: publishes each ``M`` from this view
  (``bin:`` prefix: as bytes); 200 ``published N``, 503 with the hub's error.
- ``/thread?topic=T&msg=...``: publishes them from a new real OS thread
  (not a greenlet); 202 at once.
- ``/count?topic=T``: this process's subscriber count for T, and its pid.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List
from urllib.parse import parse_qs

from gevent.monkey import get_original

import gkit.hub
from gkit import HubUnavailable, sse_channel, with_channel

start_os_thread = get_original("_thread", "start_new_thread")


def _message(text: str) -> Any:
    return text[4:].encode() if text.startswith("bin:") else text


def _answer(start_response: Callable[..., Any], status: str, body: str) -> List[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def _publish_all(topic: str, messages: List[str]) -> None:
    for text in messages:
        gkit.hub.publish(topic, _message(text))


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    topic = query.get("topic", ["t"])[0]
    path = environ["PATH_INFO"]
    pid = os.getpid()
    if path == "/ws":
        ch = with_channel(environ)
        gkit.hub.subscribe(topic, ch)
        ch.send(f"subscribed {pid}")
        return ch
    if path == "/stream":
        ch = with_channel(environ)
        ch.send({"status": 200, "headers": {"Content-Type": "text/plain"},
                 "body": f"subscribed {pid}\n"}, close_after_send=False)
        gkit.hub.subscribe(topic, ch, close_after_send=False)
        return ch
    if path == "/sse":
        ch = sse_channel(environ)
        gkit.hub.subscribe(topic, ch)     # one event per message
        return ch
    if path == "/poll":
        ch = with_channel(environ)
        gkit.hub.subscribe(topic, ch)
        gkit.hub.publish("ready", query.get("ready", [""])[0])
        return ch
    if path == "/publish":
        try:
            _publish_all(topic, query.get("msg", []))
        except HubUnavailable as exc:
            return _answer(start_response, "503 Service Unavailable", str(exc))
        return _answer(start_response, "200 OK", f"published {len(query.get('msg', []))}")
    if path == "/thread":
        start_os_thread(_publish_all, (topic, query.get("msg", [])))
        return _answer(start_response, "202 Accepted", "publishing from a thread")
    if path == "/count":
        return _answer(start_response, "200 OK", f"{gkit.hub.current().subscribers(topic)} {pid}")
    if path == "/hello":
        return _answer(start_response, "200 OK", "hello")
    return _answer(start_response, "404 Not Found", "no such path")
