"""The WSGI request body and file objects: ``wsgi.input`` (streamed from the
socket as the app reads it, with ``100 Continue`` on the first read) and
``wsgi.file_wrapper`` (served with ``sendfile``)."""
from __future__ import annotations

import os
from typing import Callable, List, Optional

from .connection import Connection
from .files import FileWrapper  # noqa: F401 (wsgi.file_wrapper; re-exported)
from .proto.h1 import Request


class Input:
    """``wsgi.input``: the body streamed from the socket as the app reads it."""

    def __init__(self, conn: Connection, req: Request) -> None:
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


def sendfile_all(sock_fd: int, fd: int, offset: int, count: int,
                 wait_writable: Callable[[], None]) -> int:
    """Cooperative ``os.sendfile``: ``wait_writable`` (``Connection.wait_writable``:
    at most ``idle_timeout`` per wait, the worker slot lent out meanwhile)
    waits when the socket takes nothing."""
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(sock_fd, fd, offset + sent, count - sent)
        except BlockingIOError:
            wait_writable()
            continue
        if n == 0:
            break
        sent += n
    return sent
