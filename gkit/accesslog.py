"""The access log: one line per request on the ``gkit.access`` logger, in the
combined log format plus the time taken; WebSocket upgrades (101) and long
polls are logged when their response starts or ends."""
from __future__ import annotations

import logging
import time
from typing import Optional

from .proto.h1 import Request

access_log = logging.getLogger("gkit.access")


def enabled() -> bool:
    return access_log.isEnabledFor(logging.INFO)


def _header(req: Request, name: bytes) -> str:
    for key, value in req.headers:
        if key.lower() == name:
            return value.decode("latin-1").replace('"', "'")
    return "-"


def log_request(client: str, req: Request, status: int, length: Optional[int],
                started: float) -> None:
    """Write the access line of one request; ``client`` is its REMOTE_ADDR."""
    remote = client or "-"
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    line = f"{req.method} {req.target.decode('latin-1')} HTTP/{req.version}"
    access_log.info('%s - - [%s] "%s" %d %s "%s" "%s" %.6f', remote, when, line, status,
                    length if length else "-", _header(req, b"referer"),
                    _header(req, b"user-agent"), time.monotonic() - started)
