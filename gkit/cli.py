"""The ``gkit`` command: ``gkit module:app [options]`` (also ``python -m gkit``).

One flag per :class:`gkit.config.Config` field, generated from the fields, so
an option is defined once. The command monkey-patches gevent before it
imports the app; importing :mod:`gkit` never does.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import typing
from typing import Any, Callable, Dict, List, Optional, Sequence


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


def build_parser() -> argparse.ArgumentParser:
    from .config import OPTIONS, Config

    hints = typing.get_type_hints(Config)
    parser = argparse.ArgumentParser(
        prog="gkit", description="Serve a WSGI app with gkit (http-kit for Python).")
    parser.add_argument("app", help="the WSGI app as module:attribute (e.g. myproject.wsgi:app)")
    for field in OPTIONS:
        if not field.metadata.get("cli", True):
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = _flag_type(hints[field.name])
        help_text = f"{field.metadata['help']} (default: {field.default!r})"
        if kind is None:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=None,
                                metavar=field.name.upper(), help=help_text)
    parser.add_argument("--certfile", help="PEM certificate (chain) for HTTPS and wss://")
    parser.add_argument("--keyfile", help="PEM private key for --certfile")
    parser.add_argument("--access-log", action="store_true",
                        help="log every request on the gkit.access logger, to stderr")
    parser.add_argument("--log-level", default="info", help="logging level (default: info)")
    return parser


def load_app(spec: str) -> Any:
    """Import ``module:attribute``; raise SystemExit with a one-line reason."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise SystemExit(f"gkit: error: app {spec!r}: give it as module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"gkit: error: cannot import {module_name!r}: {exc}") from None
    try:
        app = module
        for part in attr.split("."):
            app = getattr(app, part)
    except AttributeError:
        raise SystemExit(f"gkit: error: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(app):
        raise SystemExit(f"gkit: error: {spec!r} is not callable: give a WSGI app")
    return app


def options_from(args: argparse.Namespace) -> Dict[str, Any]:
    from .config import OPTIONS

    options = {f.name: getattr(args, f.name) for f in OPTIONS
               if f.metadata.get("cli", True) and getattr(args, f.name) is not None}
    # Flags that say "none" explicitly mean None (thread, server_header).
    if args.certfile:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(f"gkit: error: cannot load --certfile/--keyfile: {exc}") from None
        options["ssl_context"] = context
    elif args.keyfile:
        raise SystemExit("gkit: error: --keyfile needs --certfile")
    return options


def main(argv: Optional[Sequence[str]] = None) -> int:
    from gevent import monkey
    monkey.patch_all()

    import logging
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("gkit.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    app = load_app(args.app)
    from .errors import ConfigError
    from .server import run_server
    try:
        server = run_server(app, **options_from(args))
    except (ConfigError, OSError) as exc:
        print(f"gkit: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("gkit").info("serving %s on http%s://%s:%s (http=%s)", args.app,
                                   "s" if args.certfile else "", server.config.ip, server.port,
                                   server.engine)
    import signal
    import gevent
    gevent.signal_handler(signal.SIGTERM, server.stop, 10.0)
    gevent.signal_handler(signal.SIGINT, server.stop, 1.0)
    server.join()
    return 0


