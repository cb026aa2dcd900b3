"""Access log lines: what one request did (:class:`AccessRecord`) and its two
formats, ``combined`` (Apache's, plus the seconds taken) and ``json`` (one
JSON object per line, for log shippers), chosen by ``access_log_format``.

JSON lines have typed fields (numbers are numbers, a missing value is
``null``) and every value goes through ``json.dumps``: quotes, backslashes,
newlines or control characters in a header or target stay inside their
string, so nothing a client sends can add or change a field.

>>> rec = AccessRecord("192.0.2.7", 51000, "GET", b"/a?b=1", "1.1",
...                    [(b"User-Agent", b'curl "x"')], 200, 5, 0.0012, when=0.0)
>>> line = json_line(rec)
>>> line[:93]
'{"event": "request", "time": "1970-01-01T00:00:00.000000+00:00", "remote_addr": "192.0.2.7", '
>>> print(line[93:])
"remote_port": 51000, "method": "GET", "target": "/a?b=1", "protocol": "HTTP/1.1", "status": 200, \
"bytes": 5, "duration": 0.0012, "referer": null, "user_agent": "curl \\"x\\""}
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

Headers = Sequence[Tuple[bytes, bytes]]


class AccessRecord:
    """One request as the access log and the access hook see it."""

    __slots__ = ("client", "port", "method", "target", "version", "headers", "status",
                 "length", "duration", "response_headers", "when")

    def __init__(self, client: str, port: int, method: str, target: bytes, version: str,
                 headers: Headers, status: int, length: Optional[int], duration: float,
                 response_headers: Optional[List[Tuple[str, str]]] = None,
                 when: Optional[float] = None) -> None:
        self.client = client
        self.port = port
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers            # the request's, as received
        self.status = status
        self.length = length              # body bytes sent; None if unknown
        self.duration = duration          # seconds from the app call to the end
        self.response_headers = response_headers or []
        self.when = time.time() if when is None else when

    def header(self, name: bytes) -> Optional[str]:
        """The request header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None


def _combined_start(rec: AccessRecord) -> str:
    """The fields both combined lines begin with: client, time, request line."""
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(rec.when))
    line = f"{rec.method} {rec.target.decode('latin-1')} HTTP/{rec.version}"
    return f'{rec.client or "-"} - - [{when}] "{line}"'


def combined(rec: AccessRecord) -> str:
    """Apache's combined format plus the seconds taken."""
    referer = (rec.header(b"referer") or "-").replace('"', "'")
    agent = (rec.header(b"user-agent") or "-").replace('"', "'")
    return (f'{_combined_start(rec)} {rec.status} {rec.length or "-"} '
            f'"{referer}" "{agent}" {rec.duration:.6f}')


def json_line(rec: AccessRecord) -> str:
    """One JSON object: time (ISO 8601, UTC), remote_addr, remote_port, method,
    target, protocol, status, bytes, duration (seconds), referer, user_agent."""
    return json.dumps({
        "event": "request",
        **_json_start(rec),
        "status": rec.status,
        "bytes": rec.length,
        "duration": round(rec.duration, 6),
        "referer": rec.header(b"referer"),
        "user_agent": rec.header(b"user-agent"),
    })


def _json_start(rec: AccessRecord) -> Dict[str, Any]:
    """The fields both JSON lines begin with (after ``event``), in order."""
    return {
        "time": datetime.fromtimestamp(rec.when, timezone.utc).isoformat(timespec="microseconds"),
        "remote_addr": rec.client or None,
        "remote_port": rec.port or None,
        "method": rec.method,
        "target": rec.target.decode("latin-1"),
        "protocol": f"HTTP/{rec.version}",
    }


class ChannelRecord:
    """One channel's life, logged when it ends: its request, its ``kind``
    (``websocket``, ``long_poll``, ``http_stream``, ``sse``), the close
    status passed to ``on_close``, seconds open, and messages and bytes each
    way (``_in``: from the client; ``_out``: to it)."""

    __slots__ = ("request", "kind", "status", "duration", "messages_in", "messages_out",
                 "bytes_in", "bytes_out")

    def __init__(self, request: AccessRecord, kind: str, status: str, duration: float,
                 messages_in: int, messages_out: int, bytes_in: int, bytes_out: int) -> None:
        self.request = request
        self.kind = kind
        self.status = status
        self.duration = duration
        self.messages_in = messages_in
        self.messages_out = messages_out
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out


def channel_combined(rec: ChannelRecord) -> str:
    """The combined line's first fields, then ``channel-end`` and key=value pairs.

    >>> req = AccessRecord("192.0.2.7", 1, "GET", b"/ws", "1.1", [], 101, None, 0, when=0.0)
    >>> line = channel_combined(ChannelRecord(req, "websocket", "normal", 2.5, 3, 4, 30, 40))
    >>> line[line.index('"'):]
    '"GET /ws HTTP/1.1" channel-end kind=websocket status=normal duration=2.500000 \
messages_in=3 messages_out=4 bytes_in=30 bytes_out=40'
    """
    return (f'{_combined_start(rec.request)} channel-end kind={rec.kind} '
            f'status={rec.status} duration={rec.duration:.6f} messages_in={rec.messages_in} '
            f'messages_out={rec.messages_out} bytes_in={rec.bytes_in} bytes_out={rec.bytes_out}')


def channel_json(rec: ChannelRecord) -> str:
    """One JSON object with ``"event": "channel_end"``."""
    return json.dumps({
        "event": "channel_end",
        **_json_start(rec.request),
        "kind": rec.kind,
        "close_status": rec.status,
        "duration": round(rec.duration, 6),
        "messages_in": rec.messages_in,
        "messages_out": rec.messages_out,
        "bytes_in": rec.bytes_in,
        "bytes_out": rec.bytes_out,
    })


FORMATTERS = {"combined": combined, "json": json_line}
CHANNEL_FORMATTERS = {"combined": channel_combined, "json": channel_json}
