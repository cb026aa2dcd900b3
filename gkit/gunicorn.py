"""gkit as a gunicorn worker class: ``gunicorn -k gkit.gunicorn.Worker -w 2 module:app``.

Each gunicorn worker process hosts one :class:`gkit.server.Server` on the
listening sockets gunicorn opened, so HTTP, streaming, long polling and
WebSocket go through gkit's own connection loop and channels, exactly as under
``gkit module:app``. gunicorn keeps what it is good at: binding (``-b``, Unix
sockets, ``reuse_port``, systemd sockets), the process count (``-w``),
restarting dead workers, HUP/TERM/QUIT/TTIN/TTOU, ``--max-requests``, hooks and
its log files.

This is the only gkit module that imports gunicorn (``pip install
gkit[gunicorn]``), and it monkey-patches gevent in the worker process
(``init_process``), never on import: the gunicorn master, which imports this
module to find the class, stays unpatched until it forks.

How gunicorn's settings map to gkit (anything not listed has no gkit meaning
and is ignored):

=============================  ===============================================
gunicorn setting               in the gkit worker
=============================  ===============================================
``workers``                    gunicorn's processes, one gkit Server each
``worker_connections``         open connections per worker (idle keep-alive,
  (1000)                       WebSocket and long polls included). At the limit
                               the worker stops accepting until one closes;
                               new connections wait in the listen backlog,
                               where another worker can take them.
``threads`` (1)                gkit ``thread``: app calls computing at once
                               per worker. The default 1 means "not set":
                               no limit of its own (``thread=None``, one
                               greenlet per request, as gunicorn's gevent
                               worker), bounded by ``worker_connections``
                               since a connection runs one app call at a time.
``keepalive`` (2)              ``idle_timeout``; gkit also uses it as the
                               stalled read/write timeout. 0 (no keep-alive in
                               gunicorn) becomes 1 second: gkit always offers
                               keep-alive.
``graceful_timeout`` (30)      on TERM, ``server.stop(graceful_timeout)``:
                               stop accepting, close idle connections, let
                               in-flight app calls finish, then close channels
                               (WebSocket close 1001) and connections.
``timeout`` (30)               heartbeat: ``notify()`` every ``timeout/2``,
                               also during a graceful stop. Not mapped to
                               ``request_timeout``: for non-sync workers
                               gunicorn's own docs say ``timeout`` is not tied
                               to the length of a request, and gkit streams
                               responses of any length; set ``request_timeout``
                               in :meth:`Worker.gkit_options` (below) to bound
                               app calls (504 / cut, see the README).
``max_requests`` (+ jitter)    app calls before the worker stops gracefully
                               and gunicorn starts a fresh one.
``limit_request_line``,        ``max_line``: gkit has one limit for the request
``limit_request_field_size``   line and each header line, so it takes the
                               looser of the two (0 means gunicorn's maximum,
                               8190): gkit refuses no request line or header
                               that gunicorn's own workers accept.
``forwarded_allow_ips``        ``forwarded_allow_ips``, with ``proxy_headers``
``secure_scheme_headers``      on: from a trusted peer, ``wsgi.url_scheme``
                               comes from ``X-Forwarded-Proto`` and, unlike
                               gunicorn's own workers, ``REMOTE_ADDR`` from
                               ``X-Forwarded-For``. An empty
                               ``secure_scheme_headers`` turns it off.
``certfile``, ``keyfile``,     ``ssl_context``, built by gunicorn's own
``ca_certs``, ``cert_reqs``,   ``ssl_context`` setting (so a custom
``ciphers``, ``ssl_context``   ``ssl_context(conf, factory)`` hook works);
                               ALPN offers http/1.1 only.
``websocket_max_message_size`` ``max_ws`` (0: no limit)
``raw_env`` ``GKIT_HUB=URL``   ``hub``: each worker opens gkit.hub from
  (``-e GKIT_HUB=redis://...``) ``$GKIT_HUB`` (else ``memory://``), so all
                               workers share topics through that Redis.
``accesslog``,                 every request (WebSocket upgrades and long
``access_log_format``,         polls included) goes to gunicorn's
``statsd_host``,               ``log.access(resp, req, environ, request_time)``
``statsd_prefix``,             as in gunicorn's own workers, so
``dogstatsd_tags``,            ``--access-logformat`` atoms, the statsd
``logger_class``               request metrics (``gunicorn.requests``,
                               ``gunicorn.request.status.NNN``,
                               ``gunicorn.request.duration``) and custom
                               logger classes work. ``environ`` holds the
                               CGI variables and ``HTTP_*`` headers of the
                               request (not what the app added). The line
                               gkit writes when a channel ends (WebSocket, long
                               poll, stream) goes to the access log as well.
``errorlog``, ``loglevel``     the ``gkit`` logger writes to gunicorn's error
                               log handlers (unless it has handlers of its own).
``proxy_protocol``,            ``proxy_protocol`` (v1 and v2 are both accepted
``proxy_allow_ips``            whatever the mode). gkit trusts one list of
                               peers for PROXY headers and ``X-Forwarded-*``:
                               ``proxy_allow_ips`` must equal
                               ``forwarded_allow_ips`` (checked at start).
(WebSocket upgrades)           as under ``gkit``: ``environ["wsgi.websocket"]``
                               (gevent-websocket's interface on a gkit
                               channel) and ``environ["gunicorn.socket"]``
                               with gunicorn's contract (the app may take the
                               socket; ``StopIteration`` is its normal end),
                               so Flask-SocketIO, flask-sock and
                               gevent-websocket apps run unchanged.
``protocol=uwsgi``             refused at start: gkit speaks HTTP/1.1.
``http_protocols`` with h2     a warning; HTTP/1.1 is served.
``sendfile``, ``root_path``,   not used: gkit always serves
``limit_request_fields``,      ``wsgi.file_wrapper`` with sendfile, limits a
``pre_request``,               request head to 64 KiB (431) rather than by
``post_request``               header count, and calls no per-request hooks.
=============================  ===============================================

gkit options that gunicorn has no setting for (``max_body``, ``http``,
``ws_deflate``, ``request_timeout``, ``block_warn``, ``ws_ping_interval``, ...)
are set by overriding :meth:`Worker.gkit_options`::

    # myproject/workers.py; run with gunicorn -k myproject.workers.Worker ...
    import gkit.gunicorn

    class Worker(gkit.gunicorn.Worker):
        def gkit_options(self):
            return dict(super().gkit_options(), max_body=64 << 20, request_timeout=60.0)
"""
from __future__ import annotations

import datetime
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote

from gunicorn.workers import base

if TYPE_CHECKING:  # imported at run time only after monkey-patching
    from .server import Server

# gunicorn's largest request line and header field (its MAX_REQUEST_LINE).
GUNICORN_MAX_LINE = 8190


def gkit_options(cfg: Any) -> Dict[str, Any]:
    """The :func:`gkit.run_server` options that gunicorn's config ``cfg`` means
    (see the table in this module's docstring). Pure: no I/O but reading TLS
    files when ``cfg.is_ssl``.

    >>> from gunicorn.config import Config
    >>> cfg = Config(); cfg.set("keepalive", 5); cfg.set("threads", 8)
    >>> opts = gkit_options(cfg)
    >>> opts["idle_timeout"], opts["thread"], opts["max_line"]
    (5.0, 8, 8190)
    """
    options: Dict[str, Any] = {
        "thread": cfg.threads if cfg.threads > 1 else None,
        "idle_timeout": float(cfg.keepalive) if cfg.keepalive > 0 else 1.0,
        "max_line": max(64, cfg.limit_request_line or GUNICORN_MAX_LINE,
                        cfg.limit_request_field_size or GUNICORN_MAX_LINE),
        "proxy_headers": bool(cfg.secure_scheme_headers),
        "forwarded_allow_ips": tuple(cfg.forwarded_allow_ips),
        "max_connections": cfg.worker_connections,
        "proxy_protocol": _proxy_protocol(cfg),
    }
    max_ws = getattr(cfg, "websocket_max_message_size", None)  # gunicorn >= 26.3
    if max_ws is not None:
        options["max_ws"] = max_ws or sys.maxsize
    if cfg.is_ssl:
        options["ssl_context"] = tls_context(cfg)
    return options


def _proxy_protocol(cfg: Any) -> bool:
    return getattr(cfg, "proxy_protocol", "off") not in ("off", False, None)


def tls_context(cfg: Any) -> Any:
    """An ``ssl.SSLContext`` from gunicorn's TLS settings, offering http/1.1 only."""
    from gunicorn.sock import ssl_context

    try:
        context = ssl_context(cfg)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise RuntimeError(f"gkit worker: cannot load certfile={cfg.certfile!r} "
                           f"keyfile={cfg.keyfile!r}: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


class Worker(base.Worker):
    """A gunicorn worker process serving with gkit; see the module docstring."""

    # Set by gunicorn's Worker.__init__ (untyped there).
    sockets: List[Any]
    alive: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # pre-fork: change nothing process-wide here
        self.server: Optional["Server"] = None
        self.nr = 0            # app calls counted for max_requests
        self._wake: Any = None  # a gevent Event, made after patching
        self._graceful = True

    # -- configuration -----------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Called by the arbiter before forking: refuse what gkit cannot serve."""
        if getattr(cfg, "protocol", "http") != "http":
            raise RuntimeError(f"gkit.gunicorn.Worker serves HTTP/1.1 only: "
                               f"drop --protocol {cfg.protocol}")
        if _proxy_protocol(cfg) and \
                sorted(getattr(cfg, "proxy_allow_ips", [])) != sorted(cfg.forwarded_allow_ips):
            raise RuntimeError("gkit.gunicorn.Worker trusts one list of proxies for PROXY "
                               "headers and X-Forwarded-*: give --proxy-allow-from the same "
                               "addresses as --forwarded-allow-ips")
        if "h2" in (getattr(cfg, "http_protocols", None) or ()):
            log.warning("gkit.gunicorn.Worker serves HTTP/1.1 only; "
                        "h2 in http_protocols is ignored")
        if cfg.keepalive <= 0:
            log.warning("gkit always offers keep-alive: keepalive=0 is served as "
                        "a 1 second idle timeout")
        if cfg.is_ssl:
            tls_context(cfg)  # a bad certificate fails here, once, not in every worker

    def gkit_options(self) -> Dict[str, Any]:
        """Options for this worker's gkit Server; override to add gkit's own."""
        return gkit_options(self.cfg)

    # -- process start ----------------------------------------------------------
    def init_process(self) -> None:
        """After the fork: patch, make gunicorn's sockets cooperative, then let
        gunicorn load the app and call :meth:`run`."""
        # gunicorn sets the worker's signal handlers only in its init_process,
        # after our patching: take TERM/QUIT/INT now, or one sent while the
        # worker boots goes to the handler inherited from the master and is lost.
        for sig, handler in ((signal.SIGTERM, self.handle_exit), (signal.SIGQUIT, self.handle_quit),
                             (signal.SIGINT, self.handle_quit)):
            signal.signal(sig, handler)
        from gevent import hub, monkey

        monkey.patch_all()
        import gevent.event
        import gevent.socket

        self.sockets = [_cooperative(s, gevent.socket.socket) for s in self.sockets]
        hub.reinit()
        self._wake = gevent.event.Event()
        super().init_process()

    def make_server(self) -> "Server":
        """Build (not start) the gkit Server on gunicorn's sockets."""
        from .config import make_config
        from .server import Server

        app: Callable[..., Any] = self.wsgi
        if self.max_requests < sys.maxsize:
            app = self._count_requests(app)
        server = Server(app, make_config(**self.gkit_options()), listeners=self.sockets,
                        multiprocess=self.cfg.workers > 1)
        _route_logs(self.log)
        if _wants_access(self.log):
            server.access_hook = self.access
        return server

    def access(self, rec: Any) -> None:
        """Hand one request (a :class:`gkit.accessformat.AccessRecord`) to
        gunicorn's ``log.access()``, shaped as its own workers call it."""
        self.log.access(*gunicorn_access_args(rec))

    def _count_requests(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def counted(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
                self._wake.set()
            return app(environ, start_response)
        return counted

    # -- the main loop -------------------------------------------------------------
    def run(self) -> None:
        import gevent

        server = self.server = self.make_server()
        server.start()
        self.log.info("gkit serving (http=%s, worker_connections=%s, thread=%s)",
                      server.engine, self.cfg.worker_connections, server.config.thread)
        # The arbiter passes timeout/2 as self.timeout; 0 means no timeout.
        beat = self.timeout if self.timeout > 0 else 1.0
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            self._wake.wait(beat)
            self._wake.clear()
        self.alive = False
        graceful = self._graceful
        timeout = float(self.cfg.graceful_timeout)
        stopper = gevent.spawn(server.stop, timeout if graceful else None)
        while not stopper.ready():  # keep beating, or the arbiter kills us mid-stop
            self.notify()
            stopper.join(beat)
        if not stopper.successful():
            self.log.error("gkit server stop failed: %r", stopper.exception)
        if not graceful:
            self.cfg.worker_int(self)

    # -- signals (run in whichever greenlet the signal interrupts: only flag and wake) --
    def handle_exit(self, sig: int, frame: Any) -> None:
        """TERM: stop gracefully, giving in-flight requests graceful_timeout."""
        self.alive = False
        if self._wake is not None:  # else run() has not started: it sees alive
            self._wake.set()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """QUIT/INT: stop at once; during a graceful stop, exit now."""
        import gevent

        if self.alive:
            self._graceful = False
            self.alive = False
            if self._wake is not None:
                self._wake.set()
        else:
            gevent.spawn(super().handle_quit, sig, frame)  # it sleeps and exits

    def handle_usr1(self, sig: int, frame: Any) -> None:
        import gevent

        gevent.spawn(super().handle_usr1, sig, frame)  # reopens log files


def _cooperative(listener: Any, gsocket: Any) -> Any:
    """gunicorn's listener as a non-blocking gevent socket, as gkit's own
    listeners are (gevent's StreamServer accepts on it without blocking)."""
    sock = gsocket(listener.FAMILY, socket.SOCK_STREAM, fileno=listener.sock.detach())
    sock.setblocking(False)
    return sock


class _Response:
    """What gunicorn's ``glogging.Logger.atoms()`` and statsd read of a response."""

    __slots__ = ("status", "sent", "headers")

    def __init__(self, status: int, sent: Optional[int], headers: List[Any]) -> None:
        self.status = status
        self.sent = sent
        self.headers = headers


class _Request:
    """What ``atoms()`` reads of a request: ``headers``, (NAME, value) pairs."""

    __slots__ = ("headers",)

    def __init__(self, headers: List[Any]) -> None:
        self.headers = headers


def gunicorn_access_args(rec: Any) -> Tuple[Any, Any, Dict[str, Any], datetime.timedelta]:
    """``(resp, req, environ, request_time)`` for gunicorn's ``log.access()``
    from gkit's access record.

    >>> from gkit.accessformat import AccessRecord
    >>> rec = AccessRecord("192.0.2.1", 5000, "GET", b"/a%20b?x=1", "1.1",
    ...                    [(b"User-Agent", b"t")], 200, 16, 0.25)
    >>> resp, req, environ, took = gunicorn_access_args(rec)
    >>> resp.status, resp.sent, req.headers, took.microseconds
    (200, 16, [('USER-AGENT', 't')], 250000)
    >>> environ["RAW_URI"], environ["PATH_INFO"], environ["HTTP_USER_AGENT"]
    ('/a%20b?x=1', '/a b', 't')
    """
    target = rec.target.decode("latin-1")
    path, _, query = target.partition("?")
    headers = [(k.decode("latin-1").upper(), v.decode("latin-1")) for k, v in rec.headers]
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": rec.method, "RAW_URI": target, "PATH_INFO": unquote(path, "latin-1"),
        "QUERY_STRING": query, "SERVER_PROTOCOL": f"HTTP/{rec.version}",
        "REMOTE_ADDR": rec.client or "-", "REMOTE_PORT": str(rec.port) if rec.port else "",
    }
    for name, value in headers:
        key = "HTTP_" + name.replace("-", "_")
        if "_" not in name and key not in environ:  # as gkit's environ: no `_` names
            environ[key] = value
    return (_Response(rec.status, rec.length, rec.response_headers), _Request(headers), environ,
            datetime.timedelta(seconds=rec.duration))


def _wants_access(glog: Any) -> bool:
    """Does gunicorn's logger do anything with ``access()``? Its plain Logger
    only with an access log; statsd or a custom logger class always."""
    from gunicorn import glogging

    if type(glog).access is not glogging.Logger.access:
        return True
    enabled = getattr(glog, "access_log_enabled", None)
    if enabled is None:  # gunicorn < 26: enabled when it has somewhere to write
        gaccess = getattr(glog, "access_log", None)
        enabled = bool(gaccess is not None and gaccess.handlers)
    return bool(enabled)


def _route_logs(glog: Any) -> None:
    """Send gkit's error logger to gunicorn's handlers, unless the user
    configured it (e.g. with --log-config-dict). Access lines are written by
    gunicorn's ``log.access()`` (:meth:`Worker.access`), so gkit's own
    ``gkit.access`` line is off unless the user gave that logger handlers;
    channel-end lines (``gkit.access.channel``) go to gunicorn's access log."""
    access = logging.getLogger("gkit.access")
    if not access.handlers:
        access.setLevel(logging.WARNING)
        # Channel-end lines have no gunicorn equivalent: they go to gunicorn's
        # access log as they are, when it has one.
        gaccess = getattr(glog, "access_log", None)
        if getattr(glog, "access_log_enabled", True) and gaccess is not None \
                and gaccess.handlers:
            _share_handlers(logging.getLogger("gkit.access.channel"), gaccess.handlers,
                            logging.INFO)
    main = logging.getLogger("gkit")
    gerror = getattr(glog, "error_log", None)
    if not main.handlers and gerror is not None and gerror.handlers:
        _share_handlers(main, gerror.handlers, gerror.level)


def _share_handlers(logger: logging.Logger, handlers: Iterable[logging.Handler],
                    level: int) -> None:
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
