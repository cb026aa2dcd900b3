"""The httptools (llhttp, C) engine: the fast default."""
from __future__ import annotations

from collections import deque
from typing import Deque, Optional

import httptools

from ..errors import ProtocolError
from .h1 import CLOSED, END, NEED_DATA, Event, H1Parser, Headers, Request, check_head


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
        self._head_bytes = self._line_bytes = 0
        self._in_head = False
        p = self._parser
        headers, self._headers = self._headers, []
        req = check_head(p.get_method(), self._url, p.get_http_version(), headers,
                         self.max_line, self.max_body, self.max_head)
        self._last_request = req
        self._events.append(req)

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
            self._after_upgrade(data[exc.args[0]:])
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, ProtocolError):  # raised by one of our callbacks
                self._error = cause
            else:
                self._error = ProtocolError(_reason(exc))
            # Events before the error still count (a pipelined request ahead
            # of a bad one is answered first); the error comes after them.
            return
        if self._in_message and not self._events:
            self._guard_head(data)

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
