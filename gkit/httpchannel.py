"""The HTTP channel: streaming and long polling over one HTTP response.

The first ``send`` writes the response head (the whole response when it
closes too: long polling); later ones write chunks (``Transfer-Encoding:
chunked``, or the body until close for HTTP/1.0). While the response is
open the channel watches the client only to learn that it left; a
pipelined next request waits in the parser. When the response ends, the
connection goes on to its next request (``Transport.channel_done``).
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any, List, Optional, Tuple

from .channel import Channel, body_bytes, error_log
from .proto.h1 import Request
from .proto.response import CHUNKED, NO_BODY, UNTIL_CLOSE, BadResponse
from .transport import Transport


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
