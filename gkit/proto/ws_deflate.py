"""permessage-deflate (RFC 7692) for one WebSocket session, sans-IO.

The parameters agreed in the handshake and the zlib state they imply: a
compressor for the server's messages and a bounded decompressor for the
client's. The frame parser (``ws_session.py``) decides which frames are
compressed; this module only turns payloads into payloads.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: removed from and restored to each message

# Compression memory per connection: zlib's deflate takes 2**(bits+2) + 2**(mem_level+9)
# bytes, 256 KiB with its defaults (15, 8) against 32 KiB with (12, 5), for a few percent
# of compression on chat-sized messages. A smaller window than agreed is always allowed.
# The same choice as the websockets library; the handshake asks clients for 12 as well.
WINDOW_BITS = 12
MEM_LEVEL = 5


@dataclass(frozen=True)
class DeflateParams:
    """The permessage-deflate parameters agreed in the handshake (RFC 7692 §7.1).

    The window sizes are the limits agreed (15 when not negotiated); the
    session compresses with at most ``WINDOW_BITS`` whatever the limit.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


class DeflateCodec:
    """The zlib state of one session; created lazily, dropped by ``release``.

    >>> codec = DeflateCodec(DeflateParams())
    >>> codec.inflate(codec.compress(b"hello") + TAIL, 100)
    b'hello'
    """

    __slots__ = ("params", "_inflater", "_deflater", "_flush")

    def __init__(self, params: DeflateParams) -> None:
        self.params = params
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None
        # A full flush also forgets the window: that is server_no_context_takeover.
        self._flush = zlib.Z_FULL_FLUSH if params.server_no_context_takeover else zlib.Z_SYNC_FLUSH

    def inflate(self, chunk: bytes, limit: int) -> bytes:
        """Decompress ``chunk`` of the current message, at most ``limit`` bytes
        (so a small frame cannot make anyone hold more); ValueError on bad data."""
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(-self.params.client_max_window_bits)
        try:
            return inflater.decompress(chunk, limit)
        except zlib.error:
            raise ValueError("invalid permessage-deflate data") from None

    def message_done(self) -> None:
        """The client's message ended: forget its window if the client asked to."""
        inflater = self._inflater
        if inflater is not None and (inflater.eof or self.params.client_no_context_takeover):
            self._inflater = None  # a fresh window for the next message

    def compress(self, payload: bytes) -> bytes:
        """One server message's payload, compressed (without the 4-byte tail)."""
        deflater = self._deflater
        if deflater is None:
            bits = min(self.params.server_max_window_bits, WINDOW_BITS)
            deflater = self._deflater = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, MEM_LEVEL)
        data = deflater.compress(payload) + deflater.flush(self._flush)
        return data[:-4] if data.endswith(TAIL) else data

    def release(self) -> None:
        """The session ended: drop the zlib state."""
        self._inflater = self._deflater = None
