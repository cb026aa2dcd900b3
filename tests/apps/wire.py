"""Client-side reading the tests of these apps share: a response head, then a
chunked body chunk by chunk (``helpers.RawConn`` parses whole responses only,
and a stream test must see each chunk arrive)."""
from typing import List, Optional

from helpers import RawConn


def read_head(conn: RawConn) -> bytes:
    """The next response head (without its blank line); the rest stays buffered."""
    conn.read_until(b"\r\n\r\n")
    head, _, conn.buf = conn.buf.partition(b"\r\n\r\n")
    return head


def read_chunks(conn: RawConn, count: Optional[int] = None) -> List[bytes]:
    """Decode a chunked body from ``conn`` (its head already read), chunk by
    chunk: up to the last chunk, or just ``count`` chunks. Bytes after what
    was decoded stay buffered in ``conn``."""
    buf = b""
    chunks: List[bytes] = []
    while True:
        end = buf.find(b"\r\n")
        if end >= 0:
            size = int(buf[:end].split(b";")[0], 16)
            stop = end + 2 + size + 2
            if len(buf) >= stop:
                assert buf[stop - 2:stop] == b"\r\n", f"bad chunk framing: {buf[:200]!r}"
                chunk, buf = buf[end + 2:stop - 2], buf[stop:]
                if size:
                    chunks.append(chunk)
                if not size or len(chunks) == count:
                    conn.buf = buf + conn.buf
                    return chunks
                continue
        more = conn.read_some()
        assert more, f"the connection closed inside a chunked body: {buf[:200]!r}"
        buf += more
