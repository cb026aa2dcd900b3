"""The ``gkit`` command: ``gkit module:app [options]`` (also ``python -m gkit``).

One flag per :class:`gkit.config.Config` field, generated from the fields, so
a server option is defined once. The few options that are about processes and
sockets rather than the server (``--bind``, ``--workers``, ``--reload``, TLS
files, logging) are defined once, in :data:`PROCESS_OPTIONS` below.

How a run goes: parse and validate everything (usage errors exit 2 with one
line), bind the listening sockets once, then either serve in this process
(the default), or fork ``--workers`` processes that serve on those sockets
(:mod:`gkit.supervisor`), or run the server in a child process restarted on
source changes (:mod:`gkit.reload`). Only a process that serves monkey-patches
gevent, and it does so before it imports the app; importing :mod:`gkit` never
patches.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import traceback
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, List, NoReturn, Optional

from .listen import (FDS_ENV, Bind, BindError, Listener, adopt, bind_all, cooperative,
                     parse_bind)
from .supervisor import APP_LOAD_ERROR
from .tls import CertificateError, ssl_context_from

log = logging.getLogger("gkit")

# Exit code of usage and configuration errors (argparse's); a worker that
# could not start exits 3 and an app that cannot be imported 4, as gunicorn's.
USAGE_ERROR = 2


class UsageError(Exception):
    """A bad flag or value; the message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        raise UsageError(f"{message} (see gkit --help)")


# -- flags ------------------------------------------------------------------------
def _none_or(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _csv(text: str) -> tuple:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _flag_type(hint: Any) -> Optional[Callable[[str], Any]]:
    """argparse type for a Config field's type hint; None for a boolean switch."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is bool:
        return None
    if origin is typing.Union and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return _none_or(inner)
    if origin is tuple:
        return _csv
    return hint


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive.__name__ = "positive integer"


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds"

# The process-level options: (flags, argparse keywords). Their one definition.
PROCESS_OPTIONS: List[Any] = [
    (("-b", "--bind"), dict(
        action="append", metavar="ADDRESS",
        help="address to listen on: HOST:PORT, [IPV6]:PORT, HOST or unix:PATH; repeatable; "
             "replaces --ip/--port")),
    (("--uds",), dict(metavar="PATH", help="listen on a Unix socket (the same as -b unix:PATH); "
                                           "removed at exit")),
    (("-w", "--workers"), dict(
        type=_positive, metavar="N",
        help="worker processes sharing the listening socket (default: $WEB_CONCURRENCY or 1); "
             "1 serves in this process")),
    (("--graceful-timeout",), dict(
        type=_seconds, default=30.0, metavar="SECONDS",
        help="on TERM, how long in-flight requests may take to finish before the server (and "
             "each worker) stops (default: 30.0)")),
    (("--reload",), dict(
        action="store_true",
        help="restart the server when a .py file under the current directory (or --reload-dir) "
             "changes; needs watchfiles (pip install 'gkit[reload]')")),
    (("--reload-dir",), dict(action="append", metavar="DIR",
                             help="directory to watch with --reload (repeatable; default: .)")),
    (("--certfile",), dict(help="PEM certificate (chain) for HTTPS and wss://")),
    (("--keyfile",), dict(help="PEM private key for --certfile (if not in --certfile)")),
    (("--access-log",), dict(action="store_true",
                             help="log every request on the gkit.access logger, to stderr")),
    (("--log-level",), dict(default="info",
                            choices=["debug", "info", "warning", "error", "critical"],
                            help="logging level (default: info)")),
]

# Defaults read from the environment when the flag is not given (gunicorn, uvicorn).
ENV_DEFAULTS = {"workers": "WEB_CONCURRENCY", "forwarded_allow_ips": "FORWARDED_ALLOW_IPS"}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import OPTIONS, Config

    hints = typing.get_type_hints(Config)
    parser = _Parser(prog="gkit", allow_abbrev=False,
                     description="Serve a WSGI app with gkit (http-kit for Python).")
    parser.add_argument("app", help="the WSGI app as module:attribute (e.g. myproject.wsgi:app)")
    parser.add_argument("--version", action="version", version=f"gkit {__version__}")
    for field_ in OPTIONS:
        if not field_.metadata.get("cli", True):
            continue
        flag = "--" + field_.name.replace("_", "-")
        kind = _flag_type(hints[field_.name])
        help_text = f"{field_.metadata['help']} (default: {field_.default!r})"
        if field_.name in ENV_DEFAULTS:
            help_text += f"; env {ENV_DEFAULTS[field_.name]}"
        # Not given: absent from the namespace (SUPPRESS), so "--thread none"
        # (None, no limit) is told apart from a flag left out (the default).
        if kind is None:
            parser.add_argument(flag, dest=field_.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=field_.name, type=kind, default=argparse.SUPPRESS,
                                metavar=field_.name.upper(), help=help_text)
    for flags, keywords in PROCESS_OPTIONS:
        parser.add_argument(*flags, **keywords)
    return parser


# -- the plan: everything validated before any socket or process ---------------------
@dataclass
class Plan:
    """What the command line asks for, validated."""

    app: str
    config: Any                       # gkit.config.Config
    binds: List[Bind] = field(default_factory=list)
    workers: int = 1
    reload: bool = False
    reload_dirs: List[str] = field(default_factory=list)
    graceful_timeout: float = 30.0
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    access_log: bool = False
    log_level: str = "info"


def _env_default(parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str) -> bool:
    """Fill ``dest`` from its environment variable; True if it came from there."""
    name = ENV_DEFAULTS[dest]
    text = os.environ.get(name, "").strip()
    if getattr(args, dest, None) is not None or not text:
        return False
    action = next(a for a in parser._actions if a.dest == dest)
    try:
        setattr(args, dest, action.type(text) if callable(action.type) else text)
    except ValueError:
        raise UsageError(f"environment {name}={text!r} is not a valid --"
                         f"{dest.replace('_', '-')} value") from None
    return True


def make_plan(argv: Sequence[str]) -> Plan:
    """Parse and validate ``argv``; raise :class:`UsageError` with one line."""
    from .config import OPTIONS, make_config
    from .errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(list(argv))
    workers_from_env = _env_default(parser, args, "workers")
    _env_default(parser, args, "forwarded_allow_ips")
    options = {f.name: getattr(args, f.name) for f in OPTIONS
               if f.metadata.get("cli", True) and hasattr(args, f.name)}
    try:
        config = make_config(**options)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        binds = [parse_bind(text) for text in (args.bind or [])]
        if args.uds:
            binds.append(parse_bind("unix:" + args.uds))
    except BindError as exc:
        raise UsageError(str(exc)) from None
    if binds and (getattr(args, "ip", None) is not None or getattr(args, "port", None) is not None):
        raise UsageError("give either -b/--bind/--uds or --ip/--port, not both")
    if not binds:
        binds = [parse_bind(f"[{config.ip}]:{config.port}" if ":" in config.ip
                            else f"{config.ip}:{config.port}")]
    workers = args.workers or 1
    if args.reload and workers > 1:
        if not workers_from_env:
            raise UsageError(f"--reload and --workers {workers} do not combine: --reload runs "
                             "one server process; drop one of them")
        workers = 1  # WEB_CONCURRENCY is a deployment default; --reload is for development
    dirs = args.reload_dir or ["."]
    if args.reload_dir and not args.reload:
        raise UsageError("--reload-dir needs --reload")
    for path in dirs:
        if not os.path.isdir(path):
            raise UsageError(f"--reload-dir {path!r} is not a directory")
    if args.keyfile and not args.certfile:
        raise UsageError("--keyfile needs --certfile")
    return Plan(app=args.app, config=config, binds=binds, workers=workers, reload=args.reload,
                reload_dirs=[os.path.abspath(d) for d in dirs],
                graceful_timeout=args.graceful_timeout, certfile=args.certfile,
                keyfile=args.keyfile, access_log=args.access_log, log_level=args.log_level)


# -- the app ----------------------------------------------------------------------------
class AppLoadError(Exception):
    """The app cannot be imported; the message is one line."""


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (attribute defaults to ``app``).

    >>> load_app("examples.hello:app").__name__
    'app'
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise AppLoadError(f"app {spec!r}: give it as module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(f"cannot import {module_name!r}: no module named {exc.name!r} "
                               f"(run gkit from the directory that contains it)") from None
        raise AppLoadError(f"importing {module_name!r} failed: {exc}") from None
    except SyntaxError as exc:
        raise AppLoadError(f"importing {module_name!r} failed: SyntaxError: {exc.msg} "
                           f"({exc.filename}, line {exc.lineno})") from None
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise AppLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc} "
                           f"({frame.filename}, line {frame.lineno})") from None
    app: Any = module
    for part in attr.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(app):
        raise AppLoadError(f"{module_name}:{attr} is a {type(app).__name__}, not a WSGI app "
                           f"(a callable taking environ and start_response)")
    return app


# -- serving in this process --------------------------------------------------------------
def setup_logging(plan: Plan) -> None:
    logging.basicConfig(level=plan.log_level.upper(), stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # "1 change detected"
    access = logging.getLogger("gkit.access")
    access.setLevel(logging.INFO if plan.access_log else logging.WARNING)
    if plan.access_log:  # a combined-format line has its own timestamp: print it bare
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False


def announce(listeners: List[Listener], secure: bool) -> None:
    for lst in listeners:
        log.info("Listening at: %s (%d)", lst.url("https" if secure else "http"), os.getpid())


def serve(plan: Plan, listeners: List[Listener], *, supervised: bool = False,
          ready: Optional[Callable[[], None]] = None, multiprocess: bool = False,
          metrics: Optional[Listener] = None, shared: Any = None) -> int:
    """Monkey-patch, import the app, serve on ``listeners`` until TERM/INT.

    ``supervised``: a worker or a --reload child: its parent announced the
    listeners, and it stops when its parent dies. ``metrics``: the bound
    --metrics-bind socket; ``shared``: the workers' shared stats.
    """
    from gevent import monkey
    monkey.patch_all()
    import gevent

    try:
        app = load_app(plan.app)
    except AppLoadError as exc:
        print(f"gkit: error: {exc}", file=sys.stderr)
        return APP_LOAD_ERROR
    # Each serving process loads the files itself, after patching; the parent
    # only checked them, so that bad files are reported before anything starts.
    try:
        ssl_context = ssl_context_from(plan.certfile, plan.keyfile)
    except (UsageError, CertificateError) as exc:
        print(f"gkit: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    from .server import Server

    import dataclasses

    config = plan.config
    if ssl_context is not None:
        config = dataclasses.replace(config, ssl_context=ssl_context)
    if metrics is not None:  # bound by the parent: the server must not bind it again
        config = dataclasses.replace(config, metrics_bind=None)
    server = Server(app, config, listeners=[cooperative(lst) for lst in listeners],
                    multiprocess=multiprocess)
    server.start()
    if metrics is not None:
        _serve_metrics(server, metrics, shared)
    if not supervised:
        announce(listeners, ssl_context is not None)
    stops = []

    def on_signal(timeout: float) -> None:
        stops.append(timeout)
        if len(stops) == 1:
            log.info("stopping (waiting up to %ss for in-flight requests)", timeout)
            server.stop(timeout)
        elif not supervised:  # Ctrl-C twice; a worker's master KILLs it when it is time
            log.warning("second signal: exiting now")
            for lst in listeners:
                lst.close()
            os._exit(1)

    gevent.signal_handler(signal.SIGTERM, on_signal, plan.graceful_timeout)
    gevent.signal_handler(signal.SIGINT, on_signal, min(1.0, plan.graceful_timeout))
    if supervised:
        gevent.spawn(_stop_when_orphaned, server, os.getppid(), plan.graceful_timeout)
    log.info("%s %s (http=%s)", "worker serving" if multiprocess else "serving", plan.app,
             server.engine)
    if ready is not None:
        ready()
    server.join()
    if shared is not None:  # the last counters, so the totals keep them
        from .stats import flatten
        shared.publish(shared.slot, flatten(server.stats()))
    return 0


PUBLISH_EVERY = 0.5  # seconds between a worker's stats updates in the shared block


def _serve_metrics(server: Any, metrics: Listener, shared: Any) -> None:
    """Answer --metrics-bind: this server's stats, or with workers every
    worker's summed (each worker publishes its own twice a second)."""
    import gevent

    from .metrics import MetricsListener
    from .stats import flatten

    sock = cooperative(metrics)
    if shared is None:
        server.metrics = MetricsListener(sock, server.stats)
        return

    def total() -> Any:  # this worker's numbers fresh, the others' from the block
        return shared.total(shared.slot, flatten(server.stats()))

    def publish() -> None:
        while server.status == "running":
            shared.publish(shared.slot, flatten(server.stats()))
            gevent.sleep(PUBLISH_EVERY)

    server.metrics = MetricsListener(sock, total, shared.workers)
    gevent.spawn(publish)


def _stop_when_orphaned(server: Any, parent: int, timeout: float) -> None:
    import gevent
    while server.status == "running":
        gevent.sleep(1.0)
        if os.getppid() != parent:
            log.warning("the master process %d is gone: stopping", parent)
            server.stop(timeout)


# -- main --------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        plan = make_plan(argv)
        inherited = os.environ.pop(FDS_ENV, None)
        if inherited is not None:  # a --reload child: the parent bound the sockets
            setup_logging(plan)
            return serve(plan, adopt(inherited), supervised=True)
        if plan.reload:
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                raise UsageError("--reload needs the watchfiles package: "
                                 "pip install 'gkit[reload]'") from None
        secure = ssl_context_from(plan.certfile, plan.keyfile) is not None  # checks the files
        setup_logging(plan)
        listeners = bind_all(plan.binds, plan.config)
        metrics = None
        if plan.config.metrics_bind and not plan.reload:  # a reloaded child binds its own
            metrics = _bind_metrics(plan.config, listeners)
    except (UsageError, CertificateError) as exc:
        print(f"gkit: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as exc:
        print(f"gkit: error: {exc.strerror or exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        if plan.reload:
            from .reload import Reloader
            announce(listeners, secure)
            return Reloader(argv, listeners, plan.reload_dirs, plan.graceful_timeout).run()
        if plan.workers > 1:
            from .supervisor import Supervisor

            shared = None
            if metrics is not None:
                from .sharedstats import SharedStats
                shared = SharedStats(plan.workers)

            def worker(ready: Callable[[], None]) -> int:
                return serve(plan, listeners, supervised=True, ready=ready, multiprocess=True,
                             metrics=metrics, shared=shared)
            return Supervisor(worker, plan.workers, graceful_timeout=plan.graceful_timeout,
                              on_boot=lambda: announce(listeners, secure), shared=shared).run()
        return serve(plan, listeners, metrics=metrics)
    finally:
        for lst in listeners + ([metrics] if metrics is not None else []):
            lst.close()


def _bind_metrics(config: Any, listeners: List[Listener]) -> Listener:
    """Bind --metrics-bind in the process that binds the app's sockets."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError("--metrics-bind needs the prometheus_client package: "
                         "pip install 'gkit[metrics]'") from None
    where = parse_bind(config.metrics_bind)
    taken = {lst.sock.getsockname()[1] for lst in listeners if not lst.path}
    if where.port in taken:
        raise UsageError(f"--metrics-bind {config.metrics_bind}: port {where.port} serves the "
                         f"app; give the metrics their own port")
    lst = bind_all([where], config)[0]
    log.info("Metrics at: %s/metrics", lst.url())
    return lst
