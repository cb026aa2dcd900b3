"""The ``Origin`` check of WebSocket handshakes (``ws_allowed_origins``), sans-IO.

Browsers send ``Origin`` with every WebSocket handshake and, unlike for
``fetch``, no CORS check protects the server: any page can open a WebSocket
to it with the user's cookies (cross-site WebSocket hijacking). A list of
allowed origins closes that.

Patterns (case-insensitive; a default port, 80 for http/ws and 443 for
https/wss, may be written or left out):

- an exact origin, ``scheme://host[:port]``, no path: ``https://example.com``;
- a wildcard: ``scheme://*.domain[:port]`` matches any subdomain of
  ``domain`` at any depth (``https://a.example.com``,
  ``https://a.b.example.com``) but not ``domain`` itself (list it too) and
  not ``evil-example.com``;
- ``null``: the opaque origin of sandboxed frames and ``file:`` pages,
  refused unless listed.

A handshake without ``Origin`` is allowed: browsers always send it, and a
non-browser client could send any value it likes, so the check is about
browsers (as in Tornado, gorilla/websocket and python-engineio).
"""
from __future__ import annotations

import re
from typing import Iterable, Optional, Tuple

__all__ = ["parse_allowed_origins", "origin_allowed", "refused_origin"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_ORIGIN = re.compile(r"([a-z][a-z0-9+.\-]*)://(\*\.)?([a-z0-9\-._~%!$&'()+,;=]+|\[[0-9a-f:.]+\])"
                     r"(?::([0-9]{1,5}))?\Z")


def _normalize(origin: str) -> Optional[Tuple[str, bool, str, str]]:
    """(scheme, wildcard, host, port) of an origin or pattern; None if malformed."""
    m = _ORIGIN.match(origin.strip().lower())
    if m is None:
        return None
    scheme, star, host, port = m.groups()
    port = port or _DEFAULT_PORTS.get(scheme, "")
    return scheme, bool(star), host, port


def parse_allowed_origins(items: Iterable[str]) -> Tuple[str, ...]:
    """Check and normalize a list of patterns (lower case, default ports
    written out); ValueError names a bad one.

    >>> parse_allowed_origins(["https://Example.com", "https://*.example.com:8443", "null"])
    ('https://example.com:443', 'https://*.example.com:8443', 'null')
    """
    out = []
    for item in items:
        if item.strip().lower() == "null":
            out.append("null")
            continue
        parts = _normalize(item)
        if parts is None:
            raise ValueError(
                f"ws_allowed_origins: {item!r} is not an origin: give scheme://host[:port] "
                f"with no path or trailing slash (e.g. https://example.com), a wildcard "
                f"https://*.example.com, or null")
        scheme, star, host, port = parts
        out.append(f"{scheme}://{'*.' if star else ''}{host}:{port}")
    return tuple(out)


def origin_allowed(origin: Optional[str], allowed: Tuple[str, ...]) -> bool:
    """Does the handshake's ``Origin`` header value pass ``allowed`` (as made
    by :func:`parse_allowed_origins`)? No header (None) passes.

    >>> allowed = parse_allowed_origins(["https://example.com", "https://*.example.com"])
    >>> [origin_allowed(o, allowed) for o in ("https://example.com", "https://a.b.example.com",
    ...  "https://evil-example.com", "http://example.com", "null", None)]
    [True, True, False, False, False, True]
    """
    if origin is None:
        return True
    if origin.strip().lower() == "null":
        return "null" in allowed
    parts = _normalize(origin)
    if parts is None or parts[1]:
        return False  # a malformed Origin, or one that claims a wildcard
    scheme, _, host, port = parts
    exact = f"{scheme}://{host}:{port}"
    for pattern in allowed:
        if pattern == exact:
            return True
        p_scheme, sep, rest = pattern.partition("://*.")
        if sep and p_scheme == scheme:
            domain, _, p_port = rest.rpartition(":")
            if p_port == port and host.endswith("." + domain):
                return True
    return False


def refused_origin(headers: Iterable[Tuple[bytes, bytes]], allowed: Tuple[str, ...]
                   ) -> Optional[str]:
    """For a request head's raw ``headers``: the ``Origin`` to refuse when it is
    a WebSocket handshake whose origin ``allowed`` does not pass; else None.

    >>> refused_origin([(b"Upgrade", b"websocket"), (b"Origin", b"https://evil.test")],
    ...                ("https://example.com:443",))
    'https://evil.test'
    """
    websocket = False
    origins = []
    for name, value in headers:
        name = name.lower()
        if name == b"upgrade" and b"websocket" in value.lower():
            websocket = True
        elif name == b"origin":
            origins.append(value.decode("latin-1"))
    if not websocket:
        return None
    if len(origins) > 1:
        return ", ".join(origins)  # one Origin or none; several is not a browser
    origin = origins[0] if origins else None
    return None if origin_allowed(origin, allowed) else origin
