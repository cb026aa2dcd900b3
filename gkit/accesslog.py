"""The access log: one line per request on the ``gkit.access`` logger, in
the ``access_log_format`` (combined or JSON, see :mod:`gkit.accessformat`);
WebSocket upgrades (101) and long polls are logged when their response
starts or ends. A server's access hook (``server.access_hook``, the gunicorn
worker's) gets the same :class:`~gkit.accessformat.AccessRecord` for every
request."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, List, Optional, Tuple

from .accessformat import CHANNEL_FORMATTERS, FORMATTERS, AccessRecord, ChannelRecord
from .proto.h1 import Request

access_log = logging.getLogger("gkit.access")
# Channel-end lines: a child of gkit.access (so they go where access lines go),
# named apart so that the gunicorn worker can route them alone.
channel_log = logging.getLogger("gkit.access.channel")
error_log = logging.getLogger("gkit.error")

Hook = Optional[Callable[[AccessRecord], Any]]


def enabled(hook: Hook = None) -> bool:
    """Is anything listening: the logger, or an access hook?"""
    return access_log.isEnabledFor(logging.INFO) or hook is not None


def log_request(client: str, addr: Tuple[str, int], req: Request, status: int,
                length: Optional[int], started: float, *, fmt: str = "combined",
                hook: Hook = None, response_headers: Optional[List[Tuple[str, str]]] = None
                ) -> None:
    """Write the access line of one request and call the access ``hook``;
    ``client`` is its REMOTE_ADDR, ``addr`` the connection's peer."""
    port = addr[1] if client == addr[0] else 0  # behind proxy headers: unknown
    rec = AccessRecord(client or "", port, req.method, req.target, req.version, req.headers,
                       status, length, time.monotonic() - started, response_headers)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("%s", FORMATTERS[fmt](rec))
    if hook is not None:
        try:
            hook(rec)
        except Exception:
            error_log.exception("error in the access hook %r", hook)


def log_channel_end(client: str, addr: Tuple[str, int], req: Request, kind: str, status: str,
                    duration: float, messages_in: int, messages_out: int, bytes_in: int,
                    bytes_out: int, *, fmt: str = "combined") -> None:
    """The line of a channel (WebSocket, long poll, stream, SSE) that ended
    with close ``status``: its duration, and messages and bytes each way."""
    port = addr[1] if client == addr[0] else 0
    rec = AccessRecord(client or "", port, req.method, req.target, req.version, req.headers,
                       0, None, duration)
    channel_log.info("%s", CHANNEL_FORMATTERS[fmt](ChannelRecord(
        rec, kind, status, duration, messages_in, messages_out, bytes_in, bytes_out)))
