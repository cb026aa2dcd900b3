"""Server-sent events over real sockets, both HTTP engines (issue 12, point 4).

``sse_channel`` answers with a text/event-stream head at once, frames each
event with ``proto.sse`` (one chunk per event), sends heartbeat comments from
the server's sweeper while quiet, exposes ``Last-Event-ID``, and its plain
``send(message)`` is one event, so a hub can hold it like any channel. The
stream is read back with the browser's algorithm (``EventStreamDecoder``).
"""
from __future__ import annotations

import queue

import gevent
import gevent.event
from gkit import Channel, sse_channel, with_channel
from gkit.proto.sse import Event, EventStreamDecoder
from helpers import RawConn, request
from wshelpers import RawWs, all_chunks, expect_bytes, handshake_request, read_exact, read_head

WAIT = 10


class Stream:
    """A raw client of one event stream: the head, then chunks fed to the decoder."""

    def __init__(self, port: int, headers=(), version: str = "HTTP/1.1") -> None:
        self.conn = RawConn(port)
        self.conn.send(request(target="/events", headers=list(headers), version=version))
        self.head = read_head(self.conn)
        self.decoder = EventStreamDecoder()
        self.raw = b""  # the dechunked body so far

    def _chunk(self) -> bytes:
        """The next chunk's payload (b"" for the last chunk)."""
        size_line, _, self.conn.buf = self.conn.read_until(b"\r\n", WAIT).partition(b"\r\n")
        size = int(size_line, 16)
        data = read_exact(self.conn, size + 2, WAIT)
        assert data.endswith(b"\r\n"), data
        return data[:-2]

    def events(self, n: int):
        got = []
        while len(got) < n:
            data = self._chunk()
            assert data, "the stream ended"
            self.raw += data
            got += self.decoder.feed(data)
        return got

    def chunk(self) -> bytes:
        data = self._chunk()
        self.raw += data
        self.decoder.feed(data)
        return data


def test_head_and_events_exact_bytes_then_keep_alive(serve) -> None:
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/next":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"next"]
        ch = sse_channel(environ, headers={"Access-Control-Allow-Origin": "*"})
        assert isinstance(ch, Channel) and ch.is_open and not ch.is_websocket
        assert ch.send_event("line one\nline two\r\nline three") is True
        assert ch.send_event("caf\u00e9 \u2603 \U0001f600", event="unicode", id="\u00e91")
        assert ch.send_event("") is True
        assert ch.send_event(b"bytes", retry=2) is True
        assert ch.send("a plain send") is True          # what a hub does
        assert ch.send({"status": 500, "body": "dict body"}) is True
        assert ch.close() is True and not ch.is_open
        assert ch.send_event("late") is False
        return ch

    port = serve(app).port
    conn = RawConn(port)
    conn.send(request(target="/events"))
    head = read_head(conn)
    assert head.status_line == "HTTP/1.1 200 OK"
    assert head.get("content-type") == "text/event-stream"
    assert head.get("cache-control") == "no-cache"
    assert head.get("x-accel-buffering") == "no"
    assert head.get("transfer-encoding") == "chunked"
    assert head.get("access-control-allow-origin") == "*"
    assert head.get("content-length") is None
    events = [b"data: line one\ndata: line two\ndata: line three\n\n",
              "event: unicode\nid: \u00e91\ndata: caf\u00e9 \u2603 \U0001f600\n\n".encode(),
              b"data: \n\n", b"retry: 2000\ndata: bytes\n\n",
              b"data: a plain send\n\n", b"data: dict body\n\n"]
    expect_bytes(conn, all_chunks(events), WAIT)
    decoder = EventStreamDecoder()
    assert decoder.feed(b"".join(events)) == [
        Event("line one\nline two\nline three"), Event("caf\u00e9 \u2603 \U0001f600", "unicode", "\u00e91"),
        Event("", id="\u00e91"), Event("bytes", id="\u00e91"), Event("a plain send", id="\u00e91"),
        Event("dict body", id="\u00e91")]
    conn.send(request(target="/next"))
    assert conn.read_response().body == b"next"
    conn.close()


def test_last_event_id_is_read_from_the_request(serve) -> None:
    seen = queue.Queue()

    def app(environ, start_response):
        ch = sse_channel(environ)
        seen.put(ch.last_event_id)
        ch.close()
        return ch

    port = serve(app).port
    for headers, want in (([("Last-Event-ID", "41")], "41"), ([], None),
                          ([("Last-Event-ID", "")], "")):
        s = Stream(port, headers)
        assert s.head.status == 200
        assert seen.get(timeout=WAIT) == want
        s.conn.close()


def test_cr_lf_in_event_or_id_is_refused_and_nothing_is_written(serve) -> None:
    errors = queue.Queue()

    def app(environ, start_response):
        ch = sse_channel(environ)
        for kwargs in (dict(event="a\ndata: injected"), dict(id="1\rretry: 1"),
                       dict(event="x\r\n"), dict(id="nul\0")):
            try:
                ch.send_event("x", **kwargs)
            except ValueError as exc:
                errors.put(str(exc))
        ch.send_event("after", id="2")
        ch.close()
        return ch

    s = Stream(serve(app).port)
    assert s.events(1) == [Event("after", id="2")]
    assert s.raw == b"id: 2\ndata: after\n\n"   # nothing of the refused ones
    messages = [errors.get(timeout=WAIT) for _ in range(4)]
    assert all("contains CR, LF" in m and "single-line" in m for m in messages), messages
    s.conn.close()


def test_heartbeat_comments_come_while_the_stream_is_quiet(serve) -> None:
    ready = gevent.event.Event()
    chans = []

    def app(environ, start_response):
        ch = sse_channel(environ, heartbeat=0.2, retry=1.5)
        chans.append(ch)
        ready.set()
        return ch

    # header_timeout=0.4 makes the server's sweeper run every 0.1 s.
    server = serve(app, header_timeout=0.4)
    s = Stream(server.port)
    assert s.chunk() == b"retry: 1500\n\n"
    assert s.decoder.retry == 1.5
    assert s.chunk() == b":\n\n"
    assert s.chunk() == b":\n\n"
    chans[0].send_event("news")
    assert s.events(1) == [Event("news")]
    assert s.chunk() == b":\n\n"
    assert len(server.deadlines.heartbeats) == 1
    chans[0].close()
    s.conn.read_until(b"0\r\n\r\n", WAIT)
    gevent.sleep(0.3)  # two sweeps: the closed channel is dropped, no beat is written
    assert len(server.deadlines.heartbeats) == 0
    assert s.conn.buf == b"0\r\n\r\n"


def test_client_leaving_closes_the_channel(serve) -> None:
    closed = queue.Queue()
    chans = []

    def app(environ, start_response):
        ch = sse_channel(environ)
        ch.on_close(closed.put)
        chans.append(ch)
        return ch

    s = Stream(serve(app).port)
    s.conn.close()
    assert closed.get(timeout=WAIT) == "client-close"
    assert not chans[0].is_open and chans[0].send_event("gone") is False


def test_sse_and_websocket_channels_take_the_same_broadcast(serve) -> None:
    subscribers = []
    joined = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ) if environ["PATH_INFO"] == "/ws" else sse_channel(environ)
        subscribers.append(ch)
        if len(subscribers) == 2:
            joined.set()
        return ch

    port = serve(app).port
    s = Stream(port)
    ws = RawWs(port, "/ws")
    assert joined.wait(WAIT)
    for ch in subscribers:           # a hub's loop: ch.send(message) on each
        assert ch.send("to everyone") is True
    assert s.events(1) == [Event("to everyone")]
    assert ws.recv_message(WAIT) == (1, b"to everyone")
    s.conn.close()
    ws.close()


def test_sse_on_a_websocket_upgrade_is_a_clear_error(serve, error_log) -> None:
    def app(environ, start_response):
        sse_channel(environ)

    conn = RawConn(serve(app).port)
    conn.send(handshake_request("/"))
    assert conn.read_response().status == 500
    assert any("use with_channel" in str(r.exc_info[1]) for r in error_log if r.exc_info)
    conn.close()
