"""gkit.proto.sse: event-stream framing, bytes out and events back, no sockets.

Each row of the tables gives the call and the exact bytes; every encoded event
is also read back with the decoder (the browser's algorithm), so a framing
that reads back differently fails here.
"""
from __future__ import annotations

import pytest

from gkit.proto.sse import HEARTBEAT, Event, EventStreamDecoder, encode_comment, encode_event

ENCODE = [
    # (kwargs, exact bytes, data read back)
    (dict(data="hello"), b"data: hello\n\n", "hello"),
    (dict(data=""), b"data: \n\n", ""),
    (dict(data="one\ntwo"), b"data: one\ndata: two\n\n", "one\ntwo"),
    (dict(data="one\r\ntwo\rthree"), b"data: one\ndata: two\ndata: three\n\n",
     "one\ntwo\nthree"),
    (dict(data="trailing\n"), b"data: trailing\ndata: \n\n", "trailing\n"),
    (dict(data="\n"), b"data: \ndata: \n\n", "\n"),
    (dict(data=" leading space"), b"data:  leading space\n\n", " leading space"),
    (dict(data="a: b"), b"data: a: b\n\n", "a: b"),
    (dict(data="caf\u00e9 \u2603 \U0001f600"),
     "data: caf\u00e9 \u2603 \U0001f600\n\n".encode(), "caf\u00e9 \u2603 \U0001f600"),
    # Unicode line separators are not SSE line breaks: one line, as the browser reads it.
    (dict(data="a\u2028b\x85c\x0bd"), "data: a\u2028b\x85c\x0bd\n\n".encode(), "a\u2028b\x85c\x0bd"),
    (dict(data=b"bytes \xc3\xa9"), "data: bytes \u00e9\n\n".encode(), "bytes \u00e9"),
    (dict(data="x", event="update"), b"event: update\ndata: x\n\n", "x"),
    (dict(data="x", id="42"), b"id: 42\ndata: x\n\n", "x"),
    (dict(data="x", id=""), b"id: \ndata: x\n\n", "x"),
    (dict(data="x", retry=2.5), b"retry: 2500\ndata: x\n\n", "x"),
    (dict(data="x", retry=0), b"retry: 0\ndata: x\n\n", "x"),
    (dict(data="x", event="e", id="\u00e9t\u00e9", retry=1),
     "event: e\nid: \u00e9t\u00e9\nretry: 1000\ndata: x\n\n".encode(), "x"),
]


@pytest.mark.parametrize("kwargs, wire, data", ENCODE)
def test_encode_event_bytes_and_read_back(kwargs, wire, data) -> None:
    assert encode_event(**kwargs) == wire
    d = EventStreamDecoder()
    events = d.feed(wire)
    assert events == [Event(data, kwargs.get("event") or "message", kwargs.get("id") or "")]
    if "retry" in kwargs:
        assert d.retry == kwargs["retry"]


REFUSED = [
    (dict(data="x", event="a\nb"), ValueError, "event"),
    (dict(data="x", event="a\rdata: injected"), ValueError, "event"),
    (dict(data="x", event="a\r\n"), ValueError, "event"),
    (dict(data="x", id="1\ndata: injected"), ValueError, "id"),
    (dict(data="x", id="1\r"), ValueError, "id"),
    (dict(data="x", id="1\x002"), ValueError, "id"),
    (dict(data=b"\xff\xfe"), ValueError, "UTF-8"),
    (dict(data={"a": 1}), TypeError, "json.dumps"),
    (dict(data=None), TypeError, "str or bytes"),
    (dict(data="x", retry=-1), ValueError, "retry"),
    (dict(data="x", retry="5"), ValueError, "retry"),
    (dict(data="x", retry=True), ValueError, "retry"),
]


@pytest.mark.parametrize("kwargs, error, word", REFUSED)
def test_encode_event_refuses_injection_and_bad_types(kwargs, error, word) -> None:
    with pytest.raises(error, match=word):
        encode_event(**kwargs)


def test_comments_and_heartbeat() -> None:
    assert HEARTBEAT == b":\n\n"
    assert encode_comment("keep-alive") == b": keep-alive\n\n"
    assert encode_comment("two\nlines") == b": two\n: lines\n\n"
    d = EventStreamDecoder()
    assert d.feed(HEARTBEAT + encode_comment("two\r\nlines")) == []
    assert d.comments == ["", "two", "lines"]


DECODE = [
    # (stream, events, last_event_id)
    (b"data: a\n\ndata: b\n\n", [Event("a"), Event("b")], ""),
    (b"data: a\r\n\r\n", [Event("a")], ""),
    (b"data: a\r\rdata: b\r\r\n", [Event("a"), Event("b")], ""),  # a final CR waits for a LF
    (b"data:no-space\n\n", [Event("no-space")], ""),
    (b"data\n\n", [Event("")], ""),
    (b"id: 1\ndata: a\n\ndata: b\n\n", [Event("a", id="1"), Event("b", id="1")], "1"),
    (b"id: 1\n\n", [], "1"),                          # no data: nothing dispatched
    (b"id: 1\x002\ndata: a\n\n", [Event("a")], ""),   # an id with NUL is ignored
    (b"event: e\n\ndata: a\n\n", [Event("a")], ""),   # the type does not outlive its event
    (b"\xef\xbb\xbfdata: bom\n\n", [Event("bom")], ""),
    (b"data: unterminated", [], ""),
    (b"unknown: x\ndata: a\n\n", [Event("a")], ""),
]


@pytest.mark.parametrize("stream, events, last_id", DECODE)
def test_decoder_follows_the_browser(stream, events, last_id) -> None:
    d = EventStreamDecoder()
    assert d.feed(stream) == events
    assert d.last_event_id == last_id


def test_decoder_takes_bytes_in_any_split() -> None:
    wire = (encode_event("one\ntwo", event="e", id="9") + HEARTBEAT
            + encode_event("caf\u00e9") + b"data: x\r\n\r\n")
    want = [Event("one\ntwo", "e", "9"), Event("caf\u00e9", id="9"), Event("x", id="9")]
    for cut in range(1, len(wire)):
        d = EventStreamDecoder()
        assert d.feed(wire[:cut]) + d.feed(wire[cut:]) == want, cut
