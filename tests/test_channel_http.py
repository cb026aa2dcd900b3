"""HTTP channels: streaming, long polling and async_response (issue 3, points 1, 3, 6).

API.md, "Channels": the first send writes status and headers; with
close_after_send=False the response is chunked, every later send is one chunk
and close() writes the last chunk; HTTP/1.0 clients get a close-delimited
body; a default send completes the response and the keep-alive connection
serves the next request; the pool slot is released while a channel waits.
Every test runs against both HTTP engines (the ``engine`` fixture).
"""
import io
import queue

import gevent
import gevent.event
import pytest

from gkit import as_channel, async_response, with_channel
from helpers import RawConn, final, get, parse_responses, request, send_raw
from wshelpers import all_chunks, chunk, expect_bytes, read_head, split_chunks

WAIT = 10  # seconds an event may take on a loaded 2-core machine


def waited(event, what, timeout=WAIT):
    assert event.wait(timeout), f"{what} did not happen within {timeout} s"


def statuses():
    """A queue that an on_close callback fills, and a getter with a deadline."""
    q = queue.Queue()

    def get_status(timeout=WAIT):
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"on_close did not run within {timeout} s") from None
    return q, get_status


# -- streaming ---------------------------------------------------------------------------

def test_streaming_first_send_writes_head_then_one_chunk_per_send(serve):
    step = [gevent.event.Event() for _ in range(3)]
    chan = {}

    def app(environ, start_response):
        ch = chan["ch"] = with_channel(environ)
        assert ch.is_open and not ch.is_websocket

        def later():
            waited(step[0], "the client reading the first chunk")
            assert ch.send("second", close_after_send=False) is True
            waited(step[1], "the client reading the second chunk")
            assert ch.send(b"third!", close_after_send=False) is True
            waited(step[2], "the client reading the third chunk")
            assert ch.close() is True
        gevent.spawn(later)
        assert ch.send("first", close_after_send=False) is True
        return ch

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/stream"))
        head = read_head(conn)
        assert head.status_line == "HTTP/1.1 200 OK"
        assert head.get("content-type") == "text/html; charset=utf-8"
        assert head.get("transfer-encoding") == "chunked"
        assert head.get("content-length") is None
        expect_bytes(conn, b"5\r\nfirst\r\n")
        assert conn.buf == b""
        step[0].set()
        expect_bytes(conn, b"6\r\nsecond\r\n")
        step[1].set()
        expect_bytes(conn, b"6\r\nthird!\r\n")
        step[2].set()
        expect_bytes(conn, b"0\r\n\r\n")
        # The response is over; the keep-alive connection serves the next request.
        assert not chan["ch"].is_open
        assert chan["ch"].send("late", close_after_send=False) is False
        conn.send(request(target="/stream"))
        head = read_head(conn)
        assert head.status == 200
        expect_bytes(conn, b"5\r\nfirst\r\n6\r\nsecond\r\n")


def test_streaming_dict_first_send_sets_status_and_headers_later_ones_ignored(serve):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send({"status": 202, "headers": {"Content-Type": "text/plain", "X-First": "1"},
                 "body": "a"}, close_after_send=False)
        ch.send({"status": 500, "headers": {"X-Later": "2"}, "body": b"bc"},
                close_after_send=False)
        ch.send(None, close_after_send=False)        # empty: no chunk (not the last one)
        ch.send("", close_after_send=False)
        ch.send([b"d", "e"], close_after_send=False)
        ch.close()
        return ch

    server = serve(app)
    resp = get(server.port)
    assert resp.status == 202
    assert resp.get("content-type") == "text/plain"
    assert resp.get("x-first") == "1"
    assert not resp.has("x-later")
    assert resp.framing == "chunked"
    head_end = resp.raw.index(b"\r\n\r\n") + 4
    assert resp.raw[head_end:] == all_chunks([b"a", b"bc", b"de"])


def test_streaming_final_send_with_close_after_send_writes_last_chunk(serve):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send("one", close_after_send=False)
        assert ch.send("two") is True                 # default: close after it
        assert ch.send("three") is False
        assert ch.is_open is False
        return ch

    server = serve(app)
    data = send_raw(server.port, request(headers=[("Connection", "close")]))
    resp, = parse_responses(data)
    head_end = resp.raw.index(b"\r\n\r\n") + 4
    assert resp.raw[head_end:] == chunk(b"one") + chunk(b"two") + b"0\r\n\r\n"


@pytest.mark.parametrize("keep_alive", [False, True], ids=["plain", "keep-alive-asked"])
def test_http10_client_gets_close_delimited_stream(serve, keep_alive):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send("first|", close_after_send=False)
        gevent.spawn(lambda: (ch.send(b"second|", close_after_send=False), ch.close()))
        return ch

    server = serve(app)
    headers = [("Connection", "keep-alive")] if keep_alive else []
    data = send_raw(server.port, request(version="HTTP/1.0", headers=headers), shut_wr=False)
    resp, = parse_responses(data)
    assert resp.status == 200
    assert resp.framing == "close"
    assert not resp.has("transfer-encoding")
    assert not resp.has("content-length")
    assert resp.body == b"first|second|"


# -- long polling ------------------------------------------------------------------------

def test_long_poll_send_completes_response_and_keep_alive_goes_on(serve):
    parked = gevent.event.Event()
    chans = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/poll":
            ch = with_channel(environ)
            chans.append(ch)
            parked.set()
            return ch
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"next"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/poll"))
        waited(parked, "the long-poll request reaching the app")
        assert conn.buf == b""
        ch = chans[0]
        assert ch.is_open
        assert ch.send({"status": 200, "headers": [("Content-Type", "application/json")],
                        "body": b'{"event": 1}'}) is True
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.get("content-type") == "application/json"
        assert resp.get("content-length") == "12"
        assert resp.framing == "length"
        assert resp.body == b'{"event": 1}'
        assert "close" not in resp.connection_tokens()
        # The old channel stays closed; the same socket serves the next request.
        assert ch.is_open is False
        assert ch.send("again") is False
        conn.send(request(target="/next"))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"next")


def test_long_poll_pipelined_request_waits_its_turn(serve):
    parked = gevent.event.Event()
    chans = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/poll":
            chans.append(with_channel(environ))
            parked.set()
            return chans[-1]
        start_response("200 OK", [("Content-Length", "6")])
        return [b"second"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/poll") + request(target="/after"))
        waited(parked, "the long-poll request reaching the app")
        assert conn.silent_for(0.2)          # the pipelined request is not answered first
        chans[0].send("first")
        first = conn.read_response()
        second = conn.read_response()
    assert (first.status, first.body) == (200, b"first")
    assert (second.status, second.body) == (200, b"second")


def test_async_response_answers_later_once(serve):
    responders = queue.Queue()
    closed = gevent.event.Event()

    class Ignored:
        def __iter__(self):
            return iter([b"IGNORED"])

        def close(self):
            closed.set()

    def app(environ, start_response):
        responders.put(async_response(environ))
        start_response("500 Ignored", [("X-Ignored", "1")])
        return Ignored()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        respond = responders.get(timeout=WAIT)
        waited(closed, "close() of the app's return value")
        assert conn.buf == b""
        # respond may be called from any greenlet
        results = []
        gevent.spawn(lambda: results.append(
            respond({"status": 201, "headers": {"X-Made": "yes"}, "body": "made"}))).join()
        assert results == [True]
        resp = conn.read_response()
        assert respond({"status": 200, "body": "twice"}) is False
        assert resp.status_line == "HTTP/1.1 201 Created"
        assert resp.get("x-made") == "yes"
        assert not resp.has("x-ignored")
        assert resp.body == b"made"
        assert resp.get("content-length") == "4"
        # Keep-alive: the next request on the socket gets its own responder.
        conn.send(request())
        responders.get(timeout=WAIT)("second")
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"second")
        assert conn.buf == b""


# -- what a send can carry -----------------------------------------------------------------

def test_bare_body_is_200_html_utf8(serve):
    text = "h\u00e9llo \u2603 \U0001f600"

    def app(environ, start_response):
        with_channel(environ).send(text)
        return []

    server = serve(app)
    resp = get(server.port)
    assert resp.status_line == "HTTP/1.1 200 OK"
    assert resp.get("content-type") == "text/html; charset=utf-8"
    assert resp.body == text.encode("utf-8")
    assert resp.get("content-length") == str(len(text.encode("utf-8")))


@pytest.mark.parametrize("headers, expected", [
    ({"Content-Type": "text/plain", "X-One": "1"}, [("x-one", "1")]),
    ([("Content-Type", "text/plain"), ("X-One", "1"), ("X-One", "2")],
     [("x-one", "1"), ("x-one", "2")]),
], ids=["dict", "list-of-pairs"])
def test_dict_response_status_headers_body(serve, headers, expected):
    def app(environ, start_response):
        with_channel(environ).send({"status": 404, "headers": headers, "body": b"not here"})
        return []

    server = serve(app)
    resp = get(server.port)
    assert resp.status_line == "HTTP/1.1 404 Not Found"
    assert resp.get("content-type") == "text/plain"
    assert [(k, v) for k, v in resp.headers if k == "x-one"] == expected
    assert resp.body == b"not here"
    assert resp.get("content-length") == "8"


def gen_body():
    yield b"gen"
    yield "\u00e9"


@pytest.mark.parametrize("body, expected", [
    (lambda: b"bytes", b"bytes"),
    (lambda: bytearray(b"bytearray"), b"bytearray"),
    (lambda: memoryview(b"memoryview"), b"memoryview"),
    (lambda: io.BytesIO(b"file-like bytes"), b"file-like bytes"),
    (lambda: io.StringIO("file-like str \u00e9"), "file-like str \u00e9".encode("utf-8")),
    (lambda: [b"list", " of ", b"parts"], b"list of parts"),
    (gen_body, "gen\u00e9".encode("utf-8")),
    (lambda: None, b""),
], ids=["bytes", "bytearray", "memoryview", "BytesIO", "StringIO", "list", "generator", "None"])
def test_body_kinds(serve, body, expected):
    def app(environ, start_response):
        with_channel(environ).send({"status": 200, "headers": {"Content-Type": "x/y"},
                                    "body": body()})
        return []

    server = serve(app)
    resp = get(server.port)
    assert resp.status == 200
    assert resp.body == expected
    assert resp.get("content-length") == str(len(expected))


def test_file_like_body_in_a_bare_send(serve):
    def app(environ, start_response):
        with_channel(environ).send(io.BytesIO(b"\x00\x01binary"))
        return []

    resp = get(serve(app).port)
    assert (resp.status, resp.body) == (200, b"\x00\x01binary")


def test_send_false_and_close_false_once_closed(serve):
    results = {}

    def app(environ, start_response):
        ch = with_channel(environ)
        results["first"] = ch.send("only")
        results["open_after"] = ch.is_open
        results["send_again"] = ch.send("more")
        results["stream_again"] = ch.send("more", close_after_send=False)
        results["close"] = ch.close()
        return []

    resp = get(serve(app).port)
    assert resp.body == b"only"
    assert results == {"first": True, "open_after": False, "send_again": False,
                       "stream_again": False, "close": False}


def test_close_on_never_sent_channel_is_empty_200(serve):
    results = []

    def app(environ, start_response):
        ch = with_channel(environ)
        results.append(ch.close())
        results.append(ch.close())
        results.append(ch.send("x"))
        return []

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response()
        assert resp.status_line == "HTTP/1.1 200 OK"
        assert resp.get("content-length") == "0"
        assert resp.body == b""
        conn.send(request())                          # still keep-alive
        assert conn.read_response().status == 200
    assert results[:3] == [True, False, False]


@pytest.mark.timeout(60)
def test_concurrent_sends_never_interleave(serve):
    senders, per_sender = 50, 20
    done = gevent.event.Event()

    def piece(i, j):
        # Sizes differ per sender, so a torn chunk cannot look like a whole one.
        return b"<%02d-%03d:" % (i, j) + bytes([65 + i % 26]) * (1 + (i * 977 + j * 131) % 6000) + b">"

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send({"status": 200, "headers": {"Content-Type": "text/plain"}, "body": b"start"},
                close_after_send=False)

        def sender(i):
            for j in range(per_sender):
                assert ch.send(piece(i, j), close_after_send=False) is True
                gevent.sleep(0)

        greenlets = [gevent.spawn(sender, i) for i in range(senders)]

        def finish():
            gevent.joinall(greenlets, raise_error=True)
            ch.close()
            done.set()
        gevent.spawn(finish)
        return ch

    server = serve(app)
    with RawConn(server.port, timeout=WAIT) as conn:
        conn.send(request(headers=[("Connection", "close")]))
        waited(done, "all sends")              # the client reads nothing until all are queued
        data = conn.read_until_close(timeout=WAIT)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    chunks, rest = split_chunks(body)
    assert rest == b""
    assert chunks[0] == b"start"
    assert len(chunks) == 1 + senders * per_sender
    seen = {i: [] for i in range(senders)}
    for c in chunks[1:]:
        i, j = int(c[1:3]), int(c[4:7])
        assert c == piece(i, j), f"chunk {c[:12]!r}... is not the piece it names"
        seen[i].append(j)
    assert all(seen[i] == list(range(per_sender)) for i in range(senders))


@pytest.mark.parametrize("when", ["during-app", "after-app"])
def test_app_start_response_and_result_discarded_close_called(serve, when):
    closed = gevent.event.Event()
    returned = gevent.event.Event()

    class Result:
        def __iter__(self):
            return iter([b"DISCARDED"])

        def close(self):
            closed.set()

    def app(environ, start_response):
        ch = with_channel(environ)
        start_response("500 Discarded", [("X-Discarded", "1"), ("Content-Length", "9")])
        if when == "during-app":
            ch.send({"status": 200, "headers": {"X-Real": "1"}, "body": "real"})
        else:
            def later():
                waited(returned, "the app's return")
                waited(closed, "close()")
                ch.send({"status": 200, "headers": {"X-Real": "1"}, "body": "real"})
            gevent.spawn(later)
        return Result()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        returned.set()
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.get("x-real") == "1"
        assert not resp.has("x-discarded")
        assert resp.body == b"real"
        waited(closed, "close() of the app's return value")
        conn.send(request())                  # and the connection goes on
        assert conn.read_response().body == b"real"
        assert conn.buf == b""


def test_as_channel_on_open_runs_at_once_for_http(serve):
    calls = []

    def app(environ, start_response):
        def on_open(ch):
            calls.append(("open", ch.is_websocket))
            ch.send("opened by on_open")
        ch = as_channel(environ, on_open=on_open,
                        on_close=lambda ch, status: calls.append(("close", status)))
        calls.append(("returned", ch.is_open))
        return ch

    resp = get(serve(app).port)
    assert resp.body == b"opened by on_open"
    assert calls == [("open", False), ("close", "server-close"), ("returned", False)]


# -- closing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sent_first", [False, True], ids=["parked", "streaming"])
def test_client_going_away_reports_client_close(serve, sent_first):
    q, get_status = statuses()
    opened = gevent.event.Event()
    chans = []

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(q.put)
        if sent_first:
            ch.send("hello", close_after_send=False)
        chans.append(ch)
        opened.set()
        return ch

    server = serve(app)
    conn = RawConn(server.port)
    conn.send(request())
    waited(opened, "the channel opening")
    if sent_first:
        read_head(conn)
        expect_bytes(conn, b"5\r\nhello\r\n")
    conn.close()
    assert get_status() == "client-close"
    assert chans[0].is_open is False
    assert chans[0].send("x", close_after_send=False) is False
    assert q.empty()   # at most once


def test_server_close_status_when_app_closes(serve):
    q, get_status = statuses()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(q.put)
        ch.send("x", close_after_send=False)
        gevent.spawn(ch.close)
        return ch

    resp = get(serve(app).port)
    assert resp.body == b"x"
    assert get_status() == "server-close"


def test_on_close_set_after_close_runs_at_once(serve):
    calls = []

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send("done")
        ch.on_close(lambda status: calls.append(status))
        calls.append("after on_close")
        return ch

    assert get(serve(app).port).body == b"done"
    assert calls == ["server-close", "after on_close"]


def test_stop_closes_streaming_channel(serve):
    q, get_status = statuses()
    opened = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(q.put)
        ch.send("part", close_after_send=False)
        opened.set()
        return ch

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        waited(opened, "the channel opening")
        read_head(conn)
        expect_bytes(conn, b"4\r\npart\r\n")
        with gevent.Timeout(WAIT, AssertionError("stop() did not return")):
            server.stop()
        assert get_status() == "server-close"
        assert conn.read_until_close() == b"0\r\n\r\n"
    assert server.status == "stopped"


# -- the pool ------------------------------------------------------------------------------

def test_parked_channels_hold_no_worker(serve):
    """thread=1: long polls wait while other requests are served."""
    parked = []
    arrived = gevent.event.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/poll":
            parked.append(async_response(environ))
            arrived.set()
            return []
        start_response("200 OK", [("Content-Length", "5")])
        return [b"other"]

    server = serve(app, thread=1)
    polls = []
    for n in range(3):
        arrived.clear()
        conn = RawConn(server.port)
        polls.append(conn)
        conn.send(request(target="/poll"))
        waited(arrived, f"long poll {n} reaching the app with thread=1")
    try:
        resp = get(server.port, "/other")
        assert (resp.status, resp.body) == (200, b"other")
        for n, respond in enumerate(parked):
            assert respond(f"event {n}") is True
        for n, conn in enumerate(polls):
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, f"event {n}".encode())
    finally:
        for conn in polls:
            conn.close()


# -- more edges ------------------------------------------------------------------------------

def test_http10_long_poll_has_length_and_closes(serve):
    def app(environ, start_response):
        ch = with_channel(environ)
        gevent.spawn(ch.send, "answer")
        return ch

    server = serve(app)
    data = send_raw(server.port, request(version="HTTP/1.0"), shut_wr=False)
    resp, = parse_responses(data)
    assert (resp.status, resp.body, resp.framing) == (200, b"answer", "length")
    assert resp.get("content-length") == "6"


def test_head_request_stream_sends_headers_only(serve):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send("abc", close_after_send=False)
        ch.send("def", close_after_send=False)
        ch.close()
        return ch

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(method="HEAD"))
        resp = conn.read_response(head=True)
        assert resp.status == 200
        assert resp.body == b""
        conn.send(request())                      # the connection goes on, no stray body bytes
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.framing == "chunked"
        assert resp.body == b"abcdef"
        assert conn.buf == b""


def test_app_raising_after_with_channel_gets_500(serve, error_log):
    q, get_status = statuses()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(q.put)
        raise RuntimeError("app bug after with_channel")

    server = serve(app)
    resp = get(server.port)
    assert resp.status == 500
    assert get_status() == "server-close"
    assert any("app bug after with_channel" in str(r.exc_info[1])
               for r in error_log if r.exc_info)


def test_app_raising_mid_stream_cuts_the_response(serve, error_log):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.send("partial", close_after_send=False)
        raise RuntimeError("app bug mid-stream")

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        read_head(conn)
        # the chunk that was sent, then the connection ends without the last chunk
        assert conn.read_until_close() == chunk(b"partial")


def test_respond_after_client_left_returns_false(serve):
    responders = queue.Queue()
    q, get_status = statuses()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(q.put)
        responders.put(ch)
        return ch

    server = serve(app)
    conn = RawConn(server.port)
    conn.send(request())
    ch = responders.get(timeout=WAIT)
    conn.close()
    assert get_status() == "client-close"
    assert ch.send("too late") is False
    assert ch.close() is False


def test_stop_closes_parked_long_poll(serve):
    q, get_status = statuses()
    parked = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(q.put)
        parked.set()
        return ch

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        waited(parked, "the long poll reaching the app")
        with gevent.Timeout(WAIT, AssertionError("stop() did not return")):
            server.stop()
        assert get_status() == "server-close"
        assert conn.read_until_close() == b""     # closed, no response started


@pytest.mark.timeout(60)
def test_max_buffered_closes_slow_http_stream(serve):
    import socket as socketlib
    limit, size = 1 << 20, 65536
    results = queue.Queue()
    q, get_status = statuses()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/plain":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"plain"]
        ch = with_channel(environ)
        ch.on_close(q.put)

        def flood():
            most = 0
            for i in range(2000):  # noqa: B007 (i is reported after the loop)
                if not ch.send(b"s" * size, close_after_send=False):
                    break
                most = max(most, ch.buffered)
                gevent.sleep(0)
            results.put((i, ch.is_open, most))
        gevent.spawn(flood)
        return ch

    server = serve(app, max_buffered=limit)
    slow = socketlib.socket()
    slow.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 65536)
    slow.settimeout(WAIT)
    try:
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(request(target="/flood"))
        resp = get(server.port, "/plain")            # the server answers others meanwhile
        assert (resp.status, resp.body) == (200, b"plain")
        stopped_at, is_open, most = results.get(timeout=WAIT * 3)
        assert is_open is False
        assert stopped_at < 1999
        assert 0 < most <= limit
        assert get_status() == "server-close"
    finally:
        slow.close()


@pytest.mark.parametrize("body_size", [10, 20_000])
def test_long_poll_with_unread_body_keeps_connection(serve, body_size):
    """The app never reads the request body; once the channel answers, the next
    request on the connection is parsed after that body, not inside it."""
    chans = queue.Queue()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/poll":
            chans.put(with_channel(environ))
            return []
        start_response("200 OK", [("Content-Length", "4")])
        return [b"next"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request("POST", "/poll", body=b"b" * body_size))
        ch = chans.get(timeout=WAIT)
        assert ch.send("polled") is True
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"polled")
        conn.send(request(target="/next"))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"next")


def test_client_leaving_during_large_unread_body_is_noticed(serve):
    """A long poll whose (large) request body the app never reads: the client
    leaving still ends the channel with client-close."""
    q, get_status = statuses()
    opened = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(q.put)
        opened.set()
        return ch

    server = serve(app)
    conn = RawConn(server.port)
    conn.send(request("POST", "/poll", headers=[("Content-Length", "1000000")]) + b"x" * 200_000)
    waited(opened, "the channel opening")
    conn.close()
    assert get_status() == "client-close"


def test_send_with_crlf_in_header_is_refused_never_written(serve, error_log):
    results = []

    def app(environ, start_response):
        ch = with_channel(environ)
        results.append(ch.send({"status": 200, "headers": {"X-A": "a\r\nInjected: 1"},
                                "body": "x"}))
        results.append(ch.send("fine"))
        return ch

    server = serve(app)
    data = send_raw(server.port, request(headers=[("Connection", "close")]), shut_wr=False)
    assert b"Injected" not in data
    # As for a WSGI app's bad header: 500, and the channel ends (False means closed).
    resp, = final(parse_responses(data))
    assert resp.status == 500
    assert results == [False, False]
    assert error_log, "the refused send is logged on gkit.error"


@pytest.mark.parametrize("answer", ["during-app", "after-app"])
@pytest.mark.parametrize("expect", [False, True], ids=["body-late", "expect-100-continue"])
def test_long_poll_answered_before_body_arrives(serve, expect, answer):
    """The channel answers before the client sent the request body (a slow
    upload, or a client waiting for 100 Continue). The response does not say
    Connection: close, so the server goes on reading: the body, then the next
    request on the connection is served."""
    chans = queue.Queue()
    returned = gevent.event.Event()

    class Result:
        def __iter__(self):
            return iter([])

        def close(self):
            returned.set()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/poll":
            chans.put(with_channel(environ))
            return Result()
        start_response("200 OK", [("Content-Length", "4")])
        return [b"next"]

    server = serve(app)
    headers = [("Content-Length", "5")] + ([("Expect", "100-continue")] if expect else [])
    with RawConn(server.port) as conn:
        conn.send(request("POST", "/poll", headers=headers))
        ch = chans.get(timeout=WAIT)
        if answer == "after-app":
            waited(returned, "the app's return")     # the server now waits for the body
        assert ch.send("polled") is True
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"polled")
        if "close" in resp.connection_tokens():
            conn.assert_closed()                     # allowed: it said it would close
            return
        conn.send(b"hello" + request(target="/next"))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"next")


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("stream", [False, True])
def test_status_without_body_writes_no_body(serve, status, stream):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/next":
            start_response("200 OK", [("Content-Length", "4")])
            return [b"next"]
        ch = with_channel(environ)
        ch.send({"status": status, "headers": {"X-S": "1"}, "body": "must not appear"},
                close_after_send=not stream)
        if stream:
            ch.send("nor this", close_after_send=False)
            ch.close()
        return ch

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response()
        assert resp.status == status
        assert resp.get("x-s") == "1"
        assert not resp.has("transfer-encoding")
        conn.send(request(target="/next"))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"next")
        assert conn.buf == b""
