"""The realtime libraries people already have, unchanged, in one WSGI app
(issue 10): served by ``gkit tests.apps.realtime:app`` and
``gunicorn -k gkit.gunicorn.Worker tests.apps.realtime:app`` in
``tests/test_realtime_libs.py``.

- ``/socket.io/``: Flask-SocketIO, ``async_mode`` left to auto-detect;
- ``/sio-gevent/``, ``/sio-threading/``: ``socketio.WSGIApp`` in those modes;
  each Socket.IO server has ``echo`` (answers with an ack), ``shout``
  (broadcasts ``news`` to every client) and ``whoami`` (the transport's
  async mode and whether gevent-websocket served it);
- ``/sock/echo``: flask-sock's echo example;
- ``/gws/...``: an app written for gevent-websocket (``environ["wsgi.websocket"]``):
  echo; a message ``close CODE REASON`` closes with that code; ``/gws/proto``
  negotiates the subprotocol ``chat`` through ``app.app_protocol(path)``;
- ``/mode``: which drivers engineio picked (JSON).

Nothing here monkey-patches: the server does.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict

import socketio
from flask import Flask
from flask_sock import Sock
from flask_socketio import SocketIO, emit

Environ = Dict[str, Any]


def _handlers(sio: Any, emit_to_all: Callable[[str, Any], None]) -> None:
    @sio.on("echo")
    def echo(*args: Any) -> Any:
        return args[-1]  # Flask-SocketIO passes (data,), python-socketio (sid, data)

    @sio.on("shout")
    def shout(*args: Any) -> None:
        emit_to_all("news", args[-1])


# -- Flask-SocketIO and flask-sock on one Flask app -------------------------------------
flask_app = Flask(__name__)
flask_socketio = SocketIO(flask_app)  # async_mode: auto-detected
sock = Sock(flask_app)
_handlers(flask_socketio, lambda event, data: emit(event, data, broadcast=True))


@sock.route("/sock/echo")
def sock_echo(ws: Any) -> None:
    """flask-sock's README example: echo until the client closes."""
    while True:
        data = ws.receive()
        ws.send(data)


# -- socketio.WSGIApp in gevent and threading modes ------------------------------------
def _wsgi_app(mode: str) -> Any:
    sio = socketio.Server(async_mode=mode)
    _handlers(sio, lambda event, data: sio.emit(event, data))
    return sio, socketio.WSGIApp(sio, socketio_path=f"sio-{mode}")


sio_gevent, app_gevent = _wsgi_app("gevent")
sio_threading, app_threading = _wsgi_app("threading")


# -- an app written for gevent-websocket --------------------------------------------------
def gws_app(environ: Environ, start_response: Callable[..., Any]) -> Any:
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"WebSocket only\n"]
    while True:
        message = ws.receive()
        if message is None:
            break
        if isinstance(message, str) and message.startswith("close "):
            _, code, reason = message.split(" ", 2)
            ws.close(int(code), reason.encode())
            break
        if isinstance(message, str) and message == "info":
            ws.send(json.dumps({"path": ws.path, "origin": ws.origin, "protocol": ws.protocol,
                                "version": ws.version,
                                "environ_version": environ["wsgi.websocket_version"]}))
            continue
        ws.send(message)
    return []


def mode(environ: Environ, start_response: Callable[..., Any]) -> Any:
    from engineio.async_drivers import gevent as driver

    body = json.dumps({
        "flask_socketio": flask_socketio.server.eio.async_mode,
        "gevent_websocket": driver.SimpleWebSocketWSGI is None,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


class App:
    """Dispatches by path; ``app_protocol`` is gevent-websocket's hook, looked
    up on the server's app."""

    def app_protocol(self, path: str) -> str:
        return "chat" if path == "/gws/proto" else ""

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/gws"):
            return gws_app(environ, start_response)
        if path.startswith("/sio-gevent"):
            return app_gevent(environ, start_response)
        if path.startswith("/sio-threading"):
            return app_threading(environ, start_response)
        if path in ("/mode", "/hello"):
            if path == "/hello":
                start_response("200 OK", [("Content-Type", "text/plain"),
                                          ("Content-Length", "6")])
                return [b"hello\n"]
            return mode(environ, start_response)
        return flask_app(environ, start_response)


app = App()
