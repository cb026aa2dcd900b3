"""The HTTP/1.1 request side, sans-IO: bytes in, request events out.

Two engines implement :class:`H1Parser` (``h1_httptools`` on llhttp, ``h1_h11``
on h11). Everything above them (environ, WSGI, channels) is shared. Where llhttp
and h11 differ on what they accept, :func:`check_head` applies gkit's own rules
to both, so both engines answer the same on the wire.

Events returned by ``next_event()``:

- :class:`Request`: a request head;
- ``bytes``: a piece of the request body (never empty);
- :data:`END`: the end of the request body;
- :data:`NEED_DATA`: feed more bytes first;
- :data:`CLOSED`: the client closed its side between requests.

Errors are raised as :class:`gkit.errors.ProtocolError` with ``status_hint``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

from ..errors import ProtocolError

Headers = List[Tuple[bytes, bytes]]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
END = _Sentinel("END")
CLOSED = _Sentinel("CLOSED")


class Request:
    """A parsed, checked request head."""

    __slots__ = ("method", "target", "version", "headers", "keep_alive", "content_length",
                 "chunked", "expect_continue", "upgrade", "has_body")

    def __init__(self, method: str, target: bytes, version: str, headers: Headers,
                 keep_alive: bool, content_length: Optional[int], chunked: bool,
                 expect_continue: bool, upgrade: bool) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.has_body = chunked or bool(content_length)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"


Event = Union[Request, bytes, _Sentinel]

# The methods llhttp knows in HTTP mode; h11 takes any token, so this list
# makes both engines refuse the same ones.
KNOWN_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND "
    b"PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE "
    b"QUERY".split())
_METHOD_NAMES = {m: m.decode("ascii") for m in KNOWN_METHODS}
# Control characters allowed nowhere in a head but as line ends (CR LF) and in
# values (HTAB). llhttp refuses the others itself; the h11 engine checks the
# raw head for them (check_head_bytes).
_CTL = bytes(c for c in range(32) if c not in (9, 10, 13)) + b"\x7f"


# RFC 3986 reg-name / IP-literal characters, and ":" for the port.
_HOST_CHARS = (b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
               b"-._~%!$&'()*+,;=:[]")


def _bad_host(host: bytes) -> bool:
    return bool(host.translate(None, _HOST_CHARS))  # C speed: what is left is bad


def _tokens(value: bytes) -> List[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def check_codings(codings: List[bytes]) -> None:
    """Transfer-Encoding of a request: chunked, once, last (RFC 9112 §6.1, §6.3);
    other codings are not implemented (501)."""
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise ProtocolError("bad Transfer-Encoding: chunked must be the final coding, once")
    if len(codings) > 1:
        raise ProtocolError("only Transfer-Encoding: chunked is supported", 501)


def check_target(method: bytes, target: bytes) -> None:
    """RFC 9112 §3.2: the four request-target forms, each with its methods."""
    first = target[:1]
    if first == b"/":
        if method == b"CONNECT":
            raise ProtocolError("CONNECT needs an authority-form target (host:port)")
        return
    if target == b"*":
        if method != b"OPTIONS":
            raise ProtocolError("the asterisk target is for OPTIONS only")
        return
    if method == b"CONNECT":
        host, sep, port = target.rpartition(b":")
        if not sep or not host or not port.isdigit() or _bad_host(host):
            raise ProtocolError("bad CONNECT target: give host:port")
        return
    scheme, sep, _ = target.partition(b"://")
    if not sep or not scheme.isalpha():
        raise ProtocolError("bad request target: give an absolute path or an absolute URI")


_FRAMING = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection",
                      b"expect", b"upgrade"))


def check_head(method: bytes, target: bytes, version: str, headers: Headers,
               max_line: int, max_body: int, max_head: int = 65536) -> Request:
    """Apply gkit's rules to a parsed head; return the :class:`Request`.

    Both engines call this, so a request refused by one is refused by the other.
    It runs for every request: the common case (origin-form target, a few
    headers of which only Host matters) takes the fewest steps.
    """
    size = len(method) + len(target) + 11
    if size > max_line:
        raise ProtocolError("request line too long", 414)
    if version != "1.1" and version != "1.0":
        raise ProtocolError(f"unsupported HTTP version {version}")
    name_str = _METHOD_NAMES.get(method)
    if name_str is None:
        raise ProtocolError("unknown or malformed method")
    if target[:1] != b"/" or method == b"CONNECT":  # origin-form needs no more checks
        check_target(method, target)
    host = 0
    lengths: Optional[List[bytes]] = None
    te: Optional[bytes] = None
    connection: Tuple[bytes, ...] = ()
    expect = upgrade = False
    for name, value in headers:
        line = len(name) + len(value) + 4
        if line > max_line:
            raise ProtocolError("header line too long", 414)
        size += line
        n = name.lower()
        if n not in _FRAMING:
            continue
        if n == b"host":
            host += 1
            if value.strip(b" \t").translate(None, _HOST_CHARS):
                raise ProtocolError("bad Host header")
        elif n == b"content-length":
            lengths = [value.strip()] if lengths is None else lengths + [value.strip()]
        elif n == b"transfer-encoding":
            te = value if te is None else te + b"," + value
        elif n == b"connection":
            connection += tuple(_tokens(value))
        elif n == b"expect":
            expect = value.strip().lower() == b"100-continue"
        else:
            upgrade = True
    if size > max_head:
        raise ProtocolError("request header block too large", 431)
    content_length: Optional[int] = None
    chunked = False
    if te is not None:
        if lengths:
            raise ProtocolError("both Content-Length and Transfer-Encoding")
        if version == "1.0":
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        check_codings(_tokens(te))
        chunked = True
    elif lengths:
        if any(not v.isdigit() for v in lengths) or len(set(lengths)) > 1:
            raise ProtocolError("bad Content-Length")
        content_length = int(lengths[0])
        if content_length > max_body:
            raise ProtocolError("request body too large", 413)
    if host != 1 and (host or version == "1.1"):
        raise ProtocolError("HTTP/1.1 needs exactly one Host header")
    if not connection:
        keep_alive = version == "1.1"
    elif version == "1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    # CONNECT and accepted upgrades end HTTP on this connection (llhttp stops
    # there); a refused upgrade is answered and the connection then closes.
    upgrade = (upgrade and b"upgrade" in connection) or method == b"CONNECT"
    if upgrade and chunked:
        raise ProtocolError("an upgrade request with a chunked body is not supported")
    return Request(name_str, target, version, headers, keep_alive,
                   content_length, chunked, expect, upgrade)


class H1Parser:
    """Interface and shared state of both engines.

    ``feed(data)`` hands over received bytes (``b""`` = the client closed),
    ``next_event()`` returns the next event, ``start_next_cycle()`` readies the
    parser for the next request once the body is read, ``trailing_data`` holds
    the bytes after an upgrade request (handed to wsproto unparsed).
    """

    name = "base"

    def __init__(self, max_line: int, max_head: int, max_body: int) -> None:
        self.max_line = max_line
        self.max_head = max_head
        self.max_body = max_body
        self.trailing_data = b""
        self._head_bytes = 0      # bytes of an incomplete head seen so far
        self._line_bytes = 0      # bytes of its current incomplete line

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def next_event(self) -> Event:
        raise NotImplementedError

    def start_next_cycle(self) -> None:
        raise NotImplementedError

    def upgrade_data(self) -> bytes:
        """After an upgrade request was read whole: the bytes that followed it
        (the first frames of the new protocol), handed over unparsed."""
        return self.trailing_data

    @property
    def in_head(self) -> bool:
        """True while a request head has started but is not complete."""
        return self._head_bytes > 0

    def _guard_head(self, data: bytes) -> None:
        """Account bytes of an incomplete head: long lines 414, big heads 431.

        Called with a chunk just fed when the head is still incomplete after
        it (so the whole chunk belongs to the head). Complete lines are checked
        by :func:`check_head`; this catches a line or head that never ends,
        so no buffer grows more than one received chunk past the limits.
        """
        self._head_bytes += len(data)
        lines = data.split(b"\n")
        longest = self._line_bytes + len(lines[0])
        if len(lines) > 1:
            longest = max(longest, max(map(len, lines[1:])))
            self._line_bytes = len(lines[-1])
        else:
            self._line_bytes = longest
        if longest > self.max_line:
            raise ProtocolError("request line or header line too long", 414)
        if self._head_bytes > self.max_head:
            raise ProtocolError("request header block too large", 431)

    def _head_done(self) -> None:
        self._head_bytes = self._line_bytes = 0


def check_framing_bytes(head: bytes) -> None:
    """Content-Length and Transfer-Encoding as they are on the wire.

    h11 merges repeated values ("5, 5" becomes 5) and answers 501 for any
    coding but chunked before gkit sees the head; llhttp refuses the list
    form and answers 400 when chunked is not last. The h11 engine calls this
    on the raw head so that both engines answer the same.
    """
    codings: List[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"content-length":
            if not value.strip(b" \t").isdigit():
                raise ProtocolError("bad Content-Length")
        elif name == b"transfer-encoding":
            codings.extend(_tokens(value))
    if codings:
        check_codings(codings)


def check_head_bytes(head: bytes) -> None:
    """Refuse bare LF line ends, obs-fold (RFC 9112 §2.2, §5.2) and control
    characters in raw head bytes.

    llhttp refuses both itself; the h11 engine calls this on the head bytes.
    """
    if head.count(b"\n") != head.count(b"\r\n"):
        raise ProtocolError("bare LF in the request head: lines end with CRLF")
    if len(head.translate(None, _CTL)) != len(head):
        raise ProtocolError("control character in the request head")
    if b"\n " in head or b"\n\t" in head:
        raise ProtocolError("obsolete line folding in the request head")


def make_parser(engine: str, max_line: int, max_head: int, max_body: int) -> H1Parser:
    """A parser of the named engine (``"httptools"`` or ``"h11"``)."""
    if engine == "httptools":
        from .h1_httptools import HttptoolsParser
        return HttptoolsParser(max_line, max_head, max_body)
    from .h1_h11 import H11Parser
    return H11Parser(max_line, max_head, max_body)


def resolve_engine(http: str) -> str:
    """``auto`` picks httptools when it is importable, else h11."""
    if http != "auto":
        if http == "httptools":
            import httptools  # noqa: F401  (a clear ImportError if it is missing)
        return http
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"
