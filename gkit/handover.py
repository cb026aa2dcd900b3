"""How a request becomes a channel: ``with_channel``, ``as_channel``,
``async_response`` (the http-kit API).

Each builds a channel on the request's connection (found through
``environ["gkit.connection"]``) and calls ``conn.hand_over(channel)``: the
connection moves to its CHANNEL phase and gives the worker slot back at once.
Hook point: other hand-overs (a gevent-websocket object, the raw-socket
hand-off of issue 10) live in their own modules beside this one and end in
``conn.hand_over`` the same way.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from . import accesslog
from .channel import Channel
from .connection import Connection, connection_of
from .errors import HandshakeError
from .httpchannel import HttpChannel
from .proto.websocket import accept_handshake
from .state import Exchange
from .websocket import WebSocketChannel

error_log = logging.getLogger("gkit.error")

Environ = Dict[str, Any]


def _connection(environ: Environ) -> Connection:
    return connection_of(environ.get("gkit.connection"))


def _wants_websocket(headers: Iterable[Tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _open(environ: Environ, subprotocol: Optional[str], headers: Any) -> Tuple[Channel, bool]:
    """Build the request's channel and hand the connection over to it; the
    flag says whether it opened (False: a refused WebSocket handshake)."""
    conn = _connection(environ)
    ex = conn.exchange
    if ex is None:
        raise RuntimeError("with_channel must be called while gkit serves the request "
                           "(from the app call, before it returns)")
    if ex.channel is not None:
        return ex.channel, ex.channel.is_open
    req = ex.request
    if not _wants_websocket(req.headers):
        ch: Channel = _http_channel(conn, ex)
        return ch, True  # reading starts once the app returned (its body may be unread)
    config = conn.config
    extra = list(headers.items()) if hasattr(headers, "items") else list(headers or ())
    try:
        response, session = accept_handshake(
            req.method, "HTTP/" + req.version,
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in req.headers],
            subprotocol=subprotocol, extra_headers=extra, deflate=config.ws_deflate,
            max_message=config.max_ws)
    except HandshakeError as exc:
        ch = _http_channel(conn, ex)
        ch.send({"status": exc.status_hint, "body": f"{exc.status_hint} {exc.reason}\n",
                 "headers": {"Content-Type": "text/plain; charset=utf-8",
                             "Sec-WebSocket-Version": "13", "Connection": "close"}})
        return ch, False
    ws = WebSocketChannel(conn, req, ex.client, session)
    conn.hand_over(ws)
    conn.host.counters.response(101)
    if accesslog.enabled(conn.access_hook):
        accesslog.log_request(ex.client, conn.addr, req, 101, None, time.monotonic(),
                              fmt=conn.config.access_log_format, hook=conn.access_hook)
    ws.begin(response, conn.upgrade_data())
    if config.ws_ping_interval is not None and ws.is_open:
        conn.host.deadlines.heartbeats.add(ws)  # pings from the server's sweeper (issue 12)
    return ws, True


def _http_channel(conn: Connection, ex: Exchange) -> HttpChannel:
    ch = HttpChannel(conn, ex.request, ex.client)
    conn.hand_over(ch)
    if accesslog.enabled(conn.access_hook):  # the channel logs when its response ends
        ch.log_from = ex.started or time.monotonic()
    return ch


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
    return _open(environ, subprotocol, headers)[0]


def as_channel(environ: Environ, *, on_open: Optional[Callable[[Channel], Any]] = None,
               on_receive: Optional[Callable[[Channel, Any], Any]] = None,
               on_ping: Optional[Callable[[Channel, bytes], Any]] = None,
               on_close: Optional[Callable[[Channel, str], Any]] = None,
               subprotocol: Optional[str] = None, headers: Any = None) -> Channel:
    """http-kit 2's callback form: every callback gets the channel first.

    >>> def app(environ, start_response):                  # doctest: +SKIP
    ...     return as_channel(environ, on_receive=lambda ch, msg: ch.send(msg))
    """
    ch, opened = _open(environ, subprotocol, headers)
    # Messages that came with the handshake wait in the channel until
    # on_receive is set, so the order is http-kit's: open, messages, close.
    if on_ping is not None:
        ch.on_ping(lambda data: on_ping(ch, data))
    if on_open is not None and opened:
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
