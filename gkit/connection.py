"""One client connection from accept to close, and its phase -- the one
owner of a connection's state.

The ``Connection`` class is put together from one part per concept:

- ``httploop.HttpLoop``: the HTTP loop (parse, dispatch, keep-alive, the
  health path, PROXY header and TLS start);
- ``clientio.ClientIO``: reads and writes, and the waits on a slow client
  that lend the worker slot out;
- ``parking.Parking``: the read watcher an idle connection parks on;
- here: the phase and its moves, accept-to-close (start, shutdown, close,
  errors) and hand-overs (to a channel, or the raw socket to the app).

These modules import only ``proto`` and the bottom layer (errors, config,
pool, runners). What they need from above they name as Protocols: the
:class:`Host` (the server), its :class:`Dispatcher` (the WSGI side) and
:class:`DeadlineKeeper`; what a connection offers to channels is :class:`Transport`.
"""
from __future__ import annotations

import logging
import socket
import sys
from typing import Any, Callable, Optional, Tuple

from greenlet import GreenletExit, getcurrent

from .budget import WriteBudget
from .clientio import BUF
from .config import Config
from .errors import ProtocolError
from .httploop import HttpLoop
from .parking import PARK_CHANNEL, PARK_HEAD, PARK_IDLE
from .state import MOVES, Exchange, IllegalMove, Outcome, Phase
from .proto.engines import make_parser
from .proto.response import error_response
from .transport import DeadlineKeeper, Dispatcher, Host, Transport  # noqa: F401 (re-exported)

__all__ = ["Connection", "ConnectionInfo", "Phase", "MOVES", "IllegalMove", "Exchange",
           "Outcome", "Transport", "Host", "Dispatcher", "DeadlineKeeper", "connection_of",
           "PARK_IDLE", "PARK_HEAD", "PARK_CHANNEL"]

error_log = logging.getLogger("gkit.error")


class ConnectionInfo:
    """``environ["gkit.connection"]``: what an app may know about its connection.

    One object per connection (the same for every request it carries, so it
    can key a ``WeakKeyDictionary``): ``addr`` (the peer's address),
    ``secure`` (TLS) and ``engine`` (the HTTP/1.1 engine). ``with_channel``
    finds the connection through it, from Flask's ``request.environ`` or
    Django's ``request.META`` alike.
    """

    __slots__ = ("_conn", "__weakref__")

    def __init__(self, conn: "Connection") -> None:
        self._conn = conn

    @property
    def addr(self) -> Tuple[str, int]:
        return self._conn.addr

    @property
    def secure(self) -> bool:
        return self._conn.secure

    @property
    def engine(self) -> str:
        return self._conn.host.engine

    def __repr__(self) -> str:
        return f"<gkit.ConnectionInfo {self.addr} {self._conn.phase.name}>"


def connection_of(info: Any) -> "Connection":
    """The :class:`Connection` behind ``environ["gkit.connection"]`` (for gkit's
    own upper layers: handover, compatibility shims); RuntimeError if none."""
    if not isinstance(info, ConnectionInfo):
        raise RuntimeError("with_channel needs a request served by gkit: the environ has no "
                           "'gkit.connection' (run the app with gkit.run_server or gkit's CLI)")
    return info._conn


class Connection(HttpLoop):
    """A client connection from accept to close. Implements :class:`Transport`."""

    __slots__ = ()  # the fields: connfields.ConnectionFields

    def __init__(self, host: Host, sock: socket.socket, addr: Tuple[str, int],
                 secure: bool = False) -> None:
        self.host = host
        self.sock = sock
        self.secure = secure
        # The non-blocking _socket under gevent's socket, for reads and writes
        # that must not wait; None for TLS, where bytes on the wire are not
        # bytes of data.
        self.raw = None if secure else sock._sock  # type: ignore[attr-defined]
        self.addr = addr[:2] if isinstance(addr, tuple) else ("", 0)
        self.fileno = sock.fileno()
        config = host.config
        self.parser = make_parser(host.engine, config.max_line, config.max_head,
                                  config.max_body)
        self.watcher = None
        self.greenlet = None
        self.phase = Phase.IDLE
        self.closing = False     # shutdown() was called: answer what is in flight, then close
        self.on_readable = None  # what a parked connection does when data comes
        self.head_since = 0.0    # when the first byte of a half-received head came
        self.exchange = None  # the request in flight, if any
        self._drain = False      # left parked by shutdown() to serve a request already sent
        self._fresh = True       # accepted, no request dispatched yet
        self._info = None

    # -- the phase ---------------------------------------------------------------
    def _move(self, to: Phase) -> None:
        if to not in MOVES[self.phase]:
            raise IllegalMove(f"connection {self.addr}: {self.phase.name} -> {to.name}")
        self.phase = to

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def config(self) -> Config:
        return self.host.config

    @property
    def budget(self) -> WriteBudget:
        return self.host.budget

    @property
    def access_hook(self) -> Any:
        return self.host.dispatcher.access_hook

    @property
    def info(self) -> ConnectionInfo:
        """The app's view of this connection (made on first use)."""
        info = self._info
        if info is None:
            info = self._info = ConnectionInfo(self)
        return info

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Called by the acceptor, in the hub: never blocks."""
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a Unix socket
        self.sock.settimeout(self.host.config.idle_timeout)
        self.host.track(self)
        if self.host.config.proxy_protocol:
            self.park(PARK_IDLE, self._run_proxied)
        elif self.secure:
            self.spawn(self._run_tls)
        else:
            self.park(PARK_IDLE, self._run)

    def spawn(self, run: Callable[[], Any]) -> None:
        """Run ``run`` in a greenlet of this connection (a reused runner)."""
        self.host.runners.spawn(self._guard, run)

    def _guard(self, run: Any) -> None:
        self.greenlet = getcurrent()
        try:
            run()
        except OSError:
            self.close()
        except ProtocolError as exc:
            self.fail(exc.status_hint, exc.reason, exc.method)
        except BaseException as exc:
            # Whatever escapes (SystemExit or gevent.Timeout from app code run
            # here, a bug of ours) ends this connection only, never the hub.
            error_log.error("error serving %s", self.addr, exc_info=sys.exc_info())
            self.close()
            if isinstance(exc, GreenletExit):
                raise  # this greenlet is being killed: let it end (its parent sees no error)
        finally:
            self.greenlet = None

    def shutdown(self, wait: bool = False) -> bool:
        """The server is stopping. With ``wait`` (a graceful stop's first
        pass): what is in flight goes on, answered with ``Connection: close``;
        an idle connection closes, unless a request already waits in its
        socket: then it stays to serve it and True is returned. Without:
        an open channel gets ``on_close("server-close")`` and the socket closes."""
        self.closing = True
        if wait:
            if self.phase is Phase.IDLE and self.parked:
                # A connection accepted just before the stop has had no time
                # to send its request: it gets the server's short grace
                # (FRESH_GRACE) instead of a close its client cannot retry.
                if self._fresh or self.has_unread_bytes():
                    self._drain = True
                    return True
                self.close()
            return False
        ex = self.exchange
        if ex is not None and ex.channel is not None and not ex.channel_ended:
            ex.channel.server_close()
        self.close()
        return False

    def close(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED  # legal from every phase
        self.unpark()
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        try:
            self.sock.close()
        except OSError:
            pass
        self.host.untrack(self)

    def fail(self, status: int, reason: str, method: Optional[str] = None) -> None:
        """Answer a bad request with ``status`` and close."""
        self.send_error(status, reason, method)
        self.linger_close()

    def send_error(self, status: int, reason: str, method: Optional[str] = None) -> None:
        self.host.counters.refuse(status)
        try:
            self.send(error_response(status, reason, method=method, date=self.host.date(),
                                     server=self.host.config.server_header))
        except OSError:
            pass

    def linger_close(self) -> None:
        """Close after the client has read what we sent: stop writing, then
        drop what it still sends for a moment, so the kernel does not answer
        its unread bytes with a reset that destroys our response."""
        if self.phase is Phase.CLOSED:
            return
        self.unpark()
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(1.0)
            left = 1 << 20
            while left > 0:
                data = self.sock.recv(BUF)
                if not data:
                    break
                left -= len(data)
        except OSError:
            pass
        self.close()

    # -- hand-overs ------------------------------------------------------------------
    def hand_over(self, channel: Any) -> None:
        """A channel owns the current request's response from now on. The
        worker slot is given back at once (a channel holds no worker), even
        while the app call goes on."""
        ex = self.exchange
        if ex is None:
            raise RuntimeError("no request in flight to hand over")
        self._move(Phase.CHANNEL)
        ex.channel = channel
        self._release_slot(ex)

    def hand_over_socket(self) -> socket.socket:
        """The app takes the raw socket (gunicorn's ``environ["gunicorn.socket"]``
        contract, issue 10): the worker slot is given back, the socket gets no
        deadline, gkit writes nothing more on it and closes it once the app
        call returns."""
        ex = self.exchange
        if ex is None:
            raise RuntimeError("no request in flight to hand over")
        self._move(Phase.SOCKET)
        self._release_slot(ex)
        self.unpark()
        self.sock.settimeout(None)
        return self.sock

    @property
    def handed_over(self) -> bool:
        """Does a channel or the app own the current response (not gkit's writer)?"""
        return self.phase is Phase.CHANNEL or self.phase is Phase.SOCKET

    def channel_done(self, keep_alive: bool) -> None:
        """A channel wrote its whole response: serve the next request on this
        connection (keep-alive), or close it."""
        ex = self.exchange
        if ex is not None:
            ex.channel_ended = True
        self.unpark()
        if not keep_alive or self.closing or ex is None or self.phase is not Phase.CHANNEL:
            self.close()
        elif ex.app_running:
            ex.resume = True  # _dispatch goes on once the app returns
        else:
            self.spawn(self._resume)

    def _resume(self) -> None:
        if self.phase is Phase.CHANNEL and self.drain_body():
            self._next_request()
            self._run()
        else:
            self.close()
