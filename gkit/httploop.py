"""The HTTP loop of a connection: parse, dispatch each request, go on or end.

``_run`` reads and parses until a request is complete, then ``_dispatch``
runs it: the health path is answered here, ahead of the worker pool; else a
worker slot is taken, the connection moves to ``IN_APP`` and the WSGI side
(``Host.dispatcher``) runs the app. After it, the loop serves the next
request on the connection (keep-alive), parks, or closes. A PROXY header
(``_run_proxied``) and the TLS handshake (``_run_tls``) come before it.

:class:`HttpLoop` is a part of ``connection.Connection`` (a mixin with no
state of its own: the fields are the connection's).
"""
from __future__ import annotations

import socket
import time
from typing import Any, Optional

from greenlet import getcurrent

from .clientio import BUF, ClientIO
from .errors import ProtocolError
from .parking import PARK_HEAD, PARK_IDLE, Parking
from .pool import PoolFull, WorkerPool
from .proto.h1 import CLOSED, END, NEED_DATA, Request
from .proto.response import ResponseHead
from .proxy_header import ProxyRefused, read_header, refused
from .state import Exchange, Outcome, Phase

HEALTH_HEADERS = (("Content-Type", "text/plain"), ("Cache-Control", "no-store"))


class HttpLoop(ClientIO, Parking):
    """The request loop of a :class:`~gkit.connection.Connection`."""

    __slots__ = ()

    # -- the HTTP loop ---------------------------------------------------------
    def _run(self) -> None:
        parser = self.parser
        raw = self.raw
        # Whether the socket may hold unread bytes. Woken by the watcher: yes.
        # After a read shorter than the buffer, or after answering a request,
        # it almost never does, and parking at once saves a recv() that would
        # only say EAGAIN (epoll reports the next bytes anyway).
        readable = True
        while True:
            ev = parser.next_event()
            if ev is NEED_DATA:
                if raw is not None:
                    if readable:
                        try:
                            data = raw.recv(BUF)
                        except BlockingIOError:
                            data = None
                    else:
                        data = None
                    if data is None:
                        if self.closing and not parser.in_head:
                            self.close()  # stopping: nothing more came, done
                            return
                        self._park_between(parser)
                        return
                    readable = len(data) == BUF
                    self.host.counters.bytes_in += len(data)
                else:
                    if self.closing and not parser.in_head:
                        self.close()
                        return
                    data = self._recv_tls()
                parser.feed(data)
                continue
            if ev is CLOSED:
                self.close()
                return
            if type(ev) is not Request:
                raise ProtocolError("request body without a request")
            if not self._dispatch(ev):
                return
            readable = False

    def _park_between(self, parser: Any) -> None:
        """Nothing to read now: park, with the deadline of an idle connection
        or, in the middle of a request head, of the head (slowloris)."""
        if parser.in_head:
            if not self.head_since:
                self.head_since = time.monotonic()
            self.park(PARK_HEAD, self._run)
        else:
            self.park(PARK_IDLE, self._run)

    def _run_proxied(self) -> None:
        """Take the PROXY header (option proxy_protocol), then serve HTTP or TLS;
        the address it names is the client of every request on the connection."""
        config = self.host.config
        try:
            client = read_header(self.sock, self.host.dispatcher.trusts(self.addr[0]),
                                 config.header_timeout)
        except EOFError:
            self.close()
            return
        except ProxyRefused as exc:
            refused(self.addr, exc)
            self.close()
            return
        finally:
            self.sock.settimeout(config.idle_timeout)
        if client is not None:
            self.addr = client  # REMOTE_ADDR/REMOTE_PORT of every request on it
        if config.ssl_context is not None:  # the server left TLS to us: the header came first
            from .tls import wrap_server_side
            self.sock = wrap_server_side(self.sock, config.ssl_context)
            self._run_tls()
        else:
            self._run()

    def _run_tls(self) -> None:
        from .tls import handshake
        handshake(self.sock, self.host.config.header_timeout)
        self._run()

    def _recv_tls(self) -> bytes:
        config = self.host.config
        in_head = self.parser.in_head
        if in_head:
            if not self.head_since:
                self.head_since = time.monotonic()
            left = self.head_since + config.header_timeout - time.monotonic()
            self.sock.settimeout(max(left, 0.001))
        else:
            self.sock.settimeout(config.idle_timeout)
        try:
            data: bytes = self.sock.recv(BUF)
        except socket.timeout:
            if in_head:
                raise ProtocolError("request head not complete in time", 408) from None
            raise
        finally:
            self.sock.settimeout(config.idle_timeout)
        self.host.counters.bytes_in += len(data)
        return data

    def _dispatch(self, req: Request) -> bool:
        """Run the app for one request; True when the loop goes on."""
        host = self.host
        health = host.config.health_path
        if health is not None and req.target.split(b"?", 1)[0] == health.encode("latin-1"):
            return self._answer_health(req)
        pool: WorkerPool = host.pool
        try:
            worker = pool.acquire()
        except PoolFull as exc:
            self.fail(503, str(exc), req.method)
            return False
        g = getcurrent()
        g.name = worker  # type: ignore[attr-defined]
        self._drain = self._fresh = False
        host.request_started(self)
        self.head_since = 0.0
        ex = self.exchange = Exchange(req, worker, self.addr[0])
        ex.holder = g
        self._move(Phase.IN_APP)
        try:
            outcome = host.dispatcher.run(
                self, ex, req.keep_alive and not self.closing and not req.upgrade)
        finally:
            ex.app_running = False
            self._release_slot(ex)
            host.request_ended(self)
        if outcome is Outcome.HANDED_OVER:
            return self._after_hand_over(ex)
        # The unread rest of the body is dropped here, with the slot given
        # back: a slow client's body holds no worker.
        if (outcome is Outcome.KEEP_ALIVE and not self.closing and self.phase is Phase.IN_APP
                and self.drain_body()):
            self._next_request()
            return True
        self.linger_close() if req.has_body else self.close()
        return False

    def _answer_health(self, req: Request) -> bool:
        """The health_path, answered here, before the worker pool: 200 while
        the server runs, 503 once it stops. Not access-logged (probes come
        every few seconds)."""
        running = self.host.status == "running"
        body = b"ok\n" if running else b"stopping\n"
        keep = req.keep_alive and not self.closing and not req.has_body
        head = self.response_head("200 OK" if running else "503 Service Unavailable",
                                  HEALTH_HEADERS, req, keep, len(body))
        self.send(head.data + (body if req.method != "HEAD" else b""))
        self.head_since = 0.0
        if head.keep_alive and self.parser.next_event() is END:  # a bodiless request's end
            self.parser.start_next_cycle()
            return True
        self.linger_close() if req.has_body else self.close()
        return False

    def serve_one(self) -> None:
        """Accepted while the server stops (health_path keeps the listener
        open during a graceful stop): serve one request, then close."""
        self.closing = True
        self._drain = True

    def _next_request(self) -> None:
        self._move(Phase.IDLE)
        self.exchange = None
        self.parser.start_next_cycle()

    def _after_hand_over(self, ex: Exchange) -> bool:
        if self.phase is Phase.SOCKET:
            self.close()  # the app had the socket; its call is over
            return False
        if self.phase is Phase.CLOSED:
            return False
        channel = ex.channel
        if channel is not None and not ex.channel_ended:
            channel.app_returned()
        if ex.resume:  # the channel already answered: go on here
            ex.resume = False
            if self.drain_body() and not self.closing and self.phase is Phase.CHANNEL:
                self._next_request()
                return True
            self.close()
        return False

    def response_head(self, status: str, headers: Any, req: Request, keep_alive: bool,
                      length: Optional[int]) -> ResponseHead:
        """A response head for ``req`` (memoized by the dispatcher)."""
        return self.host.dispatcher.response_head(status, headers, req.method, req.version,
                                                  keep_alive and not self.closing, length)
