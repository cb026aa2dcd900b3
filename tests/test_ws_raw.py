"""WebSocket on the wire, with a raw client sending hand-built frames (issue 3, point 2).

Every protocol violation must end with the exact close code of RFC 6455
(1002 protocol error, 1007 invalid payload data, 1009 message too big), the
matching ``on_close`` status, and the TCP connection closed. Valid traffic
(fragments, interleaved control frames, close handshakes) must come back as
exact frames. Bad opening handshakes get exactly 400. Both HTTP engines.
"""
import queue
import struct

import gevent
import pytest

from gkit import with_channel
from helpers import parse_responses, send_raw
from wshelpers import (BINARY, CLOSE, CONT, PING, PONG, SAMPLE_ACCEPT, SAMPLE_KEY, TEXT, RawWs,
                       close_payload, frame, handshake_request, server_frame)

WAIT = 10

STATUS = {1002: "protocol-error", 1007: "invalid-payload-data", 1009: "message-too-big"}


class Closes:
    def __init__(self):
        self.q = queue.Queue()

    def put(self, status):
        self.q.put(status)

    def get(self, timeout=WAIT):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"on_close did not run within {timeout} s") from None


@pytest.fixture
def closes():
    return Closes()


@pytest.fixture
def echo(serve, closes):
    """An echo server; a text message "close-me" makes the app close the channel."""
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(closes.put)

        def on_receive(message):
            if message == "close-me":
                ch.close()
            else:
                ch.send(message)
        ch.on_receive(on_receive)
        return ch

    def start(**options):
        return serve(app, **options)
    return start


def assert_fails_with(ws, code, closes):
    """The server's next frame is a close frame with ``code``, then it closes TCP."""
    f = ws.recv_frame()
    assert (f.opcode, f.fin, f.rsv, f.masked) == (CLOSE, True, 0, False), f
    assert f.close_code == code, f"close code {f.close_code} ({f.close_reason!r}), expected {code}"
    f.close_reason.decode("utf-8")          # a valid UTF-8 reason, if any
    assert len(f.payload) <= 125
    ws.assert_tcp_closed()
    assert closes.get() == STATUS[code]


# -- protocol violations ----------------------------------------------------------------

M = b"\x01\x02\x03\x04"

VIOLATIONS = [
    # (id, bytes the client sends, close code)
    ("rsv1", frame(TEXT, b"hi", rsv=4), 1002),
    ("rsv2", frame(TEXT, b"hi", rsv=2), 1002),
    ("rsv3", frame(BINARY, b"hi", rsv=1), 1002),
    ("rsv-on-ping", frame(PING, b"hi", rsv=4), 1002),
    ("unmasked", frame(TEXT, b"hi", mask=None), 1002),
    ("unmasked-ping", frame(PING, b"", mask=None), 1002),
    ("orphan-continuation", frame(CONT, b"hi"), 1002),
    ("orphan-final-continuation", frame(CONT, b"", fin=True), 1002),
    ("new-text-inside-fragmented", frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    ("new-binary-inside-fragmented", frame(BINARY, b"a", fin=False) + frame(BINARY, b"b"), 1002),
    ("ping-126-bytes", frame(PING, b"p" * 126), 1002),
    ("close-126-bytes", frame(CLOSE, b"\x03\xe8" + b"r" * 124), 1002),
    ("fragmented-ping", frame(PING, b"p", fin=False), 1002),
    ("fragmented-close", frame(CLOSE, b"\x03\xe8", fin=False), 1002),
    ("length-msb-set", bytes((0x82, 0xFF)) + struct.pack("!Q", 1 << 63) + M, 1002),
    ("invalid-utf8", frame(TEXT, b"\xff"), 1007),
    ("invalid-utf8-overlong", frame(TEXT, b"\xc0\xaf"), 1007),
    ("invalid-utf8-surrogate", frame(TEXT, b"\xed\xa0\x80"), 1007),
    ("invalid-utf8-split", frame(TEXT, b"\xce", fin=False) + frame(CONT, b"\xff"), 1007),
    ("invalid-utf8-in-first-fragment-fails-fast", frame(TEXT, b"ok\xff", fin=False), 1007),
    ("utf8-cut-at-end", frame(TEXT, b"ok\xce"), 1007),
    ("utf8-cut-at-end-fragmented", frame(TEXT, b"\xe2\x98", fin=False) + frame(CONT, b""), 1007),
    ("close-payload-1-byte", frame(CLOSE, b"\x03"), 1002),
    ("close-reason-invalid-utf8", frame(CLOSE, b"\x03\xe8\xff\xfe"), 1007),
] + [(f"opcode-{op:#x}", frame(op, b"x"), 1002) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)] \
  + [(f"close-code-{code}", frame(CLOSE, close_payload(code)), 1002)
     for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)]


@pytest.mark.parametrize("data, code", [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_violation_gets_exact_close_code_and_tcp_close(echo, closes, data, code):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(data)
        assert_fails_with(ws, code, closes)


@pytest.mark.parametrize("data, code", [v[1:] for v in VIOLATIONS[:6] + VIOLATIONS[15:17]],
                         ids=[v[0] for v in VIOLATIONS[:6] + VIOLATIONS[15:17]])
def test_violation_after_valid_traffic(echo, closes, data, code):
    """A violation later in the stream: what came before is answered, then the close."""
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(TEXT, b"fine"))
        assert ws.recv_frame().payload == b"fine"
        ws.send(data)
        assert_fails_with(ws, code, closes)


def test_violation_byte_by_byte(echo, closes):
    """The invalid UTF-8 of a split message arriving one byte per write."""
    server = echo()
    with RawWs(server.port) as ws:
        for byte in frame(TEXT, b"\xce", fin=False) + frame(CONT, b"\xbaa\xff"):
            ws.send(bytes([byte]))
        assert_fails_with(ws, 1007, closes)


# -- message size ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    frame(BINARY, b"x" * 1001),
    frame(TEXT, b"x" * 600, fin=False) + frame(CONT, b"x" * 401),
    frame(BINARY, b"x" * 500, fin=False) + frame(CONT, b"x" * 500, fin=False) + frame(CONT, b"x"),
    # Refused from the header alone: none of the 2 MB payload is ever sent.
    bytes((0x82, 0xFF)) + struct.pack("!Q", 2_000_000) + M,
], ids=["single-frame", "two-fragments", "three-fragments", "header-only"])
def test_max_ws_1009(echo, closes, data):
    server = echo(max_ws=1000)
    with RawWs(server.port) as ws:
        ws.send(frame(TEXT, b"y" * 400, fin=False) + frame(CONT, b"y" * 600))   # exactly 1000
        assert ws.recv_message() == (TEXT, b"y" * 1000)
        ws.send(data)
        assert_fails_with(ws, 1009, closes)


# -- valid traffic, exact frames ----------------------------------------------------------------------

def test_fragmented_message_with_interleaved_pings(echo):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(TEXT, b"Hel", fin=False) + frame(PING, b"p1") + frame(CONT, b"lo ", fin=False)
                + frame(PING, b"p2") + frame(CONT, b"w\xc3", fin=False) + frame(CONT, b"\xb6rld"))
        assert ws.recv_raw(4) == server_frame(PONG, b"p1")
        assert ws.recv_raw(4) == server_frame(PONG, b"p2")
        expected = "Hello w\u00f6rld".encode("utf-8")
        assert ws.recv_raw(2 + len(expected)) == server_frame(TEXT, expected)


def test_fragmented_binary_byte_by_byte(echo):
    server = echo()
    with RawWs(server.port) as ws:
        data = frame(BINARY, b"\x00\x01", fin=False) + frame(PING, b"") + frame(CONT, b"\x02" * 300)
        for byte in data:
            ws.send(bytes([byte]))
        assert ws.recv_raw(2) == server_frame(PONG, b"")
        assert ws.recv_raw(4 + 302) == server_frame(BINARY, b"\x00\x01" + b"\x02" * 300)


def test_ping_pong_exact_and_unsolicited_pong_ignored(echo):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(PONG, b"unsolicited") + frame(PING, b"x" * 125) + frame(TEXT, b"after"))
        assert ws.recv_raw(2 + 125) == server_frame(PONG, b"x" * 125)
        assert ws.recv_raw(7) == server_frame(TEXT, b"after")


def test_frames_sent_with_the_handshake(echo):
    """Bytes after the upgrade request in the same write go straight to the session."""
    server = echo()
    with RawWs(server.port, first=frame(TEXT, b"early") + frame(PING, b"pp")) as ws:
        got = [ws.recv_frame() for _ in range(2)]
    assert sorted((f.opcode, f.payload) for f in got) == [(TEXT, b"early"), (PONG, b"pp")]


def test_medium_and_large_lengths(echo):
    server = echo()
    with RawWs(server.port) as ws:
        for n in (125, 126, 65535, 65536, 200_000):
            ws.send(frame(BINARY, b"L" * n))
            assert ws.recv_raw(len(server_frame(BINARY, b"L" * n))) == server_frame(BINARY, b"L" * n)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_client_close_with_valid_code_is_echoed(echo, closes, code):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(CLOSE, close_payload(code, "bye \u2603".encode("utf-8"))))
        f = ws.recv_frame()
        assert (f.opcode, f.close_code) == (CLOSE, code)
        ws.assert_tcp_closed()
    assert closes.get() == {1000: "normal", 1001: "going-away", 1002: "protocol-error",
                            1003: "unsupported", 1007: "invalid-payload-data",
                            1008: "policy-violation", 1009: "message-too-big",
                            1011: "internal-server-error"}.get(code, "unknown")


def test_client_close_without_code(echo, closes):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(CLOSE, b""))
        assert ws.recv_raw(2) == server_frame(CLOSE, b"")
        ws.assert_tcp_closed()
    closes.get()     # runs once; the status for "no code" is not fixed by the API


def test_server_close_handshake(echo, closes):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(TEXT, b"close-me"))
        f = ws.recv_frame()
        assert (f.opcode, f.close_code) == (CLOSE, 1000)
        assert closes.get() == "server-close"
        # A ping after the server's close frame gets no pong: nothing follows a close frame.
        ws.send(frame(PING, b"late") + frame(TEXT, b"late"))
        ws.send(frame(CLOSE, close_payload(1000)))   # the client's reply
        ws.assert_tcp_closed()
    assert closes.q.empty()                          # on_close ran once


@pytest.mark.timeout(40)
def test_server_close_without_client_reply_still_ends_tcp(echo, closes):
    server = echo()
    with RawWs(server.port, timeout=30) as ws:
        ws.send(frame(TEXT, b"close-me"))
        assert ws.recv_frame().close_code == 1000
        ws.assert_tcp_closed(timeout=30)


def test_data_after_close_is_ignored(echo, closes):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(CLOSE, close_payload(1000)) + frame(TEXT, b"too late"))
        assert ws.recv_raw(4) == server_frame(CLOSE, close_payload(1000))
        ws.assert_tcp_closed()
    assert closes.get() == "normal"


# -- the opening handshake ------------------------------------------------------------------------

def test_handshake_101_exact(serve):
    def app(environ, start_response):
        return with_channel(environ)

    server = serve(app)
    with RawWs(server.port, key=SAMPLE_KEY) as ws:
        assert ws.status_line == "HTTP/1.1 101 Switching Protocols"
        assert ws.header("upgrade").lower() == "websocket"
        assert ws.header("connection").lower() == "upgrade"
        assert ws.header("sec-websocket-accept") == SAMPLE_ACCEPT
        assert ws.header("sec-websocket-protocol") is None
        assert ws.header("sec-websocket-extensions") is None
        assert ws.header("content-length") is None
        assert ws.header("transfer-encoding") is None


def test_upgrade_with_expect_100_continue_gets_101_and_no_100(echo):
    """Issue 8 point 13, decided: a WebSocket handshake has no content, and
    RFC 9110 §10.1.1 lets a server omit 100 (Continue) when the framing says
    there is none (a client must not even send the expectation then); RFC 6455
    clients read one response head and expect it to be the 101. So the 101
    comes first and alone; an upgrade request that has content gets its 100
    on the app's first read of wsgi.input, as any request."""
    with RawWs(echo().port, headers=[("Expect", "100-continue")]) as ws:
        assert ws.status_line == "HTTP/1.1 101 Switching Protocols"
        ws.send_frame(TEXT, b"hi")
        assert ws.recv_message() == (TEXT, b"hi")


@pytest.mark.parametrize("offer, answer", [
    (None, None), ("chat", "chat"), ("superchat, chat", "chat"), ("other", None),
])
def test_handshake_subprotocol(serve, offer, answer):
    def app(environ, start_response):
        return with_channel(environ, subprotocol="chat")

    server = serve(app)
    headers = [("Sec-WebSocket-Protocol", offer)] if offer else []
    with RawWs(server.port, headers=headers) as ws:
        assert ws.header("sec-websocket-protocol") == answer


def test_handshake_extra_headers_list_of_pairs(serve):
    def app(environ, start_response):
        return with_channel(environ, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    server = serve(app)
    with RawWs(server.port) as ws:
        assert [v for k, v in ws.headers if k == "set-cookie"] == ["a=1", "b=2"]


def test_handshake_tokens_case_insensitive(serve):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_receive(ch.send)
        return ch

    server = serve(app)
    with RawWs(server.port, upgrade="WebSocket", connection="keep-alive, Upgrade") as ws:
        assert ws.status_line == "HTTP/1.1 101 Switching Protocols"
        ws.send(frame(TEXT, b"works"))
        assert ws.recv_raw(7) == server_frame(TEXT, b"works")


def test_handshake_offered_deflate_answered_and_frames_compressed(serve):
    import zlib

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send("hello hello hello hello")
        return ch

    server = serve(app, ws_deflate=True)
    with RawWs(server.port, headers=[("Sec-WebSocket-Extensions",
                                      "permessage-deflate; client_max_window_bits")]) as ws:
        ext = ws.header("sec-websocket-extensions")
        assert ext is not None and ext.split(";")[0].strip() == "permessage-deflate"
        f = ws.recv_frame()
        assert (f.opcode, f.rsv) == (TEXT, 4)        # RSV1: compressed
        d = zlib.decompressobj(-15)
        assert d.decompress(f.payload + b"\x00\x00\xff\xff") == b"hello hello hello hello"


BAD_HANDSHAKES = [
    ("version-missing", dict(version_header=None)),
    ("key-missing", dict(key=None)),
    ("key-not-base64", dict(key="not base64 at all!")),
    ("key-15-bytes", dict(key="AAAAAAAAAAAAAAAAAAAA")),
    ("key-17-bytes", dict(key="AAAAAAAAAAAAAAAAAAAAAAA=")),
    ("post", dict(method="POST", headers=[("Content-Length", "0")])),
    ("http-1.0", dict(version="HTTP/1.0")),
    ("connection-not-upgrade", dict(connection="keep-alive")),
    ("connection-missing", dict(connection=None)),
]


@pytest.mark.parametrize("kw", [b[1] for b in BAD_HANDSHAKES], ids=[b[0] for b in BAD_HANDSHAKES])
def test_bad_handshake_400(serve, kw):
    seen = queue.Queue()

    def app(environ, start_response):
        ch = with_channel(environ)
        seen.put((ch.is_websocket, ch.is_open))
        return ch

    server = serve(app)
    data = send_raw(server.port, handshake_request(**kw), shut_wr=False)
    resp, = parse_responses(data)
    assert resp.status == 400
    assert resp.version == "HTTP/1.1"
    assert not resp.has("upgrade")
    assert not resp.has("sec-websocket-accept")
    if kw.get("version_header", "13") != "13":
        assert resp.get("sec-websocket-version") == "13"     # RFC 6455 §4.4
    assert seen.get(timeout=WAIT) == (False, False)


@pytest.mark.parametrize("version", ["8", "14", "13, 8"])
def test_wrong_version_426_with_the_version_gkit_speaks(serve, version):
    """RFC 6455 §4.4: 426 Upgrade Required and Sec-WebSocket-Version: 13 (issue 8 point 13)."""
    def app(environ, start_response):
        return with_channel(environ)

    server = serve(app)
    data = send_raw(server.port, handshake_request(version_header=version), shut_wr=False)
    resp, = parse_responses(data)
    assert (resp.status, resp.reason) == (426, "Upgrade Required")
    assert resp.get("sec-websocket-version") == "13"
    assert not resp.has("sec-websocket-accept")
    assert resp.body == f"426 Sec-WebSocket-Version must be 13, got {version}\n".encode()


# -- framing robustness ---------------------------------------------------------------------------

def test_empty_fragments_make_empty_message(echo):
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(TEXT, b"", fin=False) + frame(CONT, b"", fin=False) + frame(CONT, b""))
        assert ws.recv_raw(2) == server_frame(TEXT, b"")
        ws.send(frame(BINARY, b"", fin=False) + frame(CONT, b"ab", fin=False) + frame(CONT, b""))
        assert ws.recv_raw(4) == server_frame(BINARY, b"ab")


def test_many_frames_in_one_write(echo):
    server = echo()
    messages = [b"m%04d" % i * (i % 7 + 1) for i in range(1000)]
    with RawWs(server.port) as ws:
        ws.send(b"".join(frame(BINARY, m) for m in messages))
        for m in messages:
            assert ws.recv_raw(len(server_frame(BINARY, m))) == server_frame(BINARY, m)


def test_random_splits_of_a_frame_stream(echo):
    """Frames of every length form, fragments and pings, cut at arbitrary points."""
    import random
    rng = random.Random(6455)
    server = echo()
    stream, pongs, messages = b"", [], []
    for n in range(60):
        size = rng.choice([0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70000])
        payload = bytes(rng.randrange(256) for _ in range(min(size, 64))) * (size // 64 + 1)
        payload = payload[:size]
        if n % 3 == 0:
            cut = size // 2
            stream += (frame(BINARY, payload[:cut], fin=False, mask=rng.randbytes(4))
                       + frame(PING, b"%d" % n, mask=rng.randbytes(4))
                       + frame(CONT, payload[cut:], mask=rng.randbytes(4)))
            pongs.append(b"%d" % n)
        else:
            stream += frame(BINARY, payload, mask=rng.randbytes(4))
        messages.append(payload)
    with RawWs(server.port, timeout=WAIT) as ws:
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 2, 3, 7, 100, 1500, 40000])
            ws.send(stream[pos:pos + step])
            pos += step
            if rng.random() < 0.1:
                gevent.sleep(0)
        # Pongs may overtake echoes of earlier messages; each kind comes in order.
        got = {PONG: [], BINARY: []}
        while len(got[PONG]) < len(pongs) or len(got[BINARY]) < len(messages):
            f = ws.recv_frame(timeout=WAIT)
            assert f.fin and f.rsv == 0 and f.opcode in got, f
            got[f.opcode].append(f.payload)
        assert got[PONG] == pongs
        assert got[BINARY] == messages
        assert ws.buf == b""


# -- permessage-deflate on the wire ---------------------------------------------------------------

DEFLATE_OFFER = [("Sec-WebSocket-Extensions", "permessage-deflate")]


def deflated(data):
    import zlib
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_deflate_client_message_inflated_and_echoed(echo):
    import zlib
    server = echo(ws_deflate=True)
    text = ("deflate me " * 300).encode()
    with RawWs(server.port, headers=DEFLATE_OFFER) as ws:
        assert ws.header("sec-websocket-extensions").startswith("permessage-deflate")
        inflater = zlib.decompressobj(-15)                # server context is taken over
        for _ in range(3):
            ws.send(frame(TEXT, deflated(text), rsv=4))
            f = ws.recv_frame()
            assert (f.opcode, f.rsv, f.fin) == (TEXT, 4, True)
            assert inflater.decompress(f.payload + b"\x00\x00\xff\xff") == text
        # an uncompressed message on a deflate connection is fine too
        ws.send(frame(TEXT, b"plain"))
        f = ws.recv_frame()
        assert inflater.decompress(f.payload + b"\x00\x00\xff\xff") == b"plain"


@pytest.mark.parametrize("data, code", [
    (frame(TEXT, b"x", fin=False, rsv=4) + frame(CONT, b"y", rsv=4), 1002),   # RSV1 on a continuation
    (frame(PING, b"p", rsv=4), 1002),                                       # RSV1 on a control frame
    (frame(BINARY, b"\xff\xff\xff\xff", rsv=4), 1007),                      # not deflate data
    (frame(TEXT, deflated(b"\xff\xfe"), rsv=4), 1007),                      # inflates to bad UTF-8
], ids=["rsv1-continuation", "rsv1-ping", "bad-deflate-data", "inflated-bad-utf8"])
def test_deflate_violations(echo, closes, data, code):
    server = echo(ws_deflate=True)
    with RawWs(server.port, headers=DEFLATE_OFFER) as ws:
        assert ws.header("sec-websocket-extensions") is not None
        ws.send(data)
        assert_fails_with(ws, code, closes)


def test_deflate_bomb_refused_with_1009(echo, closes):
    server = echo(ws_deflate=True, max_ws=1000)
    with RawWs(server.port, headers=DEFLATE_OFFER) as ws:
        ws.send(frame(BINARY, deflated(b"\x00" * 1000), rsv=4))       # inflates to exactly 1000
        f = ws.recv_frame()
        assert (f.opcode, f.rsv) == (BINARY, 4)
        ws.send(frame(BINARY, deflated(b"\x00" * 10_000_000), rsv=4))  # ~10 kB that inflate to 10 MB
        assert_fails_with(ws, 1009, closes)


def test_rsv1_without_negotiated_deflate(echo, closes):
    server = echo(ws_deflate=False)
    with RawWs(server.port, headers=DEFLATE_OFFER) as ws:
        assert ws.header("sec-websocket-extensions") is None
        ws.send(frame(TEXT, deflated(b"hello"), rsv=4))
        assert_fails_with(ws, 1002, closes)


@pytest.mark.parametrize("last, code", [(frame(CLOSE, b"\x03\xe8"), 1000),
                                        (frame(0x3, b"reserved opcode"), 1002)],
                         ids=["close", "bad-frame"])
def test_replies_to_messages_in_the_same_read_as_a_close_go_first(echo, closes, last, code):
    """Issue 8 point 9: the app's send in on_receive succeeds for messages that
    came in one read with a close (or a bad frame); the close reply comes after."""
    server = echo()
    with RawWs(server.port) as ws:
        ws.send(frame(TEXT, b"one") + frame(PING, b"p") + frame(TEXT, b"two") + last)
        assert ws.recv_frame().opcode == PONG
        assert ws.recv_message() == (TEXT, b"one")
        assert ws.recv_message() == (TEXT, b"two")
        f = ws.recv_frame()
        assert (f.opcode, f.payload[:2]) == (CLOSE, code.to_bytes(2, "big")), f
