"""The WebSocket channel: the I/O side of ``proto.websocket``'s session.

Reading: the connection parks on a read watcher; when bytes come, a greenlet
feeds them to the sans-IO session, writes what the session owes the peer
(pongs, close replies), delivers whole messages in order, and parks again.
Writing goes through the channel's non-blocking outbox (``channel.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .channel import BUF, Channel, _to_bytes
from .proto.ws_events import ABNORMAL, Closed, Message, Ping, close_status

if TYPE_CHECKING:
    from .connection import Connection
    from .proto.ws_session import WsSession

CLOSE_WAIT = 5.0  # seconds we wait for the client's close reply before cutting TCP


class WebSocketChannel(Channel):
    """A channel over an accepted WebSocket."""

    is_websocket = True

    def __init__(self, conn: "Connection", session: "WsSession") -> None:
        super().__init__(conn)
        self._ws = session
        self._timer: Any = None

    # -- sending ---------------------------------------------------------------------
    def send(self, data: Any, close_after_send: Optional[bool] = None) -> bool:
        """str → a text frame; bytes-like, file-like or iterable → a binary frame."""
        if not self._open or not self._ws.is_open:
            return False
        if isinstance(data, dict):
            data = data.get("body")
        if not isinstance(data, (str, bytes)):
            try:
                data = _to_bytes(data)
            except TypeError:
                return False
        written = self._write(self._ws.send_message(data))
        if close_after_send:
            self.close()
        return written

    def ping(self, data: bytes = b"") -> bool:
        """Send a ping frame (the client's pong is not reported)."""
        if not self._open or not self._ws.is_open:
            return False
        self._write(self._ws.send_ping(data))
        return True

    def close(self) -> bool:
        """Send close code 1000; the TCP connection ends after the client's reply."""
        return self._close_with(1000, "", "server-close")

    def _close_with(self, code: int, reason: str, status: str) -> bool:
        if not self._open:
            return False
        self._write(self._ws.send_close(code, reason))
        self._closed(status)
        if not self._conn.closed:
            self._timer = self._conn.server.hub.loop.timer(CLOSE_WAIT)
            self._timer.start(self._conn.close)
        return True

    # -- reading ---------------------------------------------------------------------
    def start_reading(self) -> None:
        conn = self._conn
        if conn.closed:
            return
        if conn.raw is None:
            conn.sock.settimeout(None)  # TLS: a greenlet blocks in recv, with no deadline
            conn.spawn(self._read)
        else:
            from .connection import PARK_CHANNEL
            conn.park(PARK_CHANNEL, self._read)

    def _read(self) -> None:
        conn = self._conn
        raw = conn.raw
        while not conn.closed and not self._ws.closed:
            if raw is not None:
                try:
                    data = raw.recv(BUF)
                except BlockingIOError:
                    return self.start_reading()
                except OSError:
                    data = b""
            else:
                try:
                    data = conn.sock.recv(BUF)
                except OSError:
                    data = b""
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """Hand received bytes (b"" = EOF) to the session and act on its events."""
        ws = self._ws
        events = ws.receive_data(data)
        out = ws.data_to_send()
        if out:
            self._write(out)
        for event in events:
            kind = type(event)
            if kind is Message:
                if self._open:
                    self._deliver(event.data)  # type: ignore[union-attr]
            elif kind is Ping:
                if self._on_ping is not None and self._open:
                    self._call(self._on_ping, event.data)  # type: ignore[union-attr]
            elif kind is Closed:
                code = event.code  # type: ignore[union-attr]
                self._closed("going-away" if code == ABNORMAL else close_status(code))
                self._end()

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._when_flushed(self._conn.close)

    # -- the server's side -------------------------------------------------------------
    def _lost(self) -> None:
        self._conn.close()
        self._closed("going-away")

    def server_close(self) -> None:
        if self._open:
            self._write(self._ws.send_close(1001, "server stopping"))
            self._closed("server-close")
        self._end()

    def abort(self) -> None:
        self._close_with(1011, "internal error", "internal-server-error")
