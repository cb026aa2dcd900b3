"""The WSGI dispatch: what happens to a request between its head and its
response. :class:`Dispatch` holds the server's WSGI facts (the base environ,
proxy trust, the response-head memo, the Date clock, whether the access log
is on) and :meth:`Dispatch.run` calls the app in the connection's greenlet
(which holds a worker slot), then writes what it returns through the one
response framing of ``proto.response`` (``start_response`` is
:class:`ResponseWriter`).

Hook points: a request deadline (``request_timeout``) and client-gone
detection wrap :meth:`Dispatch.run`'s app call; a health path answered
before the pool goes in ``Connection._dispatch`` ahead of ``pool.acquire``.
"""
from __future__ import annotations

import ipaddress
import logging
import sys
import time
from email.utils import formatdate
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from . import accesslog
from .channel import Channel
from .clientgone import ClientDisconnected, GoneWatch
from .compat import Upgrade
from .config import Config
from .connection import Connection
from .errors import ProtocolError
from .state import Exchange, Outcome
from .stats import Counters
from .proto.environ import apply_proxy_headers, build_environ
from .proto.h1 import Request
from .proto.origin import refused_origin
from .timeouts import RequestTimeout
from .proto.response import (CHUNKED, LENGTH, NO_BODY, BadResponse, ResponseHead,
                             build_head)
from .files import sendfile_span
from .wsgi_io import NO_BODY_INPUT, FileWrapper, Input, sendfile_all

__all__ = ["Dispatch", "ResponseWriter", "FileWrapper", "Input", "NO_BODY_INPUT"]

error_log = logging.getLogger("gkit.error")

HEAD_MEMO = 512  # response heads memoized per second


class ResponseWriter:
    """``start_response`` (PEP 3333) and the writer of its response in one
    object: frames the response, and sends head and first body bytes in one
    send."""

    __slots__ = ("conn", "dispatch", "req", "status", "headers", "head", "sent", "keep_alive",
                 "broken")

    def __init__(self, conn: Connection, dispatch: "Dispatch", req: Request,
                 keep_alive: bool) -> None:
        self.conn = conn
        self.dispatch = dispatch
        self.req = req
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []
        self.head: Optional[ResponseHead] = None  # shared, memoized: never changed
        self.sent = 0
        self.keep_alive = keep_alive
        self.broken = False  # the body broke its framing: close after it

    def __call__(self, status: str, headers: List[Tuple[str, str]],
                 exc_info: Any = None) -> Callable[[bytes], None]:
        """``start_response(status, headers, exc_info=None) -> write``."""
        if exc_info:
            try:
                if self.head is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        return self.write

    def begin(self, length: Optional[int]) -> bytes:
        if self.status is None:
            raise BadResponse("the app returned without calling start_response")
        req = self.req
        self.head = head = self.dispatch.response_head(
            self.status, self.headers, req.method, req.version,
            self.keep_alive and not self.conn.closing, length)
        return head.data

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:
            # Checked before the head is marked sent, so the app still gets its 500.
            if not isinstance(data, (bytearray, memoryview)):
                raise BadResponse(f"the app's response body holds {type(data).__name__}, "
                                  f"not bytes (PEP 3333): encode it, e.g. text.encode()")
            data = bytes(data)
        out = self.begin(None) if self.head is None else b""
        head = self.head
        assert head is not None
        if data:
            mode = head.mode
            if mode == CHUNKED:
                out += b"%x\r\n" % len(data) + data + b"\r\n"
            elif mode == LENGTH:
                room = head.length - self.sent  # type: ignore[operator]
                if len(data) > room:
                    data = data[:room]
                    self.broken = True  # the app wrote more than it declared
                out += data
            elif mode != NO_BODY:
                out += data
            self.sent += len(data)
        if out:
            self.conn.send(out)

    def finish(self) -> None:
        if self.head is None:
            self.conn.send(self.begin(0))
            return
        head = self.head
        if head.mode == CHUNKED:
            self.conn.send(b"0\r\n\r\n")
        elif head.mode == LENGTH and self.sent != head.length:
            self.broken = True  # the client cannot find the end: close


class Dispatch:
    """The WSGI side of a server: implements ``transport.Dispatcher``.

    >>> from gkit.config import make_config
    >>> d = Dispatch(lambda e, s: [], make_config(), port=8080, server_name="localhost")
    >>> d.base_environ(False)["wsgi.url_scheme"], d.trusts("127.0.0.1")
    ('http', True)
    """

    def __init__(self, app: Callable[..., Any], config: Config, *, port: int,
                 server_name: str, multiprocess: bool = False,
                 counters: Optional[Counters] = None) -> None:
        self.app = app
        self.config = config
        self.counters = counters if counters is not None else Counters()
        self._date = formatdate(time.time(), usegmt=True)
        self._heads: Dict[Any, ResponseHead] = {}
        self.access_hook: accesslog.Hook = None  # gets every request's AccessRecord
        self.log_access = accesslog.enabled()  # checked again every second
        self._trusted = _trust_list(config.forwarded_allow_ips)
        base = {
            "SERVER_NAME": server_name, "SERVER_PORT": str(port),
            "SCRIPT_NAME": "", "SERVER_SOFTWARE": "gkit",
            "wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": multiprocess, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper,
        }
        self._base = {False: dict(base, **{"wsgi.url_scheme": "http"}),
                      True: dict(base, **{"wsgi.url_scheme": "https"})}

    # -- facts -------------------------------------------------------------------------
    def base_environ(self, secure: bool) -> Dict[str, Any]:
        return self._base[secure]

    def trusts(self, ip: str) -> bool:
        """Is the peer ``ip`` a proxy trusted for proxy headers?"""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "*" in self._trusted or not ip  # Unix socket peers have no address
        return any(net == "*" or addr in net for net in self._trusted)

    def date(self) -> str:
        """The Date header value, formatted once a second by :meth:`tick`."""
        return self._date

    def tick(self) -> None:
        """Called by the server's clock just after each second starts."""
        self._date = formatdate(time.time(), usegmt=True)
        self._heads.clear()  # they carry the old Date
        self.log_access = accesslog.enabled(self.access_hook)

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
        self.counters.by_class[head.status_code // 100] += 1
        return head

    def answer(self, conn: Connection, req: Request, status: str, reason: str) -> None:
        """A short text/plain answer from the server itself; the connection closes after it."""
        body = f"{status}: {reason}\n".encode("utf-8", "replace")
        head = self.response_head(status, [("Content-Type", "text/plain; charset=utf-8")],
                                  req.method, req.version, False, len(body))
        conn.send(head.data + (b"" if req.method == "HEAD" else body))

    # -- one request -----------------------------------------------------------------
    def run(self, conn: Connection, ex: Exchange, keep_alive: bool) -> Outcome:
        """Call the app for ``ex.request`` and write its response."""
        req = ex.request
        config = self.config
        if req.upgrade and config.ws_allowed_origins:  # issue 12: refused before the app
            refused = refused_origin(req.headers, config.ws_allowed_origins)
            if refused is not None:
                self.answer(conn, req, "403 Forbidden",
                            f"Origin {refused} is not allowed (ws_allowed_origins)")
                return Outcome.CLOSE
        inp = Input(conn, req) if req.has_body else NO_BODY_INPUT
        environ = build_environ(req, self._base[conn.secure], conn.addr, inp)
        if config.proxy_headers and self.trusts(conn.addr[0]):
            apply_proxy_headers(environ, config.forwarded_allow_ips)
            ex.client = environ["REMOTE_ADDR"]
        environ["gkit.connection"] = conn.info
        # wsgi.websocket and gunicorn.socket for the realtime libraries (gkit.compat)
        upgrade = _prepare_upgrade(conn, environ, self.app) if req.upgrade else None
        writer = ResponseWriter(conn, self, req, keep_alive)
        result = None
        logged = self.log_access
        started = ex.started = time.monotonic() if logged else 0.0
        try:
            result = self.app(environ, writer)
            if upgrade is not None:
                upgrade.app_returned()  # closes a wsgi.websocket the app left open
            # Once a channel was opened the channel alone answers (and logs),
            # even if it already has and the connection moved on.
            if ex.channel is not None:
                return Outcome.HANDED_OVER
            if conn.handed_over:  # the app took the raw socket: gkit writes nothing more
                return Outcome.HANDED_OVER
            _write_result(conn, ex, writer, result)
            if upgrade is not None and writer.head is not None:
                upgrade.answered(writer.head.status_code, environ)
        except OSError:
            return _failed(conn, ex)
        except ClientDisconnected:  # the client left while the body streamed (clientgone.py)
            return Outcome.CLOSE
        except RequestTimeout:  # thrown by the sweeper, which logged it (timeouts.py)
            if ex.channel is not None or conn.handed_over:
                return _failed(conn, ex, abort=True)
            if writer.head is None:
                self.answer(conn, req, "504 Gateway Timeout",
                            "the app did not answer within request_timeout")
            return Outcome.CLOSE  # after a head: the connection is cut
        except ProtocolError as exc:  # from reading wsgi.input (413, bad chunk)
            if ex.channel is not None or conn.handed_over:
                return _failed(conn, ex, abort=True)
            if writer.head is None:
                conn.send_error(exc.status_hint, exc.reason, req.method)
            return Outcome.CLOSE
        except BaseException as exc:
            if isinstance(exc, StopIteration) and upgrade is not None and upgrade.raw_taken:
                # simple-websocket's and flask-sock's "answered on the socket"
                # under gunicorn: the normal end of a raw hand-off.
                return Outcome.HANDED_OVER
            # BaseException, not Exception: an app that lets SystemExit,
            # KeyboardInterrupt, gevent.Timeout or GreenletExit escape must not
            # take the hub (and every other connection) down with it, nor leave
            # its own connection unanswered and open. No one else throws into
            # this greenlet (a runner of the connection), so nothing is owed upstream.
            error_log.error("error in app %r for %s %s", self.app, req.method,
                            environ.get("PATH_INFO"), exc_info=sys.exc_info())
            if ex.channel is not None or conn.handed_over:
                return _failed(conn, ex, abort=True)
            if writer.head is None:
                conn.send_error(500, "the app failed" if not isinstance(exc, BadResponse)
                                else str(exc), req.method)
            return Outcome.CLOSE
        finally:
            # The framework's iterable is closed; a returned channel is not (it
            # lives on until the app or the client closes it).
            close = None if isinstance(result, Channel) else getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException:  # as above: nothing from the app reaches the hub
                    error_log.exception("error in close() of the app's response")
            if logged and ex.channel is None:
                raw = upgrade is not None and upgrade.raw_taken
                if raw or not conn.handed_over:
                    # 101 for an app that answered on the raw socket itself
                    status = 101 if raw else (writer.head.status_code if writer.head else 500)
                    accesslog.log_request(ex.client, conn.addr, req, status, writer.sent,
                                          started, fmt=config.access_log_format,
                                          hook=self.access_hook,
                                          response_headers=writer.headers)
        if writer.head is None or not writer.head.keep_alive or writer.broken:
            return Outcome.CLOSE
        return Outcome.KEEP_ALIVE  # the connection drops the unread body, with no slot held


def _prepare_upgrade(conn: Connection, environ: Dict[str, Any],
                     app: Callable[..., Any]) -> Optional[Upgrade]:
    def take() -> bytes:
        conn.hand_over_socket()  # the app's from now on: no slot, no deadline, no writes
        return conn.upgrade_data()
    return Upgrade.prepare(environ, app, conn.sock, take)


def _failed(conn: Connection, ex: Exchange, abort: bool = False) -> Outcome:
    """The app call failed: a channel it opened is ended (1011 / 500 / cut)."""
    if ex.channel is None:
        return Outcome.HANDED_OVER if conn.handed_over else Outcome.CLOSE
    if abort and not ex.channel_ended:
        ex.channel.abort()
    return Outcome.HANDED_OVER


def _trust_list(items: Iterable[str]) -> List[Any]:
    nets: List[Any] = []
    for item in items:
        if item == "*":
            nets.append("*")
        else:
            nets.append(ipaddress.ip_network(item, strict=False))
    return nets


def _write_result(conn: Connection, ex: Exchange, writer: ResponseWriter,
                  result: Iterable[bytes]) -> None:
    kind = type(result)
    if (kind is list or kind is tuple) and writer.head is None:
        # The common case: a body of known length, sent with its head in one send.
        if not writer.status:
            raise BadResponse("the app returned without calling start_response")
        body = b"".join(result)  # type: ignore[arg-type]
        head = writer.begin(len(body))
        framing = writer.head
        assert framing is not None
        if framing.mode == NO_BODY:
            conn.send(head)
            return
        if framing.length is not None and len(body) != framing.length:
            # The app's Content-Length disagrees with its body: never send
            # more than declared, and close when the client cannot find the end.
            body = body[:framing.length]
            writer.broken = True
        writer.sent = len(body)
        conn.send(head + body)
        return
    if conn.raw is not None:
        span = sendfile_span(result)  # a FileWrapper, or werkzeug's Range around one
        if span is not None and writer.req.method != "HEAD":
            fd, offset, count = span
            conn.send(writer.begin(count))
            if writer.head is not None and writer.head.mode == LENGTH:
                count = min(count, writer.head.length or 0)
            writer.sent = sendfile_all(conn.fileno, fd, offset, count, conn.wait_writable)
            writer.dispatch.counters.bytes_out += writer.sent
            writer.finish()
            return
    watch = GoneWatch(conn, ex) if conn.raw is not None else None
    if watch is None or not watch.on:
        for chunk in result:
            if chunk:
                writer.write(chunk)
        writer.finish()
        return
    try:
        items = iter(result)
        while True:
            watch.waiting = True  # a client that leaves now is told inside next()
            try:
                chunk = next(items)
            except StopIteration:
                break
            finally:
                watch.waiting = False
            if watch.gone:
                raise ClientDisconnected("the client closed the connection")
            if chunk:
                writer.write(chunk)
    finally:
        watch.stop()
    writer.finish()
