"""The fields of a connection, shared by the parts ``connection.Connection``
is put together from (``httploop``, ``clientio``, ``parking``).

One slotted base holds them all, so each part names the fields it uses
without a ``__dict__`` per connection, and mypy sees one declaration each.
"""
from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from greenlet import greenlet

from .state import Exchange, Phase

if TYPE_CHECKING:
    from .transport import Host


class ConnectionFields:
    """The state of one connection; only ``Connection`` methods change it."""

    __slots__ = ("host", "sock", "raw", "addr", "secure", "fileno", "parser", "watcher",
                 "greenlet", "phase", "closing", "on_readable", "head_since", "exchange",
                 "_drain", "_fresh", "_info", "__weakref__")

    host: Host
    sock: socket.socket
    raw: Any               # the non-blocking _socket under gevent's socket; None for TLS
    addr: Tuple[str, int]
    secure: bool
    fileno: int
    parser: Any
    watcher: Any
    greenlet: Optional[greenlet]
    phase: Phase
    closing: bool
    on_readable: Any
    head_since: float
    exchange: Optional[Exchange]
    _drain: bool
    _fresh: bool
    _info: Any

    if TYPE_CHECKING:  # defined by Connection, used by its parts
        def _move(self, to: Phase) -> None: ...
        def _guard(self, run: Any) -> None: ...
        def spawn(self, run: Callable[[], Any]) -> None: ...
        def close(self) -> None: ...
        def fail(self, status: int, reason: str, method: Optional[str] = None) -> None: ...
        def linger_close(self) -> None: ...
