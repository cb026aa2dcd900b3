"""gkit's rules for a request head, applied alike behind both HTTP/1.1 engines.

llhttp and h11 disagree at the edges (methods, request-target forms, Host,
Content-Length and Transfer-Encoding, whitespace, control characters).
:func:`check_head` decides a parsed head for both engines and builds the
:class:`~gkit.proto.h1.Request`; :func:`check_framing_bytes` and
:func:`check_head_bytes` give the h11 engine llhttp's answers on raw head bytes.

>>> check_head(b"GET", b"/", "1.1", [(b"Host", b"x")], 8192, 1 << 20).keep_alive
True
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from ..errors import ProtocolError
from .h1 import Headers, Request

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
CTL = bytes(c for c in range(32) if c not in (9, 10, 13)) + b"\x7f"


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
    if len(head.translate(None, CTL)) != len(head):
        raise ProtocolError("control character in the request head")
    if b"\n " in head or b"\n\t" in head:
        raise ProtocolError("obsolete line folding in the request head")
