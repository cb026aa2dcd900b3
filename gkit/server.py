"""Accepting, the connection registry, deadlines, and stop: ``run_server`` and ``Server``.

``Server`` implements ``transport.Host`` for its connections: they reach the
WSGI side through ``server.dispatcher`` (``wsgi.Dispatch``) and their
deadlines through ``server.deadlines`` (:class:`Deadlines`); the server
never writes a connection's fields, it asks (``conn.shutdown()``).
Binding is ``listen.py``'s.
"""
from __future__ import annotations

import errno
import logging
import resource
import signal
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from .budget import WriteBudget
from .config import Config, make_config
from .connection import PARK_HEAD, PARK_IDLE, Connection
from .heartbeat import Heartbeats
from .listen import Bind, bind_all
from .pool import WorkerPool
from .proto.engines import resolve_engine
from .runners import Runners
from .state import Phase
from .stats import Counters, snapshot
from .timeouts import AppDeadlines
from .wsgi import Dispatch

log = logging.getLogger("gkit")
error_log = logging.getLogger("gkit.error")

WSGIApp = Callable[..., Iterable[bytes]]

OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
FD_PAUSE = 0.1      # seconds without accepting after accept() ran out of descriptors
FD_LOG_EVERY = 10.0  # seconds between two log lines about it
# A graceful stop keeps a connection accepted just before it this long for
# its first request (its client had no time to send it, and cannot retry).
FRESH_GRACE = 1.0


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

    def do_read(self) -> Any:
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno not in OUT_OF_FDS:
                raise
        # Out of file descriptors: the pending connection stays in the
        # backlog (the listening socket stays readable, so pause rather than
        # spin), one gkit.error line says why, and accepting resumes by itself.
        self.gkit.out_of_fds()
        self.stop_accepting()
        timer = self.loop.timer(FD_PAUSE)
        timer.start(self._resume, timer)
        return None

    def _resume(self, timer: Any) -> None:
        timer.close()
        if self.gkit.status == "running" and self.gkit._accepting:
            self.start_accepting()

    def full(self) -> bool:  # gevent stops accepting while this is true
        return self.gkit.at_capacity()


class Deadlines:
    """Every deadline of parked connections, swept by one periodic timer.

    Parked connections sit in dicts by deadline kind; dicts keep insertion
    order, and within one kind the deadline grows with it, so sweeping stops
    at the first connection not yet due. Connections call :meth:`park` and
    :meth:`unpark`; nothing else writes these dicts. Hook points: request
    timeouts (an ``in_app`` dict of running app calls), WebSocket pings and
    SSE heartbeats (a dict of channels by next beat) go here, swept by the
    same :meth:`sweep`.

    >>> from gkit.config import make_config
    >>> d = Deadlines(make_config(idle_timeout=10.0))
    >>> d.idle_after
    10.0
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.idle: Dict[Connection, float] = {}
        self.head: Dict[Connection, float] = {}
        # A coarse clock, set by the sweeper (no clock call per request);
        # idle_after adds one sweep period so no deadline comes early.
        self.now = time.monotonic()
        self.idle_after = config.idle_timeout
        self.period = max(0.05, min(1.0, config.idle_timeout / 4, config.header_timeout / 4,
                                    (config.request_timeout or 4.0) / 4))
        self.heartbeats = Heartbeats()  # SSE comments (and WebSocket pings), per sweep
        self.in_app = AppDeadlines(config.request_timeout) if config.request_timeout else None

    def start(self) -> None:
        self.idle_after = self.config.idle_timeout + self.period
        self.now = time.monotonic()

    def park(self, conn: Connection, why: int) -> None:
        if why == PARK_IDLE:
            self.idle[conn] = self.now + self.idle_after
        elif why == PARK_HEAD:
            self.head[conn] = conn.head_since + self.config.header_timeout

    def unpark(self, conn: Connection) -> None:
        self.idle.pop(conn, None)
        if self.head:
            self.head.pop(conn, None)

    def sweep(self) -> None:  # in the hub, every period
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
        late = [conn for conn, deadline in self.head.items() if deadline <= now]
        for conn in late:
            del self.head[conn]
            gevent.spawn(conn.fail, 408, "request head not complete in time")
        if self.in_app is not None and self.in_app.running:
            self.in_app.sweep(now, gevent.get_hub())
        if self.heartbeats:
            self.heartbeats.sweep(now)


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
        self.deadlines = Deadlines(config)
        self.budget = WriteBudget(config.max_buffered_total)
        self.status = "stopped"
        self.connections: Set[Connection] = set()
        self.busy = 0  # app calls in flight
        self.draining: Set[Connection] = set()  # parked with a request to serve while stopping
        self.requests = 0  # app calls started: gunicorn's max_requests counts these
        self._quiet = Event()
        self._quiet.set()
        self._stopped = Event()
        self._clock: Any = None
        self.metrics: Any = None  # the metrics_bind listener (gkit.metrics)
        self._accepting = True
        if listeners is None:
            bind = Bind("tcp", host=config.ip.strip("[]"), port=config.port)
            listeners = [bind_all([bind], config)[0].sock]
        self._acceptors = [_Acceptor(sock, self) for sock in listeners]
        for acc in self._acceptors:
            acc.max_accept = 256
        self._sweeper: Any = None
        self._fds_logged = 0.0  # when the last "out of file descriptors" line was logged
        self._fds_missed = 0    # accepts that failed for it since
        self.pubsub: Any = None  # the gkit.hub.Hub while running (see start)
        self.address = self._acceptors[0].socket.getsockname()
        self.port: int = self.address[1] if isinstance(self.address, tuple) else 0
        name = self.address[0] if isinstance(self.address, tuple) else "localhost"
        self.counters = Counters()  # for stats(): responses by class, refusals, bytes
        self.dispatcher = Dispatch(app, config, port=self.port, server_name=name,
                                   multiprocess=multiprocess, counters=self.counters)

    def start(self) -> "Server":
        if self.config.metrics_bind and self.metrics is None:
            from .metrics import serve_for
            self.metrics = serve_for(self)
        # gkit.hub: open the hub (option hub, else $GKIT_HUB, else memory://);
        # gkit.hub.current() is this one until stop() gives it back.
        from . import hub as _hub
        self.pubsub = _hub.attach(self.config.hub)
        for acc in self._acceptors:
            acc.start()
        self.status = "running"
        deadlines = self.deadlines
        deadlines.start()
        self.dispatcher.tick()  # logging may be set up after __init__
        self._sweeper = self.hub.loop.timer(deadlines.period, deadlines.period)
        self._sweeper.start(deadlines.sweep)
        # Fire just after each second starts, so Date is never more than a tick late.
        self._clock = self.hub.loop.timer(1.0 - time.time() % 1.0 + 0.001, 1.0)
        self._clock.start(self.dispatcher.tick)
        if self.config.block_warn is not None:
            from .blockwarn import watch
            watch(self, self.config.block_warn)
        return self

    @property
    def access_hook(self) -> Any:
        """Called with every request's :class:`gkit.accessformat.AccessRecord`
        (the gunicorn worker's ``log.access()``); None: no hook."""
        return self.dispatcher.access_hook

    @access_hook.setter
    def access_hook(self, hook: Any) -> None:
        self.dispatcher.access_hook = hook
        self.dispatcher.tick()

    # -- what connections ask of the server (transport.Host) ---------------------------
    def date(self) -> str:
        """The Date header value, formatted once a second."""
        return self.dispatcher.date()

    def _accept(self, sock: socket.socket, addr: Any) -> None:
        if self.status != "running" and not (self.status == "stopping" and self._accepting):
            sock.close()
            return
        context = self.config.ssl_context
        secure = context is not None
        if context is not None and not self.config.proxy_protocol:  # else after the header
            from .tls import wrap_server_side
            sock = wrap_server_side(sock, context)
        conn = Connection(self, sock, addr, secure)
        if self.status == "stopping":  # a graceful stop with a health path: see stop()
            conn.serve_one()
            self.draining.add(conn)
        conn.start()

    def out_of_fds(self) -> None:
        """accept() failed for want of file descriptors: one gkit.error line
        every FD_LOG_EVERY seconds at most, naming the limit and the fix."""
        self._fds_missed += 1
        now = time.monotonic()
        if self._fds_logged and now - self._fds_logged < FD_LOG_EVERY:
            return
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        error_log.error(
            "out of file descriptors (open-file limit %s, %d connections open): new connections "
            "wait in the listen backlog (%d refused accepts since the last report); raise the "
            "limit (ulimit -n, systemd LimitNOFILE=) or set max_connections below it",
            soft, len(self.connections), self._fds_missed)
        self._fds_logged = now
        self._fds_missed = 0

    def track(self, conn: Connection) -> None:
        self.connections.add(conn)

    def untrack(self, conn: Connection) -> None:
        self.connections.discard(conn)
        draining = self.draining
        if draining and conn in draining:
            draining.discard(conn)
            self._busy_ended()
        limit = self.config.max_connections
        if limit is not None and self._accepting and len(self.connections) == limit - 1:
            for acc in self._acceptors:  # at capacity gevent stopped them: resume
                acc.start_accepting()

    def request_started(self, conn: Connection) -> None:
        """An app call starts on ``conn`` (hook point: server.stats() counters)."""
        if self.draining:
            self.draining.discard(conn)  # now counted as busy instead
        self.requests += 1
        self.busy += 1
        if self.deadlines.in_app is not None:
            self.deadlines.in_app.started(conn)  # request_timeout runs from here

    def request_ended(self, conn: Connection) -> None:
        """An app call ended (or was handed over and then returned)."""
        self.busy -= 1
        if self.deadlines.in_app is not None:
            self.deadlines.in_app.ended(conn)
        if self.status == "stopping":
            self._busy_ended()  # stop() may be waiting for the last app call

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

    def _busy_ended(self) -> None:
        """An app call ended while stopping: wake stop() when it was the last."""
        if self.busy <= 0 and not self.draining:
            self._quiet.set()

    # -- seeing inside ---------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        """What the server is doing now, as a plain dict (see gkit.stats).

        >>> server = run_server(lambda e, s: [], ip="127.0.0.1", port=0)
        >>> server.stats()["connections_open"], server.stats()["status"]
        (0, 'running')
        >>> server.stop()
        """
        return snapshot(self)

    # -- stop --------------------------------------------------------------------
    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish
        for up to ``timeout`` seconds, then close every connection."""
        if self.status != "running":
            if self.status == "stopping":
                self._stopped.wait()
            return
        self.status = "stopping"
        # With a health path, a graceful stop keeps accepting while it waits:
        # probes get 503 and turn the load balancer away before the listener
        # closes; what still comes is served, one request per connection.
        keep_listening = bool(timeout) and self.config.health_path is not None
        if not keep_listening:
            self._close_listeners()
        for conn in list(self.connections):
            # A request may have reached a parked connection not yet woken
            # for it: such a one stays to serve it (with Connection: close);
            # idle ones close now; the rest finish what is in flight.
            if conn.shutdown(wait=bool(timeout)):
                self.draining.add(conn)
        grace = None
        if timeout and self.draining:
            # Parked ones left to serve a request get FRESH_GRACE to send it.
            grace = self.hub.loop.timer(min(timeout, FRESH_GRACE))
            grace.start(self._end_grace)
        if timeout and (self.busy or self.draining):
            self._quiet.clear()
            self._quiet.wait(timeout)
        if grace is not None:
            grace.stop()
            grace.close()
        if keep_listening:
            self._close_listeners()
        for conn in list(self.connections):
            # Channels get on_close("server-close"); closing the socket wakes
            # a greenlet blocked on it with an error, so every connection
            # greenlet ends by itself.
            conn.shutdown()
        for timer in (self._sweeper, self._clock):
            if timer is not None:
                timer.stop()
                timer.close()
        self._sweeper = self._clock = None
        if self.config.block_warn is not None:
            from .blockwarn import unwatch
            unwatch(self)
        if self.metrics is not None:
            self.metrics.close()
        if self.pubsub is not None:  # gkit.hub: after the channels closed
            from . import hub as _hub
            _hub.detach(self.pubsub)
            self.pubsub = None
        self.status = "stopped"
        self._stopped.set()

    def _end_grace(self) -> None:  # in the hub
        """Close the draining connections still waiting for a first request."""
        for conn in list(self.draining):
            if conn.phase is Phase.IDLE and conn.parked:
                conn.close()

    def _close_listeners(self) -> None:
        self.stop_accepting()
        for acc in self._acceptors:
            acc.close()

    def __call__(self, timeout: Optional[float] = None) -> None:
        """``server(timeout=...)``: http-kit's stop function."""
        self.stop(timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Block until the server is stopped; True if it is.

        Ctrl-C stops the server, giving in-flight requests up to a second
        as the ``gkit`` command does, and returns True: a script that ends in
        ``server.join()`` exits cleanly. Python raises SIGINT's
        KeyboardInterrupt in whichever greenlet runs at that moment (often a
        worker, whose error handler would log and swallow it), so while
        joining in the main thread with Python's default SIGINT handler, a
        gevent signal handler stops the server instead; the default handler
        is put back when join returns."""
        watcher = _catch_sigint(lambda: self.stop(1.0))
        try:
            return self._stopped.wait(timeout)
        except KeyboardInterrupt:
            self.stop(1.0)
            return True
        finally:
            if watcher is not None:
                watcher.cancel()
                signal.signal(signal.SIGINT, signal.default_int_handler)

    def serve_forever(self) -> None:
        self.join()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<gkit.Server {self.status} on {self.config.ip}:{self.port} http={self.engine}>"


def _catch_sigint(stop: Callable[[], None]) -> Any:
    """Route SIGINT to ``stop`` (run in a greenlet of its own), if this is
    the main thread and SIGINT still has Python's default handler; else None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None  # the application installed its own: leave it alone
    return gevent.signal_handler(signal.SIGINT, stop)


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
