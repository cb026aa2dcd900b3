"""The realtime code people already have, on gkit: what a WebSocket upgrade
request finds in its environ besides gkit's own ``with_channel``.

- ``environ["wsgi.websocket"]`` and ``wsgi.websocket_version``: gevent-websocket's
  interface on a gkit channel (:mod:`gkit.compat.geventws`), used by
  gevent-websocket apps and by engineio/Flask-SocketIO when ``geventwebsocket``
  is installed;
- ``environ["gunicorn.socket"]``: the raw socket with gunicorn's contract
  (:mod:`gkit.compat.rawsocket`), used by simple-websocket, so flask-sock and
  engineio without gevent-websocket.

Both are lazy: an app that uses neither (it calls ``with_channel``, or
answers the request itself) is served as if they were not there.
:class:`Upgrade` is the per-request glue the server calls: ``prepare`` before
the app, ``app_returned`` after it.

>>> env = {"REQUEST_METHOD": "GET", "HTTP_UPGRADE": "websocket",
...        "HTTP_SEC_WEBSOCKET_VERSION": "13", "PATH_INFO": "/ws"}
>>> up = Upgrade.prepare(env, app=None, sock=None, on_take=lambda: None)
>>> env["wsgi.websocket_version"], env["wsgi.websocket"].path, up.raw_taken
('13', '/ws', False)
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional, Set

from .geventws import WebSocket, WebSocketError, is_websocket_upgrade
from .rawsocket import HandedSocket

__all__ = ["Upgrade", "WebSocket", "WebSocketError", "HandedSocket", "is_websocket_upgrade"]

Environ = Dict[str, Any]

error_log = logging.getLogger("gkit.error")


class Upgrade:
    """What one upgrade request was given; see the module docstring."""

    __slots__ = ("websocket", "raw")

    def __init__(self, websocket: Optional[WebSocket], raw: Optional[HandedSocket]) -> None:
        self.websocket = websocket
        self.raw = raw

    @classmethod
    def prepare(cls, environ: Environ, app: Optional[Callable[..., Any]], sock: Any,
                on_take: Callable[[], Optional[bytes]]) -> Optional["Upgrade"]:
        """Fill ``environ`` for a WebSocket upgrade request; None for any other.
        ``app`` is the server's app (for gevent-websocket's ``app_protocol``),
        ``sock`` the connection's socket, ``on_take`` what gives the
        connection to the app when it first uses the raw socket and returns
        the bytes already read past the request head."""
        if not is_websocket_upgrade(environ):
            return None
        ws = WebSocket(environ, app)
        environ["wsgi.websocket"] = ws
        environ["wsgi.websocket_version"] = ws.version
        raw = None
        if sock is not None:
            raw = HandedSocket(sock, on_take)
            environ["gunicorn.socket"] = raw
        return cls(ws, raw)

    @property
    def raw_taken(self) -> bool:
        """The app used the raw socket: the connection is the app's."""
        return self.raw is not None and self.raw.taken

    def app_returned(self) -> None:
        """The app call ended: close a gevent-websocket socket it left open."""
        if self.websocket is not None:
            self.websocket.finish()

    def answered(self, status: int, environ: Environ) -> None:
        """The app answered the upgrade itself, with ``status``. A 400 there is
        most often werkzeug refusing a handshake on a rule without
        ``websocket=True``: say so, as nothing else would (once per path)."""
        if status != 400 or (self.websocket is not None and self.websocket.channel is not None):
            return
        path = environ.get("PATH_INFO", "")
        if path in _warned or len(_warned) >= WARN_PATHS:
            return
        _warned.add(path)
        error_log.warning(
            "the app answered 400 to a WebSocket handshake on %s without opening a channel; "
            "if it is Flask/werkzeug: a handshake reaches only a route marked websocket=True, "
            "e.g. @app.route(%r, websocket=True) (logged once per path)", path, path)


WARN_PATHS = 100  # paths warned about, at most: a scan of many paths logs no more
_warned: Set[str] = set()
