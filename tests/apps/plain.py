"""A plain WSGI app for the gunicorn worker tests, run in a separate process
(``gunicorn -k gkit.gunicorn.Worker tests.apps.plain:app``), so everything it
does is driven by the request itself (timers, not test-side events):

- ``/hello``: ``hello from gkit\\n``;
- ``/pid``: the worker's process id;
- ``/greenlet``: the name of the greenlet the app runs in (gkit names its
  worker greenlets ``worker-N``);
- ``/env``: JSON of a few environ keys (REMOTE_ADDR, wsgi.url_scheme, ...) and
  the HTTP engine serving it;
- ``/slow?s=S``: streams ``started\\n``, computes for S seconds, then ``done\\n``;
- ``/stream``: a channel stream of chunks ``chunk 0\\n`` .. ``chunk 2\\n``,
  0.2 s apart;
- ``/poll``: a long poll answered 0.2 s later by a timer, ``polled <pid>``;
- ``/ws``: WebSocket echo.
"""
import json
import os
from urllib.parse import parse_qs

import gevent

from gkit import async_response, with_channel
from gkit.timer import schedule_task

from . import websocket_echo

STREAM_GAP = 0.2


def _text(start_response, body, status="200 OK"):
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def _stream(environ):
    ch = with_channel(environ)
    ch.send({"status": 200, "headers": {"Content-Type": "text/plain"}, "body": "chunk 0\n"},
            close_after_send=False)

    def more(n):
        ch.send(f"chunk {n}\n", close_after_send=n == 2)
        if n < 2:
            schedule_task(STREAM_GAP, more, n + 1)
    schedule_task(STREAM_GAP, more, 1)
    return ch


def _poll(environ):
    respond = async_response(environ)
    schedule_task(STREAM_GAP, respond, {"status": 200, "headers": {"Content-Type": "text/plain"},
                                        "body": f"polled {os.getpid()}"})
    return []


def _slow(environ, start_response):
    seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0])
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"started\n"
    gevent.sleep(seconds)
    yield b"done\n"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        return _text(start_response, "hello from gkit\n")
    if path == "/pid":
        return _text(start_response, f"{os.getpid()}\n")
    if path == "/greenlet":
        return _text(start_response, getattr(gevent.getcurrent(), "name", "?"))
    if path == "/env":
        keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "wsgi.multiprocess", "wsgi.multithread",
                "SERVER_SOFTWARE")
        facts = {k: environ.get(k) for k in keys}
        facts["engine"] = environ["gkit.connection"].engine
        return _text(start_response, json.dumps(facts))
    if path == "/slow":
        return _slow(environ, start_response)
    if path == "/stream":
        return _stream(environ)
    if path == "/poll":
        return _poll(environ)
    if path == "/ws":
        return websocket_echo(environ)
    return _text(start_response, "not found\n", "404 Not Found")
