"""A connection's reads and writes, and its waits on a slow client.

Reads go straight to the non-blocking ``_socket`` under gevent's socket (no
hub round trip when data is there); writes try a plain ``send`` first and
wait for the socket to take the rest. Every wait on the client has a
deadline on progress (``idle_timeout`` per wait; the request body's own
deadline on top) and lends the worker slot out meanwhile (:meth:`ClientIO._wait`):
a request waiting on its client computes nothing, so it holds no slot.

:class:`ClientIO` is a part of ``connection.Connection`` (a mixin with no
state of its own: the fields are the connection's).
"""
from __future__ import annotations

import socket
import time
from typing import Any, Optional

from gevent.socket import wait as wait_io
from greenlet import getcurrent

from .connfields import ConnectionFields
from .errors import ProtocolError
from .proto.h1 import END, NEED_DATA
from .state import Exchange

BUF = 65536
DRAIN_LIMIT = 65536  # unread body bytes read and dropped to keep a connection alive
TLS_PIECE = 16384  # bytes per TLS sendall (one record): its deadline becomes one on progress


class ClientIO(ConnectionFields):
    """Reads and writes of a :class:`~gkit.connection.Connection` (the
    :class:`~gkit.transport.Transport` I/O methods)."""

    __slots__ = ()

    # -- writes -----------------------------------------------------------------------
    def send(self, data: Any) -> None:
        """Write all of ``data``, blocking this greenlet until the socket took it.

        The deadline is on progress, not on the whole call (STYLE.md): each
        wait for the socket to take more may last ``idle_timeout``, so a
        client reading slowly but steadily gets everything, one that stops
        reading is cut (``socket.timeout``). While it waits, the worker slot
        is lent out (:meth:`wait_writable`)."""
        self.host.counters.bytes_out += len(data)
        raw = self.raw
        if raw is None:
            self._send_tls(data)
            return
        try:
            n = raw.send(data)
        except BlockingIOError:
            n = 0
        if n == len(data):
            return
        view = memoryview(data)[n:]
        while view:
            self.wait_writable()
            try:
                n = raw.send(view)
            except BlockingIOError:
                continue
            view = view[n:]

    def _send_tls(self, data: Any) -> None:
        # gevent's SSL sendall has a deadline for the whole call and blocks
        # inside: give it one TLS record at a time, each after waiting for
        # the socket to take more (lending the worker slot meanwhile), so the
        # deadline is on progress and a stalled reader holds no slot.
        sock = self.sock
        if len(data) <= TLS_PIECE:
            sock.sendall(data)
            return
        view = memoryview(data)
        sock.sendall(view[:TLS_PIECE])
        view = view[TLS_PIECE:]
        while view:
            self.wait_writable()
            sock.sendall(view[:TLS_PIECE])
            view = view[TLS_PIECE:]

    def wait_writable(self) -> None:
        """Block until the socket takes more bytes, at most ``idle_timeout``
        (``socket.timeout`` past it, ``OSError`` if it is closed meanwhile)."""
        self._wait(self.sock._write_event, self.host.config.idle_timeout)  # type: ignore[attr-defined]

    def _wait(self, event: Any, timeout: float) -> None:
        """Wait on the socket's ``event`` for at most ``timeout`` s. A worker
        slot held by this greenlet is given back meanwhile and taken again
        after: a request waiting on its client computes nothing, so it does
        not keep other requests from running (slow uploads, slow readers)."""
        ex = self.exchange
        lend = ex is not None and ex.worker is not None and ex.holder is getcurrent()
        if lend:
            self._release_slot(ex)  # type: ignore[arg-type]
        try:
            # The socket's own watcher, so closing the socket wakes this wait
            # (with an OSError); its timeout is left alone (a TLS channel's
            # reader may be blocked with none).
            wait_io(event, timeout, timeout_exc=socket.timeout("timed out"))
        finally:
            if lend:
                self._take_slot(ex)  # type: ignore[arg-type]

    def _take_slot(self, ex: Exchange) -> None:
        worker = self.host.pool.acquire(admitted=True)
        ex.worker = worker
        getcurrent().name = worker  # type: ignore[attr-defined]

    def try_send(self, data: bytes) -> int:
        """Write what the socket takes now without blocking; the count written
        (0 on TLS, where only :meth:`send` writes). OSError if the peer left."""
        raw = self.raw
        if raw is None:
            return 0
        try:
            n: int = raw.send(data)
        except BlockingIOError:
            return 0
        self.host.counters.bytes_out += n
        return n

    def _release_slot(self, ex: Exchange) -> None:
        worker = ex.worker
        if worker is not None:
            ex.worker = None  # never released twice
            self.host.pool.release(worker)

    # -- reads ------------------------------------------------------------------------
    def recv_now(self) -> Optional[bytes]:
        """The bytes waiting now: b"" at EOF or on an error, None when none
        are waiting. On TLS it blocks this greenlet until bytes come."""
        raw = self.raw
        try:
            data: bytes = self.sock.recv(BUF) if raw is None else raw.recv(BUF)
        except BlockingIOError:
            return None
        except OSError:
            return b""
        self.host.counters.bytes_in += len(data)
        return data

    def pipelined(self, data: bytes) -> None:
        """Bytes of a next request that came while a channel's response was open."""
        self.parser.feed(data)

    def upgrade_data(self) -> bytes:
        """Bytes that came after an upgrade request's head (a WebSocket's first frames)."""
        return self.parser.upgrade_data()  # type: ignore[no-any-return]

    def recv_body(self, ex: Exchange) -> bytes:
        """Wait for more request body bytes (b"" at EOF), within the body
        deadline: ``body_timeout`` from the first read of the body, plus a
        second per ``body_min_rate`` bytes received (mod_reqtimeout's
        ``body=20,MinRate=500``); past it, 408. Each wait is also bounded by
        ``idle_timeout``, and lends the worker slot out (:meth:`_wait`)."""
        raw = self.raw
        sock = self.sock
        while True:
            try:
                if raw is not None:
                    return raw.recv(BUF)  # type: ignore[no-any-return]
                if sock.pending():  # type: ignore[attr-defined]
                    return sock.recv(BUF)  # type: ignore[no-any-return]
            except BlockingIOError:
                pass
            config = self.host.config
            deadline = ex.body_since + config.body_timeout
            if config.body_min_rate:
                deadline += ex.body_received / config.body_min_rate
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError(
                    f"request body too slow: {ex.body_received} bytes in {config.body_timeout:g} s "
                    f"plus 1 s per {config.body_min_rate} bytes (body_timeout, body_min_rate)", 408)
            try:
                self._wait(sock._read_event, min(config.idle_timeout, left))  # type: ignore[attr-defined]
            except socket.timeout:
                if time.monotonic() < deadline:
                    raise  # idle_timeout: a stalled client, cut as any other
                continue  # the body deadline passed: answered with 408 above
            if raw is None:
                return sock.recv(BUF)  # type: ignore[no-any-return]

    def read_body(self) -> bytes:
        """The next piece of the request body; b"" at its end."""
        parser = self.parser
        ex = self.exchange
        if ex is None:
            raise ProtocolError("no request in flight")
        if not ex.body_since:
            ex.body_since = time.monotonic()
        while True:
            ev = parser.next_event()
            if ev is NEED_DATA:
                data = self.recv_body(ex)
                if not data:
                    raise ProtocolError("the client closed before the end of the request body")
                ex.body_received += len(data)
                self.host.counters.bytes_in += len(data)
                parser.feed(data)
                continue
            if ev is END:
                ex.body_done = True
                return b""
            if type(ev) is bytes:
                return ev
            raise ProtocolError("unexpected request event in a body")

    def drain_body(self) -> bool:
        """Drop the unread rest of a body to keep the connection; False if too much."""
        ex = self.exchange
        if ex is None or ex.body_done:
            return True
        left = DRAIN_LIMIT
        try:
            while left > 0:
                chunk = self.read_body()
                if not chunk:
                    return True
                left -= len(chunk)
        except (OSError, ProtocolError):
            pass
        return False
