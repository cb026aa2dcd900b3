"""The WebSocket channel: the I/O side of ``proto.websocket``'s session.

Reading: the transport watches the socket (the connection parks); when bytes come, a greenlet
feeds them to the sans-IO session, writes what the session owes the peer
(pongs, close replies), delivers whole messages in order, and parks again.
Writing goes through the channel's non-blocking outbox (``channel.py``).
"""
from __future__ import annotations

from typing import Any, Optional

from .channel import Channel, body_bytes
from .proto.h1 import Request
from .proto.ws_events import ABNORMAL, Closed, Message, Ping, close_status
from .proto.ws_session import WsSession
from .transport import Transport

CLOSE_WAIT = 5.0  # seconds we wait for the client's close reply before cutting TCP


class WebSocketChannel(Channel):
    """A channel over an accepted WebSocket."""

    is_websocket = True
    kind = "websocket"

    def __init__(self, transport: Transport, request: Request, client: str,
                 session: WsSession) -> None:
        super().__init__(transport, request, client)
        self._ws = session
        self._timer: Any = None
        # Heartbeats (ws_ping_interval / ws_ping_timeout), kept by beat():
        self._heard = False      # bytes came since the sweeper last looked
        self._quiet_since = 0.0  # when the sweeper last saw bytes had come (0: not yet looked)
        self._ping_at = 0.0      # when the unanswered ping was sent (0: none)

    def begin(self, handshake: bytes, trailing: bytes = b"") -> None:
        """Write the handshake's 101 response, take the bytes that came after
        the request head, and start reading (``with_channel`` calls this)."""
        self._write(handshake)
        if trailing:
            self.feed(trailing)
        self._start_reading()

    # -- sending ---------------------------------------------------------------------
    def send(self, data: Any, close_after_send: Optional[bool] = None) -> bool:
        """str → a text frame; bytes-like, file-like or iterable → a binary frame."""
        if not self._open or not self._ws.is_open:
            return False
        if isinstance(data, dict):
            data = data.get("body")
        if not isinstance(data, (str, bytes)):
            try:
                data = body_bytes(data)
            except TypeError:
                return False
        self._msgs_out += 1
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
            self._timer = self._conn.call_later(CLOSE_WAIT, self._conn.close)
        return True

    # -- heartbeats ------------------------------------------------------------------
    def beat(self, now: float) -> None:
        """From the server's sweeper: ping after ``ws_ping_interval`` s without a
        byte from the client; close if ``ws_ping_timeout`` s pass without one after it.
        Any frame counts as an answer, not only a pong."""
        if self._heard or not self._quiet_since:
            self._heard = False
            self._quiet_since = now
            self._ping_at = 0.0
            return
        config = self._conn.config
        if self._ping_at:
            timeout = config.ws_ping_timeout
            if timeout is not None and now - self._ping_at >= timeout:
                self._ping_timed_out()
        elif now - self._quiet_since >= (config.ws_ping_interval or 0.0):
            self._ping_at = now
            self.ping()

    def _ping_timed_out(self) -> None:
        """No answer to a ping: 1011 on the wire (as websockets and uvicorn send),
        ``on_close("ping-timeout")``, and TCP closed at once (the peer is gone)."""
        if not self._open:
            return
        self._write(self._ws.send_close(1011, "ping timeout"))
        self._closed("ping-timeout")
        self._conn.close()

    # -- reading ---------------------------------------------------------------------
    def _start_reading(self) -> None:
        # TLS: a greenlet blocks in recv, with no deadline
        self._conn.watch(self._read, tls_reader=True)

    def _read(self) -> None:
        conn = self._conn
        while not conn.closed and not self._ws.closed:
            data = conn.recv_now()
            if data is None:
                return self._start_reading()
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """Hand received bytes (b"" = EOF) to the session and act on its events."""
        self._heard = True
        ws = self._ws
        self._bytes_in += len(data)
        events = ws.receive_data(data)
        out = ws.data_to_send(close=False)  # pongs
        if out:
            self._write(out)
        # Messages are delivered before what the session owes is written, so
        # the app's replies to messages that came in the same read as a close
        # (or a bad frame) go out before the close reply (Autobahn 3.2, 5.15...).
        for event in events:
            kind = type(event)
            if kind is Message:
                self._msgs_in += 1
                if self._open:
                    self._deliver(event.data)  # type: ignore[union-attr]
            elif kind is Ping:
                if self._on_ping is not None and self._open:
                    self._call(self._on_ping, event.data)  # type: ignore[union-attr]
            elif kind is Closed:
                out = ws.data_to_send()
                if out:
                    self._write(out)
                code = event.code  # type: ignore[union-attr]
                self._closed("going-away" if code == ABNORMAL else close_status(code))
                self._end()

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._when_flushed(self._conn.close)

    # -- the server's side -------------------------------------------------------------
    def app_returned(self) -> None:
        pass  # reading started with the handshake

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
