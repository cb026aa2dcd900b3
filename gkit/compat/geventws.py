"""gevent-websocket's ``environ["wsgi.websocket"]``, on a gkit WebSocket channel.

Apps written for gevent-websocket (and engineio's gevent driver, which uses
it whenever ``geventwebsocket`` is importable) read the socket from the
environ and call ``receive()``/``send()``/``close()`` on it from the app's
own greenlet. :class:`WebSocket` gives them that interface over
:func:`gkit.with_channel`, so the frames, deflate, limits and memory are
gkit's own. It is lazy: the handshake is answered on the first ``receive``,
``send`` or ``close``, so an app that calls ``with_channel`` itself, or
answers the upgrade request with a plain response, is not disturbed.

>>> def app(environ, start_response):                  # doctest: +SKIP
...     ws = environ["wsgi.websocket"]
...     while (message := ws.receive()) is not None:
...         ws.send(message)
...     return []

What matches gevent-websocket 0.10: ``receive()`` returns ``str`` for text
and ``bytearray`` for binary, ``None`` once the connection ended (then
``closed`` is True and a further ``receive`` or ``send`` raises
``WebSocketError``); ``send(message, binary=None)`` sends ``str`` as text and
anything else as binary unless ``binary`` says otherwise; ``close(code,
message)``; ``path``, ``origin``, ``protocol`` (the client's
``Sec-WebSocket-Protocol`` header, as gevent-websocket reports it) and
``version``. A subprotocol is chosen as gevent-websocket does: the server's
app may have ``app_protocol(path)``, and its answer is accepted when the
client offered it. What differs: ``send`` queues instead of writing in the
caller (it waits only while more than :data:`HIGH_WATER` bytes are queued),
and pings are answered by gkit as they come, not inside ``receive``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Union

from ..channel import Channel
from ..errors import ChannelClosed
from ..handover import with_channel

try:  # the apps catch gevent-websocket's own class when it is installed
    from geventwebsocket.exceptions import WebSocketError
except ImportError:
    class WebSocketError(OSError):  # type: ignore[no-redef]
        """gevent-websocket's error (a ``socket.error``): the WebSocket is closed."""

__all__ = ["WebSocket", "WebSocketError", "HIGH_WATER", "is_websocket_upgrade"]

HIGH_WATER = 1 << 20  # bytes queued past which send() waits for the socket, as a write would
MSG_ALREADY_CLOSED = "Connection is already closed"
MSG_SOCKET_DEAD = "Socket is dead"

Environ = Dict[str, Any]


def is_websocket_upgrade(environ: Environ) -> bool:
    """Does this request ask for a WebSocket (GET with ``Upgrade: websocket``)?"""
    return (environ.get("REQUEST_METHOD") == "GET"
            and "websocket" in environ.get("HTTP_UPGRADE", "").lower())


class WebSocket:
    """gevent-websocket's ``WebSocket`` over a gkit channel; see the module docs."""

    def __init__(self, environ: Environ, app: Optional[Callable[..., Any]] = None) -> None:
        self.environ = environ
        self._app = app
        self._ch: Optional[Channel] = None
        self.closed = False

    # -- what gevent-websocket reads from the request -------------------------------
    @property
    def path(self) -> Optional[str]:
        return self.environ.get("PATH_INFO")

    @property
    def origin(self) -> Optional[str]:
        return self.environ.get("HTTP_ORIGIN")

    @property
    def protocol(self) -> Optional[str]:
        return self.environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")

    @property
    def version(self) -> Optional[str]:
        return self.environ.get("HTTP_SEC_WEBSOCKET_VERSION")

    @property
    def channel(self) -> Optional[Channel]:
        """The gkit channel once the handshake was answered (None before)."""
        return self._ch

    # -- the handshake, on first use ----------------------------------------------------
    def _subprotocol(self) -> Optional[str]:
        choose = getattr(self._app, "app_protocol", None)
        if choose is None:
            return None
        wanted = choose(self.environ.get("PATH_INFO", ""))
        offered = [p.strip() for p in self.protocol.split(",")] if self.protocol else []
        return wanted if wanted and wanted in offered else None

    def _channel(self) -> Channel:
        if self.closed:
            raise WebSocketError(MSG_ALREADY_CLOSED)
        ch = self._ch
        if ch is None:
            ch = self._ch = with_channel(self.environ, subprotocol=self._subprotocol())
            if not ch.is_websocket:  # a bad handshake: gkit answered 400
                self.closed = True
                raise WebSocketError(MSG_ALREADY_CLOSED)
        return ch

    # -- gevent-websocket's calls ---------------------------------------------------------
    def receive(self) -> Union[str, bytearray, None]:
        """The next message (str or bytearray); None when the connection ended."""
        ch = self._channel()
        try:
            message = ch.receive()
        except ChannelClosed:
            self.closed = True
            return None
        return message if isinstance(message, str) else bytearray(message)

    def send(self, message: Any, binary: Optional[bool] = None) -> None:
        """Send ``message``: text if it is a str (unless ``binary``), else binary."""
        ch = self._channel()
        if binary is None:
            binary = not isinstance(message, str)
        if binary:
            data: Union[str, bytes] = (message.encode("utf-8") if isinstance(message, str)
                                       else bytes(message))
        elif isinstance(message, str):
            data = message
        else:
            data = bytes(message or b"").decode("utf-8")
        if not ch.send(data):
            self.closed = True
            raise WebSocketError(MSG_SOCKET_DEAD)
        if ch.buffered > HIGH_WATER:
            ch.drain()

    def close(self, code: int = 1000, message: Union[bytes, str, None] = b"") -> None:
        """Send a close frame with ``code`` and ``message``; gkit then ends TCP."""
        if self.closed:
            return
        try:
            ch = self._channel()
        except WebSocketError:
            return
        self.closed = True
        reason = message.decode("utf-8", "replace") if isinstance(message, bytes) else (message or "")
        close_with = getattr(ch, "_close_with", None)
        if close_with is not None and (code != 1000 or reason):
            close_with(code, reason, "server-close")
        else:
            ch.close()

    def finish(self) -> None:
        """The app returned: close a WebSocket it opened and left open (1000),
        as gevent-websocket's handler does."""
        if self._ch is not None and not self.closed:
            self.closed = True
            self._ch.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("open" if self._ch is not None else "not answered")
        return f"<gkit.compat.geventws.WebSocket {self.path} {state}>"
