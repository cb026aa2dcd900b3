"""The server's options: defined once, validated, no I/O.

Every option is a field of :class:`Config` with its help text in the field's
metadata; the CLI flags (``gkit.cli``) and the README table are generated from
these fields, so a new option is added here and nowhere else.
"""
from __future__ import annotations

import _ssl
import dataclasses
import ipaddress
import ssl
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from .errors import ConfigError
from .proto.origin import parse_allowed_origins

HTTP_ENGINES = ("auto", "httptools", "h11")
ACCESS_LOG_FORMATS = ("combined", "json")


def _opt(default: Any, help: str, *, cli: bool = True, metavar: Optional[str] = None) -> Any:
    return field(default=default, metadata={"help": help, "cli": cli, "metavar": metavar})


@dataclass(frozen=True)
class Config:
    """Options of :func:`gkit.run_server`, with http-kit's defaults.

    >>> Config(port=0, thread=8).thread
    8
    """

    ip: str = _opt("0.0.0.0", "address to bind (IPv6 literals work)")
    port: int = _opt(8090, "port to bind; 0 picks a free one (read back as server.port)")
    thread: Optional[int] = _opt(
        1000, "how many app calls run at once (greenlet pool size; gunicorn's gevent "
              "worker_connections); 'none' = no limit")
    worker_name_prefix: str = _opt(
        "worker-", "name prefix of the greenlets while they run the app: worker-1, worker-2, ...")
    queue_size: int = _opt(20480, "requests allowed to wait for a free worker; past it: 503")
    max_body: int = _opt(8388608, "request body limit in bytes; past it: 413")
    max_line: int = _opt(
        8192, "limit in bytes for the request line and each header line; past it: 414")
    max_ws: int = _opt(4194304, "WebSocket message limit in bytes (fragments summed); past it: close 1009")
    http: str = _opt("auto", "HTTP/1.1 engine: auto (httptools when installed), httptools or h11")
    max_buffered: int = _opt(
        16 * 1024 * 1024, "a channel's unwritten-bytes limit; past it the channel is closed")
    max_buffered_total: Optional[int] = _opt(
        256 * 1024 * 1024, "unwritten bytes of all channels together; past it the channels "
                           "holding the most are closed first; 'none' = no limit")
    server_header: Optional[str] = _opt(
        "gkit", "value of the Server response header; 'none' omits it (an app's own wins)")
    idle_timeout: float = _opt(
        60.0, "seconds before an idle keep-alive connection (or a stalled read/write) is closed")
    header_timeout: float = _opt(
        10.0, "seconds a client has to send a whole request head once it started one (slowloris)")
    body_timeout: float = _opt(
        20.0, "seconds a client has to send a request body, from the first read of it, plus one "
              "second per body_min_rate bytes received (Apache mod_reqtimeout's body=); past it: 408")
    body_min_rate: int = _opt(
        500, "bytes per second that extend body_timeout by one second each (mod_reqtimeout's "
             "MinRate); 0: body_timeout bounds the whole body")
    ssl_context: Optional[ssl.SSLContext] = _opt(
        None, "an ssl.SSLContext for HTTPS and wss:// (CLI: --certfile/--keyfile)", cli=False)
    proxy_headers: bool = _opt(
        False, "take REMOTE_ADDR and wsgi.url_scheme from X-Forwarded-For/-Proto of trusted proxies")
    forwarded_allow_ips: Tuple[str, ...] = _opt(
        ("127.0.0.1", "::1"),
        "proxies trusted for proxy_headers and proxy_protocol ('*' trusts every peer)")
    proxy_protocol: bool = _opt(
        False, "read a PROXY protocol header (v1 or v2) at the start of each connection from "
               "forwarded_allow_ips peers; REMOTE_ADDR is the client it names")
    max_connections: Optional[int] = _opt(
        None, "open connections allowed; at the limit the server stops accepting until one "
              "closes (gunicorn's worker_connections); 'none' = no limit")
    access_log_format: str = _opt(
        "combined", "access log lines: combined (Apache's, plus seconds taken) or json "
                    "(one object per line, typed fields)")
    health_path: Optional[str] = _opt(
        None, "a path gkit answers itself, before the worker pool: 200 while running, 503 once "
              "stop() began (for load balancer health checks); 'none' = off", metavar="PATH")
    metrics_bind: Optional[str] = _opt(
        None, "HOST:PORT of a separate listener answering Prometheus metrics (never the app's "
              "port; needs gkit[metrics]); 'none' = off", metavar="HOST:PORT")
    backlog: int = _opt(1024, "listen backlog")
    reuse_port: bool = _opt(False, "set SO_REUSEPORT on the listening socket")
    ws_deflate: bool = _opt(True, "negotiate permessage-deflate (RFC 7692) when a client offers it")
    request_timeout: Optional[float] = _opt(
        None, "seconds an app call may run (its body iterated included) before gevent.Timeout "
              "is raised in it: 504 if nothing was sent, else the connection is cut; channels "
              "are exempt; 'none' = no limit")
    block_warn: Optional[float] = _opt(
        None, "seconds a greenlet may hold the hub before gkit.error gets its worker name, "
              "request line and stack, once per incident (gevent's monitor thread); 'none' = off")
    ws_ping_interval: Optional[float] = _opt(
        20.0, "seconds a WebSocket may stay quiet (nothing received) before the server pings "
              "it; keeps it alive behind 60 s proxy idle limits; 'none' = never ping")
    ws_ping_timeout: Optional[float] = _opt(
        20.0, "seconds after a ping with nothing received before the WebSocket is closed "
              "(code 1011, on_close status 'ping-timeout'); 'none' = never close")
    ws_allowed_origins: Tuple[str, ...] = _opt(
        (), "origins allowed to open a WebSocket, comma-separated: exact (https://example.com) "
            "or wildcard (https://*.example.com); others get 403 before the app runs, a "
            "handshake without Origin passes; empty = any origin")
    hub: Optional[str] = _opt(
        None, "gkit.hub URL: memory:// (this process) or redis://host:port/db (shared by every "
              "process using it); none = $GKIT_HUB, else memory://", metavar="URL")

    def __post_init__(self) -> None:
        if self.http not in HTTP_ENGINES:
            raise ConfigError(f"http={self.http!r}: choose one of {', '.join(HTTP_ENGINES)}")
        if self.access_log_format not in ACCESS_LOG_FORMATS:
            raise ConfigError(f"access_log_format={self.access_log_format!r}: choose one of "
                              f"{', '.join(ACCESS_LOG_FORMATS)}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port={self.port!r}: give an integer from 0 to 65535")
        for name in ("thread", "max_connections", "max_buffered_total"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r}: give a positive integer, or None for no limit")
        for name in ("queue_size", "max_body", "max_line", "max_ws", "max_buffered", "backlog",
                     "body_min_rate"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r}: give a non-negative integer")
        if self.max_line < 64:
            raise ConfigError(f"max_line={self.max_line}: give at least 64 bytes")
        for name in ("idle_timeout", "header_timeout", "body_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name}={value!r}: give a positive number of seconds")
        for name in ("block_warn", "request_timeout", "ws_ping_interval", "ws_ping_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"{name}={value!r}: give a positive number of seconds, "
                                  f"or None for off")
        if self.metrics_bind is not None:
            self._check_metrics_bind()
        if self.health_path is not None and (not self.health_path.startswith("/")
                                             or any(c in self.health_path for c in " ?#")):
            raise ConfigError(f"health_path={self.health_path!r}: give a path starting with / "
                              f"(no spaces, query or fragment), e.g. /healthz")
        if self.hub is not None:
            from .hub.wire import check_url
            check_url(self.hub)
        # _ssl._SSLContext is the base of the stdlib's and gevent's SSLContext,
        # so a context made before or after monkey-patching is accepted.
        if self.ssl_context is not None and not isinstance(self.ssl_context, _ssl._SSLContext):
            raise ConfigError("ssl_context: give an ssl.SSLContext (see ssl.create_default_context)")
        if isinstance(self.forwarded_allow_ips, str):
            ips = tuple(p.strip() for p in self.forwarded_allow_ips.split(",") if p.strip())
            object.__setattr__(self, "forwarded_allow_ips", ips)
        for item in self.forwarded_allow_ips:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ConfigError(f"forwarded_allow_ips: {item!r} is not an IP address or network "
                                  f"(e.g. 127.0.0.1,10.0.0.0/8 or '*')") from None

        if isinstance(self.ws_allowed_origins, str):
            object.__setattr__(self, "ws_allowed_origins", tuple(
                p for p in self.ws_allowed_origins.split(",") if p.strip()))
        try:
            object.__setattr__(self, "ws_allowed_origins",
                               parse_allowed_origins(self.ws_allowed_origins))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _check_metrics_bind(self) -> None:
        from .listen import BindError, parse_bind
        try:
            where = parse_bind(self.metrics_bind or "")
        except BindError as exc:
            raise ConfigError(str(exc).replace("--bind", "metrics_bind")) from None
        if where.kind != "tcp" or where.port is None:
            raise ConfigError(f"metrics_bind={self.metrics_bind!r}: give HOST:PORT "
                              f"(e.g. 127.0.0.1:9100)")
        if where.port and where.port == self.port and where.host == self.ip:
            raise ConfigError(f"metrics_bind={self.metrics_bind!r} is the app's own address: "
                              f"give the metrics another port")

    @property
    def max_head(self) -> int:
        """Limit of a whole request head: past it 431."""
        return max(65536, self.max_line)


OPTIONS = tuple(f for f in dataclasses.fields(Config))


def make_config(**options: Any) -> Config:
    """Build a :class:`Config`, naming an unknown option clearly."""
    known = {f.name for f in OPTIONS}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Config(**options)


def options_markdown() -> str:
    """The README's options table, generated from :class:`Config` (a test
    checks that README.md holds exactly this table)."""
    rows = ["| option | CLI flag | default | meaning |", "| --- | --- | --- | --- |"]
    for f in OPTIONS:
        flag = "--" + f.name.replace("_", "-") if f.metadata.get("cli", True) else "(API only)"
        rows.append(f"| `{f.name}` | `{flag}` | `{f.default!r}` | {f.metadata['help']} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m gkit.config prints the table
    print(options_markdown())
