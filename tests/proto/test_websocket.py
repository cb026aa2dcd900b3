"""gkit.proto.websocket: the handshake and the session, bytes in and events out, no sockets.

Frames are built here by hand (``client_frame``, ``server_frame``) rather than
with the code under test, and every failure asserts its exact close code and
the exact close frame the session owes the peer. Failure cases are also run
through wsproto, the reference implementation, to check that both agree.
"""
from __future__ import annotations

import ast
import base64
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import wsproto
import wsproto.events

from gkit.errors import HandshakeError
from gkit.proto.websocket import (
    Closed,
    DeflateParams,
    Message,
    Ping,
    Pong,
    WsSession,
    accept_handshake,
    accept_key,
    close_status,
)

MASK = b"\x37\xfa\x21\x3d"
TAIL = b"\x00\x00\xff\xff"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
PROTO_DIR = Path(__file__).resolve().parents[2] / "gkit" / "proto"
MODULES = ["websocket.py", "ws_session.py", "ws_events.py", "ws_frames.py"]


# -- frame builders (independent of the code under test) ------------------------------------


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 mask: bytes | None = MASK, length: int | None = None, long: int = 0) -> bytes:
    """A client frame. ``rsv`` is the RSV bits (0x40, 0x20, 0x10); ``mask=None`` sends it
    unmasked; ``length`` overrides the announced length; ``long`` forces the 2-byte (2)
    or 8-byte (8) length form."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask is not None else 0
    if long == 8 or (not long and n > 0xFFFF):
        head = struct.pack("!BBQ", first, bit | 127, n)
    elif long == 2 or (not long and n > 125):
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = bytes((first, bit | n))
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(s: str, **kw: object) -> bytes:
    return client_frame(0x1, s.encode(), **kw)  # type: ignore[arg-type]


def close(code: int | None = None, reason: bytes = b"") -> bytes:
    return client_frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)


def server_frame(first: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def server_close(code: int, reason: str = "") -> bytes:
    return server_frame(0x88, struct.pack("!H", code) + reason.encode())


def deflated(data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """``data`` compressed as a permessage-deflate client would (RFC 7692 §7.2.1)."""
    c = compressor or zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def deflate_session(max_message: int = 1 << 20, **params: Any) -> WsSession:
    return WsSession(max_message=max_message, deflate=DeflateParams(**params))


# -- handshake --------------------------------------------------------------------------------

REQUEST = [("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
           ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]


def handshake(headers: list[tuple[str, str]] = REQUEST, **kw: object) -> tuple[bytes, WsSession]:
    return accept_handshake("GET", "HTTP/1.1", headers, **kw)  # type: ignore[arg-type]


def response_headers(response: bytes) -> list[str]:
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert response.endswith(b"\r\n\r\n")
    return response.decode("latin-1").split("\r\n")[1:-2]


def test_accept_key_rfc6455_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_accept_response_bytes() -> None:
    response, ws = handshake()
    assert response == (b"HTTP/1.1 101 Switching Protocols\r\n"
                        b"Upgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n"
                        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                        b"\r\n")
    assert ws.is_open and not ws.closed and ws.deflate is None


@pytest.mark.parametrize("headers", [
    [("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade"),
     ("sec-websocket-key", KEY), ("sec-websocket-version", "13")],
    [("UPGRADE", "foo, websocket"), ("CONNECTION", "keep-alive"), ("Connection", "upgrade"),
     ("SEC-WEBSOCKET-KEY", f" {KEY} "), ("Sec-WebSocket-Version", " 13 ")],
], ids=["case-and-lists", "split-headers-and-spaces"])
def test_accept_header_variants(headers: list[tuple[str, str]]) -> None:
    response, _ = accept_handshake("GET", "HTTP/1.1", headers)
    assert f"Sec-WebSocket-Accept: {ACCEPT}" in response_headers(response)


@pytest.mark.parametrize("version", ["HTTP/1.1", "1.1", "http/1.1", "HTTP/2.0", "HTTP/2"])
def test_accept_http_versions(version: str) -> None:
    response, _ = accept_handshake("GET", version, REQUEST)
    assert response.startswith(b"HTTP/1.1 101 ")


def without(name: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in REQUEST if k.lower() != name]


def replaced(name: str, value: str) -> list[tuple[str, str]]:
    return without(name.lower()) + [(name, value)]


BAD_HANDSHAKES = [
    ("post", "POST", "HTTP/1.1", REQUEST, "must use GET"),
    ("head", "HEAD", "HTTP/1.1", REQUEST, "must use GET"),
    ("http-1.0", "GET", "HTTP/1.0", REQUEST, "HTTP/1.1 or later"),
    ("http-0.9", "GET", "HTTP/0.9", REQUEST, "HTTP/1.1 or later"),
    ("garbage-version", "GET", "HTTP/x", REQUEST, "HTTP/1.1 or later"),
    ("no-upgrade", "GET", "HTTP/1.1", without("upgrade"), "Upgrade header"),
    ("upgrade-h2c", "GET", "HTTP/1.1", replaced("Upgrade", "h2c"), "Upgrade header"),
    ("upgrade-substring", "GET", "HTTP/1.1", replaced("Upgrade", "websockets"), "Upgrade header"),
    ("no-connection", "GET", "HTTP/1.1", without("connection"), "Connection header"),
    ("connection-close", "GET", "HTTP/1.1", replaced("Connection", "close"), "Connection header"),
    ("no-version", "GET", "HTTP/1.1", without("sec-websocket-version"), "missing: give 13"),
    ("version-8", "GET", "HTTP/1.1", replaced("Sec-WebSocket-Version", "8"), "got 8"),
    ("version-list", "GET", "HTTP/1.1", replaced("Sec-WebSocket-Version", "13, 8"), "got 13, 8"),
    ("no-key", "GET", "HTTP/1.1", without("sec-websocket-key"), "one Sec-WebSocket-Key"),
    ("two-keys", "GET", "HTTP/1.1", REQUEST + [("Sec-WebSocket-Key", KEY)],
     "one Sec-WebSocket-Key"),
    ("key-not-base64", "GET", "HTTP/1.1", replaced("Sec-WebSocket-Key", "not base64!!"),
     "16 bytes"),
    ("key-15-bytes", "GET", "HTTP/1.1",
     replaced("Sec-WebSocket-Key", base64.b64encode(b"x" * 15).decode()), "16 bytes"),
    ("key-17-bytes", "GET", "HTTP/1.1",
     replaced("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode()), "16 bytes"),
    ("key-no-padding", "GET", "HTTP/1.1", replaced("Sec-WebSocket-Key", KEY.rstrip("=")),
     "16 bytes"),
    ("key-non-latin", "GET", "HTTP/1.1", replaced("Sec-WebSocket-Key", "ключ"), "16 bytes"),
]


@pytest.mark.parametrize("method, version, headers, reason", [c[1:] for c in BAD_HANDSHAKES],
                         ids=[c[0] for c in BAD_HANDSHAKES])
def test_reject_handshake(method: str, version: str, headers: list[tuple[str, str]],
                          reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        accept_handshake(method, version, headers)
    # RFC 6455 §4.4: a version gkit does not speak is 426 Upgrade Required
    wrong_version = reason.startswith("got ")
    assert info.value.status_hint == (426 if wrong_version else 400)
    assert reason in info.value.reason


@pytest.mark.parametrize("offered, chosen, expected", [
    (None, "chat", None),
    ("chat", "chat", "chat"),
    ("superchat, chat", "chat", "chat"),
    ("superchat", "chat", None),
    ("Chat", "chat", None),  # subprotocol names are case-sensitive
    ("chat", None, None),
])
def test_subprotocol(offered: str | None, chosen: str | None, expected: str | None) -> None:
    headers = REQUEST + ([("Sec-WebSocket-Protocol", offered)] if offered else [])
    response, _ = handshake(headers, subprotocol=chosen)
    lines = [h for h in response_headers(response) if h.startswith("Sec-WebSocket-Protocol")]
    assert lines == ([f"Sec-WebSocket-Protocol: {expected}"] if expected else [])


def test_subprotocol_offered_on_two_lines() -> None:
    headers = REQUEST + [("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b, c")]
    response, _ = handshake(headers, subprotocol="c")
    assert "Sec-WebSocket-Protocol: c" in response_headers(response)


def test_extra_headers_come_last_in_order() -> None:
    response, _ = handshake(extra_headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                           ("Server", "gkit")])
    assert response_headers(response)[-3:] == ["Set-Cookie: a=1", "Set-Cookie: b=2",
                                               "Server: gkit"]


@pytest.mark.parametrize("name, value", [
    ("X-Evil", "a\r\nSet-Cookie: x=1"),
    ("X-Evil", "a\nb"),
    ("X-Evil", "a\rb"),
    ("X-Evil", "a\x00b"),
    ("X-Evil\r\nSet-Cookie", "x"),
    ("Bad Name", "x"),
    ("", "x"),
    ("X-Unicode", "snow ☃"),
    ("Upgrade", "h2c"),
    ("Sec-WebSocket-Accept", "x"),
    ("sec-websocket-protocol", "chat"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("Connection", "close"),
])
def test_extra_headers_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        handshake(extra_headers=[(name, value)])


def test_extra_header_with_tab_and_latin1_is_kept() -> None:
    response, _ = handshake(extra_headers=[("X-Note", "caf\xe9\tok")])
    assert response.endswith(b"X-Note: caf\xe9\tok\r\n\r\n")


DEFLATE_OFFERS = [
    # (offer header values, the Sec-WebSocket-Extensions answer or None, DeflateParams or None)
    (["permessage-deflate"], "permessage-deflate", DeflateParams()),
    # window sizes: never above 12 bits, to keep the memory per connection small
    (["permessage-deflate; client_max_window_bits"],
     "permessage-deflate; client_max_window_bits=12", DeflateParams(client_max_window_bits=12)),
    (["permessage-deflate; client_max_window_bits=15"],
     "permessage-deflate; client_max_window_bits=12", DeflateParams(client_max_window_bits=12)),
    (["permessage-deflate; client_max_window_bits=10"],
     "permessage-deflate; client_max_window_bits=10", DeflateParams(client_max_window_bits=10)),
    (['permessage-deflate; client_max_window_bits="10"'],
     "permessage-deflate; client_max_window_bits=10", DeflateParams(client_max_window_bits=10)),
    (["permessage-deflate; server_max_window_bits=11"],
     "permessage-deflate; server_max_window_bits=11", DeflateParams(server_max_window_bits=11)),
    (["permessage-deflate; server_max_window_bits=15"],
     "permessage-deflate; server_max_window_bits=12", DeflateParams(server_max_window_bits=12)),
    (["permessage-deflate; server_max_window_bits=9; client_max_window_bits"],
     "permessage-deflate; client_max_window_bits=12; server_max_window_bits=9",
     DeflateParams(server_max_window_bits=9, client_max_window_bits=12)),
    (["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
     "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
     DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True)),
    (["PerMessage-Deflate ; Server_No_Context_Takeover"],
     "permessage-deflate; server_no_context_takeover",
     DeflateParams(server_no_context_takeover=True)),
    # declined offers: unknown, repeated or invalid parameters (RFC 7692 §5, §7.1)
    (["permessage-deflate; foo"], None, None),
    (["permessage-deflate; server_max_window_bits"], None, None),
    (["permessage-deflate; server_max_window_bits=16"], None, None),
    (["permessage-deflate; server_max_window_bits=010"], None, None),
    (["permessage-deflate; client_max_window_bits=7"], None, None),
    (["permessage-deflate; server_no_context_takeover=1"], None, None),
    (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None, None),
    # zlib cannot compress with an 8-bit window, so that offer is declined; the next one is taken
    (["permessage-deflate; server_max_window_bits=8"], None, None),
    (["permessage-deflate; server_max_window_bits=8, permessage-deflate"],
     "permessage-deflate", DeflateParams()),
    (["x-webkit-deflate-frame", "permessage-deflate; client_max_window_bits"],
     "permessage-deflate; client_max_window_bits=12", DeflateParams(client_max_window_bits=12)),
    (["x-webkit-deflate-frame"], None, None),
    ([], None, None),
]


@pytest.mark.parametrize("offers, answer, params", DEFLATE_OFFERS)
def test_deflate_negotiation(offers: list[str], answer: str | None,
                             params: DeflateParams | None) -> None:
    headers = REQUEST + [("Sec-WebSocket-Extensions", offer) for offer in offers]
    response, ws = handshake(headers, deflate=True)
    lines = [h for h in response_headers(response) if h.startswith("Sec-WebSocket-Extensions")]
    assert lines == ([f"Sec-WebSocket-Extensions: {answer}"] if answer else [])
    assert ws.deflate == params


def test_deflate_not_negotiated_when_disabled() -> None:
    headers = REQUEST + [("Sec-WebSocket-Extensions", "permessage-deflate")]
    response, ws = handshake(headers, deflate=False)
    assert "Sec-WebSocket-Extensions" not in response.decode()
    assert ws.deflate is None
    # and an RSV1 frame is then a protocol error
    assert ws.receive_data(client_frame(0x1, deflated(b"hi"), rsv=0x40)) == [
        Closed(1002, "reserved bits set without an extension that uses them")]


def test_handshake_passes_max_message() -> None:
    _, ws = handshake(max_message=3)
    assert ws.receive_data(text("abcd")) == [Closed(1009, "message over 3 bytes")]


# -- receiving messages -----------------------------------------------------------------------


@pytest.mark.parametrize("frames, events", [
    (text("Hello"), [Message("Hello")]),
    (client_frame(0x2, b"\x00\xff"), [Message(b"\x00\xff")]),
    (text(""), [Message("")]),
    (client_frame(0x2, b""), [Message(b"")]),
    (text("κόσμε"), [Message("κόσμε")]),
    (client_frame(0x1, b"x" * 125), [Message("x" * 125)]),
    (client_frame(0x1, b"x" * 126), [Message("x" * 126)]),
    (client_frame(0x2, b"y" * 65535), [Message(b"y" * 65535)]),
    (client_frame(0x2, b"z" * 65536), [Message(b"z" * 65536)]),
    (client_frame(0x2, bytes(range(256)) * 20), [Message(bytes(range(256)) * 20)]),
    (text("a") + client_frame(0x2, b"b") + text("c"), [Message("a"), Message(b"b"), Message("c")]),
    (client_frame(0x2, b"\x00\x01\x02\x03\x04", mask=b"\x00\x00\x00\x00"),
     [Message(b"\x00\x01\x02\x03\x04")]),
    # fragments, with control frames between them
    (text("Hel", fin=False) + client_frame(0x0, b"lo"), [Message("Hello")]),
    (text("Hel", fin=False) + client_frame(0x9, b"ping") + client_frame(0x0, b"lo", fin=False)
     + client_frame(0xA, b"pong") + client_frame(0x0, b""),
     [Ping(b"ping"), Pong(b"pong"), Message("Hello")]),
    (client_frame(0x2, b"", fin=False) + client_frame(0x0, b"", fin=False)
     + client_frame(0x0, b"ab"), [Message(b"ab")]),
    # a character split between fragments
    (client_frame(0x1, b"\xce", fin=False) + client_frame(0x0, b"\xba"), [Message("κ")]),
    (client_frame(0x1, b"\xf0\x9f", fin=False) + client_frame(0x0, b"\x98", fin=False)
     + client_frame(0x0, b"\x80!"), [Message("😀!")]),
    (client_frame(0x2, b"big" * 30000, fin=False) + client_frame(0x0, b"ger"),
     [Message(b"big" * 30000 + b"ger")]),
], ids=lambda v: None)
def test_messages(frames: bytes, events: list[object]) -> None:
    ws = WsSession()
    assert ws.receive_data(frames) == events
    pongs = b"".join(server_frame(0x8A, e.data) for e in events if isinstance(e, Ping))
    assert ws.data_to_send() == pongs
    assert ws.is_open


def test_ping_is_answered_with_the_same_data() -> None:
    ws = WsSession()
    assert ws.receive_data(client_frame(0x9, b"hello")) == [Ping(b"hello")]
    assert ws.data_to_send() == b"\x8a\x05hello"
    assert ws.data_to_send() == b""
    assert ws.receive_data(client_frame(0x9) + client_frame(0x9, b"x" * 125)) == [
        Ping(b""), Ping(b"x" * 125)]
    assert ws.data_to_send() == b"\x8a\x00" + b"\x8a\x7d" + b"x" * 125


def test_pong_is_reported_and_not_answered() -> None:
    ws = WsSession()
    assert ws.receive_data(client_frame(0xA, b"beat")) == [Pong(b"beat")]
    assert ws.data_to_send() == b""


def test_accepts_non_minimal_looking_but_valid_long_lengths() -> None:
    # 126 in the 2-byte form and 65536 in the 8-byte form are the shortest forms.
    ws = WsSession()
    assert ws.receive_data(client_frame(0x2, b"a" * 126, long=2)) == [Message(b"a" * 126)]
    assert ws.receive_data(client_frame(0x2, b"b" * 65536, long=8)) == [Message(b"b" * 65536)]


def test_memoryview_and_bytearray_input() -> None:
    ws = WsSession()
    assert ws.receive_data(memoryview(text("mv"))) == [Message("mv")]
    assert ws.receive_data(bytearray(text("ba"))) == [Message("ba")]


KOSME = text("κόσ", fin=False) + client_frame(0x9, b"p1") + client_frame(0x0, "με".encode())
STREAM = (text("first") + client_frame(0x2, bytes(range(256)) * 9) + KOSME
          + client_frame(0x2, b"x" * 70000) + client_frame(0xA, b"p2")
          + client_frame(0x1, b"", fin=False) + client_frame(0x0, b"\xe2\x82", fin=False)
          + client_frame(0x0, b"\xac") + close(1000, b"done"))
STREAM_EVENTS = [Message("first"), Message(bytes(range(256)) * 9), Ping(b"p1"),
                 Message("κόσμε"), Message(b"x" * 70000), Pong(b"p2"), Message("€"),
                 Closed(1000, "done")]


def feed(ws: WsSession, data: bytes, cuts: list[int]) -> list[object]:
    events: list[object] = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        events += ws.receive_data(data[start:cut]) if cut > start else []
        start = cut
    return events


@pytest.mark.parametrize("seed", range(12))
def test_any_split_of_the_input_gives_the_same_events(seed: int) -> None:
    rng = random.Random(seed)
    cuts = rng.sample(range(1, len(STREAM)), rng.choice([1, 5, 50, 500]))
    ws = WsSession()
    assert feed(ws, STREAM, cuts) == STREAM_EVENTS
    assert ws.data_to_send() == server_frame(0x8A, b"p1") + server_close(1000)


def test_byte_by_byte_input() -> None:
    data = (text("first") + client_frame(0x2, bytes(range(256)) * 3) + KOSME
            + client_frame(0x2, b"w" * 300) + close(1001))
    ws = WsSession()
    events = feed(ws, data, list(range(1, len(data))))
    assert events == [Message("first"), Message(bytes(range(256)) * 3), Ping(b"p1"),
                      Message("κόσμε"), Message(b"w" * 300), Closed(1001, "")]
    assert ws.data_to_send() == server_frame(0x8A, b"p1") + server_close(1001)


def test_events_come_as_soon_as_their_frame_is_complete() -> None:
    ws = WsSession()
    frame = text("hello") + client_frame(0x9, b"p")
    assert ws.receive_data(frame[:10]) == []
    assert ws.receive_data(frame[10:11]) == [Message("hello")]
    assert ws.receive_data(frame[11:-1]) == []
    assert ws.receive_data(frame[-1:]) == [Ping(b"p")]


# -- failing the connection -------------------------------------------------------------------

IN_PROGRESS = text("part", fin=False)

FAILURES = [
    # (id, input, close code, events before the Closed event)
    ("rsv1-no-extension", client_frame(0x1, b"x", rsv=0x40), 1002, []),
    ("rsv2", client_frame(0x1, b"x", rsv=0x20), 1002, []),
    ("rsv3", client_frame(0x2, b"x", rsv=0x10), 1002, []),
    ("rsv-on-ping", client_frame(0x9, b"x", rsv=0x40), 1002, []),
    ("unmasked-text", client_frame(0x1, b"hi", mask=None), 1002, []),
    ("unmasked-close", client_frame(0x8, b"\x03\xe8", mask=None), 1002, []),
    ("orphan-continuation", client_frame(0x0, b"x"), 1002, []),
    ("orphan-final-continuation", text("a") + client_frame(0x0, b"x"), 1002, [Message("a")]),
    ("text-inside-fragmented", IN_PROGRESS + text("new"), 1002, []),
    ("binary-inside-fragmented", IN_PROGRESS + client_frame(0x2, b"new"), 1002, []),
    ("ping-126-bytes", client_frame(0x9, b"x" * 126), 1002, []),
    ("close-126-bytes", client_frame(0x8, b"\x03\xe8" + b"x" * 124), 1002, []),
    ("ping-fragmented", client_frame(0x9, b"x", fin=False), 1002, []),
    ("pong-fragmented", IN_PROGRESS + client_frame(0xA, b"", fin=False), 1002, []),
    ("close-fragmented", client_frame(0x8, b"\x03\xe8", fin=False), 1002, []),
    *[(f"opcode-{op:#x}", client_frame(op, b"x"), 1002, []) for op in (3, 4, 5, 6, 7)],
    *[(f"opcode-{op:#x}", client_frame(op), 1002, []) for op in (0xB, 0xC, 0xD, 0xE, 0xF)],
    ("opcode-after-message", text("ok") + client_frame(0xB), 1002, [Message("ok")]),
    ("length-16-not-minimal", client_frame(0x2, b"x" * 5, long=2), 1002, []),
    ("length-64-not-minimal", client_frame(0x2, b"x" * 200, long=8), 1002, []),
    ("length-64-msb", client_frame(0x2, length=1 << 63, long=8), 1002, []),
    ("close-1-byte", client_frame(0x8, b"\x03"), 1002, []),
    *[(f"close-code-{code}", close(code), 1002, [])
      for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)],
    ("text-bad-utf8", client_frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
                                   b"edited"), 1007, []),
    ("text-overlong", client_frame(0x1, b"\xc0\xaf"), 1007, []),
    ("text-truncated", client_frame(0x1, b"ab\xe2\x82"), 1007, []),
    ("text-fragments-truncated", text("ab", fin=False) + client_frame(0x0, b"\xe2\x82"), 1007, []),
    ("text-latin1", client_frame(0x1, "café".encode("latin-1")), 1007, []),
    ("close-reason-bad-utf8", close(1000, b"\xff"), 1007, []),
    ("close-reason-surrogate", close(1000, b"\xed\xa0\x80"), 1007, []),
    ("message-too-big", client_frame(0x2, b"x" * 101), 1009, []),
    ("fragments-too-big", client_frame(0x2, b"x" * 60, fin=False) + client_frame(0x0, b"x" * 41),
     1009, []),
    ("fragments-too-big-later", client_frame(0x1, b"x" * 50, fin=False)
     + client_frame(0x0, b"x" * 50, fin=False) + client_frame(0x0, b"x"), 1009, []),
]
MAX = 100  # max_message in the failure table


@pytest.mark.parametrize("data, code, before", [c[1:] for c in FAILURES],
                         ids=[c[0] for c in FAILURES])
def test_failures(data: bytes, code: int, before: list[object]) -> None:
    ws = WsSession(max_message=MAX)
    events = ws.receive_data(data)
    assert events[:-1] == before
    closed = events[-1]
    assert isinstance(closed, Closed) and closed.code == code and closed.reason
    assert ws.data_to_send() == server_close(code, closed.reason)
    assert ws.closed and not ws.is_open
    # nothing more is parsed, nothing more is sent
    assert ws.receive_data(text("late")) == []
    assert ws.receive_data(None) == []
    assert ws.send_message("late") == b"" and ws.send_close() == b"" and ws.send_ping() == b""
    assert ws.data_to_send() == b""


WSPROTO_DIFFERS = {
    # wsproto has no message size limit
    "message-too-big", "fragments-too-big", "fragments-too-big-later",
}


@pytest.mark.parametrize("data, code", [c[1:3] for c in FAILURES if c[0] not in WSPROTO_DIFFERS],
                         ids=[c[0] for c in FAILURES if c[0] not in WSPROTO_DIFFERS])
def test_wsproto_agrees_on_failures(data: bytes, code: int) -> None:
    conn = wsproto.Connection(wsproto.ConnectionType.SERVER)
    conn.receive_data(data)
    last = list(conn.events())[-1]
    assert isinstance(last, wsproto.events.CloseConnection)
    assert last.code == code


def random_frame(rng: random.Random) -> bytes:
    """A frame that is often valid and sometimes not, in every way the table above covers."""
    op = rng.choice([0, 1, 2, 8, 9, 10, 0, 1, 2, 3, 11])
    if op == 8 and rng.random() < 0.8:
        # 1014 is left out: wsproto predates its registration and refuses it
        code = rng.choice([1000, 1001, 1002, 1005, 999, 3000, 4999, 5000, 1016])
        payload = struct.pack("!H", code) + rng.choice([b"", b"ok", b"\xff", "é".encode()])
    elif rng.random() < 0.3:
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
    elif rng.random() < 0.6:
        payload = rng.choice(["κόσμε", "abc", "€", "😀"]).encode()[:rng.randrange(1, 6)]
    else:
        payload = b"x" * rng.choice([0, 1, 125, 126, 200, 70000])
    return client_frame(op, payload, fin=rng.random() < 0.7,
                        rsv=rng.choice([0] * 8 + [0x40, 0x20, 0x10]),
                        mask=bytes(rng.randrange(256) for _ in range(4)) if rng.random() < 0.97
                        else None)


def wsproto_events(chunks: list[bytes]) -> list[object]:
    """What wsproto makes of the same input, in this module's terms."""
    conn = wsproto.Connection(wsproto.ConnectionType.SERVER)
    events: list[object] = []
    parts: list[Any] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for e in conn.events():
            if isinstance(e, wsproto.events.Message):
                parts.append(e.data)
                if e.message_finished:
                    joined = "".join(parts) if isinstance(e, wsproto.events.TextMessage) \
                        else b"".join(parts)
                    events.append(Message(joined))
                    parts = []
            elif isinstance(e, wsproto.events.Ping):
                events.append(Ping(bytes(e.payload)))
            elif isinstance(e, wsproto.events.Pong):
                events.append(Pong(bytes(e.payload)))
            elif isinstance(e, wsproto.events.CloseConnection):
                return events + [int(e.code)]
    return events


@pytest.mark.parametrize("seed", range(0, 600, 100))
def test_random_streams_agree_with_wsproto(seed: int) -> None:
    for case in range(seed, seed + 100):
        rng = random.Random(case)
        data = b"".join(random_frame(rng) for _ in range(rng.randrange(1, 8)))
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(6))))
        chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        ws = WsSession(max_message=1 << 40)
        events: list[object] = []
        for chunk in chunks:
            events += [e.code if isinstance(e, Closed) else e for e in ws.receive_data(chunk)]
        assert events == wsproto_events(chunks), f"random.Random({case})"


@pytest.mark.parametrize("data, code", [
    # Autobahn 6.4.x: invalid UTF-8 fails the connection as soon as it arrives, before the
    # rest of the message (which would never come from a stalled peer).
    (client_frame(0x1, "κόσμε".encode(), fin=False) + client_frame(0x0, b"\xf4\x90\x80\x80",
                                                                    fin=False), 1007),
    (client_frame(0x1, b"ok\xf4\x90", fin=False), 1007),
    (client_frame(0x1, b"ok\xed\xa0", fin=False), 1007),  # a surrogate, two bytes in
    (client_frame(0x1, b"ok\xc0", fin=False), 1007),
    # Header only: a frame announcing more than the limit fails before its payload arrives.
    (client_frame(0x2, length=MAX + 1), 1009),
    (client_frame(0x2, length=1 << 40, long=8), 1009),
])
def test_fail_fast(data: bytes, code: int) -> None:
    ws = WsSession(max_message=MAX)
    assert [e.code for e in ws.receive_data(data) if isinstance(e, Closed)] == [code]


def test_fail_fast_inside_one_frame_arriving_in_pieces() -> None:
    frame = client_frame(0x1, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"x" * 50)
    ws = WsSession()
    assert ws.receive_data(frame[:8]) == []
    assert ws.receive_data(frame[8:20]) == [Closed(1007, "invalid UTF-8 in a text message")]


def test_message_of_exactly_max_message_is_accepted() -> None:
    ws = WsSession(max_message=MAX)
    assert ws.receive_data(client_frame(0x2, b"x" * MAX)) == [Message(b"x" * MAX)]
    assert ws.receive_data(client_frame(0x1, b"y" * 40, fin=False) + client_frame(0x0, b"y" * 60)
                           ) == [Message("y" * MAX)]
    # the count starts again for each message
    assert ws.receive_data(client_frame(0x2, b"z" * MAX)) == [Message(b"z" * MAX)]


def test_large_frame_is_taken_as_it_arrives() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    frame = client_frame(0x2, payload)
    ws = WsSession(max_message=len(payload))
    for start in range(0, len(frame) - 65536, 65536):
        assert ws.receive_data(frame[start:start + 65536]) == []
    assert ws.receive_data(frame[start + 65536:]) == [Message(payload)]


def test_invalid_max_message() -> None:
    with pytest.raises(ValueError):
        WsSession(max_message=0)


# -- closing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_peer_close_is_echoed(code: int) -> None:
    ws = WsSession()
    assert ws.receive_data(close(code, b"bye")) == [Closed(code, "bye")]
    assert ws.data_to_send() == server_frame(0x88, struct.pack("!H", code))
    assert ws.closed and not ws.is_open


def test_peer_close_without_code() -> None:
    ws = WsSession()
    assert ws.receive_data(close()) == [Closed(1005, "")]
    assert ws.data_to_send() == b"\x88\x00"
    assert close_status(1005) == "normal"


def test_peer_close_with_utf8_reason_of_123_bytes() -> None:
    reason = "é" * 61 + "x"
    ws = WsSession()
    assert ws.receive_data(close(1000, reason.encode())) == [Closed(1000, reason)]


def test_data_after_close_frame_is_ignored() -> None:
    ws = WsSession()
    assert ws.receive_data(text("a") + close(1000) + text("b") + client_frame(0x9)) == [
        Message("a"), Closed(1000, "")]
    assert ws.data_to_send() == server_close(1000)
    assert ws.receive_data(text("c")) == []


def test_local_close_then_peer_reply() -> None:
    ws = WsSession()
    assert ws.send_close(1001, "server stopping") == server_close(1001, "server stopping")
    assert not ws.is_open and not ws.closed
    assert ws.send_close() == b""
    assert ws.send_message("x") == b"" and ws.send_ping(b"x") == b""
    # the peer may still send what it sent before seeing our close; pings get no pong now
    assert ws.receive_data(text("in flight") + client_frame(0x9, b"p")) == [
        Message("in flight"), Ping(b"p")]
    assert ws.receive_data(close(1001)) == [Closed(1001, "")]
    assert ws.data_to_send() == b""  # no second close frame
    assert ws.closed


def test_local_close_then_peer_fails() -> None:
    ws = WsSession()
    ws.send_close()
    assert ws.receive_data(client_frame(0x1, b"\xff")) == [
        Closed(1007, "invalid UTF-8 in a text message")]
    assert ws.data_to_send() == b""  # our close frame is already out


def test_local_close_sends_queued_pongs_first() -> None:
    ws = WsSession()
    ws.receive_data(client_frame(0x9, b"p"))
    assert ws.send_close(1000) == b"\x8a\x01p" + server_close(1000)
    assert ws.data_to_send() == b""


def test_close_reason_is_cut_at_a_character_boundary() -> None:
    ws = WsSession()
    out = ws.send_close(1000, "é" * 100)
    assert out == server_frame(0x88, b"\x03\xe8" + "é".encode() * 61)
    assert len(out) == 2 + 2 + 122


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_send_close_refuses_invalid_codes(code: int) -> None:
    with pytest.raises(ValueError):
        WsSession().send_close(code)


@pytest.mark.parametrize("data", [None, b""])
def test_eof_without_close_frame(data: bytes | None) -> None:
    ws = WsSession()
    assert ws.receive_data(IN_PROGRESS[:3]) == []
    assert ws.receive_data(data) == [Closed(1006, "")]
    assert ws.data_to_send() == b""
    assert ws.closed
    assert close_status(1006) == "going-away"


def test_eof_after_local_close() -> None:
    ws = WsSession()
    ws.send_close()
    assert ws.receive_data(None) == [Closed(1006, "")]
    assert ws.data_to_send() == b""


@pytest.mark.parametrize("code, status", [
    (1000, "normal"), (1001, "going-away"), (1002, "protocol-error"), (1003, "unsupported"),
    (1007, "invalid-payload-data"), (1008, "policy-violation"), (1009, "message-too-big"),
    (1011, "internal-server-error"), (1005, "normal"), (1006, "going-away"),
    (1010, "unknown"), (1012, "unknown"), (3000, "unknown"), (4999, "unknown"), (0, "unknown"),
])
def test_close_status(code: int, status: str) -> None:
    assert close_status(code) == status


# -- sending ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data, frame", [
    ("hi", b"\x81\x02hi"),
    ("", b"\x81\x00"),
    ("κ", b"\x81\x02\xce\xba"),
    (b"\x00\x01", b"\x82\x02\x00\x01"),
    (b"", b"\x82\x00"),
    (bytearray(b"ba"), b"\x82\x02ba"),
    (memoryview(b"mv"), b"\x82\x02mv"),
    (memoryview(b"abcd")[1:3], b"\x82\x02bc"),
    ("x" * 125, b"\x81\x7d" + b"x" * 125),
    ("x" * 126, b"\x81\x7e\x00\x7e" + b"x" * 126),
    (b"y" * 65535, b"\x82\x7e\xff\xff" + b"y" * 65535),
    (b"z" * 65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + b"z" * 65536),
], ids=lambda v: None)
def test_send_message(data: object, frame: bytes) -> None:
    assert WsSession().send_message(data) == frame  # type: ignore[arg-type]


def test_send_ping_and_pong() -> None:
    ws = WsSession()
    assert ws.send_ping() == b"\x89\x00"
    assert ws.send_ping(b"x" * 125) == b"\x89\x7d" + b"x" * 125
    assert ws.send_pong(b"hb") == b"\x8a\x02hb"
    with pytest.raises(ValueError):
        ws.send_ping(b"x" * 126)


def test_sent_frames_parse_back_with_wsproto() -> None:
    ws = WsSession()
    client = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    client.receive_data(ws.send_message("κόσμε") + ws.send_message(b"\x00" * 70000)
                        + ws.send_ping(b"p") + ws.send_close(1001, "bye"))
    events: list[Any] = list(client.events())
    assert [type(e).__name__ for e in events] == ["TextMessage", "BytesMessage", "Ping",
                                                  "CloseConnection"]
    assert events[0].data == "κόσμε" and events[1].data == b"\x00" * 70000
    assert (events[3].code, events[3].reason) == (1001, "bye")


# -- permessage-deflate -----------------------------------------------------------------------


def test_deflate_receive_with_context_takeover() -> None:
    ws = deflate_session()
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    frames = [client_frame(0x1, deflated(("κόσμε " * 20).encode(), c), rsv=0x40)
              for _ in range(3)]
    assert len(frames[1]) < len(frames[0])  # later messages refer back to earlier ones
    for frame in frames:
        assert ws.receive_data(frame) == [Message("κόσμε " * 20)]
    # an uncompressed message is allowed too (RSV1 clear)
    assert ws.receive_data(client_frame(0x2, b"raw")) == [Message(b"raw")]


def test_deflate_receive_fragmented_and_in_pieces() -> None:
    payload = deflated(b"abc" * 1000)
    frames = (client_frame(0x2, payload[:5], fin=False, rsv=0x40) + client_frame(0x9, b"p")
              + client_frame(0x0, payload[5:9], fin=False) + client_frame(0x0, payload[9:]))
    ws = deflate_session()
    assert feed(ws, frames, list(range(1, len(frames), 3))) == [Ping(b"p"), Message(b"abc" * 1000)]


def test_deflate_client_no_context_takeover() -> None:
    ws = deflate_session(client_no_context_takeover=True)
    for _ in range(2):
        assert ws.receive_data(client_frame(0x1, deflated(b"hello"), rsv=0x40)) == [
            Message("hello")]


def test_deflate_client_ending_streams_with_bfinal() -> None:
    # RFC 7692 §7.2.3.5 lets a client end a message with a final block; the next message
    # then starts a new stream.
    ws = deflate_session()
    for word in (b"one", b"two"):
        c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        payload = c.compress(word) + c.flush(zlib.Z_FINISH)
        assert ws.receive_data(client_frame(0x2, payload, rsv=0x40)) == [Message(word)]


@pytest.mark.parametrize("data, code", [
    (client_frame(0x1, b"\xff\xff\xff\xff", rsv=0x40), 1007),  # not deflate data
    (client_frame(0x1, deflated(b"\xff"), rsv=0x40), 1007),  # deflate of invalid UTF-8
    (client_frame(0x1, deflated(b"x" * 101), rsv=0x40), 1009),
    (client_frame(0x2, deflated(b"x" * 60 + b"y" * 41)[:4], rsv=0x40, fin=False)
     + client_frame(0x0, deflated(b"x" * 60 + b"y" * 41)[4:]), 1009),
    (client_frame(0x2, b"", fin=False, rsv=0x40) + client_frame(0x0, b"x", rsv=0x40), 1002),
    (client_frame(0x9, b"", rsv=0x40), 1002),
    (client_frame(0x2, b"x", rsv=0x60), 1002),
])
def test_deflate_failures(data: bytes, code: int) -> None:
    ws = deflate_session(max_message=MAX)
    events = ws.receive_data(data)
    assert isinstance(events[-1], Closed) and events[-1].code == code
    assert ws.data_to_send() == server_close(code, events[-1].reason)


def test_deflate_client_window_over_the_agreed_size_fails() -> None:
    # The second message points 5000 bytes back into the first: a 13-bit window.
    block = random.Random(1).randbytes(5000)
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    frames = [client_frame(0x2, deflated(block, c), rsv=0x40) for _ in range(2)]
    assert len(frames[1]) < 100
    ws = deflate_session(client_max_window_bits=13)
    assert ws.receive_data(frames[0] + frames[1]) == [Message(block), Message(block)]
    ws = deflate_session(client_max_window_bits=12)
    assert ws.receive_data(frames[0] + frames[1]) == [
        Message(block), Closed(1007, "invalid permessage-deflate data")]


def test_deflate_bomb_is_stopped_at_the_limit() -> None:
    bomb = deflated(b"\x00" * (8 << 20))  # 8 MiB of zeros in about 8 kB
    assert len(bomb) < 10_000
    ws = deflate_session(max_message=1 << 20)
    assert ws.receive_data(client_frame(0x2, bomb, rsv=0x40)) == [
        Closed(1009, "message over 1048576 bytes")]


@pytest.mark.parametrize("params", [{}, {"server_no_context_takeover": True},
                                    {"server_max_window_bits": 9}])
def test_deflate_send(params: dict[str, Any]) -> None:
    ws = deflate_session(**params)
    d = zlib.decompressobj(-15)
    sizes = []
    messages: list[str | bytes] = ["hello " * 50, "hello " * 50, b"\x00\x01" * 10, ""]
    for data in messages:
        frame = ws.send_message(data)
        assert frame[0] == (0xC1 if isinstance(data, str) else 0xC2)
        n = frame[1]
        payload = frame[2:] if n < 126 else frame[4:]
        assert n == len(payload) or n == 126
        if params.get("server_no_context_takeover"):
            d = zlib.decompressobj(-15)  # each message must inflate on its own
        out = d.decompress(payload + TAIL)
        assert out == (data.encode() if isinstance(data, str) else data)
        sizes.append(len(payload))
    if not params:
        assert sizes[1] < sizes[0]  # the second copy refers back to the first
    assert ws.send_ping(b"p") == b"\x89\x01p"  # control frames are never compressed


def test_deflate_round_trip_with_wsproto_client() -> None:
    from wsproto.extensions import PerMessageDeflate

    headers = REQUEST + [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    response, ws = handshake(headers, deflate=True)
    answer = next(h for h in response_headers(response) if h.startswith("Sec-WebSocket-Ext"))
    ext = PerMessageDeflate()
    ext.finalize(answer.split(": ", 1)[1])
    client = wsproto.Connection(wsproto.ConnectionType.CLIENT, extensions=[ext])
    messages: list[str | bytes] = ["κόσμε" * 100, b"\x00" * 5000, "short"]
    for message in messages:
        event = (wsproto.events.TextMessage(data=message) if isinstance(message, str)
                 else wsproto.events.BytesMessage(data=message))
        assert ws.receive_data(client.send(event)) == [Message(message)]
        client.receive_data(ws.send_message(message))
        (echo,) = list(client.events())
        assert isinstance(echo, wsproto.events.Message)
        assert echo.data == message


# -- the module stays sans-IO -----------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_no_io(module: str) -> None:
    tree = ast.parse((PROTO_DIR / module).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and not node.level}
    assert not imported & {"gevent", "socket", "time", "select", "ssl", "asyncio", "threading"}


def test_import_loads_no_gevent_or_socket() -> None:
    # gkit/__init__.py imports the server, so load gkit.proto on its own.
    code = ("import sys, types; pkg = types.ModuleType('gkit'); pkg.__path__ = [sys.argv[1]]; "
            "sys.modules['gkit'] = pkg; import gkit.proto.websocket; "
            "print(sorted(m for m in ('gevent', 'socket', 'select', 'ssl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(PROTO_DIR.parent)], check=True,
                         capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert out.stdout.strip() == "[]"
