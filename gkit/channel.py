"""Channels: HTTP streaming, long polling and WebSocket behind one object.

A channel owns its connection once the app asked for it, and talks to it
only through ``transport.Transport`` (non-blocking write, a read watch,
close). Every channel kind implements the one abstract :class:`Channel`
here (same signatures for HTTP and WebSocket), so callers never ask which
kind they hold: ``httpchannel.HttpChannel`` and ``websocket.WsChannel``.
Hook points: a hub or an SSE channel use only the public methods (``send``,
``is_open``, ``on_close``); WebSocket heartbeats call ``ping``.

Here: the contract, delivery of received messages (inbox, callbacks in
order), the end of a channel (``on_close`` once) and its log lines.
Writing never blocks the caller: that is the outbox (``outbox.py``), the
base of every channel. Reading is done by the connection's parked watcher
(see ``parking.py``): a channel waiting for an event holds neither a
worker slot nor a greenlet.
"""
from __future__ import annotations

import abc
import logging
import time
from collections import deque
from typing import Any, Callable, Deque, Iterator, List, Optional, Union

from gevent.event import Event
from greenlet import GreenletExit

from . import accesslog
from .errors import ChannelClosed
from .outbox import Outbox
from .proto.h1 import Request
from .transport import Transport

error_log = logging.getLogger("gkit.error")

Message = Union[str, bytes]


def body_bytes(body: Any) -> bytes:
    """A channel body as bytes: str (UTF-8), bytes-like, file-like, iterable, None.

    >>> body_bytes(["a", b"b", None]), body_bytes(memoryview(b"c"))
    (b'ab', b'c')
    """
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    read = getattr(body, "read", None)
    if read is not None:
        data = read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        parts = iter(body)
    except TypeError:
        raise TypeError(f"cannot send {type(body).__name__}: give str, bytes, a file, "
                        f"an iterable of those, or a response dict") from None
    return b"".join(body_bytes(part) for part in parts)


class Channel(Outbox, abc.ABC):
    """The connection of one request, handed to the app (see ``with_channel``)."""

    is_websocket = False

    def __init__(self, transport: Transport, request: Request, client: str) -> None:
        super().__init__(transport)  # the outbox
        self._request = request
        self._client = client  # REMOTE_ADDR, for the access log
        self._open = True
        self._status: Optional[str] = None
        self._on_receive: Optional[Callable[[Message], Any]] = None
        self._on_close: Optional[Callable[[str], Any]] = None
        self._on_ping: Optional[Callable[[bytes], Any]] = None
        self._inbox: Deque[Message] = deque()
        self._delivering = False
        self._arrived: Optional[Event] = None
        self.log_from: Optional[float] = None  # set when the access log is on
        self._status_code = 0
        self._sent = 0
        # For the line logged when the channel ends (see accesslog.log_channel_end):
        # messages and wire bytes each way, and when it opened.
        self._opened = time.monotonic()
        self._msgs_in = self._msgs_out = self._bytes_in = self._bytes_out = 0

    # -- public API ----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._open

    @property
    @abc.abstractmethod
    def kind(self) -> str:
        """What the channel carries, for stats and logs: ``"websocket"``,
        ``"long_poll"`` (an HTTP channel that sent nothing yet),
        ``"http_stream"`` (a chunked response under way) or ``"sse"``."""

    # buffered, drain(): the outbox's (outbox.Outbox)

    def on_receive(self, fn: Callable[[Message], Any]) -> None:
        """Call ``fn(message)`` for each message, in order; queued ones first."""
        self._on_receive = fn
        self._deliver_queued()

    def on_close(self, fn: Callable[[str], Any]) -> None:
        """Call ``fn(status)`` once when the channel closes (at once if it has)."""
        if self._status is not None:
            self._call(fn, self._status)
        else:
            self._on_close = fn

    def on_ping(self, fn: Callable[[bytes], Any]) -> None:
        self._on_ping = fn

    def receive(self, timeout: Optional[float] = None) -> Message:
        """Block this greenlet until the next message; ChannelClosed at the end,
        TimeoutError after ``timeout`` seconds without one."""
        while not self._inbox:
            if self._status is not None:
                raise ChannelClosed(self._status)
            if self._arrived is None:
                self._arrived = Event()
            self._arrived.clear()
            if not self._arrived.wait(timeout):
                raise TimeoutError(f"no message within {timeout} s")
        return self._inbox.popleft()

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.receive()
            except ChannelClosed:
                return

    @abc.abstractmethod
    def send(self, data: Any, close_after_send: Optional[bool] = None) -> bool:
        """Queue ``data`` for the client without blocking; False if closed."""

    @abc.abstractmethod
    def close(self) -> bool:
        """End the channel; True the first time."""

    @abc.abstractmethod
    def ping(self, data: bytes = b"") -> bool:
        """Send a WebSocket ping; False where there is none to send (HTTP, closed)."""

    def __call__(self, environ: Any, start_response: Callable[..., Any]) -> List[bytes]:
        """A channel is also a WSGI app with an empty answer, which gkit discards
        (the channel answers): so a framework that runs a returned callable as
        WSGI, as Flask does, takes ``return ch`` from a view without an error."""
        start_response("200 OK", [])
        return []

    def __repr__(self) -> str:
        return f"<gkit.Channel {type(self).__name__} {'open' if self._open else 'closed'} {self._conn.addr}>"

    # -- delivery --------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except GreenletExit:
            raise
        except BaseException:  # SystemExit, gevent.Timeout: the app's, logged, never the hub's
            error_log.exception("error in a channel callback %r", fn)

    def _deliver(self, message: Message) -> None:
        self._inbox.append(message)
        if self._on_receive is not None:
            self._deliver_queued()
        elif self._arrived is not None:
            self._arrived.set()

    def _deliver_queued(self) -> None:
        # One deliverer at a time: a callback that blocks cannot let a later
        # message overtake an earlier one.
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._inbox and self._on_receive is not None:
                self._call(self._on_receive, self._inbox.popleft())
        finally:
            self._delivering = False

    def _closed(self, status: str) -> None:
        """The channel is over: report ``status`` once and wake receivers."""
        self._open = False
        if self._status is not None:
            return
        self._status = status
        self._log_end(status)
        if self._arrived is not None:
            self._arrived.set()
        fn, self._on_close = self._on_close, None
        if fn is not None:
            self._call(fn, status)

    def _log_end(self, status: str) -> None:
        if accesslog.channel_log.isEnabledFor(logging.INFO):
            conn = self._conn
            accesslog.log_channel_end(
                self._client, conn.addr, self._request, self.kind, status,
                time.monotonic() - self._opened, self._msgs_in, self._msgs_out,
                self._bytes_in, self._bytes_out, fmt=conn.config.access_log_format)


    def _lost(self) -> None:
        """The client went away."""
        self._conn.close()
        self._log()
        self._closed("client-close")

    def _log(self) -> None:
        if self.log_from is not None:
            conn = self._conn
            accesslog.log_request(self._client, conn.addr, self._request,
                                  self._status_code or 499, self._sent, self.log_from,
                                  fmt=conn.config.access_log_format, hook=conn.access_hook)
            self.log_from = None

    def _overflow(self) -> None:
        self._conn.close()
        self._closed("server-close")

    # -- used by the connection and the WSGI layer ---------------------------------------
    @abc.abstractmethod
    def app_returned(self) -> None:
        """The app call that opened the channel has returned (its request
        body may still be unread)."""

    @abc.abstractmethod
    def server_close(self) -> None:
        """The server is stopping: end with ``on_close("server-close")``."""

    @abc.abstractmethod
    def abort(self) -> None:
        """The app raised after opening the channel."""


