"""Client-gone detection for streamed WSGI bodies.

While the app's response iterable is blocked between items (a generator
waiting for the next event, a log tail), nothing reads the socket, so a
client that left is noticed only at the next write, if ever (flask #3135,
gevent #1382). While gkit iterates a response it watches the socket too:

- EOF or an error (reset) is the client leaving. If the app's greenlet is
  inside ``next()`` of the iterable at that moment, :class:`ClientDisconnected`
  is raised there, wherever it waits; if it is writing, the iteration stops
  before the next item. Either way the iterable's ``close()`` is called next,
  as always, and the connection is closed.
- Bytes are not a close: once the request body is read, they are the next
  (pipelined) request and go to the parser, which serves them after this
  response; while a body is still unread they are that body, and the watch
  ends (gkit cannot tell an EOF behind them).

Not on TLS, where a readable socket says nothing about data.
"""
from __future__ import annotations

import socket
from typing import Any

from greenlet import getcurrent

__all__ = ["ClientDisconnected", "GoneWatch"]

BUF = 65536
PIPELINED_LIMIT = 65536  # bytes of next requests taken in while a response streams


class ClientDisconnected(GeneratorExit):
    """Raised in the app's greenlet, inside its response iterable, when the
    client closed the connection while the iterable waited for its next item.

    A ``GeneratorExit``: ``finally`` and ``with`` blocks run, ``except
    GeneratorExit`` catches it, ``except Exception`` does not (so an app's
    catch-all does not swallow it). ``gkit.ClientDisconnected``.
    """


class GoneWatch:
    """Watches one streamed response's connection; made by ``wsgi._write_result``."""

    __slots__ = ("conn", "ex", "g", "waiting", "gone", "on", "taken")

    def __init__(self, conn: Any, ex: Any) -> None:
        self.conn = conn
        self.ex = ex
        self.g = getcurrent()
        self.waiting = False  # the app's greenlet is inside next() of the iterable
        self.gone = False
        self.taken = 0        # pipelined bytes handed to the parser
        self.on = conn.watch_in_app(self._readable)

    def _readable(self) -> None:  # in the hub
        conn = self.conn
        body_left = self.ex.request.has_body and not self.ex.body_done
        try:
            data = conn.raw.recv(1 if body_left else BUF, socket.MSG_PEEK if body_left else 0)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if body_left or self.taken + len(data) > PIPELINED_LIMIT:
                self.stop()  # body bytes, or a flood: leave them in the socket
            else:
                self.taken += len(data)
                conn.pipelined(data)
            return
        self.gone = True
        self.stop()
        if self.waiting:
            conn.host.hub.loop.run_callback(self._throw)

    def _throw(self) -> None:  # in the hub
        if self.waiting and not self.g.dead:
            self.g.throw(ClientDisconnected("the client closed the connection"))

    def stop(self) -> None:
        if self.on:
            self.on = False
            self.conn.stop_watching()
