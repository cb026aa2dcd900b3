"""Helpers for the channel tests: a raw WebSocket client, HTTP head and chunk readers.

The raw client (:class:`RawWs`) does the opening handshake over a plain socket
and then sends frames built by hand (:func:`frame`), so a test can send what no
library client would (RSV bits, unmasked frames, bad opcodes, broken UTF-8,
bad close codes) and see the exact frames and the TCP close that come back.

Every read has a deadline (``timeout`` seconds); a deadline that passes raises
:class:`helpers.ReadTimeout`, so a server that hangs fails the test.
"""
from __future__ import annotations

import base64
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from helpers import TIMEOUT, RawConn, ResponseError, SocketReader, connect

# Opcodes (RFC 6455 §5.2).
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="        # RFC 6455 §1.3
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          mask: Optional[bytes] = b"\x37\xfa\x21\x3d", length: Optional[int] = None) -> bytes:
    """One frame as a client sends it: masked with ``mask`` (None: unmasked).

    ``rsv`` is the three RSV bits as a number 0-7 (4 = RSV1). ``length``
    overrides the length field (the payload is sent as given).
    """
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def close_payload(code: Optional[int], reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """The exact bytes of an unmasked, uncompressed server frame."""
    return frame(opcode, payload, fin=fin, mask=None)


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool = False

    @property
    def close_code(self) -> Optional[int]:
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self) -> bytes:
        return self.payload[2:]


def handshake_request(path: str = "/", key: str = SAMPLE_KEY,
                      headers: Sequence[Tuple[str, str]] = (), method: str = "GET",
                      version: str = "HTTP/1.1", version_header: Optional[str] = "13",
                      connection: Optional[str] = "Upgrade",
                      upgrade: Optional[str] = "websocket") -> bytes:
    """The bytes of an upgrade request; a field given as None is left out."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version_header is not None:
        lines.append(f"Sec-WebSocket-Version: {version_header}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def random_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


class RawWs(SocketReader):
    """A WebSocket client over a plain socket that sends frames built by hand.

    >>> ws = RawWs(port)                      # handshake done, 101 checked
    >>> ws.send(frame(TEXT, b"hi"))
    >>> ws.recv_frame().payload
    b'hi'
    """

    def __init__(self, port: int, path: str = "/", headers: Sequence[Tuple[str, str]] = (),
                 timeout: float = TIMEOUT, key: Optional[str] = None, first: bytes = b"",
                 rcvbuf: Optional[int] = None, **request_kw) -> None:
        """Connect and do the handshake; ``first`` is sent in the same write as
        the request (frames that follow the head at once). ``rcvbuf`` fixes the
        socket's receive buffer (no autotuning), for a client that stops reading.
        ``request_kw`` go to :func:`handshake_request` (``upgrade``, ``connection``...)."""
        self.key = key or random_key()
        if rcvbuf is None:
            sock = connect(port, timeout=timeout)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
        super().__init__(sock, timeout)
        self.sock.sendall(handshake_request(path, self.key, headers, **request_kw) + first)
        head = self._read_until(b"\r\n\r\n", time.monotonic() + timeout)
        end = head.index(b"\r\n\r\n")
        self.head, self.buf = head[:end], head[end + 4:]
        lines = self.head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.headers = [(k.strip().lower(), v.strip()) for k, _, v in
                        (line.partition(":") for line in lines[1:])]
        if not self.status_line.startswith("HTTP/1.1 101 "):
            raise ResponseError(f"handshake refused: {self.head!r}")

    def header(self, name: str) -> Optional[str]:
        values = [v for k, v in self.headers if k == name.lower()]
        assert len(values) <= 1, f"{name} occurs {len(values)} times"
        return values[0] if values else None

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> None:
        self.send(frame(opcode, payload, **kw))

    # -- reading ---------------------------------------------------------------------

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self.buf:
            self._fill(deadline, repr(marker))
        data, self.buf = self.buf, b""
        return data

    def _need(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            self._fill(deadline, "a whole frame")

    def recv_frame(self, timeout: Optional[float] = None) -> Frame:
        """The next frame from the server, whatever it is."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        if masked:
            pos += 4
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload, masked)

    def recv_raw(self, n: int, timeout: Optional[float] = None) -> bytes:
        """Exactly the next ``n`` bytes as they came."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._need(n, deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv_message(self, timeout: Optional[float] = None) -> Tuple[int, bytes]:
        """The next data message, fragments joined: (opcode, payload). Any other
        frame first fails the assertion."""
        f = self.recv_frame(timeout)
        assert f.opcode in (TEXT, BINARY), f"expected a data frame, got {f}"
        opcode, parts = f.opcode, [f.payload]
        while not f.fin:
            f = self.recv_frame(timeout)
            assert f.opcode == CONT, f"expected a continuation frame, got {f}"
            parts.append(f.payload)
        return opcode, b"".join(parts)

    def expect_close(self, timeout: Optional[float] = None) -> Frame:
        """Read up to the server's close frame (data frames before it are allowed
        and dropped) and return it."""
        while True:
            f = self.recv_frame(timeout)
            if f.opcode == CLOSE:
                return f

    def assert_tcp_closed(self, timeout: Optional[float] = None) -> None:
        """The server closes the TCP connection with nothing more sent."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            self._fill(deadline, "the TCP close")
        assert self.buf == b"", f"bytes after the close frame: {self.buf[:200]!r}"

    def wait_closed_ignoring(self, timeout: Optional[float] = None) -> bytes:
        """Everything until the server closes the TCP connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            self._fill(deadline, "the TCP close")
        data, self.buf = self.buf, b""
        return data


# -- HTTP helpers for streaming responses ---------------------------------------------------

@dataclass
class Head:
    status_line: str
    headers: List[Tuple[str, str]]

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def get_all(self, name: str) -> List[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def get(self, name: str) -> Optional[str]:
        values = self.get_all(name)
        assert len(values) <= 1, f"{name} occurs {len(values)} times: {values}"
        return values[0] if values else None


def read_head(conn: RawConn, timeout: Optional[float] = None) -> Head:
    """Read a response head off ``conn``; the bytes after it stay in ``conn.buf``."""
    conn.read_until(b"\r\n\r\n", timeout)
    head, _, conn.buf = conn.buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in
               (line.partition(":") for line in lines[1:])]
    return Head(lines[0], headers)


def read_exact(conn: RawConn, n: int, timeout: Optional[float] = None) -> bytes:
    """Exactly the next ``n`` bytes of ``conn``."""
    deadline = time.monotonic() + (conn.timeout if timeout is None else timeout)
    while len(conn.buf) < n:
        conn._fill(deadline, f"{n} bytes")
    data, conn.buf = conn.buf[:n], conn.buf[n:]
    return data


def expect_bytes(conn: RawConn, expected: bytes, timeout: Optional[float] = None) -> None:
    """The next bytes of ``conn`` are exactly ``expected``."""
    got = read_exact(conn, len(expected), timeout)
    assert got == expected


def split_chunks(data: bytes) -> Tuple[List[bytes], bytes]:
    """A whole chunked body split into its chunks (the last, empty one excluded),
    and the bytes after it. Malformed framing raises ResponseError."""
    chunks: List[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise ResponseError(f"no chunk size line at {pos}: {data[pos:pos + 50]!r}")
        size = int(data[pos:eol], 16)
        pos = eol + 2
        if size == 0:
            if data[pos:pos + 2] != b"\r\n":
                raise ResponseError(f"no CRLF after the last chunk: {data[pos:pos + 20]!r}")
            return chunks, data[pos + 2:]
        chunk = data[pos:pos + size]
        if len(chunk) != size or data[pos + size:pos + size + 2] != b"\r\n":
            raise ResponseError(f"chunk of {size} bytes at {pos} is cut or not CRLF-terminated")
        chunks.append(chunk)
        pos += size + 2


def chunk(data: bytes) -> bytes:
    """The wire form of one chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def all_chunks(pieces: Iterable[bytes]) -> bytes:
    return b"".join(chunk(p) for p in pieces) + b"0\r\n\r\n"
