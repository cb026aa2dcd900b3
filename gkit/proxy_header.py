"""Reading a PROXY protocol header off a new connection: the I/O around
:mod:`gkit.proto.proxy_protocol` (option ``proxy_protocol``).

With the option on, a peer in ``forwarded_allow_ips`` must start every
connection with a PROXY header (v1 or v2); the address it names is the
connection's client for every request on it (keep-alive included), as
``REMOTE_ADDR``/``REMOTE_PORT``. ``LOCAL`` (v2) and ``UNKNOWN`` (v1) headers,
a proxy's own health checks, keep the peer's address. Any other peer is
served as a direct client, but a PROXY header from it is refused: it could
otherwise claim any address. A refused, bad or missing header closes the
connection with one warning on the ``gkit.error`` logger; nothing is
answered, since the peer may not speak HTTP yet.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Any, Optional, Tuple

from gevent import sleep as gevent_sleep

from .proto.proxy_protocol import NEED_MORE, ProxyError, ProxyHeader, parse, starts_like_proxy

error_log = logging.getLogger("gkit.error")

BUF = 65536
POLL = 0.02  # seconds between peeks while a few first bytes cannot be told apart


class ProxyRefused(Exception):
    """The connection's PROXY header is refused, bad or missing; closes it."""


def read_header(sock: Any, trusted: bool, timeout: float) -> Optional[Tuple[str, int]]:
    """Read the PROXY header from ``sock`` (a cooperative socket, before any
    TLS) within ``timeout`` seconds, taking exactly its bytes off the socket:
    what follows (HTTP, or a TLS handshake) is left there. Returns the client
    address it names (``None``: keep the peer's). Raises :class:`ProxyRefused`,
    or ``EOFError`` when the peer closed before sending anything (a TCP health
    check: closed without a log line)."""
    deadline = time.monotonic() + timeout
    taken = b""  # header bytes already taken off the socket
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProxyRefused(f"no whole PROXY header within {timeout:g} s "
                               f"(header_timeout); got {len(taken)} bytes")
        sock.settimeout(left)
        try:
            peeked = sock.recv(BUF, socket.MSG_PEEK)
        except socket.timeout:
            continue
        if not peeked:
            if taken:
                raise ProxyRefused(f"the peer closed within its PROXY header ({len(taken)} bytes)")
            raise EOFError
        data = taken + peeked
        if not trusted:
            looks = starts_like_proxy(data)
            if looks:
                raise ProxyRefused("a PROXY header from a peer not in forwarded_allow_ips "
                                   "(add the proxy's address there to trust it)")
            if looks is None:  # "PRO": a PROXY line or PROPFIND; rare, so wait by polling
                gevent_sleep(POLL)
                continue
            return None
        result = parse(data)
        if isinstance(result, ProxyError):
            raise ProxyRefused(result.reason)
        if result is NEED_MORE:  # every byte so far belongs to the header: take them
            taken += _take(sock, len(peeked))
            continue
        assert isinstance(result, ProxyHeader)
        _take(sock, result.length - len(taken))
        return result.client


def _take(sock: Any, count: int) -> bytes:
    """Read exactly ``count`` bytes that a peek showed are there."""
    parts = []
    while count > 0:
        data = sock.recv(count)
        if not data:
            raise ProxyRefused("the peer closed within its PROXY header")
        parts.append(data)
        count -= len(data)
    return b"".join(parts)


def refused(peer: Any, exc: ProxyRefused) -> None:
    """The one log line of a refused connection."""
    error_log.warning("PROXY protocol: closed the connection from %s: %s",
                      peer[0] if isinstance(peer, tuple) and peer[0] else "a Unix socket", exc)

