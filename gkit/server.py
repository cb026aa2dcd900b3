"""Listening, accepting, idle deadlines, and stop: ``run_server`` and ``Server``."""
from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import time
from email.utils import formatdate
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from . import accesslog
from .config import Config, make_config
from .connection import PARK_HEAD, PARK_IDLE, Connection
from .pool import WorkerPool
from .runners import Runners
from .proto.h1 import resolve_engine
from .proto.response import ResponseHead, build_head
from .wsgi import FileWrapper

log = logging.getLogger("gkit")

WSGIApp = Callable[..., Iterable[bytes]]
HEAD_MEMO = 512  # response heads memoized per second


class _Acceptor(StreamServer):
    """gevent's StreamServer, accepting in the hub and handing each socket to
    a :class:`Connection` that owns it from then on (so it is not closed when
    ``handle`` returns: an idle connection parks without a greenlet).

    ``handle`` runs in the hub itself (``spawn=None``): it never blocks, and
    a greenlet per accept would cost more than the accept."""

    def __init__(self, sock: socket.socket, server: "Server") -> None:
        super().__init__(sock, server._accept, spawn=None)
        self.gkit = server

    def do_close(self, *args: Any) -> None:
        pass

    def full(self) -> bool:  # gevent stops accepting while this is true
        return self.gkit.at_capacity()


class Server:
    """A running gkit server; see :func:`run_server`."""

    def __init__(self, app: WSGIApp, config: Config,
                 listeners: Optional[List[socket.socket]] = None,
                 multiprocess: bool = False) -> None:
        """``listeners``: already listening sockets to serve on (gunicorn's,
        a master's); ``multiprocess``: other processes serve the same app
        (the environ's ``wsgi.multiprocess``)."""
        self.app = app
        self.config = config
        self.engine = resolve_engine(config.http)
        self.hub = gevent.get_hub()
        self.runners = Runners(self.hub)
        self.pool = WorkerPool(config.thread, config.queue_size, config.worker_name_prefix)
        self.status = "stopped"
        self.connections: Set[Connection] = set()
        # Parked connections by deadline kind; dicts keep insertion order, and
        # within one kind the deadline grows with it, so sweeping stops at the
        # first connection not yet due.
        self.idle: Dict[Connection, float] = {}
        self.head_parked: Dict[Connection, float] = {}
        # A coarse clock for idle deadlines, set by the sweeper (no clock call
        # per request); idle_after adds one sweep period so none comes early.
        self.now = time.monotonic()
        self.idle_after = config.idle_timeout
        self.busy = 0  # app calls in flight
        self.draining: Set[Connection] = set()  # parked with a request to serve while stopping
        self.requests = 0  # app calls started: gunicorn's max_requests counts these
        self._quiet = Event()
        self._quiet.set()
        self._stopped = Event()
        self._date = formatdate(time.time(), usegmt=True)
        self._clock: Any = None
        self._heads: Dict[Any, ResponseHead] = {}
        self.log_access = accesslog.enabled()  # checked again every second
        self._trusted = self._trust_list(config.forwarded_allow_ips)
        self._accepting = True
        self._acceptors = [_Acceptor(sock, self) for sock in
                           (listeners if listeners is not None else [self._listen()])]
        for acc in self._acceptors:
            acc.max_accept = 256
        self._sweeper: Any = None
        self.address = self._acceptors[0].socket.getsockname()
        self.port: int = self.address[1] if isinstance(self.address, tuple) else 0
        base = {
            "SERVER_NAME": self._server_name(), "SERVER_PORT": str(self.port),
            "SCRIPT_NAME": "", "SERVER_SOFTWARE": "gkit",
            "wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": multiprocess, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper,
        }
        self._base = {False: dict(base, **{"wsgi.url_scheme": "http"}),
                      True: dict(base, **{"wsgi.url_scheme": "https"})}

    # -- setup -------------------------------------------------------------------
    def _listen(self) -> socket.socket:
        config = self.config
        family = socket.AF_INET6 if ":" in config.ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((config.ip.strip("[]"), config.port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot bind {config.ip}:{config.port}: {exc.strerror}") from None
        sock.listen(config.backlog)
        sock.setblocking(False)
        return sock

    def _server_name(self) -> str:
        name = self._acceptors[0].socket.getsockname()
        return name[0] if isinstance(name, tuple) else "localhost"

    @staticmethod
    def _trust_list(items: Iterable[str]) -> List[Any]:
        nets: List[Any] = []
        for item in items:
            if item == "*":
                nets.append("*")
            else:
                nets.append(ipaddress.ip_network(item, strict=False))
        return nets

    def trusts(self, ip: str) -> bool:
        """Is the peer ``ip`` a proxy trusted for proxy headers?"""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "*" in self._trusted or not ip  # Unix socket peers have no address
        return any(net == "*" or addr in net for net in self._trusted)

    def start(self) -> "Server":
        for acc in self._acceptors:
            acc.start()
        self.status = "running"
        period = max(0.05, min(1.0, self.config.idle_timeout / 4, self.config.header_timeout / 4))
        self.idle_after = self.config.idle_timeout + period
        self.now = time.monotonic()
        self.log_access = accesslog.enabled()  # logging may be set up after __init__
        self._sweeper = self.hub.loop.timer(period, period)
        self._sweeper.start(self._sweep)
        # Fire just after each second starts, so Date is never more than a tick late.
        self._clock = self.hub.loop.timer(1.0 - time.time() % 1.0 + 0.001, 1.0)
        self._clock.start(self._tick)
        return self

    # -- facts used by connections -------------------------------------------------
    def date(self) -> str:
        """The Date header value, formatted once a second by a timer."""
        return self._date

    def _tick(self) -> None:  # in the hub, every second
        self._date = formatdate(time.time(), usegmt=True)
        self._heads.clear()  # they carry the old Date
        self.log_access = accesslog.enabled()

    def response_head(self, status: str, headers: Any, method: str, version: str,
                      keep_alive: bool, length: Optional[int]) -> ResponseHead:
        """``build_head`` memoized for the current second: most responses of
        an app repeat their status and headers, so their head is built once.
        Heads are shared: callers must not change them."""
        try:
            key: Any = (status, tuple(headers), method == "HEAD", version, keep_alive, length)
            head = self._heads.get(key)
        except TypeError:  # unhashable headers (lists): build without the memo
            key = head = None
        if head is None:
            head = build_head(status, headers, method=method, version=version,
                              keep_alive=keep_alive, length=length, date=self._date,
                              server=self.config.server_header)
            if key is not None:
                if len(self._heads) >= HEAD_MEMO:
                    self._heads.clear()
                self._heads[key] = head
        return head

    def base_environ(self, secure: bool) -> Dict[str, Any]:
        return self._base[secure]

    def _accept(self, sock: socket.socket, addr: Any) -> None:
        if self.status != "running":
            sock.close()
            return
        secure = self.config.ssl_context is not None
        if secure:
            from .tls import wrap_server_side
            sock = wrap_server_side(sock, self.config.ssl_context)
        Connection(self, sock, addr, secure).start()

    def track(self, conn: Connection) -> None:
        self.connections.add(conn)

    def untrack(self, conn: Connection) -> None:
        self.connections.discard(conn)
        draining = self.draining
        if draining and conn in draining:
            draining.discard(conn)
            self.busy_ended()
        limit = self.config.max_connections
        if limit is not None and self._accepting and len(self.connections) == limit - 1:
            for acc in self._acceptors:  # at capacity gevent stopped them: resume
                acc.start_accepting()

    def at_capacity(self) -> bool:
        """Is ``max_connections`` reached (new connections wait in the backlog)?"""
        limit = self.config.max_connections
        return limit is not None and len(self.connections) >= limit

    def stop_accepting(self) -> None:
        """Accept no new connection, for good; what is open goes on being
        served (gunicorn's worker does this before a graceful stop)."""
        self._accepting = False
        for acc in self._acceptors:
            acc.stop_accepting()

    def parked(self, conn: Connection, why: int) -> None:
        if why == PARK_IDLE:
            self.idle[conn] = self.now + self.idle_after
            if self.status == "stopping" and conn not in self.draining:
                conn.close()
        elif why == PARK_HEAD:
            self.head_parked[conn] = conn.head_since + self.config.header_timeout

    def unparked(self, conn: Connection) -> None:
        self.idle.pop(conn, None)
        self.head_parked.pop(conn, None)

    def busy_ended(self) -> None:
        """An app call ended while stopping: wake stop() when it was the last."""
        if self.busy <= 0 and not self.draining:
            self._quiet.set()

    def _sweep(self) -> None:  # in the hub, periodically
        self.now = now = time.monotonic()
        idle = self.idle
        while idle:  # deadlines grow with insertion order: stop at the first not due
            conn = next(iter(idle))
            if idle[conn] > now:
                break
            del idle[conn]
            conn.close()
        # A head's deadline runs from its first byte, whenever it parked: scan all
        # (only half-sent heads are here).
        late = [conn for conn, deadline in self.head_parked.items() if deadline <= now]
        for conn in late:
            del self.head_parked[conn]
            gevent.spawn(conn.fail, 408, "request head not complete in time")

    # -- stop --------------------------------------------------------------------
    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish
        for up to ``timeout`` seconds, then close every connection."""
        if self.status != "running":
            if self.status == "stopping":
                self._stopped.wait()
            return
        self.status = "stopping"
        self.stop_accepting()
        for acc in self._acceptors:
            acc.close()
        for conn in list(self.connections):
            conn.closing = True
            if conn in self.idle or conn in self.head_parked:
                # A request may have reached a connection not yet woken for
                # it: leave such a one parked to be served (with Connection:
                # close), close the others now.
                if timeout and conn.has_unread_bytes():
                    self.draining.add(conn)
                else:
                    conn.close()
        if timeout and (self.busy or self.draining):
            self._quiet.clear()
            self._quiet.wait(timeout)
        for conn in list(self.connections):
            if conn.channel is not None:
                conn.channel.server_close()
        for conn in list(self.connections):
            # Closing the socket wakes a greenlet blocked on it with an error,
            # so every connection greenlet ends by itself.
            conn.close()
        for timer in (self._sweeper, self._clock):
            if timer is not None:
                timer.stop()
                timer.close()
        self._sweeper = self._clock = None
        self.status = "stopped"
        self._stopped.set()

    def __call__(self, timeout: Optional[float] = None) -> None:
        """``server(timeout=...)``: http-kit's stop function."""
        self.stop(timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Block until the server is stopped; True if it is.

        Ctrl-C (KeyboardInterrupt in the joining greenlet) stops the server,
        giving in-flight requests up to a second as the ``gkit`` command does,
        and returns True: a script that ends in ``server.join()`` exits cleanly."""
        try:
            return self._stopped.wait(timeout)
        except KeyboardInterrupt:
            self.stop(1.0)
            return True

    def serve_forever(self) -> None:
        self.join()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<gkit.Server {self.status} on {self.config.ip}:{self.port} http={self.engine}>"


def run_server(app: WSGIApp, **options: Any) -> Server:
    """Bind, start accepting, and return the running :class:`Server` at once.

    >>> def app(environ, start_response):
    ...     start_response("200 OK", [("Content-Type", "text/plain")])
    ...     return [b"hello HTTP!"]
    >>> server = run_server(app, ip="127.0.0.1", port=0)
    >>> server.port > 0, server.status
    (True, 'running')
    >>> server.stop()
    """
    return Server(app, make_config(**options)).start()
