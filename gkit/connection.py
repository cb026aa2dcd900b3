"""One client connection: the socket, parking, reads and writes, and the
connection's phase -- the one owner of a connection's state.

An idle keep-alive connection holds no greenlet: when a non-blocking read
finds nothing, the connection *parks* (a libev read watcher, a few hundred
bytes) and its greenlet ends; when data arrives, the watcher's callback starts
a fresh greenlet. So 10,000 idle connections cost no greenlet stacks.

Reads go straight to the non-blocking ``_socket`` under gevent's socket (no
hub round trip when data is there); writes try a plain ``send`` first and
fall back to gevent's cooperative ``sendall`` for what is left.

This module imports only ``proto`` and the bottom layer (errors, config,
pool, runners). What it needs from above it names as Protocols: the
:class:`Host` (the server), its :class:`Dispatcher` (the WSGI side) and
:class:`DeadlineKeeper`; what it offers to channels is :class:`Transport`.
"""
from __future__ import annotations

import logging
import socket
import sys
import time
from typing import Any, Callable, Optional, Tuple

from gevent.socket import wait as wait_io
from greenlet import GreenletExit, getcurrent, greenlet

from .budget import WriteBudget
from .config import Config
from .errors import ProtocolError
from .state import MOVES, Exchange, IllegalMove, Outcome, Phase
from .pool import PoolFull, WorkerPool
from .proto.engines import make_parser
from .proto.h1 import CLOSED, END, NEED_DATA, Request
from .proto.response import ResponseHead, error_response
from .proxy_header import ProxyRefused, read_header, refused
from .transport import DeadlineKeeper, Dispatcher, Host, Transport  # noqa: F401 (re-exported)

__all__ = ["Connection", "ConnectionInfo", "Phase", "MOVES", "IllegalMove", "Exchange",
           "Outcome", "Transport", "Host", "Dispatcher", "DeadlineKeeper", "connection_of",
           "PARK_IDLE", "PARK_HEAD", "PARK_CHANNEL"]

error_log = logging.getLogger("gkit.error")

BUF = 65536
DRAIN_LIMIT = 65536  # unread body bytes read and dropped to keep a connection alive
TLS_PIECE = 16384  # bytes per TLS sendall (one record): its deadline becomes one on progress

HEALTH_HEADERS = (("Content-Type", "text/plain"), ("Cache-Control", "no-store"))

# Why a connection is parked: deciding which deadline applies.
PARK_IDLE = 1      # between requests: idle_timeout
PARK_HEAD = 2      # a request head is half in: header_timeout
PARK_CHANNEL = 3   # owned by a channel: no deadline


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


class Connection:
    """A client connection from accept to close. Implements :class:`Transport`."""

    __slots__ = ("host", "sock", "raw", "addr", "secure", "fileno", "parser", "watcher",
                 "greenlet", "phase", "closing", "on_readable", "head_since", "exchange",
                 "_drain", "_fresh", "_info", "__weakref__")

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
        self.watcher: Any = None
        self.greenlet: Optional[greenlet] = None
        self.phase = Phase.IDLE
        self.closing = False     # shutdown() was called: answer what is in flight, then close
        self.on_readable: Any = None  # what a parked connection does when data comes
        self.head_since = 0.0    # when the first byte of a half-received head came
        self.exchange: Optional[Exchange] = None  # the request in flight, if any
        self._drain = False      # left parked by shutdown() to serve a request already sent
        self._fresh = True       # accepted, no request dispatched yet
        self._info: Optional[ConnectionInfo] = None

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

    def park(self, why: int, on_readable: Callable[[], Any]) -> None:
        """Give up the greenlet; call ``on_readable`` in a new one when data comes."""
        if self.phase is Phase.CLOSED:
            return
        if why == PARK_IDLE and self.closing and not self._drain:
            self.close()  # the server is stopping and nothing more came: done
            return
        w = self.watcher
        if w is None:
            w = self.watcher = self.host.hub.loop.io(self.fileno, 1)
        self.on_readable = on_readable
        w.start(self._wake)
        if why != PARK_CHANNEL:
            self.host.deadlines.park(self, why)

    def _wake(self) -> None:  # in the hub
        self.watcher.stop()
        self.host.deadlines.unpark(self)
        if self.phase is not Phase.CLOSED:
            self.host.runners.spawn(self._guard, self.on_readable)

    @property
    def parked(self) -> bool:
        """Is this connection waiting on its read watcher?"""
        return self.watcher is not None and bool(self.watcher.active)

    def has_unread_bytes(self) -> bool:
        """Are bytes waiting in the socket (a parked connection's next request)?"""
        if self.raw is None:
            return False
        try:
            return bool(self.raw.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def unpark(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.host.deadlines.unpark(self)

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

    # -- I/O (the Transport interface) ----------------------------------------------
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

    def watch(self, on_readable: Callable[[], Any], tls_reader: bool = False) -> None:
        """Call ``on_readable`` in a greenlet when bytes come, holding no
        greenlet meanwhile. On TLS readiness says nothing about data: with
        ``tls_reader`` a greenlet runs ``on_readable`` at once (blocking in
        :meth:`recv_now`, with no deadline), else nothing is watched."""
        if self.phase is Phase.CLOSED:
            return
        if self.raw is not None:
            self.park(PARK_CHANNEL, on_readable)
        elif tls_reader:
            self.sock.settimeout(None)
            self.spawn(on_readable)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Any:
        """A started libev timer calling ``fn`` in the hub; ``.stop()`` cancels it."""
        timer = self.host.hub.loop.timer(delay)
        timer.start(fn)
        return timer

    def response_head(self, status: str, headers: Any, req: Request, keep_alive: bool,
                      length: Optional[int]) -> ResponseHead:
        """A response head for ``req`` (memoized by the dispatcher)."""
        return self.host.dispatcher.response_head(status, headers, req.method, req.version,
                                                  keep_alive and not self.closing, length)

    def watch_in_app(self, on_readable: Callable[[], Any]) -> bool:
        """While the app iterates its response: call ``on_readable`` in the hub
        when bytes or EOF come (client-gone detection, ``clientgone.py``);
        False where readiness says nothing (TLS). :meth:`stop_watching` ends it."""
        if self.raw is None or self.phase is not Phase.IN_APP:
            return False
        w = self.watcher
        if w is None:
            w = self.watcher = self.host.hub.loop.io(self.fileno, 1)
        w.start(on_readable)
        return True

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

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

    def _release_slot(self, ex: Exchange) -> None:
        worker = ex.worker
        if worker is not None:
            ex.worker = None  # never released twice
            self.host.pool.release(worker)

    def _next_request(self) -> None:
        self._move(Phase.IDLE)
        self.exchange = None
        self.parser.start_next_cycle()

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
