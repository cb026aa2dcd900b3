"""Response framing, sans-IO: status and headers in, head bytes out.

The one response writer for both engines: the decisions about
Content-Length, chunked, close-delimited, keep-alive, Date and Server are
made here, so both engines behave the same on the wire.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from ..errors import GkitError

# Body framing modes.
NO_BODY = 0     # HEAD, 1xx, 204, 304
LENGTH = 1      # Content-Length
CHUNKED = 2     # Transfer-Encoding: chunked
UNTIL_CLOSE = 3  # HTTP/1.0 without a length: the body ends when the connection does

# RFC 9110 §5.1, §5.5: names are tokens; values hold no control character but
# HTAB (CR and LF are checked apart: they may only be the line separators).
_NAMES = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\n[!#$%&'*+.^_`|~0-9A-Za-z-]+)*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_HOP_BY_HOP = frozenset(("transfer-encoding", "keep-alive", "te", "trailer", "upgrade",
                         "proxy-connection"))


class BadResponse(GkitError):
    """The app gave a status or header that cannot be written (answered with 500)."""


class ResponseHead:
    """The framing decided for one response."""

    __slots__ = ("data", "mode", "length", "keep_alive", "status_code")

    def __init__(self, data: bytes, mode: int, length: Optional[int], keep_alive: bool,
                 status_code: int) -> None:
        self.data = data
        self.mode = mode
        self.length = length
        self.keep_alive = keep_alive
        self.status_code = status_code


def build_head(status: str, headers: List[Tuple[str, str]], *, method: str, version: str,
               keep_alive: bool, length: Optional[int], date: str,
               server: Optional[str]) -> ResponseHead:
    """Frame a response.

    ``length`` is the body length when the server knows it (a list body),
    else None; an app's own Content-Length wins. ``keep_alive`` is what the
    request and the server allow; the app can only turn it off.

    >>> h = build_head("200 OK", [], method="GET", version="1.1", keep_alive=True,
    ...                length=2, date="d", server=None)
    >>> h.data
    b'HTTP/1.1 200 OK\\r\\nDate: d\\r\\nContent-Length: 2\\r\\n\\r\\n'
    """
    if type(status) is not str or len(status) < 3 or not status[:3].isdigit() \
            or (len(status) > 3 and status[3] != " "):
        raise BadResponse(f"bad status {status!r}: give a str like '200 OK'")
    code = int(status[:3])
    if code < 100:
        raise BadResponse(f"bad status {status!r}")
    lines = ["HTTP/1.1 " + status]
    app_length: Optional[str] = None
    has_date = has_server = False
    for name, value in headers:
        n = name.lower()
        if n == "content-length":
            app_length = value.strip()
            continue
        if n in _HOP_BY_HOP:
            continue
        if n == "connection":
            if "close" in value.lower():
                keep_alive = False
            continue
        if n == "date":
            has_date = True
        elif n == "server":
            has_server = True
        lines.append(name + ": " + value)
    if not has_date:
        lines.append("Date: " + date)
    if server is not None and not has_server:
        lines.append("Server: " + server)

    if code < 200 or code in (204, 304):
        mode, length = NO_BODY, None
        if code == 304 and app_length is not None:
            lines.append("Content-Length: " + app_length)
    else:
        if app_length is not None:
            if not app_length.isdigit():
                raise BadResponse(f"bad Content-Length {app_length!r} from the app")
            length = int(app_length)
        if length is not None:
            mode = LENGTH
            lines.append("Content-Length: " + str(length))
        elif method == "HEAD":
            mode = NO_BODY
        elif version == "1.1":
            mode = CHUNKED
            lines.append("Transfer-Encoding: chunked")
        else:
            mode = UNTIL_CLOSE
            keep_alive = False
        if method == "HEAD":
            mode = NO_BODY
    if not keep_alive:
        if version == "1.1":
            lines.append("Connection: close")
    elif version == "1.0":
        lines.append("Connection: keep-alive")
    text = "\r\n".join(lines)
    # Only the separators may be line ends: any other CR or LF came from the app.
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise BadResponse("a response status or header contains CR or LF")
    if _CONTROL.search(text):
        raise BadResponse("a response status or header contains a control character "
                          "(NUL, DEL, ...): only HTAB is allowed")
    if headers and not _NAMES.match("\n".join([name for name, _ in headers])):
        bad = [name for name, _ in headers if not _NAMES.match(name)]
        raise BadResponse(f"bad response header name {bad[0]!r}: names are tokens "
                          "(letters, digits, !#$%&'*+.^_`|~-), no spaces or colons")
    try:
        data = (text + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise BadResponse("a response header is not latin-1 (PEP 3333)") from None
    return ResponseHead(data, mode, length, keep_alive, code)


def error_response(status: int, reason: str, *, method: Optional[str] = None, date: str,
                   server: Optional[str]) -> bytes:
    """A short, closing error response (400, 413, 414, 431, 500, 503, ...);
    to a ``HEAD`` request (``method``), the same head without the body.

    >>> error_response(400, "bad Host", method="HEAD", date="d", server=None).endswith(
    ...     b"Date: d\\r\\n\\r\\n")
    True
    """
    phrase = _PHRASES.get(status, "Error")
    body = f"{status} {phrase}: {reason}\n".encode("utf-8", "replace")
    head = [f"HTTP/1.1 {status} {phrase}", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close", "Date: " + date]
    if server is not None:
        head.append("Server: " + server)
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    return data if method == "HEAD" else data + body


_PHRASES = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 431: "Request Header Fields Too Large",
            426: "Upgrade Required", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable", 505: "HTTP Version Not Supported"}
