"""Parking: an idle connection holds no greenlet.

When a non-blocking read finds nothing, the connection *parks* (a libev read
watcher, a few hundred bytes) and its greenlet ends; when data arrives, the
watcher's callback starts a fresh greenlet. So 10,000 idle connections cost
no greenlet stacks. The same watcher serves a channel waiting for its
client (``watch``) and client-gone detection while the app runs
(``watch_in_app``).

:class:`Parking` is a part of ``connection.Connection`` (a mixin with no
state of its own: the fields are the connection's).
"""
from __future__ import annotations

import socket
from typing import Any, Callable

from .connfields import ConnectionFields
from .state import Phase

# Why a connection is parked: deciding which deadline applies.
PARK_IDLE = 1      # between requests: idle_timeout
PARK_HEAD = 2      # a request head is half in: header_timeout
PARK_CHANNEL = 3   # owned by a channel: no deadline


class Parking(ConnectionFields):
    """The read watcher of a :class:`~gkit.connection.Connection`."""

    __slots__ = ()

    def park(self, why: int, on_readable: Callable[[], Any]) -> None:
        """Give up the greenlet; call ``on_readable`` in a new one when data comes."""
        if self.phase is Phase.CLOSED:
            return
        if why == PARK_IDLE and self.closing and not self._drain:
            self.close()  # the server is stopping and nothing more came: done
            return
        w = self.watcher
        if w is None:
            w = self.watcher = self.host.hub.loop.io(self.fileno, 1)
        self.on_readable = on_readable
        w.start(self._wake)
        if why != PARK_CHANNEL:
            self.host.deadlines.park(self, why)

    def _wake(self) -> None:  # in the hub
        self.watcher.stop()
        self.host.deadlines.unpark(self)
        if self.phase is not Phase.CLOSED:
            self.host.runners.spawn(self._guard, self.on_readable)

    @property
    def parked(self) -> bool:
        """Is this connection waiting on its read watcher?"""
        return self.watcher is not None and bool(self.watcher.active)

    def has_unread_bytes(self) -> bool:
        """Are bytes waiting in the socket (a parked connection's next request)?"""
        if self.raw is None:
            return False
        try:
            return bool(self.raw.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def unpark(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.host.deadlines.unpark(self)

    def watch(self, on_readable: Callable[[], Any], tls_reader: bool = False) -> None:
        """Call ``on_readable`` in a greenlet when bytes come, holding no
        greenlet meanwhile. On TLS readiness says nothing about data: with
        ``tls_reader`` a greenlet runs ``on_readable`` at once (blocking in
        :meth:`recv_now`, with no deadline), else nothing is watched."""
        if self.phase is Phase.CLOSED:
            return
        if self.raw is not None:
            self.park(PARK_CHANNEL, on_readable)
        elif tls_reader:
            self.sock.settimeout(None)
            self.spawn(on_readable)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Any:
        """A started libev timer calling ``fn`` in the hub; ``.stop()`` cancels it."""
        timer = self.host.hub.loop.timer(delay)
        timer.start(fn)
        return timer

    def watch_in_app(self, on_readable: Callable[[], Any]) -> bool:
        """While the app iterates its response: call ``on_readable`` in the hub
        when bytes or EOF come (client-gone detection, ``clientgone.py``);
        False where readiness says nothing (TLS). :meth:`stop_watching` ends it."""
        if self.raw is None or self.phase is not Phase.IN_APP:
            return False
        w = self.watcher
        if w is None:
            w = self.watcher = self.host.hub.loop.io(self.fileno, 1)
        w.start(on_readable)
        return True

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
