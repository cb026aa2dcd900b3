"""Request timeouts (option ``request_timeout``): an app call that runs too
long gets ``gevent.Timeout`` raised in its greenlet, wherever it waits.

The running app calls sit in one insertion-ordered dict (all get the same
timeout, so the deadlines grow with the order); the server's sweeper
(``server.Deadlines``) pops the due ones. No timer per request: a dict entry
and a clock read per app call, and only when the option is on.

What the app and the client see is decided in ``wsgi.Dispatch.run``: 504
with ``Connection: close`` if no response head was sent, else the connection
is cut; the iterable's ``close()`` still runs. Here the one ``gkit.error``
record is written, at the moment of stopping, with the greenlet's stack.
A request handed over to a channel (or a raw socket) is exempt: its phase is
no longer IN_APP when the deadline comes.
"""
from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Dict, Tuple

import gevent
from greenlet import getcurrent

from .state import Phase

error_log = logging.getLogger("gkit.error")

__all__ = ["RequestTimeout", "AppDeadlines"]


class RequestTimeout(gevent.Timeout):
    """Raised in an app's greenlet when its call passed ``request_timeout``.

    A ``gevent.Timeout`` (a BaseException): ``except Exception`` in the app
    does not swallow it, ``except gevent.Timeout`` does, and ``finally``
    blocks run.
    """

    def __init__(self, seconds: float, elapsed: float) -> None:
        super().__init__(seconds)  # never started: gkit throws it itself
        self.elapsed = elapsed

    def __str__(self) -> str:
        return f"the app call took over request_timeout={self.seconds:g} s"


class AppDeadlines:
    """The app calls in flight, by deadline.

    >>> d = AppDeadlines(30.0)
    >>> len(d.running)
    0
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.running: Dict[Any, Tuple[float, float, Any]] = {}  # conn -> (deadline, start, greenlet)

    def started(self, conn: Any) -> None:
        """An app call starts on ``conn``, in the current greenlet."""
        now = time.monotonic()
        self.running[conn] = (now + self.timeout, now, getcurrent())

    def ended(self, conn: Any) -> None:
        self.running.pop(conn, None)

    def sweep(self, now: float, hub: Any) -> None:
        """In the hub: stop the app calls past their deadline."""
        running = self.running
        while running:  # the same timeout for all: deadlines grow with the order
            conn = next(iter(running))
            deadline, start, g = running[conn]
            if deadline > now:
                break
            del running[conn]
            if conn.phase is Phase.IN_APP:
                hub.loop.run_callback(self._stop, conn, g, start)

    def _stop(self, conn: Any, g: Any, start: float) -> None:  # in the hub
        ex = conn.exchange
        if conn.phase is not Phase.IN_APP or ex is None or g.dead or g.gr_frame is None:
            return  # handed over or finished meanwhile
        elapsed = time.monotonic() - start
        req = ex.request
        stack = "".join(traceback.format_stack(g.gr_frame)).rstrip()
        error_log.error(
            "request timed out after %.2f s (request_timeout=%g s): %s %s HTTP/%s from %s, "
            "in %s; stopped (gevent.Timeout raised) at:\n%s", elapsed, self.timeout,
            req.method, req.target.decode("latin-1"), req.version, ex.client,
            getattr(g, "name", repr(g)), stack)
        g.throw(RequestTimeout(self.timeout, elapsed))
