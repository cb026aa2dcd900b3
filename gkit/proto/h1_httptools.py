"""The httptools (llhttp, C) engine: the fast default.

llhttp parses each read at once (heads, bodies, pipelined requests) and
reports callbacks without byte positions. gkit still needs to know which
bytes of a read belong to which part of a message: to time and bound an
incomplete head (``in_head``, 414, 431: only head bytes count, never body
bytes or the bytes of an earlier request in the same read), and to put a
chunked body through the shared :class:`~gkit.proto.chunked.ChunkedChecker`. So
after llhttp has parsed a read, :meth:`HttptoolsParser._walk` goes over it
again with the framing of the heads llhttp just reported: heads end at the
first empty line (llhttp takes no bare LF), bodies by their length or by
the checker. In the common case (one whole request in a read) that is one
``find`` and one ``count``.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional

import httptools

from ..errors import ProtocolError
from .chunked import ChunkedChecker
from .h1 import CLOSED, END, NEED_DATA, Event, H1Parser, Headers, Request
from .h1_checks import check_head, check_request_line

# Where the walk over received bytes is: which part of a message comes next.
_HEAD, _BODY, _CHUNKED, _UPGRADED = range(4)


class HttptoolsParser(H1Parser):
    """llhttp parses; gkit's callbacks turn its callbacks into events."""

    name = "httptools"

    def __init__(self, max_line: int, max_head: int, max_body: int) -> None:
        super().__init__(max_line, max_head, max_body)
        self._parser = httptools.HttpRequestParser(self)
        self._events: Deque[Event] = deque()
        self._url = b""
        self._headers: Headers = []
        self._body_seen = 0
        self._in_message = False
        self._in_head = False  # header callbacks now belong to a head, not to trailers
        self._upgraded = False
        self._upgrade_body = 0  # body bytes of an upgrade request still to come
        self._eof = False
        self._error: Optional[ProtocolError] = None
        self._last_request: Optional[Request] = None
        # The walk (see the module docstring).
        self._new_heads: List[Request] = []  # heads llhttp completed in this read
        self._part = _HEAD
        self._left = 0  # Content-Length body bytes still to come
        self._chunks: Optional[ChunkedChecker] = None
        self._line1: Optional[bytes] = b""  # the request line so far; None once checked
        self._events_before = 0  # events queued before the read being walked
        self._last_body: Optional[Request] = None  # the request whose chunked body is walked
        self._tail = b""  # the last 3 bytes of an incomplete head

    # -- llhttp callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._url = b""
        self._headers = []
        self._body_seen = 0

    def on_url(self, url: bytes) -> None:
        self._url += url  # one call but for a URL split across reads

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp reports a chunked body's trailer fields through this callback
        # too, after the head was handed over. gkit drops trailers (as its h11
        # engine does): they must never become fields of any request.
        if self._in_head:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        p = self._parser
        headers, self._headers = self._headers, []
        req = check_head(p.get_method(), self._url, p.get_http_version(), headers,
                         self.max_line, self.max_body, self.max_head)
        self._last_request = req
        self._events.append(req)
        self._new_heads.append(req)

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        if self._body_seen > self.max_body:
            raise ProtocolError("request body too large", 413)
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._events.append(END)

    # -- H1Parser ---------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
            return
        if self._upgraded:
            self._after_upgrade(data)
            return
        events_before = len(self._events)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded = True
            # httptools tells llhttp to skip the body of an upgrade request;
            # a declared body is still the request's, not the new protocol's.
            req = self._last_request
            if req is not None and req.content_length:
                if self._events and self._events[-1] is END:
                    self._events.pop()
                self._upgrade_body = req.content_length
            self._walk(data, events_before)
            if self._error is None:
                self._after_upgrade(data[exc.args[0]:])
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, ProtocolError):  # raised by one of our callbacks
                self._error = cause
            else:
                self._error = ProtocolError(_reason(exc))
            # Events before the error still count (a pipelined request ahead
            # of a bad one is answered first); the error comes after them.
        heads = self._new_heads
        if len(heads) == 1 and not self._in_message and not self._head_bytes \
                and self._part == _HEAD and self._error is None:
            # The common case in one look: this read began between requests
            # and held exactly one whole request, with no chunked body (llhttp
            # is between messages again). The walk would only check its
            # request line: one space each side of the target, no leading
            # empty line (then the method would not start the read).
            req = heads[0]
            m = len(req.method)
            u = m + 1 + len(req.target)
            if not req.chunked and not req.upgrade and data[m] == 32 and data[m + 1] != 32 \
                    and data[u] == 32 and data[u + 1] == 72:  # "H" of HTTP/
                heads.clear()
                return
        self._walk(data, events_before)

    def _walk(self, data: bytes, events_before: int) -> None:
        """Go over a read llhttp has parsed, part by part (see the module docstring)."""
        heads = self._new_heads
        self._events_before = events_before
        pos = 0
        end = len(data)
        try:
            while pos < end:
                part = self._part
                if part == _HEAD:
                    pos = self._walk_head(data, pos, heads)
                elif part == _BODY:
                    take = min(self._left, end - pos)
                    pos += take
                    self._left -= take
                    if not self._left:
                        self._part = _HEAD
                elif part == _CHUNKED:
                    assert self._chunks is not None
                    try:
                        pos = self._chunks.feed(data, pos)
                    except ProtocolError as exc:
                        # llhttp took bytes gkit refuses: its events from
                        # them go; the request stays (reading its body fails).
                        self._cut(events_before, self._last_body, inclusive=False)
                        self._error = exc
                        return
                    if self._chunks.done:
                        self._chunks = None
                        self._part = _HEAD
                else:
                    return
        finally:
            heads.clear()

    def _walk_head(self, data: bytes, pos: int, heads: List[Request]) -> int:
        """The head part of the walk; returns where the head (or the read) ends."""
        end = len(data)
        if not self._head_bytes:  # a new head
            # RFC 9112 §2.2: empty lines before a request line are skipped.
            while pos < end and data[pos] in b"\r\n":
                pos += 1
            if pos == end:
                return end
            self._line1 = b""
            self._tail = b""
        try:
            if self._line1 is not None:
                eol = data.find(b"\n", pos)
                if eol < 0:
                    self._line1 += data[pos:]
                else:
                    line = self._line1 + data[pos:eol]
                    self._line1 = None
                    check_request_line(line[:-1] if line[-1:] == b"\r" else line)
            tail = self._tail
            stop = (tail + data[pos:pos + 3]).find(b"\r\n\r\n") if tail else -1
            if stop >= 0:  # the empty line began in the last read
                stop = pos + stop + 4 - len(tail)
            else:
                stop = data.find(b"\r\n\r\n", pos)
                stop = stop + 4 if stop >= 0 else -1
            if stop < 0:
                self._guard_head(data[pos:])
                self._tail = (tail + data[pos:])[-3:]
                return end
        except ProtocolError as exc:
            self._cut(self._events_before, heads[0] if heads else None, True)
            self._error = exc
            self._part = _UPGRADED  # the walk stops: nothing after a refused head counts
            return end
        self._head_done()
        if not heads:  # llhttp refused this head (its error is set): the walk ends
            self._part = _UPGRADED
            return end
        req = heads.pop(0)
        if req.upgrade:
            self._part = _UPGRADED
        elif req.chunked:
            self._chunks = ChunkedChecker(self.max_line, self.max_head, self.max_body)
            self._last_body = req
            self._part = _CHUNKED
        elif req.content_length:
            self._left = req.content_length
            self._part = _BODY
        return stop

    def _cut(self, events_before: int, ref: Optional[Request], inclusive: bool) -> None:
        """Drop the events of this read from ``ref`` on (or after it)."""
        if ref is None:  # llhttp made nothing of the refused part
            return
        events = self._events
        keep = events_before
        for i in range(keep, len(events)):
            if events[i] is ref:
                keep = i if inclusive else i + 1
                break
        while len(events) > keep:
            events.pop()

    def _after_upgrade(self, data: bytes) -> None:
        left = self._upgrade_body
        if left:
            body, data = data[:left], data[left:]
            if body:
                self._events.append(body)
                self._upgrade_body = left = left - len(body)
            if not left:
                self._events.append(END)
        self.trailing_data += data

    def next_event(self) -> Event:
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        if self._eof:
            if self._in_message or self._upgrade_body:
                raise ProtocolError("client closed in the middle of a request")
            return CLOSED
        return NEED_DATA

    def start_next_cycle(self) -> None:
        pass  # llhttp moves on to the next request by itself


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\r", " ").replace("\n", " ")[:100]
