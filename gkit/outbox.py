"""A channel's outbox: writes that never block the caller, within a memory budget.

``Outbox._write`` tries a non-blocking write and queues what the socket does
not take at once; one flusher greenlet writes the queue out in order, so
sends from many greenlets never interleave. Unwritten bytes are bounded per
channel (``max_buffered``: past it the channel closes) and over all
channels (``max_buffered_total``, kept by ``budget.WriteBudget``: past it
the channel holding the most closes).

:class:`Outbox` is the base of ``channel.Channel``; the channel kinds write
only through ``_write`` and learn the end of a flush with ``_when_flushed``.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Callable, Deque, Optional

from gevent.event import Event

from .transport import Transport

error_log = logging.getLogger("gkit.error")


class Outbox:
    """The queue of bytes a channel wrote and the socket has not taken yet."""

    _bytes_out: int  # wire bytes sent, for the channel-end log line (set by Channel)

    if TYPE_CHECKING:  # defined by Channel
        def _lost(self) -> None: ...
        def _overflow(self) -> None: ...

    def __init__(self, transport: Transport) -> None:
        self._conn = transport
        self._outbox: Deque[bytes] = deque()
        self._buffered = 0
        self._flushing = False
        self._drained: Optional[Event] = None  # set when a flush ends (written or lost)
        self._write_failed = False  # queued bytes were dropped: the client left, or overflow
        self._after_flush: Optional[Callable[[], None]] = None

    @property
    def buffered(self) -> int:
        """Bytes queued but not yet written to the socket."""
        return self._buffered

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Block until queued bytes are written: True; False if ``timeout``
        passed first or the bytes were dropped (the client left)."""
        if not self._outbox and not self._flushing:
            return not self._write_failed
        if self._drained is None:
            self._drained = Event()
        return self._drained.wait(timeout) and not self._write_failed

    # -- writing (for the channel kinds) -------------------------------------------------
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
