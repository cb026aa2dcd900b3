"""Channels: HTTP streaming, long polling and WebSocket behind one object.

A channel owns its connection once the app asked for it, and talks to it
only through ``transport.Transport`` (non-blocking write, a read watch,
close). Every channel kind implements the one abstract :class:`Channel`
(same signatures for HTTP and WebSocket), so callers never ask which kind
they hold. Hook points: a hub or an SSE channel use only the public methods
(``send``, ``is_open``, ``on_close``); WebSocket heartbeats call ``ping``.

Writing never
blocks the caller: ``send`` tries a non-blocking write and queues what the
socket does not take at once; a flusher greenlet writes the queue out in
order, so sends from many greenlets never interleave. Reading is done by the
connection's parked watcher (see ``connection.py``): a channel waiting for
an event holds neither a worker slot nor a greenlet.
"""
from __future__ import annotations

import abc
import logging
import time
from collections import deque
from http import HTTPStatus
from typing import Any, Callable, Deque, Iterator, List, Optional, Tuple, Union

from gevent.event import Event
from greenlet import GreenletExit

from . import accesslog
from .errors import ChannelClosed
from .proto.h1 import Request
from .proto.response import CHUNKED, NO_BODY, UNTIL_CLOSE, BadResponse
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


def _status_line(status: Any) -> str:
    if isinstance(status, str):
        return status
    try:
        return f"{int(status)} {HTTPStatus(int(status)).phrase}"
    except ValueError:
        return f"{int(status)} Unknown"


def _header_list(headers: Any) -> List[Tuple[str, str]]:
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    out: List[Tuple[str, str]] = []
    for name, value in items:
        if isinstance(value, (list, tuple)):
            out.extend((str(name), str(v)) for v in value)
        else:
            out.append((str(name), str(value)))
    return out


class Channel(abc.ABC):
    """The connection of one request, handed to the app (see ``with_channel``)."""

    is_websocket = False

    def __init__(self, transport: Transport, request: Request, client: str) -> None:
        self._conn = transport
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
        self._outbox: Deque[bytes] = deque()
        self._buffered = 0
        self._flushing = False
        self._drained: Optional[Event] = None  # set when a flush ends (written or lost)
        self._write_failed = False  # queued bytes were dropped: the client left, or overflow
        self._after_flush: Optional[Callable[[], None]] = None
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

    @property
    def buffered(self) -> int:
        """Bytes queued but not yet written to the socket."""
        return self._buffered

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

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Block until queued bytes are written: True; False if ``timeout``
        passed first or the bytes were dropped (the client left)."""
        if not self._outbox and not self._flushing:
            return not self._write_failed
        if self._drained is None:
            self._drained = Event()
        return self._drained.wait(timeout) and not self._write_failed

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

    # -- writing ---------------------------------------------------------------------
    def _write(self, data: bytes) -> bool:
        """Queue ``data`` for the socket without blocking; False if it was
        dropped (the client left, or max_buffered was passed)."""
        if not data:
            return True
        self._bytes_out += len(data)
        conn = self._conn
        if conn.closed:
            return False
        if not self._outbox and not self._flushing:
            try:
                n = conn.try_send(data)
            except OSError:
                self._lost()
                return False
            if n == len(data):
                return True
            data = data[n:]
        self._outbox.append(data)
        self._buffered += len(data)
        victims = conn.budget.queued(self, len(data))
        if self._drained is not None and self._drained.is_set():
            self._drained = None  # a finished flush says nothing about these bytes
        if self._buffered > conn.config.max_buffered:
            error_log.warning("closing a channel to %s: %d unwritten bytes passed max_buffered",
                              conn.addr, self._buffered)
            self._drop_outbox()
            self._overflow()
            return False
        if victims:
            for channel in victims:  # the ones holding the most unwritten bytes
                channel._over_budget()
            if self in victims:
                return False
        if not self._flushing:
            self._flushing = True
            conn.spawn(self._flush)
        return True

    def _drop_outbox(self) -> None:
        self._outbox.clear()
        self._buffered = 0
        self._conn.budget.forget(self)
        self._write_failed = True
        if self._drained is not None:
            self._drained.set()

    def _over_budget(self) -> None:
        """All channels' unwritten bytes passed max_buffered_total and this
        one holds the most: close it."""
        conn = self._conn
        error_log.warning("closing a channel to %s: it holds %d unwritten bytes, the most, and all "
                          "channels together passed max_buffered_total (%s)",
                          conn.addr, self._buffered, conn.config.max_buffered_total)
        self._drop_outbox()
        self._overflow()

    def _flush(self) -> None:
        conn = self._conn
        try:
            while self._outbox and not conn.closed:
                data = b"".join(self._outbox)
                self._outbox.clear()
                conn.send(data)
                self._buffered = max(0, self._buffered - len(data))
                conn.budget.written(self, len(data))
            if self._outbox:  # the connection was closed under us: the bytes are lost
                self._drop_outbox()
        except OSError:
            self._drop_outbox()
            self._flushing = False
            self._lost()
            return
        finally:
            if self._drained is not None:
                self._drained.set()
        self._flushing = False
        self._run_after_flush()

    def _when_flushed(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once every queued byte is written."""
        self._after_flush = fn
        if not self._flushing and not self._outbox:
            self._run_after_flush()

    def _run_after_flush(self) -> None:
        fn, self._after_flush = self._after_flush, None
        if fn is not None:
            fn()

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


class HttpChannel(Channel):
    """Streaming and long polling over one HTTP response."""

    def __init__(self, transport: Transport, request: Request, client: str) -> None:
        super().__init__(transport, request, client)
        self._mode: Optional[int] = None   # framing once the head is sent
        self._keep_alive = False
        self._discard = False   # an unread request body is being dropped: close after
        self._streaming = False  # a send kept the response open (chunked or until close)
        self._carries: Optional[str] = None  # set by a wrapper: "sse"

    @property
    def kind(self) -> str:
        if self._carries is not None:
            return self._carries
        return "http_stream" if self._streaming else "long_poll"

    def carries(self, kind: str) -> None:
        """Name what this response carries (``"sse"``: an event stream), as
        ``kind`` then reports it to stats and the channel-end log line."""
        self._carries = kind

    def send(self, data: Any, close_after_send: Optional[bool] = None) -> bool:
        if not self._open:
            return False
        close = True if close_after_send is None else close_after_send
        try:
            if self._mode is None:
                out = self._head(data, close)
            else:
                body = body_bytes(data.get("body") if isinstance(data, dict) else data)
                out = self._frame(body)
        except (BadResponse, TypeError, ValueError) as exc:
            # As for a WSGI app: what cannot be written is answered with 500
            # (when nothing was sent yet) and the channel ends.
            error_log.error("channel send refused: %s", exc)
            self.abort()
            return False
        self._msgs_out += 1
        if close:
            if self._mode == CHUNKED:
                out += b"0\r\n\r\n"
            written = self._write(out)
            self._finish("server-close")
            return written
        self._streaming = True
        return self._write(out)

    def _head(self, data: Any, close: bool) -> bytes:
        if isinstance(data, dict):
            status = _status_line(data.get("status", 200))
            headers = _header_list(data.get("headers"))
            body = body_bytes(data.get("body"))
        else:
            status, body = "200 OK", body_bytes(data)
            headers = [("Content-Type", "text/html; charset=utf-8")]
        req = self._request
        head = self._conn.response_head(
            status, headers, req, req.keep_alive and not req.upgrade and not self._discard,
            len(body) if close else None)
        self._mode = head.mode
        self._keep_alive = head.keep_alive
        self._status_code = head.status_code
        return head.data + self._frame(body)

    def _frame(self, body: bytes) -> bytes:
        if not body or self._mode == NO_BODY:
            return b""
        self._sent += len(body)
        if self._mode == CHUNKED:
            return b"%x\r\n" % len(body) + body + b"\r\n"
        return body

    def close(self) -> bool:
        if not self._open:
            return False
        if self._mode is None:
            return self.send({"status": 200, "headers": {}, "body": b""})
        if self._mode == CHUNKED:
            self._write(b"0\r\n\r\n")
        self._finish("server-close")
        return True

    def _finish(self, status: str) -> None:
        keep = self._keep_alive and self._mode != UNTIL_CLOSE and not self._discard
        self._log()
        self._closed(status)
        conn = self._conn
        self._when_flushed(lambda: conn.channel_done(keep))

    def ping(self, data: bytes = b"") -> bool:
        return False  # HTTP has no pings

    def app_returned(self) -> None:
        """The app is done with the request body now: watch for the client
        leaving while the response stays open. A body too big to drop now is
        dropped as it comes, and the connection closes after the response."""
        if self._open:
            if not self._conn.drain_body():
                self._discard = True
            self._start_reading()

    def _start_reading(self) -> None:
        self._conn.watch(self._readable)  # on TLS: not watched

    def _readable(self) -> None:
        """While the response is open, the only thing to learn from the
        client is that it left; a pipelined request waits in the parser."""
        conn = self._conn
        data = conn.recv_now()
        if data is None:
            return self._start_reading()
        if not data:
            if self._open:
                conn.close()
                self._log()
                self._closed("client-close")
            return
        if self._discard:
            return self._start_reading()
        conn.pipelined(data)

    def server_close(self) -> None:
        if self._open:
            if self._mode == CHUNKED:
                self._write(b"0\r\n\r\n")
            self._open = False
            self._when_flushed(self._conn.close)
            self._closed("server-close")

    def abort(self) -> None:
        if not self._open:
            return
        if self._mode is None:
            self.send({"status": 500, "headers": {"Content-Type": "text/plain"},
                       "body": "500 Internal Server Error\n"})
        else:
            self._conn.close()
            self._closed("server-close")
