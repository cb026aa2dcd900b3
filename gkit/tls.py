"""TLS for HTTPS and wss:// with no proxy: gevent's cooperative SSL socket
around any ``ssl.SSLContext`` (the stdlib's works as is)."""
from __future__ import annotations

import socket
import ssl
from typing import Any

from gevent.ssl import SSLSocket


def wrap_server_side(sock: socket.socket, context: ssl.SSLContext) -> Any:
    """Wrap an accepted socket without blocking; the handshake happens later,
    in the connection's greenlet (:func:`handshake`)."""
    return SSLSocket(sock=sock, server_side=True, do_handshake_on_connect=False,
                     _context=context)


def handshake(sock: Any, timeout: float) -> None:
    """Run the TLS handshake within ``timeout`` seconds; raises OSError on failure."""
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        sock.do_handshake()
    except ssl.SSLError as exc:
        raise ConnectionError(f"TLS handshake failed: {exc.reason or exc}") from None
    finally:
        sock.settimeout(previous)
