"""gkit's check of a chunked request body (RFC 9112 §7.1), sans-IO, for both engines."""
from __future__ import annotations

import re

from ..errors import ProtocolError
from .h1_checks import CTL

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
        if len(value.translate(None, CTL)) != len(value):
            raise ProtocolError("control character in a trailer field")
        if name.lower() in (b"content-length", b"transfer-encoding"):
            raise ProtocolError(f"{name.decode('ascii')} in the trailer section")

