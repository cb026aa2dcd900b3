"""``wsgi.file_wrapper`` and how a file response goes out with ``sendfile``.

:class:`FileWrapper` is seekable (``seekable()``, ``seek()``, ``tell()``,
passed to the file), so werkzeug's Range handling (Flask's ``send_file``)
seeks to the range instead of reading and dropping every byte before it.

:func:`sendfile_span` tells the response writer whether an app's result can be
sent from its file descriptor: a :class:`FileWrapper` from where its file
stands to the end, or werkzeug's range wrapper around one (``_RangeWrapper``,
recognised by its attributes, not imported) for exactly the range. So a
``Range: bytes=-100`` on a 1 GiB file sends 100 bytes with one ``sendfile``
and reads nothing through Python. gkit does not parse ``Range`` itself: the
framework decided the status and headers (206, ``Content-Range``), and a
server that re-decided them could only disagree with it.

>>> import io
>>> w = FileWrapper(io.BytesIO(b"hello world"))
>>> w.seekable(), w.seek(6), w.tell(), next(w)
(True, 6, 6, b'world')
"""
from __future__ import annotations

import os
from typing import Any, Optional, Tuple


class FileWrapper:
    """``wsgi.file_wrapper``: served with ``os.sendfile`` when the socket allows."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    # -- seeking: what werkzeug's _RangeWrapper looks for ---------------------------
    def seekable(self) -> bool:
        seekable = getattr(self.filelike, "seekable", None)
        if seekable is not None:
            try:
                return bool(seekable())
            except (OSError, ValueError):
                return False
        return hasattr(self.filelike, "seek") and hasattr(self.filelike, "tell")

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.filelike.seek(offset, whence)

    def tell(self) -> int:
        return self.filelike.tell()

    # -- sendfile ---------------------------------------------------------------------
    def sendfile_span(self) -> Optional[Tuple[int, int, int]]:
        """(fd, offset, count) when the file can go out with sendfile, else None."""
        try:
            fd = self.filelike.fileno()
            offset = self.filelike.tell()
            size = os.fstat(fd).st_size
        except (AttributeError, OSError, ValueError):
            return None
        return fd, offset, max(size - offset, 0)


def sendfile_span(result: Any) -> Optional[Tuple[int, int, int]]:
    """(fd, offset, count) for an app's result that can go out with sendfile:
    a :class:`FileWrapper`, or werkzeug's range wrapper around one that has
    not been iterated yet; None for anything else."""
    if isinstance(result, FileWrapper):
        return result.sendfile_span()
    inner = getattr(result, "iterable", None)
    if not isinstance(inner, FileWrapper) or getattr(result, "read_length", None) != 0:
        return None
    start = getattr(result, "start_byte", None)
    length = getattr(result, "byte_range", None)
    if not isinstance(start, int) or not (length is None or isinstance(length, int)):
        return None
    span = inner.sendfile_span()
    if span is None:
        return None
    fd, offset, count = span
    # werkzeug seeks to start_byte on the first iteration (the wrapper is
    # seekable): the range is [start_byte, start_byte + byte_range) of the file.
    end = offset + count
    if length is None:
        return fd, start, max(end - start, 0)
    return fd, start, max(min(length, end - start), 0)
