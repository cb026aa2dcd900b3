"""How a request becomes a channel: ``with_channel``, ``as_channel``,
``async_response`` (the http-kit API)."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from .channel import Channel, HttpChannel
from .errors import HandshakeError
from .proto.websocket import accept_handshake
from .websocket import WebSocketChannel

error_log = logging.getLogger("gkit.error")

Environ = Dict[str, Any]


def _connection(environ: Environ) -> Any:
    conn = environ.get("gkit.connection")
    if conn is None:
        raise RuntimeError("with_channel needs a request served by gkit: the environ has no "
                           "'gkit.connection' (run the app with gkit.run_server or gkit's CLI)")
    return conn


def _wants_websocket(headers: Iterable[Tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def with_channel(environ: Environ, *, subprotocol: Optional[str] = None,
                 headers: Any = None) -> Channel:
    """Take the request's connection over as a :class:`Channel`.

    On a WebSocket upgrade request it answers the handshake (101, with
    ``subprotocol`` if the client offered it and any extra ``headers``); a bad
    handshake is answered with 400 and the channel comes back closed. On plain
    HTTP nothing is sent until the first ``send``.

    >>> def app(environ, start_response):                  # doctest: +SKIP
    ...     ch = with_channel(environ)
    ...     ch.on_receive(ch.send)                         # echo
    ...     return ch
    """
    conn = _connection(environ)
    if conn.channel is not None:
        return conn.channel
    conn.handed_over = True
    req = conn.request
    if not _wants_websocket(req.headers):
        ch: Channel = HttpChannel(conn)
        conn.channel = ch
        return ch  # reading starts once the app returned (its body may be unread)
    config = conn.server.config
    extra = list(headers.items()) if hasattr(headers, "items") else list(headers or ())
    try:
        response, session = accept_handshake(
            req.method, "HTTP/" + req.version,
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in req.headers],
            subprotocol=subprotocol, extra_headers=extra, deflate=config.ws_deflate,
            max_message=config.max_ws)
    except HandshakeError as exc:
        ch = HttpChannel(conn)
        conn.channel = ch
        ch.send({"status": 400, "body": f"400 Bad Request: {exc.reason}\n",
                 "headers": {"Content-Type": "text/plain; charset=utf-8",
                             "Sec-WebSocket-Version": "13", "Connection": "close"}})
        return ch
    ws = WebSocketChannel(conn, session)
    conn.channel = ws
    ws._write(response)
    from . import accesslog
    if accesslog.enabled():
        accesslog.log_request(conn, req, 101, None, time.monotonic())
    trailing = conn.parser.upgrade_data()
    if trailing:
        ws.feed(trailing)
    ws.start_reading()
    return ws


def as_channel(environ: Environ, *, on_open: Optional[Callable[[Channel], Any]] = None,
               on_receive: Optional[Callable[[Channel, Any], Any]] = None,
               on_ping: Optional[Callable[[Channel, bytes], Any]] = None,
               on_close: Optional[Callable[[Channel, str], Any]] = None,
               subprotocol: Optional[str] = None, headers: Any = None) -> Channel:
    """http-kit 2's callback form: every callback gets the channel first.

    >>> def app(environ, start_response):                  # doctest: +SKIP
    ...     return as_channel(environ, on_receive=lambda ch, msg: ch.send(msg))
    """
    ch = with_channel(environ, subprotocol=subprotocol, headers=headers)
    # Messages that came with the handshake wait in the channel until
    # on_receive is set, so the order is http-kit's: open, messages, close.
    if on_ping is not None:
        ch.on_ping(lambda data: on_ping(ch, data))
    if on_open is not None and (ch.is_open or ch.is_websocket):
        on_open(ch)
    if on_receive is not None:
        ch.on_receive(lambda message: on_receive(ch, message))
    if on_close is not None:
        ch.on_close(lambda status: on_close(ch, status))
    return ch


def async_response(environ: Environ) -> Callable[[Any], bool]:
    """The long-polling form: ``respond(response)`` later, from any greenlet, once.

    >>> def app(environ, start_response):                  # doctest: +SKIP
    ...     respond = async_response(environ)
    ...     waiting.append(respond)                        # answered on the next event
    ...     return []
    """
    ch = with_channel(environ)

    def respond(response: Any) -> bool:
        return ch.send(response, close_after_send=True)

    return respond
