"""WebSocket frames, sans-IO (RFC 6455 §5): the header bits and opcodes by
name, unmasking, and the frames a server sends. The parser that uses them
is :mod:`gkit.proto.ws_session`.
"""
from __future__ import annotations

from struct import Struct

# RFC 6455 §5.2, the first header byte: FIN, three reserved bits, the opcode.
FIN = 0x80
RSV_BITS = 0x70
RSV1 = 0x40  # "compressed" under permessage-deflate (RFC 7692 §6)
OPCODE = 0x0F
# The second byte: MASK, then the payload length or one of two escapes.
MASKED = 0x80
LENGTH = 0x7F
LENGTH_16 = 126  # a 16-bit length follows
LENGTH_64 = 127  # a 64-bit length follows
# Opcodes (§5.2): data frames, then control frames (8 and up).
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
MAX_CONTROL_PAYLOAD = 125  # §5.5
# Whole first bytes of the frames the hot path and the server send.
FIN_TEXT = FIN | OP_TEXT
FIN_BINARY = FIN | OP_BINARY
FIN_CLOSE = FIN | OP_CLOSE
FIN_PING = FIN | OP_PING
FIN_PONG = FIN | OP_PONG

_U16 = Struct("!BBH").pack
_U64 = Struct("!BBQ").pack
_XOR = [bytes(a ^ b for a in range(256)) for b in range(256)]


def unmask(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated (RFC 6455 §5.3).

    >>> unmask(b"\\x01\\x02", b"\\x01\\x02\\x03\\x04")
    b'\\x00\\x00'
    """
    n = len(data)
    if n <= 2048:
        # One big-int XOR: about 0.6 µs for 32 bytes, three times faster than translate.
        key = int.from_bytes((mask * ((n >> 2) + 1))[:n], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")
    # Large payloads: one translate per mask byte runs at memory speed, the int XOR does not.
    buf = bytearray(data)
    for i in range(4):
        buf[i::4] = buf[i::4].translate(_XOR[mask[i]])
    return bytes(buf)


def build_frame(first: int, payload: bytes) -> bytes:
    """A server frame (unmasked): ``first`` is FIN|RSV|opcode.

    >>> build_frame(FIN_TEXT, b"hi")
    b'\\x81\\x02hi'
    """
    n = len(payload)
    if n < LENGTH_16:
        return bytes((first, n)) + payload
    if n < 65536:
        return _U16(first, LENGTH_16, n) + payload
    return _U64(first, LENGTH_64, n) + payload


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload: the code, then the reason cut to 123 UTF-8 bytes
    at a character boundary (a control frame holds 125 bytes at most)."""
    data = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + data
