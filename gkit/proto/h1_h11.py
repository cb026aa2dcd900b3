"""The h11 (pure Python) engine: used when httptools is not installed."""
from __future__ import annotations

import h11

from ..errors import ProtocolError
from typing import Optional

from .chunked import ChunkedChecker
from .h1 import CLOSED, END, NEED_DATA, Event, H1Parser
from .h1_checks import check_framing_bytes, check_head, check_head_bytes, check_request_line


class H11Parser(H1Parser):
    """h11 parses; each request cycle gets a fresh ``h11.Connection``.

    gkit writes responses itself (one writer for both engines), so h11 never
    sees them; instead of replaying the response into h11 to reach its next
    cycle, the unparsed bytes (h11's public ``trailing_data``) move on to a
    new ``h11.Connection``.
    """

    name = "h11"

    def __init__(self, max_line: int, max_head: int, max_body: int) -> None:
        super().__init__(max_line, max_head, max_body)
        self._conn = self._new_conn()
        self._in_message = False
        self._body_seen = 0
        self._upgrading = False
        self._head_tail = b""  # last byte of head bytes already checked
        self._head_started = False  # bytes of the next head were fed since the last cycle
        self._head_raw = b""  # the raw bytes of the head being received
        self._chunks: Optional[ChunkedChecker] = None  # gkit's check of a chunked body
        self._error: Optional[ProtocolError] = None  # found by it, raised after the head

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)

    def feed(self, data: bytes) -> None:
        if self._upgrading:
            self.trailing_data += data
            return
        if self._chunks is not None and data:
            self._check_chunks(data)
        if not self._in_message and data:
            if not self._head_started:
                # RFC 9112 §2.2: ignore empty lines before a request line (llhttp does).
                data = data.lstrip(b"\r\n")
                if not data:
                    return
                self._head_started = True
            self._check_head_part(data)
        try:
            self._conn.receive_data(data)
        except h11.RemoteProtocolError as exc:  # data after EOF and the like
            raise ProtocolError(str(exc), exc.error_status_hint) from None

    def _check_head_part(self, data: bytes) -> None:
        """h11 takes bare LF and obs-fold; llhttp does not, so neither does gkit.

        ``_head_tail`` holds the last bytes of the head seen so far, so that
        a line end or the head's end split across reads is seen whole.
        """
        tail = self._head_tail
        end = (tail + data).find(b"\r\n\r\n")
        head = data if end < 0 else data[:max(0, end + 4 - len(tail))]
        prefix = tail[-2:]
        if prefix[:1] == b"\n":  # its CR was cut off: that LF was checked already
            prefix = prefix[1:]
        check_head_bytes(prefix + head)
        self._head_raw += head
        self._head_tail = (tail + head)[-3:] if end < 0 else b""
        if end < 0:
            self._guard_head(data)

    def _check_chunks(self, data: bytes) -> None:
        """Body bytes go through gkit's chunked checks before h11 sees them."""
        assert self._chunks is not None
        self._chunks.feed(data, 0)
        if self._chunks.done:
            self._chunks = None  # what follows is the next head (start_next_cycle)

    def next_event(self) -> Event:
        if self._error is not None:
            raise self._error
        if self._upgrading:
            return NEED_DATA
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 501:
                check_framing_bytes(self._head_raw)  # llhttp's answer, where it differs
            error = ProtocolError(_reason(exc), exc.error_status_hint)
            method, space, _ = self._head_raw.partition(b" ")
            if space:  # a HEAD request's refusal has no body
                error.method = method.decode("latin-1")
            raise error from None
        if type(event) is h11.Data:
            self._body_seen += len(event.data)
            if self._body_seen > self.max_body:
                raise ProtocolError("request body too large", 413)
            return bytes(event.data) if event.data else self.next_event()
        if type(event) is h11.Request:
            self._head_done()
            # The fields as sent (h11 lower-cases some values and merges
            # repeated Content-Length), so both engines hand over the same.
            lines = self._head_raw.split(b"\r\n")
            check_request_line(lines[0])
            headers = [(name, value.strip(b" \t")) for name, _, value in
                       (line.partition(b":") for line in lines[1:-2])]
            self._head_raw = self._head_tail = b""
            self._head_started = False
            self._in_message = True
            self._body_seen = 0
            req = check_head(event.method, event.target, event.http_version.decode("ascii"),
                             headers, self.max_line, self.max_body, self.max_head)
            if req.chunked:
                self._chunks = ChunkedChecker(self.max_line, self.max_head, self.max_body)
                try:  # the body bytes that came with the head
                    self._check_chunks(bytes(self._conn.trailing_data[0]))
                except ProtocolError as exc:
                    self._error = exc  # the request is seen; reading its body fails
            return req
        if type(event) is h11.EndOfMessage:  # trailers: checked by ChunkedChecker, dropped
            self._in_message = False
            self._chunks = None
            return END
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:  # an upgrade (or CONNECT) request was read whole
            self._upgrading = True
            self.trailing_data, _closed = self._conn.trailing_data
            return NEED_DATA
        if type(event) is h11.ConnectionClosed:
            if self._in_message:
                raise ProtocolError("client closed in the middle of a request")
            return CLOSED
        raise ProtocolError(f"unexpected event {type(event).__name__}")  # pragma: no cover

    def upgrade_data(self) -> bytes:
        # h11 hands the bytes after an upgrade request over once it pauses,
        # which is after the request's end: step there.
        while not self._upgrading:
            ev = self.next_event()
            if ev is NEED_DATA or ev is CLOSED:
                break
        return self.trailing_data

    def start_next_cycle(self) -> None:
        data, closed = self._conn.trailing_data
        self._conn = self._new_conn()
        data = bytes(data).lstrip(b"\r\n")
        if data:
            self._head_started = True
            self._check_head_part(data)
            self._conn.receive_data(data)
        if closed:
            self._conn.receive_data(b"")

    @property
    def in_head(self) -> bool:
        return not self._in_message and (self._head_bytes > 0 or bool(self._conn.trailing_data[0]))


def _reason(exc: h11.RemoteProtocolError) -> str:
    """h11's message without the Python repr some of them carry
    (``illegal request line: bytearray(b'GET / ')``): the client gets words."""
    text = str(exc) or "malformed request"
    if "b'" in text or 'b"' in text or "bytearray(" in text:
        text = text.partition(": ")[0]
    return text
