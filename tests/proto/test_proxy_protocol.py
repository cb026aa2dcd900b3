"""gkit.proto.proxy_protocol: PROXY v1 and v2 headers, bytes in and a result out, no sockets.

v2 headers are built here by hand with struct, following haproxy's
doc/proxy-protocol.txt, not with the code under test.
"""
from __future__ import annotations

import socket
import struct

import pytest

from gkit.proto.proxy_protocol import (
    NEED_MORE,
    V2_SIGNATURE,
    ProxyError,
    ProxyHeader,
    parse,
    starts_like_proxy,
)

HTTP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int = 1, family: int = 0x11, body: bytes = b"", version: int = 2) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", version << 4 | command, family, len(body)) + body


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + struct.pack("!HH", sport, dport))


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


V1_TCP4 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n"
V2_INET = v2(body=inet("203.0.113.9", "10.0.0.2", 40000, 8080))
V2_INET_TLVS = v2(body=inet("203.0.113.9", "10.0.0.2", 40000, 8080)
                  + tlv(0x01, b"http/1.1") + tlv(0x05, b"\x00" * 40) + tlv(0x20, b"\x01" * 7))
V2_INET6 = v2(family=0x21, body=inet6("2001:db8::9", "2001:db8::2", 1234, 443))

GOOD = [
    ("v1 TCP4", V1_TCP4, ProxyHeader(1, len(V1_TCP4), ("192.0.2.7", 56324),
                                     ("198.51.100.1", 443))),
    ("v1 TCP6", V1_TCP6, ProxyHeader(1, len(V1_TCP6), ("2001:db8::7", 4000),
                                     ("2001:db8::1", 80))),
    ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n", ProxyHeader(1, 15, None, None)),
    ("v1 UNKNOWN with addresses", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
     ProxyHeader(1, 35, None, None)),
    ("v1 longest line", b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
     ProxyHeader(1, 104, ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                 ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535))),
    ("v2 PROXY INET", V2_INET, ProxyHeader(2, 28, ("203.0.113.9", 40000), ("10.0.0.2", 8080))),
    ("v2 PROXY INET with TLVs skipped", V2_INET_TLVS,
     ProxyHeader(2, len(V2_INET_TLVS), ("203.0.113.9", 40000), ("10.0.0.2", 8080))),
    ("v2 PROXY INET6", V2_INET6, ProxyHeader(2, 52, ("2001:db8::9", 1234), ("2001:db8::2", 443))),
    ("v2 LOCAL (health check)", v2(command=0, family=0), ProxyHeader(2, 16, None, None)),
    ("v2 LOCAL with addresses", v2(command=0, body=inet("1.2.3.4", "5.6.7.8", 1, 2)),
     ProxyHeader(2, 28, None, None)),
    ("v2 PROXY UNSPEC", v2(family=0x00, body=b"\x00" * 5), ProxyHeader(2, 21, None, None)),
    ("v2 PROXY UNIX", v2(family=0x31, body=b"\x00" * 216), ProxyHeader(2, 232, None, None)),
]


@pytest.mark.parametrize("name,data,expected", GOOD, ids=[g[0] for g in GOOD])
def test_good_headers(name: str, data: bytes, expected: ProxyHeader) -> None:
    assert parse(data) == expected
    # What follows the header is the HTTP stream, untouched.
    result = parse(data + HTTP)
    assert result == expected
    assert (data + HTTP)[result.length:] == HTTP


@pytest.mark.parametrize("name,data,expected", GOOD, ids=[g[0] for g in GOOD])
def test_every_truncation_needs_more(name: str, data: bytes, expected: ProxyHeader) -> None:
    for cut in range(len(data)):
        assert parse(data[:cut]) is NEED_MORE, cut


BAD = [
    ("plain HTTP", HTTP, "no PROXY protocol header"),
    ("TLS client hello", b"\x16\x03\x01\x02\x00\x01", "no PROXY protocol header"),
    ("lower case", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol header"),
    ("v1 oversized", b"PROXY TCP4 " + b"1" * 200, "longer than 107 bytes"),
    ("v1 bare LF", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "not ended by CRLF"),
    ("v1 too few fields", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "needs 6 fields, not 5"),
    ("v1 too many fields", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "needs 6 fields, not 7"),
    ("v1 double space", b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "needs 6 fields"),
    ("v1 UDP", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "want TCP4, TCP6 or UNKNOWN"),
    ("v1 bad address", b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", 'bad address "1.2.3.999"'),
    ("v1 IPv6 in TCP4", b"PROXY TCP4 ::1 ::1 1 2\r\n", 'address "::1" is not IPv4'),
    ("v1 port too big", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 'bad port "65536"'),
    ("v1 negative port", b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 'bad port "-1"'),
    ("v1 header injection", b'PROXY TCP4 1.2.3.4" 5.6.7.8 1 2\r\n', "bad address"),
    ("v2 version 1", v2(version=1, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "version 1, not 2"),
    ("v2 command 3", v2(command=3, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "unknown command 3"),
    ("v2 short address block", v2(body=b"\x01" * 11), "address block of 11 bytes"),
    ("v2 INET6 short", v2(family=0x21, body=b"\x01" * 12), "address block of 12 bytes"),
    ("v2 datagram", v2(family=0x12, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "datagram"),
    ("v2 unknown family", v2(family=0x41, body=b"\x00" * 12), "unknown address family 4"),
]


@pytest.mark.parametrize("name,data,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_headers(name: str, data: bytes, reason: str) -> None:
    result = parse(data)
    assert isinstance(result, ProxyError), result
    assert reason in result.reason
    assert "\n" not in result.reason  # one log line


def test_v2_header_waits_for_its_whole_length() -> None:
    # A header announcing 60,000 bytes of TLVs is read whole, then skipped.
    body = inet("1.2.3.4", "5.6.7.8", 9, 10) + tlv(0xE0, b"x" * 59985)
    data = v2(body=body)
    assert len(data) == 16 + 60000
    assert parse(data[:-1]) is NEED_MORE
    assert parse(data + HTTP) == ProxyHeader(2, 60016, ("1.2.3.4", 9), ("5.6.7.8", 10))


def test_error_reason_escapes_what_the_peer_sent() -> None:
    result = parse(b'GET /"\r\n\x00')
    assert isinstance(result, ProxyError)
    assert result.reason == r'no PROXY protocol header (the connection starts with "GET /\"\r\n\x00")'


@pytest.mark.parametrize("data,expected", [
    (b"", None), (b"P", None), (b"PROXY", None), (b"PROXY ", True), (b"PROXY TCP4", True),
    (b"\r\n\r\n", None), (V2_SIGNATURE, True), (V2_INET, True),
    (b"GET / HTTP/1.1", False), (b"PUT", False), (b"\r\n\r\nX", False), (b"\x16\x03", False),
])
def test_starts_like_proxy(data: bytes, expected: bool) -> None:
    assert starts_like_proxy(data) is expected
