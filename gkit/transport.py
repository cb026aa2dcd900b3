"""The interfaces between the connection and the layers around it.

``Transport`` is what a channel may do with its connection (``channel.py``
and ``websocket.py`` use nothing else); ``Host``, ``Dispatcher`` and
``DeadlineKeeper`` are what a connection needs from the server above it
(``server.py`` and ``wsgi.py`` implement them). They are Protocols, so the
lower layer names what it needs without importing the upper one.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Tuple

from .budget import WriteBudget
from .config import Config
from .heartbeat import Heartbeats
from .state import Exchange, Outcome
from .pool import WorkerPool
from .proto.h1 import Request
from .proto.response import ResponseHead
from .runners import Runners

Conn = Any  # a connection.Connection: named loosely, as this module is below it


class Transport(Protocol):
    """A channel's connection: non-blocking writes, a read watch, close."""

    addr: Tuple[str, int]

    @property
    def closed(self) -> bool: ...

    @property
    def config(self) -> Config: ...

    @property
    def budget(self) -> WriteBudget:
        """The server's budget of all channels' unwritten bytes."""

    def try_send(self, data: bytes) -> int:
        """Write what the socket takes now; the count (OSError: the peer left)."""

    def send(self, data: Any) -> None:
        """Write everything, blocking this greenlet (a channel's flusher only)."""

    def recv_now(self) -> Optional[bytes]:
        """Bytes waiting now; b"" at EOF; None when none wait."""

    def watch(self, on_readable: Callable[[], Any], tls_reader: bool = False) -> None:
        """Call ``on_readable`` in a greenlet once bytes come."""

    def spawn(self, run: Callable[[], Any]) -> None:
        """Run ``run`` in a greenlet of this connection."""

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Any:
        """A timer calling ``fn`` after ``delay`` s; ``.stop()`` cancels it."""

    def close(self) -> None:
        """Close the socket now (idempotent)."""

    @property
    def access_hook(self) -> Any:
        """The server's access hook (see ``accesslog``), or None."""

    def response_head(self, status: str, headers: Any, req: Request, keep_alive: bool,
                      length: Optional[int]) -> ResponseHead:
        """The head of a response to ``req``."""

    def drain_body(self) -> bool:
        """Drop the rest of the request body; False if too much is left."""

    def pipelined(self, data: bytes) -> None:
        """Bytes of the next request, read while a response was open."""

    def channel_done(self, keep_alive: bool) -> None:
        """The channel wrote its whole response: go on (keep-alive) or close."""


class DeadlineKeeper(Protocol):
    """The server's deadlines of parked connections (``server.Deadlines``)."""

    @property
    def heartbeats(self) -> Heartbeats:
        """Channels beaten by the sweeper (SSE comments, WebSocket pings)."""

    def park(self, conn: Conn, why: int) -> None: ...

    def unpark(self, conn: Conn) -> None: ...


class Dispatcher(Protocol):
    """The WSGI side (``wsgi.Dispatch``): runs the app for one exchange."""

    def run(self, conn: Conn, ex: Exchange, keep_alive: bool) -> Outcome: ...

    access_hook: Any  # called with every request's AccessRecord, or None

    def trusts(self, ip: str) -> bool:
        """Is the peer ``ip`` a trusted proxy (proxy headers, PROXY protocol)?"""

    def response_head(self, status: str, headers: Any, method: str, version: str,
                      keep_alive: bool, length: Optional[int]) -> ResponseHead: ...


class Host(Protocol):
    """What a connection needs from its server (``server.Server``)."""

    @property
    def config(self) -> Config: ...

    @property
    def status(self) -> str:
        """"running", "stopping" or "stopped"."""

    @property
    def engine(self) -> str: ...

    @property
    def hub(self) -> Any: ...

    @property
    def runners(self) -> Runners: ...

    @property
    def pool(self) -> WorkerPool: ...

    @property
    def budget(self) -> WriteBudget: ...

    @property
    def deadlines(self) -> DeadlineKeeper: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    def date(self) -> str: ...

    def track(self, conn: Conn) -> None: ...

    def untrack(self, conn: Conn) -> None: ...

    @property
    def counters(self) -> Any:
        """The server's ``stats.Counters`` (bytes each way, refusals)."""

    def request_started(self, conn: Conn) -> None: ...

    def request_ended(self, conn: Conn) -> None: ...
