"""TLS for HTTPS and wss:// with no proxy: gevent's cooperative SSL socket
around any ``ssl.SSLContext`` (the stdlib's works as is)."""
from __future__ import annotations

import socket
import ssl
from typing import Any, Optional

from gevent.ssl import SSLSocket

from .errors import ConfigError


class CertificateError(ConfigError):
    """--certfile/--keyfile cannot be used; the message is one line naming the file."""


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


def ssl_context_from(certfile: Optional[str], keyfile: Optional[str]) -> Any:
    """An ``ssl.SSLContext`` for --certfile/--keyfile; :class:`CertificateError` when they are bad."""
    if not certfile:
        return None
    for flag, path, marker in (("--certfile", certfile, "CERTIFICATE-----"),
                               ("--keyfile", keyfile or certfile, "PRIVATE KEY-----")):
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError as exc:
            raise CertificateError(f"{flag} {path!r}: {(exc.strerror or str(exc)).lower()}") from None
        if marker.encode() not in text:
            what = "certificate" if flag == "--certfile" else "private key"
            raise CertificateError(f"{flag} {path!r}: no PEM {what} in it (want a '-----BEGIN "
                             f"...{marker}' block)")

    def no_password() -> bytes:
        raise CertificateError(f"--keyfile {keyfile or certfile!r}: the private key is encrypted; "
                         f"give an unencrypted key (openssl pkey -in KEY -out KEY.plain)")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=no_password)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise CertificateError(f"--keyfile {keyfile or certfile!r} does not match the certificate "
                             f"in --certfile {certfile!r}") from None
        raise CertificateError(f"cannot load --certfile {certfile!r} / --keyfile "
                         f"{keyfile or certfile!r}: bad PEM ({reason})") from None
    context.set_alpn_protocols(["http/1.1"])
    return context
