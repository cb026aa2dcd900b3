"""The state of a connection and of the request it carries (h11's ``_state.py``).

:class:`Phase` and its table of legal moves :data:`MOVES` name where a
connection is; only ``connection.Connection`` methods move it. What belongs
to one request lives in its :class:`Exchange`, so nothing of it outlives the
request: its worker slot, whether its body was read to the end, the channel
it was handed over to, whether the app call still runs. (100-continue lives in its
``wsgi.input`` and "response started" in its ``start_response``, the two
other per-request objects, both in ``wsgi.py``/``wsgi_io.py``.)
"""
from __future__ import annotations

import enum
from typing import Any, Dict, FrozenSet, Optional

from .proto.h1 import Request


class Phase(enum.IntEnum):
    """Where a connection is in its life; only ``Connection`` methods move it.

    A request timeout applies to IN_APP and to a channel's phase while
    ``Exchange.app_running`` (the app call goes on after a hand-over, as a
    flask-sock handler does); client-gone detection watches the socket in
    IN_APP; SOCKET has no deadline at all.

    >>> sorted(p.name for p in MOVES[Phase.IN_APP])
    ['CHANNEL', 'CLOSED', 'IDLE', 'SOCKET']
    """

    IDLE = 1     # no request: waiting for, or reading, a request head
    IN_APP = 2   # the app computes a response; the exchange holds a worker slot
    CHANNEL = 3  # a channel owns the response (the app call may still run)
    SOCKET = 4   # the app owns the raw socket (issue 10): gkit writes nothing, no deadline
    CLOSED = 5


# The legal moves (h11's _state.py): anything else is a bug of ours, raised at once.
MOVES: Dict[Phase, FrozenSet[Phase]] = {
    Phase.IDLE: frozenset({Phase.IN_APP, Phase.CLOSED}),
    Phase.IN_APP: frozenset({Phase.IDLE, Phase.CHANNEL, Phase.SOCKET, Phase.CLOSED}),
    Phase.CHANNEL: frozenset({Phase.IDLE, Phase.CLOSED}),
    Phase.SOCKET: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class IllegalMove(RuntimeError):
    """A connection was asked to move from one phase to one it cannot reach."""


class Outcome(enum.IntEnum):
    """What the dispatcher (``wsgi.py``) tells the connection once the app call ended."""

    KEEP_ALIVE = 1   # answered, body drained: serve the next request
    CLOSE = 2        # answered (or failed): close the connection
    HANDED_OVER = 3  # a channel (or the app itself) owns the connection now


class Exchange:
    """Per-request state.

    >>> ex = Exchange(request=None, worker="worker-1", client="127.0.0.1")  # request: a proto.h1.Request
    >>> ex.worker, ex.app_running, ex.channel
    ('worker-1', True, None)
    """

    __slots__ = ("request", "worker", "holder", "client", "body_done", "body_since",
                 "body_received", "app_running", "channel", "channel_ended", "resume", "started")

    def __init__(self, request: Request, worker: Optional[str], client: str) -> None:
        self.request = request
        self.worker = worker          # the slot's name while held; None once given back
        self.holder: Optional[Any] = None  # the greenlet holding the slot (it may lend it)
        self.client = client          # REMOTE_ADDR, after proxy headers
        self.body_done = False        # the request's END was read from the parser
        self.body_since = 0.0         # monotonic time of the first read of the body
        self.body_received = 0        # body bytes read so far (the body deadline grows with it)
        self.app_running = True       # the app call is in flight
        self.channel: Optional[Any] = None  # the channel the response was handed over to
        self.channel_ended = False    # that channel wrote its whole response
        self.resume = False           # it ended while the app still ran: go on after it
        self.started = 0.0            # monotonic start, when the access log is on
