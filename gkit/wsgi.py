"""The WSGI side of a request: ``wsgi.input``, ``start_response``, the
response writer and ``wsgi.file_wrapper``.

``run_app`` calls the app in the connection's greenlet (which holds a worker
slot) and writes what it returns through the one response framing of
``proto.response``.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Tuple

from gevent.socket import wait_write

from . import accesslog
from .channel import Channel
from .errors import ProtocolError
from .proto.environ import apply_proxy_headers, build_environ
from .proto.h1 import Request
from .proto.response import CHUNKED, LENGTH, NO_BODY, BadResponse, ResponseHead

if TYPE_CHECKING:
    from .connection import Connection

error_log = logging.getLogger("gkit.error")

HANDED_OVER = object()  # run_app's answer once a channel owns the connection


class ClientGone(OSError):
    """The client closed the connection while the app was reading or writing."""


class Input:
    """``wsgi.input``: the body streamed from the socket as the app reads it."""

    def __init__(self, conn: "Connection", req: Request) -> None:
        self._conn = conn
        self._buf = b""
        self._eof = not req.has_body
        self._continue = req.expect_continue and req.has_body and req.version == "1.1"

    def _more(self) -> bool:
        if self._eof:
            return False
        if self._continue:
            self._continue = False
            self._conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunk = self._conn.read_body()
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            data, self._buf = self._buf, b""
            return data
        while len(self._buf) < size and self._more():
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size: Optional[int] = -1) -> bytes:
        while True:
            end = self._buf.find(b"\n") + 1
            if end or (size is not None and 0 <= size <= len(self._buf)) or not self._more():
                break
        if not end:
            end = len(self._buf)
        if size is not None and 0 <= size < end:
            end = size
        data, self._buf = self._buf[:end], self._buf[end:]
        return data

    def readlines(self, hint: Optional[int] = -1) -> List[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> "Input":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _NoBody:
    """``wsgi.input`` of a request without a body: always at its end; one
    shared instance, as it holds no state."""

    __slots__ = ()

    def read(self, size: Optional[int] = -1) -> bytes:
        return b""

    def readline(self, size: Optional[int] = -1) -> bytes:
        return b""

    def readlines(self, hint: Optional[int] = -1) -> List[bytes]:
        return []

    def __iter__(self) -> "_NoBody":
        return self

    def __next__(self) -> bytes:
        raise StopIteration


NO_BODY_INPUT = _NoBody()


class FileWrapper:
    """``wsgi.file_wrapper``: served with ``os.sendfile`` when the socket allows."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def sendfile_span(self) -> Optional[Tuple[int, int, int]]:
        """(fd, offset, count) when the file can go out with sendfile, else None."""
        try:
            fd = self.filelike.fileno()
            offset = self.filelike.tell()
            size = os.fstat(fd).st_size
        except (AttributeError, OSError, ValueError):
            return None
        return fd, offset, max(size - offset, 0)


class ResponseWriter:
    """``start_response`` (PEP 3333) and the writer of its response in one
    object: frames the response, and sends head and first body bytes in one
    send."""

    __slots__ = ("conn", "req", "status", "headers", "head", "sent", "keep_alive", "broken")

    def __init__(self, conn: "Connection", req: Request, keep_alive: bool) -> None:
        self.conn = conn
        self.req = req
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []
        self.head: Optional[ResponseHead] = None  # shared, memoized: never changed
        self.sent = 0
        self.keep_alive = keep_alive
        self.broken = False  # the body broke its framing: close after it

    def __call__(self, status: str, headers: List[Tuple[str, str]],
                 exc_info: Any = None) -> Callable[[bytes], None]:
        """``start_response(status, headers, exc_info=None) -> write``."""
        if exc_info:
            try:
                if self.head is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        return self.write

    def begin(self, length: Optional[int]) -> bytes:
        if self.status is None:
            raise BadResponse("the app returned without calling start_response")
        req = self.req
        self.head = head = self.conn.server.response_head(
            self.status, self.headers, req.method, req.version,
            self.keep_alive and not self.conn.closing, length)
        return head.data

    def write(self, data: bytes) -> None:
        out = self.begin(None) if self.head is None else b""
        head = self.head
        assert head is not None
        if data:
            mode = head.mode
            if mode == CHUNKED:
                out += b"%x\r\n" % len(data) + data + b"\r\n"
            elif mode == LENGTH:
                room = head.length - self.sent  # type: ignore[operator]
                if len(data) > room:
                    data = data[:room]
                    self.broken = True  # the app wrote more than it declared
                out += data
            elif mode != NO_BODY:
                out += data
            self.sent += len(data)
        if out:
            self.conn.send(out)

    def finish(self) -> None:
        if self.head is None:
            self.conn.send(self.begin(0))
            return
        head = self.head
        if head.mode == CHUNKED:
            self.conn.send(b"0\r\n\r\n")
        elif head.mode == LENGTH and self.sent != head.length:
            self.broken = True  # the client cannot find the end: close


def run_app(conn: "Connection", req: Request, keep_alive: bool) -> Any:
    """Call the app for ``req``; returns whether the connection stays open,
    or HANDED_OVER when the app opened a channel."""
    server = conn.server
    inp = Input(conn, req) if req.has_body else NO_BODY_INPUT
    environ = build_environ(req, server.base_environ(conn.secure), conn.addr, inp)
    config = server.config
    if config.proxy_headers and server.trusts(conn.addr[0]):
        apply_proxy_headers(environ, config.forwarded_allow_ips)
        conn.client = environ["REMOTE_ADDR"]
    environ["gkit.connection"] = conn
    writer = ResponseWriter(conn, req, keep_alive)
    result = None
    logged = server.log_access
    started = time.monotonic() if logged else 0.0
    try:
        result = server.app(environ, writer)
        # Once a channel was opened the channel alone answers, even if it
        # already has and the connection moved on (conn.channel is None then).
        if conn.handed_over:
            if logged and conn.channel is not None:
                conn.channel.log_from = started
            return HANDED_OVER
        _write_result(conn, writer, result)
    except (OSError, ClientGone):
        if conn.handed_over:
            return HANDED_OVER
        return False
    except ProtocolError as exc:  # from reading wsgi.input (413, bad chunk)
        if conn.handed_over:
            if conn.channel is not None:
                conn.channel.abort()
            return HANDED_OVER
        if writer.head is None:
            conn.send_error(exc.status_hint, exc.reason)
        return False
    except BaseException as exc:
        # BaseException, not Exception: an app that lets SystemExit,
        # KeyboardInterrupt, gevent.Timeout or GreenletExit escape must not
        # take the hub (and every other connection) down with it, nor leave
        # its own connection unanswered and open. No one else throws into
        # this greenlet (a runner of the connection), so nothing is owed upstream.
        error_log.error("error in app %r for %s %s", server.app, req.method,
                        environ.get("PATH_INFO"), exc_info=sys.exc_info())
        if conn.handed_over:
            if conn.channel is not None:
                conn.channel.abort()
            return HANDED_OVER
        if writer.head is None:
            conn.send_error(500, "the app failed" if not isinstance(exc, BadResponse) else str(exc))
        return False
    finally:
        # The framework's iterable is closed; a returned channel is not (it
        # lives on until the app or the client closes it).
        close = None if isinstance(result, Channel) else getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except BaseException:  # as above: nothing from the app reaches the hub
                error_log.exception("error in close() of the app's response")
        if logged and conn.channel is None:
            accesslog.log_request(conn, req, writer.head.status_code if writer.head else 500,
                                  writer.sent, started)
    if writer.head is None or not writer.head.keep_alive or writer.broken:
        return False
    return conn.drain_body()


def _write_result(conn: "Connection", writer: ResponseWriter, result: Iterable[bytes]) -> None:
    kind = type(result)
    if (kind is list or kind is tuple) and writer.head is None:
        # The common case: a body of known length, sent with its head in one send.
        if not writer.status:
            raise BadResponse("the app returned without calling start_response")
        body = b"".join(result)  # type: ignore[arg-type]
        head = writer.begin(len(body))
        framing = writer.head
        assert framing is not None
        if framing.mode == NO_BODY:
            conn.send(head)
            return
        if framing.length is not None and len(body) != framing.length:
            # The app's Content-Length disagrees with its body: never send
            # more than declared, and close when the client cannot find the end.
            body = body[:framing.length]
            writer.broken = True
        writer.sent = len(body)
        conn.send(head + body)
        return
    if isinstance(result, FileWrapper) and conn.raw is not None:
        span = result.sendfile_span()
        if span is not None and writer.req.method != "HEAD":
            fd, offset, count = span
            conn.send(writer.begin(count))
            if writer.head is not None and writer.head.mode == LENGTH:
                count = min(count, writer.head.length or 0)
            writer.sent = conn.sendfile(fd, offset, count)
            writer.finish()
            return
    for chunk in result:
        if chunk:
            writer.write(chunk)
    writer.finish()


def sendfile_all(sock_fd: int, fd: int, offset: int, count: int) -> int:
    """Cooperative ``os.sendfile``: waits for writability in gevent's hub."""
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(sock_fd, fd, offset + sent, count - sent)
        except BlockingIOError:
            wait_write(sock_fd)
            continue
        if n == 0:
            break
        sent += n
    return sent
