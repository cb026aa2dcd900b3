"""The HTTP/1.1 request side, sans-IO: bytes in, request events out.

Two engines implement :class:`H1Parser` (``h1_httptools`` on llhttp, ``h1_h11``
on h11). Everything above them (environ, WSGI, channels) is shared. Where llhttp
and h11 differ on what they accept, :func:`gkit.proto.h1_checks.check_head`
applies gkit's own rules to both, and :class:`gkit.proto.chunked.ChunkedChecker`
to chunked bodies, so both engines answer the same on the wire.

Events returned by ``next_event()``:

- :class:`Request`: a request head;
- ``bytes``: a piece of the request body (never empty);
- :data:`END`: the end of the request body;
- :data:`NEED_DATA`: feed more bytes first;
- :data:`CLOSED`: the client closed its side between requests.

Errors are raised as :class:`gkit.errors.ProtocolError` with ``status_hint``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

from ..errors import ProtocolError

Headers = List[Tuple[bytes, bytes]]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
END = _Sentinel("END")
CLOSED = _Sentinel("CLOSED")


class Request:
    """A parsed, checked request head."""

    __slots__ = ("method", "target", "version", "headers", "keep_alive", "content_length",
                 "chunked", "expect_continue", "upgrade", "has_body")

    def __init__(self, method: str, target: bytes, version: str, headers: Headers,
                 keep_alive: bool, content_length: Optional[int], chunked: bool,
                 expect_continue: bool, upgrade: bool) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.has_body = chunked or bool(content_length)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"


Event = Union[Request, bytes, _Sentinel]


class H1Parser:
    """Interface and shared state of both engines.

    ``feed(data)`` hands over received bytes (``b""`` = the client closed),
    ``next_event()`` returns the next event, ``start_next_cycle()`` readies the
    parser for the next request once the body is read, ``trailing_data`` holds
    the bytes after an upgrade request (handed to the WebSocket session unparsed).
    """

    name = "base"

    def __init__(self, max_line: int, max_head: int, max_body: int) -> None:
        self.max_line = max_line
        self.max_head = max_head
        self.max_body = max_body
        self.trailing_data = b""
        self._head_bytes = 0      # bytes of an incomplete head seen so far
        self._line_bytes = 0      # bytes of its current incomplete line

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def next_event(self) -> Event:
        raise NotImplementedError

    def start_next_cycle(self) -> None:
        raise NotImplementedError

    def upgrade_data(self) -> bytes:
        """After an upgrade request was read whole: the bytes that followed it
        (the first frames of the new protocol), handed over unparsed."""
        return self.trailing_data

    @property
    def in_head(self) -> bool:
        """True while a request head has started but is not complete."""
        return self._head_bytes > 0

    def _guard_head(self, data: bytes) -> None:
        """Account bytes of an incomplete head: long lines 414, big heads 431.

        Called with a chunk just fed when the head is still incomplete after
        it (so the whole chunk belongs to the head). Complete lines are checked
        by :func:`~gkit.proto.h1_checks.check_head`; this catches a line or head that never ends,
        so no buffer grows more than one received chunk past the limits.
        """
        self._head_bytes += len(data)
        lines = data.split(b"\n")
        longest = self._line_bytes + len(lines[0])
        if len(lines) > 1:
            longest = max(longest, max(map(len, lines[1:])))
            self._line_bytes = len(lines[-1])
        else:
            self._line_bytes = longest
        if longest > self.max_line:
            raise ProtocolError("request line or header line too long", 414)
        if self._head_bytes > self.max_head:
            raise ProtocolError("request header block too large", 431)

    def _head_done(self) -> None:
        self._head_bytes = self._line_bytes = 0
