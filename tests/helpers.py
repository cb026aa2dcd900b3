"""A small raw HTTP/1.x client for the gkit test suite.

The tests talk to a real server over real sockets, and they need to see the
exact bytes on the wire (a library client such as ``requests`` hides framing,
interim responses and connection closes), so this module has:

- :func:`send_raw`: send bytes on a fresh connection, optionally shut down the
  write side, read until the server closes;
- :func:`parse_responses`: split those bytes into :class:`Response` objects,
  following RFC 9112 §6.3 for the body length (Content-Length, chunked,
  close-delimited; no body for HEAD, 1xx, 204 and 304); anything malformed is
  an error, so a test that parses a response also checks its framing;
- :class:`RawConn`: one keep-alive connection: send, read one response at a
  time, check whether the server closed it.

Every read has a deadline (``timeout`` seconds, default :data:`TIMEOUT`); a
deadline that passes raises :class:`ReadTimeout` with what was received so
far, so a hung server fails the test instead of hanging it.
"""
from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Collection, List, Optional, Tuple, TypeVar, Union

T = TypeVar("T")

TIMEOUT = 5.0

_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3}) ([^\r\n]*)\Z")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(;[^\r\n]*)?\Z")


class ResponseError(AssertionError):
    """The server's bytes are not a well-formed HTTP/1.x response."""


class ReadTimeout(AssertionError):
    """The server sent nothing more (and did not close) before the deadline."""

    def __init__(self, message: str, received: bytes) -> None:
        super().__init__(f"{message}; received so far: {received[:2000]!r}")
        self.received = received


@dataclass
class Response:
    """One parsed response. Header names are lower-cased, values latin-1 text."""

    version: str
    status: int
    reason: str
    headers: List[Tuple[str, str]]
    body: bytes = b""
    framing: str = "none"  # "none", "length", "chunked" or "close"
    complete: bool = True  # False: the connection ended inside the body
    trailers: List[Tuple[str, str]] = field(default_factory=list)
    raw: bytes = b""  # the exact bytes of this response

    def get_all(self, name: str) -> List[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of a header that must occur at most once."""
        values = self.get_all(name)
        if len(values) > 1:
            raise ResponseError(f"header {name!r} occurs {len(values)} times: {values!r}")
        return values[0] if values else default

    def has(self, name: str) -> bool:
        return bool(self.get_all(name))

    def connection_tokens(self) -> List[str]:
        tokens: List[str] = []
        for value in self.get_all("connection"):
            tokens += [t.strip().lower() for t in value.split(",") if t.strip()]
        return tokens

    @property
    def status_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"


def _need_more(eof: bool, what: str, buf: bytes) -> None:
    if eof:
        raise ResponseError(f"connection ended inside {what}: {buf[:500]!r}")


def _parse_head(head: bytes) -> Response:
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.match(lines[0])
    if not match:
        raise ResponseError(f"bad status line {lines[0]!r}")
    major, minor, status, reason = match.groups()
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        if b"\n" in line or b"\r" in line:
            raise ResponseError(f"bare CR or LF in response header line {line!r}")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise ResponseError(f"bad response header line {line!r}")
        headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return Response(f"HTTP/{int(major)}.{int(minor)}", int(status), reason.decode("latin-1"),
                    headers)


def _parse_chunked(buf: bytes, pos: int, eof: bool
                   ) -> Optional[Tuple[bytes, List[Tuple[str, str]], int, bool]]:
    """Decode a chunked body at ``buf[pos:]``.

    Returns (body, trailers, end position, complete), or None if more bytes are
    needed. At EOF an unfinished body comes back with complete=False.
    """
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return (bytes(body), [], len(buf), False) if eof else None
        match = _CHUNK_SIZE.match(buf[pos:eol])
        if not match:
            raise ResponseError(f"bad chunk size line {buf[pos:eol][:100]!r}")
        size = int(match.group(1), 16)
        pos = eol + 2
        if size == 0:
            break
        if len(buf) < pos + size + 2:
            if eof:
                body += buf[pos:pos + size]
                return bytes(body), [], len(buf), False
            return None
        body += buf[pos:pos + size]
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise ResponseError(f"chunk data not followed by CRLF: {buf[pos + size:][:20]!r}")
        pos += size + 2
    trailers: List[Tuple[str, str]] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return (bytes(body), trailers, len(buf), False) if eof else None
        line = buf[pos:eol]
        pos = eol + 2
        if not line:
            return bytes(body), trailers, pos, True
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise ResponseError(f"bad trailer line {line!r}")
        trailers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))


def parse_one(buf: bytes, pos: int = 0, *, head: bool = False, eof: bool = False,
              allow_incomplete: bool = False) -> Optional[Tuple[Response, int]]:
    """Parse the response starting at ``buf[pos:]``.

    Returns (response, position after it), or None when more bytes are needed
    (``eof`` False). With ``eof`` True the buffer is all there is: an
    unfinished body raises :class:`ResponseError`, or gives a response with
    ``complete=False`` when ``allow_incomplete``. ``head`` says the response
    answers a HEAD request (so it has no body).
    """
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        _need_more(eof, "a response head", buf[pos:])
        return None
    resp = _parse_head(buf[pos:end])
    start = end + 4
    transfer = [t.strip().lower() for v in resp.get_all("transfer-encoding")
                for t in v.split(",")]
    lengths = resp.get_all("content-length")
    if head or 100 <= resp.status < 200 or resp.status in (204, 304):
        resp.framing = "none"
        stop = start
    elif transfer:
        if transfer[-1] != "chunked":
            raise ResponseError(f"response transfer-coding {transfer!r} does not end in chunked")
        if lengths:
            raise ResponseError("response has both Content-Length and Transfer-Encoding")
        resp.framing = "chunked"
        decoded = _parse_chunked(buf, start, eof)
        if decoded is None:
            return None
        resp.body, resp.trailers, stop, resp.complete = decoded
        if not resp.complete and not allow_incomplete:
            raise ResponseError(f"connection ended inside a chunked body: {buf[pos:][:500]!r}")
    elif lengths:
        if len(set(lengths)) != 1 or not re.fullmatch(r"[0-9]+", lengths[0]):
            raise ResponseError(f"bad response Content-Length {lengths!r}")
        resp.framing = "length"
        length = int(lengths[0])
        if len(buf) - start < length:
            if not eof:
                return None
            if not allow_incomplete:
                raise ResponseError(
                    f"connection ended after {len(buf) - start} of {length} body bytes")
            resp.complete = False
        resp.body = buf[start:start + length]
        stop = min(len(buf), start + length)
    else:
        if not eof:
            return None
        resp.framing = "close"
        resp.body = buf[start:]
        stop = len(buf)
    resp.raw = buf[pos:stop]
    return resp, stop


def parse_responses(data: bytes, head: Union[bool, Collection[int]] = False,
                    allow_incomplete: bool = False) -> List[Response]:
    """Split everything a connection received (up to EOF) into responses.

    Interim (1xx) responses are included. ``head`` is True when every request
    was HEAD, or the indexes (counting final responses only, from 0) of the
    responses that answer HEAD requests. Bytes that are not a whole response
    raise :class:`ResponseError` (unless ``allow_incomplete``, which lets the
    last response end early with ``complete=False``).
    """
    responses: List[Response] = []
    pos = 0
    final_index = 0
    while pos < len(data):
        is_head = head if isinstance(head, bool) else final_index in head
        parsed = parse_one(data, pos, head=is_head, eof=True, allow_incomplete=allow_incomplete)
        assert parsed is not None
        resp, pos = parsed
        responses.append(resp)
        if resp.status >= 200:
            final_index += 1
    return responses


def final(responses: List[Response]) -> List[Response]:
    """The final (non-1xx) responses."""
    return [r for r in responses if r.status >= 200]


def connect(port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_until_eof(sock: socket.socket, deadline: float, received: bytearray) -> bool:
    """Read into ``received`` until EOF. Returns True on EOF, False on a reset."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout("the server did not close the connection in time", bytes(received))
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise ReadTimeout("the server did not close the connection in time",
                              bytes(received)) from None
        except ConnectionResetError:
            return False
        if not chunk:
            return True
        received += chunk


def send_raw(port: int, data: bytes, shut_wr: bool = True, timeout: float = TIMEOUT,
             host: str = "127.0.0.1") -> bytes:
    """Send ``data`` on a fresh connection and return everything received until EOF.

    A connection reset counts as the end too (the bytes before it are returned).
    """
    received = bytearray()
    deadline = time.monotonic() + timeout
    with connect(port, host, timeout) as sock:
        try:
            sock.sendall(data)
            if shut_wr:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed early; read what it sent
        _recv_until_eof(sock, deadline, received)
    return bytes(received)


def request(method: str = "GET", target: str = "/", headers: Optional[List[Tuple[str, str]]] = None,
            body: bytes = b"", version: str = "HTTP/1.1", host: Optional[str] = "example.com"
            ) -> bytes:
    """Build request bytes. A Content-Length is added for a non-empty body unless
    ``headers`` has Content-Length or Transfer-Encoding."""
    lines = [f"{method} {target} {version}"]
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    if body and not names & {"content-length", "transfer-encoding"}:
        headers.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*pieces: bytes, trailers: bytes = b"") -> bytes:
    """A chunked request body made of ``pieces`` (empty ones are skipped)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


def get(port: int, target: str = "/", timeout: float = TIMEOUT, **kw) -> Response:
    """One request on a fresh connection (Connection: close); returns the final response."""
    headers = list(kw.pop("headers", [])) + [("Connection", "close")]
    data = send_raw(port, request(target=target, headers=headers, **kw), timeout=timeout)
    responses = final(parse_responses(data, head=kw.get("method") == "HEAD"))
    if len(responses) != 1:
        raise ResponseError(f"expected one response, got {len(responses)}: {data[:500]!r}")
    return responses[0]


class SocketReader:
    """A client socket with a read buffer and deadline-bounded reads: the
    base of RawConn (HTTP) and wshelpers.RawWs (WebSocket)."""

    def __init__(self, sock: socket.socket, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shut_wr(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline: float, what: str) -> None:
        """Read once more into the buffer (or note EOF); ReadTimeout past the deadline."""
        if self.eof:
            raise ResponseError(f"the server closed the connection before {what}; "
                                f"unparsed bytes: {self.buf[:500]!r}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout(f"no {what} in time", self.buf)
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise ReadTimeout(f"no {what} in time", self.buf) from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return
        if not chunk:
            self.eof = True
        self.buf += chunk


class RawConn(SocketReader):
    """One client connection kept open across requests.

    >>> conn = RawConn(port)
    >>> conn.send(request(target="/a"))
    >>> conn.read_response().status
    200
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> None:
        super().__init__(connect(port, host, timeout), timeout)

    def read_response(self, head: bool = False, timeout: Optional[float] = None,
                      allow_incomplete: bool = False) -> Response:
        """Read the next response (an interim 1xx one counts as a response)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            parsed = parse_one(self.buf, head=head, eof=self.eof,
                               allow_incomplete=allow_incomplete) if self.buf or self.eof else None
            if parsed is not None:
                resp, stop = parsed
                self.buf = self.buf[stop:]
                return resp
            self._fill(deadline, "response")

    def read_final(self, head: bool = False, timeout: Optional[float] = None
                   ) -> Tuple[List[Response], Response]:
        """Read interim responses up to the final one: (interims, final)."""
        interims = []
        while True:
            resp = self.read_response(head=head, timeout=timeout)
            if resp.status >= 200:
                return interims, resp
            interims.append(resp)

    def read_some(self, timeout: Optional[float] = None) -> bytes:
        """Bytes already buffered, or wait for the next ones (b"" at EOF)."""
        if not self.buf and not self.eof:
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            self._fill(deadline, "bytes")
        data, self.buf = self.buf, b""
        return data

    def read_until(self, marker: bytes, timeout: Optional[float] = None) -> bytes:
        """Wait until the received bytes contain ``marker``; returns (and keeps) them."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while marker not in self.buf:
            self._fill(deadline, repr(marker))
        return self.buf

    def read_until_close(self, timeout: Optional[float] = None) -> bytes:
        """Everything until the server closes (buffered bytes included)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        received = bytearray(self.buf)
        self.buf = b""
        if not self.eof:
            if not _recv_until_eof(self.sock, deadline, received):
                self.reset = True
            self.eof = True
        return bytes(received)

    def assert_closed(self, timeout: Optional[float] = None) -> None:
        """The server closes the connection (EOF or reset) without sending anything more."""
        rest = self.read_until_close(timeout)
        assert rest == b"", f"unexpected bytes before the close: {rest[:500]!r}"

    def silent_for(self, seconds: float) -> bool:
        """True if nothing arrives and the connection stays open for ``seconds``.

        Only for negative checks ("no 100 Continue yet"); never to wait for readiness.
        """
        if self.buf or self.eof:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not chunk:
            self.eof = True
        self.buf += chunk
        return False


def poll_until(read: Callable[[], T], check: Callable[[T], bool], timeout: float, what: str,
               interval: float = 0.01) -> T:
    """Call ``read()`` until ``check`` holds for what it returns (bounded by
    ``timeout``); returns that value, or fails naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} never matched: {value}"
        time.sleep(interval)  # gevent's sleep: the test process is monkey-patched
