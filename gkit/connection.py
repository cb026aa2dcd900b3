"""One client connection: the greenlet loop, parking, and request dispatch.

An idle keep-alive connection holds no greenlet: when a non-blocking read
finds nothing, the connection *parks* (a libev read watcher, a few hundred
bytes) and its greenlet ends; when data arrives, the watcher's callback starts
a fresh greenlet. So 10,000 idle connections cost no greenlet stacks.

Reads go straight to the non-blocking ``_socket`` under gevent's socket (no
hub round trip when data is there); writes try a plain ``send`` first and
fall back to gevent's cooperative ``sendall`` for what is left.
"""
from __future__ import annotations

import logging
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, Tuple

from greenlet import GreenletExit, getcurrent, greenlet

from .errors import ProtocolError
from .proto.h1 import CLOSED, END, NEED_DATA, Request, make_parser
from .proto.response import error_response
from .wsgi import HANDED_OVER, ClientGone, run_app, sendfile_all

if TYPE_CHECKING:
    from .channel import Channel
    from .server import Server

error_log = logging.getLogger("gkit.error")

BUF = 65536
DRAIN_LIMIT = 65536  # unread body bytes read and dropped to keep a connection alive

# Why a connection is parked: deciding which deadline applies.
PARK_IDLE = 1      # between requests: idle_timeout
PARK_HEAD = 2      # a request head is half in: header_timeout
PARK_CHANNEL = 3   # owned by a channel: no deadline


class Connection:
    """A client connection from accept to close."""

    __slots__ = ("server", "sock", "raw", "addr", "secure", "fileno", "parser", "watcher",
                 "greenlet", "closed", "closing", "busy", "channel", "on_readable", "body_done",
                 "request", "resume_pending", "head_since", "handed_over", "client",
                 "__weakref__")

    def __init__(self, server: "Server", sock: socket.socket, addr: Tuple[str, int],
                 secure: bool = False) -> None:
        self.server = server
        self.sock = sock
        self.secure = secure
        # The non-blocking _socket under gevent's socket, for reads and writes
        # that must not wait; None for TLS, where bytes on the wire are not
        # bytes of data.
        self.raw = None if secure else sock._sock  # type: ignore[attr-defined]
        self.addr = addr[:2] if isinstance(addr, tuple) else ("", 0)
        self.fileno = sock.fileno()
        config = server.config
        self.parser = make_parser(server.engine, config.max_line, config.max_head,
                                  config.max_body)
        self.watcher: Any = None
        self.greenlet: Optional[greenlet] = None
        self.closed = False
        self.closing = False     # the server is stopping: answer, then close
        self.busy = False        # an app call is in flight
        self.channel: Optional["Channel"] = None
        self.on_readable: Any = None  # what a parked connection does when data comes
        self.body_done = True    # the current request's END was read
        self.request: Optional[Request] = None
        self.resume_pending = False  # a channel ended its response while the app still ran
        self.head_since = 0.0    # when the first byte of a half-received head came
        self.handed_over = False  # a channel was opened for the current request
        self.client = self.addr[0]  # REMOTE_ADDR of the current request (after proxy headers)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Called by the acceptor, in the hub: never blocks."""
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a Unix socket
        self.sock.settimeout(self.server.config.idle_timeout)
        self.server.track(self)
        if self.secure:
            self.spawn(self._run_tls)
        else:
            self.park(PARK_IDLE, self._run)

    def spawn(self, run: Any) -> None:
        """Run ``run`` in a greenlet of this connection (a reused runner)."""
        self.server.runners.spawn(self._guard, run)

    def _guard(self, run: Any) -> None:
        self.greenlet = getcurrent()
        try:
            run()
        except (OSError, ClientGone):
            self.close()
        except ProtocolError as exc:
            self.fail(exc.status_hint, exc.reason)
        except BaseException as exc:
            # Whatever escapes (SystemExit or gevent.Timeout from app code run
            # here, a bug of ours) ends this connection only, never the hub.
            error_log.error("error serving %s", self.addr, exc_info=sys.exc_info())
            self.close()
            if isinstance(exc, GreenletExit):
                raise  # this greenlet is being killed: let it end (its parent sees no error)
        finally:
            self.greenlet = None

    def park(self, why: int, on_readable: Any) -> None:
        """Give up the greenlet; call ``on_readable`` in a new one when data comes."""
        if self.closed:
            return
        w = self.watcher
        if w is None:
            w = self.watcher = self.server.hub.loop.io(self.fileno, 1)
        self.on_readable = on_readable
        w.start(self._wake)
        server = self.server
        if why == PARK_IDLE and server.status == "running":
            server.idle[self] = server.now + server.idle_after
        else:
            server.parked(self, why)

    def _wake(self) -> None:  # in the hub
        self.watcher.stop()
        server = self.server
        server.idle.pop(self, None)
        if server.head_parked:
            server.head_parked.pop(self, None)
        if not self.closed:
            server.runners.spawn(self._guard, self.on_readable)

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
        self.server.unparked(self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.unpark()
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        try:
            self.sock.close()
        except OSError:
            pass
        self.server.untrack(self)

    def fail(self, status: int, reason: str) -> None:
        """Answer a bad request with ``status`` and close."""
        self.send_error(status, reason)
        self.linger_close()

    def send_error(self, status: int, reason: str) -> None:
        server = self.server
        try:
            self.send(error_response(status, reason, date=server.date(),
                                     server=server.config.server_header))
        except OSError:
            pass

    def linger_close(self) -> None:
        """Close after the client has read what we sent: stop writing, then
        drop what it still sends for a moment, so the kernel does not answer
        its unread bytes with a reset that destroys our response."""
        if self.closed:
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

    # -- I/O -------------------------------------------------------------------
    def send(self, data: Any) -> None:
        raw = self.raw
        if raw is not None:
            try:
                n = raw.send(data)
            except BlockingIOError:
                n = 0
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self.sock.sendall(data)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        return sendfile_all(self.fileno, fd, offset, count)

    def recv_wait(self) -> bytes:
        """Block this greenlet until data (or EOF, b"") comes."""
        return self.sock.recv(BUF)

    def read_body(self) -> bytes:
        """The next piece of the request body; b"" at its end."""
        parser = self.parser
        while True:
            ev = parser.next_event()
            if ev is NEED_DATA:
                data = self.recv_wait()
                if not data:
                    raise ProtocolError("the client closed before the end of the request body")
                parser.feed(data)
                continue
            if ev is END:
                self.body_done = True
                return b""
            if type(ev) is bytes:
                return ev
            raise ProtocolError("unexpected request event in a body")

    def drain_body(self) -> bool:
        """Drop the unread rest of a body to keep the connection; False if too much."""
        if self.body_done:
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
        server = self.server
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
            if not self._dispatch(ev, server):
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

    def _run_tls(self) -> None:
        from .tls import handshake
        handshake(self.sock, self.server.config.header_timeout)
        self._run()

    def _recv_tls(self) -> bytes:
        config = self.server.config
        in_head = self.parser.in_head
        if in_head:
            if not self.head_since:
                self.head_since = time.monotonic()
            left = self.head_since + config.header_timeout - time.monotonic()
            self.sock.settimeout(max(left, 0.001))
        else:
            self.sock.settimeout(config.idle_timeout)
        try:
            return self.sock.recv(BUF)
        except socket.timeout:
            if in_head:
                raise ProtocolError("request head not complete in time", 408) from None
            raise
        finally:
            self.sock.settimeout(config.idle_timeout)

    def _dispatch(self, req: Request, server: "Server") -> bool:
        """Run the app for one request; True when the loop goes on."""
        pool = server.pool
        try:
            worker = pool.acquire()
        except Exception as exc:  # PoolFull
            self.fail(503, str(exc))
            return False
        g = getcurrent()
        g.name = worker  # type: ignore[attr-defined]
        if server.draining:
            server.draining.discard(self)  # now counted as busy instead
        self.head_since = 0.0
        self.handed_over = False
        self.request = req
        self.body_done = False
        self.busy = True
        server.requests += 1
        server.busy += 1
        try:
            keep = run_app(self, req, req.keep_alive and not self.closing and not req.upgrade)
        finally:
            pool.release(worker)
            self.busy = False
            server.busy -= 1
            if server.status == "stopping":
                server.busy_ended()  # stop() may be waiting for the last app call
        if keep is HANDED_OVER:
            channel = self.channel
            if channel is not None and not channel.is_websocket and channel.is_open:
                # The app is done with the request body now: watch for the
                # client leaving while the response stays open. A body too
                # big to drop now is dropped as it comes, and the connection
                # closes after the response.
                channel.start_reading(discard=not self.drain_body())
            if self.resume_pending:  # the channel already answered: go on here
                self.resume_pending = False
                if self.drain_body() and not self.closing:
                    self.parser.start_next_cycle()
                    return True
                self.close()
            return False
        if keep and not self.closing:
            self.parser.start_next_cycle()
            return True
        self.linger_close() if req.has_body else self.close()
        return False

    def channel_done(self, keep_alive: bool) -> None:
        """A channel wrote its whole response: serve the next request on this
        connection (keep-alive), or close it."""
        self.channel = None
        self.unpark()
        if not keep_alive or self.closing:
            self.close()
        elif self.busy:
            self.resume_pending = True  # _dispatch goes on once the app returns
        else:
            self.spawn(self._resume)

    def _resume(self) -> None:
        if self.drain_body():
            self.parser.start_next_cycle()
            self._run()
        else:
            self.close()
