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

import re
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


def _bad_authority(authority: bytes) -> bool:
    """RFC 3986 §3.2 authority as gkit takes it: host (reg-name or [IP-literal]),
    an optional numeric port, no userinfo (RFC 9110 §4.2.4), never empty (§4.2.1)."""
    if authority[:1] == b"[":
        close = authority.find(b"]")
        host, rest = authority[:close + 1], authority[close + 1:]
        if close < 0 or _bad_host(host[1:-1]) or b"[" in host[1:-1] or b"]" in host[1:-1]:
            return True
    else:
        host, sep, port = authority.partition(b":")
        rest = sep + port
        if not host or _bad_host(host) or b"[" in host or b"]" in host:
            return True
    return bool(rest) and (rest[:1] != b":" or not rest[1:].isdigit() and rest != b":")


def _tokens(value: bytes) -> List[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def check_transfer_encoding(value: bytes) -> None:
    """Transfer-Encoding of a request (all its fields joined by ","):
    chunked, once, last (RFC 9112 §6.1, §6.3), else 400; another coding
    before it is not implemented (501, RFC 9112 §6.1).

    An empty list element (``chunked,``) is refused with 400. RFC 9110 §5.6.1
    asks a recipient to skip it, but llhttp cannot be told to, and a
    Transfer-Encoding that two parsers read differently is the classic
    smuggling vector (RFC 9112 §11.2): both engines refuse it, never 5xx.
    """
    codings = [t.strip(b" \t").lower() for t in value.split(b",")]
    if b"" in codings:
        raise ProtocolError("empty element in Transfer-Encoding: give 'chunked'")
    check_codings(codings)


def check_codings(codings: List[bytes]) -> None:
    """Transfer codings, in order: chunked, once, last; other codings 501."""
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
    scheme, sep, rest = target.partition(b"://")
    if not sep or not scheme.isalpha():
        raise ProtocolError("bad request target: give an absolute path or an absolute URI")
    if _bad_authority(target_authority(rest)):
        raise ProtocolError("bad authority in the absolute-form request target")


def target_authority(rest: bytes) -> bytes:
    """The authority of an absolute-form target, given what follows ``scheme://``.

    >>> target_authority(b"example.com:8080/a?b")
    b'example.com:8080'
    """
    for i, c in enumerate(rest):
        if c in b"/?#":
            return rest[:i]
    return rest


def check_request_line(line: bytes) -> None:
    """RFC 9112 §3: method SP request-target SP version, one SP each.

    The engines parse the line; this decides the whitespace both take, as
    llhttp passes runs of spaces that h11 refuses. ``line`` has no line end.
    """
    if line.count(b" ") != 2 or line[:1] == b" ":
        raise ProtocolError("malformed request line: give method SP target SP version, "
                            "one space each")


def check_lengths(lengths: List[bytes]) -> int:
    """Content-Length values as received (stripped): one field, 1 to 18 digits.

    RFC 9110 §8.6 lets a recipient refuse a repeated Content-Length (even with
    equal values, the smuggling-safe choice) and a list; 18 digits are past any
    body limit while a longer string (5,000 zeros) never reaches ``int``.
    """
    if len(lengths) > 1:
        raise ProtocolError("Content-Length given more than once")
    value = lengths[0]
    if not value.isdigit() or len(value) > 18:
        raise ProtocolError("bad Content-Length: give 1 to 18 digits")
    return int(value)


_FRAMING = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection",
                      b"expect", b"upgrade"))


def check_head(method: bytes, target: bytes, version: str, headers: Headers,
               max_line: int, max_body: int, max_head: int = 65536) -> Request:
    """Apply gkit's rules to a parsed head; return the :class:`Request`.

    Both engines call this, so a request refused by one is refused by the other.
    A refusal carries the method, so that the answer to a ``HEAD`` has no body.
    It runs for every request: the common case (origin-form target, a few
    headers of which only Host matters) takes the fewest steps.
    """
    try:
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
            check_transfer_encoding(te)
            chunked = True
        elif lengths:
            content_length = check_lengths(lengths)
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
    except ProtocolError as exc:
        exc.method = method.decode("latin-1")
        raise


_TCHAR = rb"!#$%&'*+.^_`|~0-9A-Za-z-"
_TOKEN = re.compile(rb"[" + _TCHAR + rb"]+\Z")
# RFC 9112 §7.1.1: chunk-ext = *( ";" name [ "=" token / quoted-string ] ), no
# whitespace (BWS is refused: both engines refuse it, and no client sends it).
_CHUNK_EXT = re.compile(rb'(?:;[' + _TCHAR + rb']+(?:=(?:[' + _TCHAR
                        + rb']+|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))?)*\Z')
_HEX = b"0123456789abcdefABCDEF"
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedChecker:
    r"""gkit's rules for a chunked request body, applied to its raw bytes.

    Both engines decode chunked bodies themselves but disagree at the edges
    (whitespace, control characters, size digits, trailer lines), so each
    feeds the raw body bytes through this first and refuses what it refuses:
    RFC 9112 §7.1 exactly, with no whitespace in chunk lines, at most 16 hex
    digits (a size past ``max_body`` is 413 at once), chunk extensions and
    trailer fields checked like head fields, and no framing field
    (Content-Length, Transfer-Encoding) in the trailer. Trailers are then
    dropped by both engines. :meth:`feed` also tells where the body ends.

    >>> c = ChunkedChecker(max_line=8192, max_head=65536, max_body=100)
    >>> c.feed(b"3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\nGET /", 0), c.done
    (23, True)
    """

    __slots__ = ("max_line", "max_head", "max_body", "_state", "_left", "_line", "_seen",
                 "_trailer")

    def __init__(self, max_line: int, max_head: int, max_body: int) -> None:
        self.max_line = max_line
        self.max_head = max_head
        self.max_body = max_body
        self._state = _SIZE
        self._left = 0      # data bytes of the current chunk still to come
        self._line = b""    # an incomplete chunk-size or trailer line
        self._seen = 0      # body bytes announced so far
        self._trailer = 0   # bytes of the trailer section so far

    @property
    def done(self) -> bool:
        """True once the last chunk and the trailer section were read."""
        return self._state == _DONE

    def feed(self, data: bytes, pos: int) -> int:
        """Check ``data[pos:]``; return where the body ended (``len(data)`` if it
        goes on). Raises :class:`ProtocolError` at the first bad byte."""
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                line = self._line + data[pos:pos + 2 - len(self._line)]
                pos += len(line) - len(self._line)
                if line != b"\r\n"[:len(line)]:
                    raise ProtocolError("chunk data not followed by CRLF")
                self._line = line if len(line) < 2 else b""
                if len(line) == 2:
                    self._state = _SIZE
            elif state == _DONE:
                return pos
            else:
                eol = data.find(b"\n", pos)
                if eol < 0:
                    self._line += data[pos:]
                    self._line_done(self._line, complete=False)
                    return end
                line = self._line + data[pos:eol + 1]
                self._line = b""
                pos = eol + 1
                self._line_done(line, complete=True)
        return pos

    def _line_done(self, line: bytes, complete: bool) -> None:
        if self._state == _SIZE:
            if len(line) > self.max_line:
                raise ProtocolError("chunk-size line too long")
            if complete:
                self._size_line(line)
            return
        self._trailer += len(line) if complete else 0
        if len(line) > self.max_line or self._trailer + (0 if complete else len(line)) \
                > self.max_head:
            raise ProtocolError("trailer section too large", 431)
        if complete:
            self._trailer_line(line)

    def _size_line(self, line: bytes) -> None:
        if line[-2:-1] != b"\r" or b"\r" in line[:-2]:
            raise ProtocolError("bad chunk-size line: it ends with CRLF, no bare CR or LF")
        digits, semi, ext = line[:-2].partition(b";")
        if not digits or len(digits) > 16 or digits.translate(None, _HEX):
            raise ProtocolError("bad chunk size: give 1 to 16 hex digits, no whitespace")
        if semi and not _CHUNK_EXT.match(semi + ext):
            raise ProtocolError("bad chunk extension")
        size = int(digits, 16)
        self._seen += size
        if self._seen > self.max_body:
            raise ProtocolError("request body too large", 413)
        if size:
            self._left = size
            self._state = _DATA
        else:
            self._state = _TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if line == b"\r\n":
            self._state = _DONE
            return
        if line[-2:-1] != b"\r" or b"\r" in line[:-2]:
            raise ProtocolError("bad trailer line: it ends with CRLF, no bare CR or LF")
        name, colon, value = line[:-2].partition(b":")
        if not colon or not _TOKEN.match(name):
            raise ProtocolError("bad trailer field name")
        if len(value.translate(None, _CTL)) != len(value):
            raise ProtocolError("control character in a trailer field")
        if name.lower() in (b"content-length", b"transfer-encoding"):
            raise ProtocolError(f"{name.decode('ascii')} in the trailer section")


class H1Parser:
    """Interface and shared state of both engines.

    ``feed(data)`` hands over received bytes (``b""`` = the client closed),
    ``next_event()`` returns the next event, ``start_next_cycle()`` readies the
    parser for the next request once the body is read, ``trailing_data`` holds
    the bytes after an upgrade request (handed to the WebSocket session unparsed).
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
    lengths: List[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"content-length":
            lengths.append(value.strip(b" \t"))
        elif name == b"transfer-encoding":
            codings.append(value)
    if lengths:
        check_lengths(lengths)
    if codings:
        check_transfer_encoding(b",".join(codings))


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
