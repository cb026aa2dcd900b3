"""Response framing and errors: Content-Length vs chunked vs close, HEAD, 204/304,
apps that raise, header injection.

Issue 2, points 4 and 5.
"""
import sys

import gevent
import pytest

from helpers import RawConn, get, parse_responses, request, send_raw


def body_app(body_factory, headers=(), status="200 OK"):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain")] + list(headers))
        return body_factory()
    return app


def gen(*pieces):
    def factory():
        yield from pieces
    return factory


@pytest.mark.parametrize("body, expected", [
    ([b"hello"], b"hello"),
    ([b"ab", b"cd", b"ef"], b"abcdef"),
    ((b"tu", b"ple"), b"tuple"),
    ([], b""),
    ([b""], b""),
])
def test_known_length_gets_content_length(serve, body, expected):
    server = serve(body_app(lambda: body))
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.get("content-length") == str(len(expected))
    assert not resp.has("transfer-encoding")
    assert resp.body == expected


def test_app_content_length_is_kept(serve):
    server = serve(body_app(gen(b"abc", b"de"), headers=[("Content-Length", "5")]))
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response()
    assert resp.get_all("content-length") == ["5"]
    assert not resp.has("transfer-encoding")
    assert resp.body == b"abcde"


def test_generator_body_is_chunked_on_http11(serve):
    server = serve(body_app(gen(b"first,", b"second,", b"third")))
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.get("transfer-encoding", "").lower() == "chunked"
        assert not resp.has("content-length")
        assert resp.framing == "chunked" and resp.complete
        assert resp.body == b"first,second,third"
        conn.send(request())  # the chunked body ended properly: the connection goes on
        assert conn.read_response().body == b"first,second,third"


def test_empty_chunks_do_not_end_the_body(serve):
    """A generator yielding b"" must not produce a zero-length chunk (which
    would end the chunked body early)."""
    server = serve(body_app(gen(b"a", b"", b"b", b"", b"c")))
    with RawConn(server.port) as conn:
        conn.send(request() + request())
        first, second = conn.read_response(), conn.read_response()
    assert first.body == b"abc" and second.body == b"abc"


def test_generator_body_is_close_delimited_on_http10(serve):
    server = serve(body_app(gen(b"one ", b"two")))
    data = send_raw(server.port, b"GET / HTTP/1.0\r\n\r\n", shut_wr=False)
    (resp,) = parse_responses(data)
    assert resp.status == 200
    assert resp.framing == "close"
    assert resp.body == b"one two"
    assert not resp.has("transfer-encoding")


def test_head_sends_headers_only(serve):
    server = serve(body_app(lambda: [b"hello"], headers=[("Content-Length", "5")]))
    with RawConn(server.port) as conn:
        conn.send(request("HEAD"))
        resp = conn.read_response(head=True)
        assert resp.status == 200
        assert resp.get("content-length") == "5"
        conn.send(request("GET"))  # no body bytes were sent after the HEAD response
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"hello")


def test_head_gets_the_get_content_length_for_a_list_body(serve):
    server = serve(body_app(lambda: [b"hello ", b"world"]))
    with RawConn(server.port) as conn:
        conn.send(request("HEAD") + request("GET"))
        head = conn.read_response(head=True)
        resp = conn.read_response()
    assert head.status == 200 and head.body == b""
    assert head.get("content-length") == "11"
    assert resp.body == b"hello world"


def test_head_with_generator_body_sends_nothing_after_the_head(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"not for HEAD"
        return body()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request("HEAD") + request("HEAD"))
        first = conn.read_response(head=True)
        second = conn.read_response(head=True)
        assert first.status == second.status == 200
        assert conn.silent_for(0.2), f"bytes after HEAD responses: {conn.buf!r}"


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses(serve, status):
    server = serve(body_app(lambda: [], status=status))
    with RawConn(server.port) as conn:
        conn.send(request() + request(target="/again"))
        first = conn.read_response()
        second = conn.read_response()
        assert conn.silent_for(0.2), f"stray bytes: {conn.buf!r}"
    for resp in (first, second):
        assert resp.status_line == "HTTP/1.1 " + status
        assert not resp.has("transfer-encoding")
        if status.startswith("204"):
            assert not resp.has("content-length")  # RFC 9110 §8.6: MUST NOT


def test_204_with_generator_body_sends_no_chunked_framing(serve):
    server = serve(body_app(gen(), status="204 No Content"))
    with RawConn(server.port) as conn:
        conn.send(request() + request())
        assert conn.read_response().status == 204
        assert conn.read_response().status == 204
        assert conn.silent_for(0.2), f"stray bytes: {conn.buf!r}"


# --- apps that fail ---------------------------------------------------------

def test_app_raising_gives_500_and_logs(serve, error_log):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom-7f3a")
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    resp = get(server.port, "/boom")
    assert resp.status == 500
    assert b"boom-7f3a" not in resp.body  # no traceback for the client
    assert get(server.port, "/fine").status == 200  # the server carries on
    logged = [r for r in error_log if r.exc_info and "boom-7f3a" in str(r.exc_info[1])]
    assert logged, [r.getMessage() for r in error_log]
    assert logged[0].exc_info[0] is RuntimeError


def test_app_raising_keeps_connection_usable_or_closes_cleanly(serve, error_log):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("x")
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/boom"))
        resp = conn.read_response()
        assert resp.status == 500
        if "close" in resp.connection_tokens():
            conn.assert_closed()
        else:
            conn.send(request(target="/next"))
            assert conn.read_response().body == b"ok"


@pytest.mark.parametrize("where", ["before-start-response", "in-generator-before-first-chunk",
                                   "non-iterable", "bad-status"])
def test_failures_before_anything_is_sent_give_500(serve, error_log, where):
    def app(environ, start_response):
        if where == "before-start-response":
            raise KeyError("nope")
        if where == "bad-status":
            start_response("OK", [])  # no status code
            return [b"x"]
        start_response("200 OK", [("X-Partial", "1")])
        if where == "non-iterable":
            return 42

        def body():
            raise LookupError("in generator")
            yield b"never"
        return body()

    server = serve(app)
    resp = get(server.port)
    assert resp.status == 500
    assert not resp.has("x-partial")
    assert get(server.port).status == 500  # and again: nothing got stuck


def test_app_raising_after_first_chunk_cuts_the_connection(serve, error_log):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"first part"
            raise RuntimeError("late-failure-91c")
        return body()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        data = conn.read_until_close()
    (resp,) = parse_responses(data, allow_incomplete=True)
    assert resp.status == 200
    assert resp.framing == "chunked"
    assert not resp.complete, "the body must not look complete: the app failed"
    assert resp.body == b"first part"
    assert any(r.exc_info and "late-failure-91c" in str(r.exc_info[1]) for r in error_log)


def test_app_raising_with_content_length_cuts_short(serve, error_log):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "100")])

        def body():
            yield b"x" * 10
            raise RuntimeError("short")
        return body()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        data = conn.read_until_close()
    (resp,) = parse_responses(data, allow_incomplete=True)
    assert resp.status == 200 and not resp.complete
    assert resp.body == b"x" * 10


def test_exc_info_after_headers_sent_reraises(serve, error_log):
    """PEP 3333: start_response with exc_info once headers are out re-raises; the
    server then cuts the connection."""
    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"partial"
            try:
                raise ValueError("late")
            except ValueError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never"
        return body()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        data = conn.read_until_close()
    (resp,) = parse_responses(data, allow_incomplete=True)
    assert resp.status == 200 and not resp.complete
    assert resp.body == b"partial"


# --- header injection -------------------------------------------------------

@pytest.mark.parametrize("status, headers", [
    ("200 OK", [("X-Bad", "a\r\nInjected: yes")]),
    ("200 OK", [("X-Bad", "a\nInjected: yes")]),
    ("200 OK", [("X-Bad", "a\rInjected: yes")]),
    ("200 OK", [("X-Bad\r\nInjected", "yes")]),
    ("200 OK", [("Set-Cookie", "a=1"), ("X-Bad", "v\r\n\r\nInjected: yes")]),
    ("200 OK\r\nInjected: yes", []),
], ids=["crlf-value", "lf-value", "cr-value", "crlf-name", "crlf-crlf-value", "crlf-status"])
def test_cr_lf_from_app_is_refused(serve, error_log, status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"should not be sent"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(headers=[("Connection", "close")]))
        data = conn.read_until_close()
    assert b"Injected" not in data
    assert b"should not be sent" not in data
    (resp,) = parse_responses(data)
    assert resp.status == 500
    assert get(server.port).status == 500  # still serving


def test_non_latin1_header_value_is_refused(serve, error_log):
    def app(environ, start_response):
        start_response("200 OK", [("X-Snowman", "\u2603")])
        return [b"x"]

    server = serve(app)
    assert get(server.port).status == 500


def test_str_body_is_refused(serve, error_log):
    """PEP 3333: body chunks are bytes; a str is an app error, not silently encoded."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["text, not bytes"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(headers=[("Connection", "close")]))
        data = conn.read_until_close()
    assert b"text, not bytes" not in data
    responses = parse_responses(data, allow_incomplete=True)
    assert not responses or responses[0].status == 500 or not responses[0].complete, data


def test_slow_app_does_not_block_other_connections(serve):
    release = serve.event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            release.wait()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app, thread=4)
    slow = gevent.spawn(get, server.port, "/slow")
    assert get(server.port, "/fast").status == 200
    assert not slow.ready()
    release.set()
    assert slow.get(timeout=5).status == 200


def test_app_body_shorter_than_its_content_length_ends_the_connection(serve, error_log):
    """The app promised 10 bytes and gave 3: the response cannot be completed, so
    the connection must end (a keep-alive client would misread the next bytes)."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request() + request())
        data = conn.read_until_close()
    (resp,) = parse_responses(data, allow_incomplete=True)
    assert resp.status == 200 and not resp.complete
    assert resp.body == b"abc"


def test_app_body_longer_than_its_content_length_is_cut(serve, error_log):
    """PEP 3333: never send more than Content-Length; the extra bytes would be
    taken for the next response."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "3")])
        return [b"abc", b"SMUGGLED"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request() + request(headers=[("Connection", "close")]))
        data = conn.read_until_close()
    assert b"SMUGGLED" not in data
    responses = parse_responses(data)
    assert [(r.status, r.body) for r in responses] in ([(200, b"abc")],
                                                       [(200, b"abc"), (200, b"abc")])


def test_slow_reading_client_gets_every_byte(serve):
    """Backpressure: the client does not read for a while; the server waits."""
    payload = b"".join(bytes([i % 251]) * 65536 for i in range(64))  # 4 MiB

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(payload)))])
        return [payload[i:i + 65536] for i in range(0, len(payload), 65536)]

    server = serve(app)
    with RawConn(server.port, timeout=20) as conn:
        conn.send(request())
        conn.read_until(b"\r\n\r\n")
        gevent.sleep(0.5)  # the server's socket buffer fills up meanwhile
        resp = conn.read_response(timeout=20)
    assert resp.body == payload


def test_empty_iterator_body(serve):
    server = serve(body_app(lambda: iter([])))
    with RawConn(server.port) as conn:
        conn.send(request() + request())
        first, second = conn.read_response(), conn.read_response()
    assert (first.status, first.body) == (200, b"")
    assert (second.status, second.body) == (200, b"")
