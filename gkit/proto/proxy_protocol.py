"""The PROXY protocol, versions 1 and 2, sans-IO: bytes in, a result out.

A TCP proxy or load balancer (HAProxy ``send-proxy``/``send-proxy-v2``,
nginx ``proxy_protocol on``, AWS NLB, GCP) writes one header at the start of
the connection naming the client it relays; the HTTP requests follow. The
spec is haproxy's ``doc/proxy-protocol.txt``. :func:`parse` takes the bytes
received so far and answers one of

- :data:`NEED_MORE`: not enough bytes to decide yet;
- :class:`ProxyHeader`: the header, its length in bytes (what follows is HTTP),
  and the client's address (``None`` for ``LOCAL``/``UNKNOWN``: the proxy's
  own connection, e.g. a health check; the peer's address applies);
- :class:`ProxyError`: not a PROXY header, or a bad one, with the reason.

>>> parse(b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\\r\\nGET / HTTP/1.1\\r\\n")
ProxyHeader(version=1, length=41, client=('192.0.2.7', 56324), server=('10.0.0.1', 443))
>>> parse(b"PROXY TCP4 192.0.2.7")
<NEED_MORE>
>>> parse(b"GET / HTTP/1.1\\r\\n").reason
'no PROXY protocol header (the connection starts with "GET / HTTP/1.1\\\\r\\\\n")'
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Optional, Tuple, Union

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included (spec section 2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEAD = 16  # signature, version/command, family/protocol, length

V2_VERSION = 0x20
V2_CMD_LOCAL = 0x00
V2_CMD_PROXY = 0x01
V2_AF_UNSPEC = 0x00
V2_AF_INET = 0x10
V2_AF_INET6 = 0x20
V2_AF_UNIX = 0x30
V2_PROTO_UNSPEC = 0x00
V2_PROTO_STREAM = 0x01
# Bytes of the address block by family: two addresses, then two ports.
V2_ADDR_LEN = {V2_AF_INET: 12, V2_AF_INET6: 36, V2_AF_UNIX: 216}

Address = Tuple[str, int]


class _NeedMore:
    def __repr__(self) -> str:
        return "<NEED_MORE>"


NEED_MORE = _NeedMore()
"""More bytes are needed before the header can be told apart or read."""


@dataclass(frozen=True)
class ProxyHeader:
    """A whole PROXY header of ``length`` bytes. ``client`` is the address the
    proxy relays (``None``: use the peer's own, for ``LOCAL`` and ``UNKNOWN``);
    ``server`` the address the client connected to. TLVs (v2) are skipped."""

    version: int
    length: int
    client: Optional[Address]
    server: Optional[Address]


@dataclass(frozen=True)
class ProxyError:
    """Not a PROXY header, or a malformed one; ``reason`` is one line for the log."""

    reason: str


Result = Union[ProxyHeader, ProxyError, _NeedMore]


def parse(data: bytes) -> Result:
    """Read the PROXY header at the start of ``data`` (see the module docstring)."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data[:12]) or V1_PREFIX.startswith(data[:6]):
        return NEED_MORE
    return ProxyError(f"no PROXY protocol header (the connection starts with "
                      f"{_show(data[:16])})")


def starts_like_proxy(data: bytes) -> Optional[bool]:
    """Do these first bytes of a connection begin a PROXY header (v1 or v2)?
    ``None`` while too few bytes came to tell.

    >>> starts_like_proxy(b"PROX"), starts_like_proxy(b"PROXY "), starts_like_proxy(b"GET ")
    (None, True, False)
    """
    if data.startswith(V2_SIGNATURE) or data.startswith(V1_PREFIX):
        return True
    if V2_SIGNATURE.startswith(data[:12]) or V1_PREFIX.startswith(data[:6]):
        return None
    return False


def _show(data: bytes) -> str:
    return '"' + repr(bytes(data))[2:-1].replace('"', '\\"') + '"'


# -- version 1: one text line ----------------------------------------------------------
def _parse_v1(data: bytes) -> Result:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            return ProxyError(f"PROXY v1 line longer than {V1_MAX} bytes")
        if b"\n" in data:
            return ProxyError("PROXY v1 line not ended by CRLF")
        return NEED_MORE
    line = data[:end]
    parts = line.split(b" ")
    length = end + 2
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(1, length, None, None)  # the rest of the line is ignored (spec)
    if len(parts) != 6:
        return ProxyError(f"PROXY v1 line needs 6 fields, not {len(parts)}: {_show(line)}")
    _, proto, src, dst, sport, dport = parts
    if proto not in (b"TCP4", b"TCP6"):
        return ProxyError(f"PROXY v1 protocol {_show(proto)}: want TCP4, TCP6 or UNKNOWN")
    version = 4 if proto == b"TCP4" else 6
    try:
        client = (_ip(src, version), _port(sport))
        server = (_ip(dst, version), _port(dport))
    except ValueError as exc:
        return ProxyError(f"PROXY v1 {exc}: {_show(line)}")
    return ProxyHeader(1, length, client, server)


def _ip(text: bytes, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"bad address {_show(text)}") from None
    if addr.version != version:
        raise ValueError(f"address {_show(text)} is not IPv{version}")
    return str(addr)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ValueError(f"bad port {_show(text)}")
    return int(text)


# -- version 2: binary ------------------------------------------------------------------
def _parse_v2(data: bytes) -> Result:
    if len(data) < V2_HEAD:
        return NEED_MORE
    ver_cmd, fam_proto, size = struct.unpack_from("!BBH", data, 12)
    length = V2_HEAD + size
    if ver_cmd & 0xF0 != V2_VERSION:
        return ProxyError(f"PROXY v2 header with version {ver_cmd >> 4}, not 2")
    command = ver_cmd & 0x0F
    if command not in (V2_CMD_LOCAL, V2_CMD_PROXY):
        return ProxyError(f"PROXY v2 header with unknown command {command}")
    family, proto = fam_proto & 0xF0, fam_proto & 0x0F
    need = V2_ADDR_LEN.get(family, 0)
    if size < need:
        return ProxyError(f"PROXY v2 address block of {size} bytes, family {family >> 4} "
                          f"needs {need}")
    if len(data) < length:
        return NEED_MORE
    if command == V2_CMD_LOCAL or family in (V2_AF_UNSPEC, V2_AF_UNIX):
        return ProxyHeader(2, length, None, None)  # addresses (and TLVs) skipped
    if family not in V2_ADDR_LEN:
        return ProxyError(f"PROXY v2 header with unknown address family {family >> 4}")
    if proto != V2_PROTO_STREAM:
        return ProxyError("PROXY v2 header for a datagram (or unknown) protocol, not TCP")
    if family == V2_AF_INET:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", data, V2_HEAD)
    else:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", data, V2_HEAD)
    return ProxyHeader(2, length, (str(ipaddress.ip_address(src)), sport),
                       (str(ipaddress.ip_address(dst)), dport))
