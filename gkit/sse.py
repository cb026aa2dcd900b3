"""Server-sent events on a channel: ``sse_channel(environ)``.

An :class:`SseChannel` is an HTTP channel (see ``with_channel``) that answers
at once with a ``text/event-stream`` head and then writes one event per
``send_event`` (or ``send``), framed by ``proto.sse``. It is built only on
the HTTP channel's public API. While the stream is quiet the server's sweeper
writes a comment every ``heartbeat`` seconds, so proxies with an idle limit
(nginx's 60 s ``proxy_read_timeout``, cloud load balancers) keep it open.

A client that leaves is seen by the HTTP channel's read watcher: ``on_close``
gets ``"client-close"``, later sends return False.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .channel import Channel, Message
from .connection import connection_of
from .handover import with_channel
from .httpchannel import HttpChannel
from .proto.sse import CONTENT_TYPE, HEARTBEAT, Data, encode_comment, encode_event, encode_retry

__all__ = ["sse_channel", "SseChannel", "DEFAULT_HEARTBEAT"]

# Seconds of quiet before a heartbeat comment: a quarter of the 60 s idle
# limit of nginx (proxy_read_timeout) and of AWS/GCP load balancers, so a
# late sweep or a lost segment still leaves room; the same 15 s as
# sse-starlette's ping. Costs 3 bytes (":\n\n" in a 8-byte chunk) per quiet stream.
DEFAULT_HEARTBEAT = 15.0

HEAD_HEADERS: List[Tuple[str, str]] = [
    ("Content-Type", CONTENT_TYPE),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),   # nginx: pass events on at once, do not buffer
]


class SseChannel(Channel):
    """An event stream over one HTTP response; made by :func:`sse_channel`.

    It is a :class:`gkit.Channel` (``is_open``, ``send``, ``close``,
    ``on_close``, ``buffered``, ``drain``), so a broadcast hub can hold it
    beside WebSocket and streaming channels: ``send(message)`` sends one
    event whose data is the message. The connection itself belongs to the
    HTTP channel it wraps.
    """

    is_websocket = False
    kind = "sse"

    # Deliberately no Channel.__init__: every state lives in the HTTP channel.
    def __init__(self, http: Channel, last_event_id: Optional[str],
                 heartbeat: Optional[float]) -> None:
        self._http = http
        if isinstance(http, HttpChannel):
            http.carries("sse")  # stats and the channel-end line count it as SSE
        self.last_event_id = last_event_id
        self.heartbeat = heartbeat
        self._last_write = time.monotonic()
        self._status: Optional[str] = None
        self._on_close_fn: Optional[Callable[[str], Any]] = None
        http.on_close(self._http_closed)

    # -- events ----------------------------------------------------------------------
    def send_event(self, data: Data, event: Optional[str] = None, id: Optional[str] = None,
                   retry: Optional[float] = None) -> bool:
        """Send one event; False if the stream is closed. ``data`` is str or
        UTF-8 bytes (each line becomes a ``data:`` line); ``event`` and ``id``
        must be single-line (ValueError otherwise); ``retry`` is the client's
        reconnection delay in seconds.

        >>> ch.send_event('{"price": 10}', event="tick", id="17")  # doctest: +SKIP
        True
        """
        return self._write(encode_event(data, event, id, retry))

    def send(self, data: Any, close_after_send: Optional[bool] = None) -> bool:
        """One event whose data is ``data`` (str or bytes; a response dict's
        ``body``, its status and headers ignored, as on a WebSocket). The
        stream stays open unless ``close_after_send`` is True."""
        if isinstance(data, dict):
            data = data.get("body") or ""
        written = self.send_event(data)
        if close_after_send:
            self.close()
        return written

    def comment(self, text: str = "") -> bool:
        """Send a comment line (readers ignore it)."""
        return self._write(encode_comment(text))

    def _write(self, data: bytes) -> bool:
        self._last_write = time.monotonic()
        return self._http.send(data, close_after_send=False)

    def beat(self, now: float) -> None:
        """From the server's sweeper: a comment if nothing went out for ``heartbeat`` s."""
        if self.heartbeat is not None and time.monotonic() - self._last_write >= self.heartbeat:
            self._write(HEARTBEAT)

    # -- the Channel interface, given to the HTTP channel ------------------------------------
    @property
    def is_open(self) -> bool:
        return self._http.is_open

    @property
    def buffered(self) -> int:
        return self._http.buffered

    def drain(self, timeout: Optional[float] = None) -> bool:
        return self._http.drain(timeout)

    def close(self) -> bool:
        """End the stream (the last chunk); the connection serves its next request."""
        return self._http.close()

    def on_close(self, fn: Callable[[str], Any]) -> None:
        if self._status is not None:
            self._call(fn, self._status)  # logged, as every channel callback
        else:
            self._on_close_fn = fn

    def _http_closed(self, status: str) -> None:
        self._status = status
        fn, self._on_close_fn = self._on_close_fn, None
        if fn is not None:
            fn(status)  # runs inside the HTTP channel's guarded callback

    def on_receive(self, fn: Callable[[Message], Any]) -> None:
        """An event stream carries nothing from the client: ``fn`` never runs."""
        self._http.on_receive(fn)

    def on_ping(self, fn: Callable[[bytes], Any]) -> None:
        self._http.on_ping(fn)

    def receive(self, timeout: Optional[float] = None) -> Message:
        """Blocks until the stream closes (then ChannelClosed): nothing comes in."""
        return self._http.receive(timeout)

    def __iter__(self) -> Iterator[Message]:
        return iter(self._http)

    def ping(self, data: bytes = b"") -> bool:
        return False  # no pings in an event stream: heartbeats are comments

    # The connection talks to the HTTP channel itself; these pass on what reaches the wrapper.
    def app_returned(self) -> None:
        self._http.app_returned()

    def server_close(self) -> None:
        self._http.server_close()

    def abort(self) -> None:
        self._http.abort()

    def __repr__(self) -> str:
        return f"<gkit.SseChannel {'open' if self.is_open else 'closed'} {self._http!r}>"


def sse_channel(environ: Dict[str, Any], *, headers: Any = None, retry: Optional[float] = None,
                heartbeat: Optional[float] = DEFAULT_HEARTBEAT) -> SseChannel:
    """Answer the request with an event stream and return its channel.

    The head (200, ``text/event-stream``, ``Cache-Control: no-cache``,
    ``X-Accel-Buffering: no``, plus ``headers``) goes out at once, so the
    browser's ``EventSource`` opens. ``retry`` (seconds) is sent first, as the
    client's reconnection delay. ``heartbeat``: seconds of quiet before a
    comment is sent (None: never). ``ch.last_event_id`` is the request's
    ``Last-Event-ID`` (None when absent): a reconnecting ``EventSource`` sends
    the last id it saw.

    >>> def app(environ, start_response):                  # doctest: +SKIP
    ...     ch = sse_channel(environ)
    ...     ch.send_event("hello", id="1")
    ...     subscribers.add(ch)                              # send_event later, from anywhere
    ...     return ch
    """
    if heartbeat is not None and not heartbeat > 0:
        raise ValueError(f"heartbeat={heartbeat!r}: give a positive number of seconds, or None")
    if "websocket" in environ.get("HTTP_UPGRADE", "").lower():
        raise ValueError("sse_channel on a WebSocket upgrade request: use with_channel for it")
    first = b"" if retry is None else encode_retry(retry)
    http = with_channel(environ)
    extra = list(headers.items()) if hasattr(headers, "items") else list(headers or ())
    ch = SseChannel(http, environ.get("HTTP_LAST_EVENT_ID"), heartbeat)
    http.send({"status": 200, "headers": HEAD_HEADERS + extra, "body": first},
              close_after_send=False)
    if heartbeat is not None and http.is_open:
        connection_of(environ.get("gkit.connection")).host.deadlines.heartbeats.add(ch)
    return ch
