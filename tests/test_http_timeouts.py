"""idle_timeout and header_timeout (slowloris).

Issue 2, point 5: "idle_timeout closes idle keep-alive connections;
header_timeout closes a client that sends its request head too slowly".
The deadlines below are generous multiples of the configured timeouts: they
only say "closed by the timeout, not by the 60 s default or never".
"""
import gevent
import gevent.event

from helpers import RawConn, get, parse_responses, request


def hello(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return [b"hello"]


def test_idle_timeout_closes_idle_keep_alive(serve):
    server = serve(hello, idle_timeout=0.5, header_timeout=30)
    with RawConn(server.port) as conn:
        conn.send(request())
        assert conn.read_response().status == 200
        conn.assert_closed(timeout=5)
    assert get(server.port).status == 200


def test_idle_timeout_resets_with_each_request(serve):
    server = serve(hello, idle_timeout=0.5, header_timeout=30)
    with RawConn(server.port) as conn:
        for _ in range(4):  # ~0.8 s in all, each gap well under the timeout
            conn.send(request())
            assert conn.read_response().status == 200
            gevent.sleep(0.2)
        conn.send(request())
        assert conn.read_response().status == 200


def test_idle_timeout_does_not_cut_a_slow_app(serve):
    """The timeout is for idle connections, not for an app that computes."""
    def slow(environ, start_response):
        gevent.sleep(1.0)
        return hello(environ, start_response)

    server = serve(slow, idle_timeout=0.3, header_timeout=30)
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response(timeout=10)
    assert (resp.status, resp.body) == (200, b"hello")


def test_silent_new_connection_is_closed(serve):
    """A client that connects and never sends anything does not stay forever."""
    server = serve(hello, idle_timeout=0.5, header_timeout=0.5)
    with RawConn(server.port) as conn:
        data = conn.read_until_close(timeout=5)
    assert data == b"" or parse_responses(data)[0].status == 408


def test_header_timeout_closes_half_sent_head(serve):
    server = serve(hello, idle_timeout=30, header_timeout=0.5)
    with RawConn(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Partial: ")
        data = conn.read_until_close(timeout=5)
    responses = parse_responses(data)
    assert [r.status for r in responses] in ([], [408]), data
    assert get(server.port).status == 200


def test_header_timeout_covers_the_whole_head_slowloris(serve):
    """Bytes trickling in one at a time do not reset the head deadline."""
    server = serve(hello, idle_timeout=30, header_timeout=0.5)
    conn = RawConn(server.port)

    def trickle():
        try:
            conn.send(b"GET / HTTP/1.1\r\nHost: example.com\r\n")
            for _ in range(200):  # 20 s of one byte per 0.1 s, far past the deadline
                conn.send(b"X-Slow: a\r\n"[:1])
                gevent.sleep(0.1)
        except OSError:
            return "cut"
        return "not cut"

    sender = gevent.spawn(trickle)
    try:
        data = conn.read_until_close(timeout=5)
        assert [r.status for r in parse_responses(data)] in ([], [408]), data
    finally:
        sender.kill()
        conn.close()
    assert get(server.port).status == 200


def test_header_timeout_does_not_apply_to_a_slow_body(serve):
    """Once the head is in, the body may take longer than header_timeout (the
    app reads at its own pace); the idle timeout is what guards stalls there."""
    def echo(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = serve(echo, idle_timeout=30, header_timeout=0.3)
    with RawConn(server.port) as conn:
        conn.send(request("POST", "/", headers=[("Content-Length", "6")]))
        for piece in (b"ab", b"cd", b"ef"):
            gevent.sleep(0.2)
            conn.send(piece)
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"abcdef")


def test_fast_client_unaffected_by_small_header_timeout(serve):
    server = serve(hello, idle_timeout=30, header_timeout=0.2)
    with RawConn(server.port) as conn:
        for _ in range(3):
            conn.send(request())
            assert conn.read_response().status == 200


def test_idle_timeout_does_not_cut_a_slowly_streaming_app(serve):
    """Gaps between body chunks longer than idle_timeout: the app is working,
    the client is reading; nothing is idle or stalled."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            for piece in (b"one ", b"two ", b"three"):
                yield piece
                gevent.sleep(0.6)
        return body()

    server = serve(app, idle_timeout=0.3, header_timeout=30)
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response(timeout=10)
    assert resp.complete and resp.body == b"one two three"


def test_stalled_body_is_cut_by_idle_timeout(serve):
    """The client sends part of a body and stalls: the app's read does not wait
    forever; the connection is closed after about idle_timeout."""
    outcome = []

    def app(environ, start_response):
        try:
            outcome.append(environ["wsgi.input"].read())
        except Exception as exc:
            outcome.append(type(exc))
            raise
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app, idle_timeout=0.5, header_timeout=30)
    with RawConn(server.port) as conn:
        conn.send(request("POST", "/", headers=[("Content-Length", "10")]) + b"abc")
        data = conn.read_until_close(timeout=5)
    assert [r.status for r in parse_responses(data)] in ([], [400], [408]), data
    assert outcome and outcome[0] != b"abc"
    assert get(server.port).status == 200


def test_client_that_never_reads_is_cut_by_idle_timeout(serve):
    """Slow-read protection: a client that stops reading an endless response is
    dropped after about idle_timeout, and the body's close() runs."""
    closed = gevent.event.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["PATH_INFO"] != "/endless":
            return [b"ok"]

        def endless():
            try:
                while True:
                    yield b"r" * 65536
            finally:
                closed.set()
        return endless()

    server = serve(app, idle_timeout=0.5, header_timeout=30)
    conn = RawConn(server.port)
    try:
        conn.send(request(target="/endless"))
        conn.read_until(b"rrrr")  # then read no more
        assert closed.wait(timeout=10), "the stalled writer was never cut"
    finally:
        conn.close()
    assert get(server.port).status == 200
