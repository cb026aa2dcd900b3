"""Keep-alive, pipelining and connection closing (RFC 9112 §9).

Issue 2, point 4: "keep-alive and pipelining, in order; HTTP/1.0 keep-alive
when asked".
"""
import json

import gevent

from helpers import RawConn, chunked, parse_responses, request, send_raw


def path_app(environ, start_response):
    """Answers with its path; /slow takes a little while (so order matters)."""
    if environ["PATH_INFO"] == "/slow":
        gevent.sleep(0.05)
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def stream_app(environ, start_response):
    """A body of unknown length (a generator)."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"streamed "
        yield environ["PATH_INFO"].encode()
    return gen()


def test_keep_alive_sequential(serve):
    server = serve(path_app)
    with RawConn(server.port) as conn:
        for i in range(5):
            conn.send(request(target=f"/r{i}"))
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, f"/r{i}".encode())
            assert "close" not in resp.connection_tokens()


def test_three_pipelined_requests_in_one_send(serve):
    server = serve(path_app)
    raw = request(target="/slow") + request(target="/2") + request(target="/3")
    with RawConn(server.port) as conn:
        conn.send(raw)
        bodies = [conn.read_response().body for _ in range(3)]
        assert bodies == [b"/slow", b"/2", b"/3"]
        conn.send(request(target="/4"))  # and the connection is still usable
        assert conn.read_response().body == b"/4"


def test_pipelined_with_bodies_and_half_close(serve):
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        out = json.dumps([environ["PATH_INFO"], body.decode()]).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]

    server = serve(app)
    raw = (request("POST", "/a", body=b"first")
           + request("POST", "/b", headers=[("Transfer-Encoding", "chunked")],
                     body=chunked(b"sec", b"ond"))
           + request("GET", "/c"))
    responses = parse_responses(send_raw(server.port, raw))  # write side shut after sending
    assert [json.loads(r.body) for r in responses] == [["/a", "first"], ["/b", "second"],
                                                       ["/c", ""]]


def test_pipelined_streaming_responses_keep_order(serve):
    server = serve(stream_app)
    raw = b"".join(request(target=f"/{i}") for i in range(4))
    with RawConn(server.port) as conn:
        conn.send(raw)
        for i in range(4):
            resp = conn.read_response()
            assert resp.framing == "chunked"
            assert resp.body == b"streamed /%d" % i


def test_http11_connection_close(serve):
    server = serve(path_app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/x", headers=[("Connection", "close")])
                  + request(target="/never"))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"/x")
        assert "close" in resp.connection_tokens()
        conn.assert_closed()  # and /never is not answered


def test_connection_close_among_other_tokens(serve):
    server = serve(path_app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/x", headers=[("Connection", "X-Foo, Close")]))
        assert conn.read_response().status == 200
        conn.assert_closed()


def test_http10_without_keep_alive_closes(serve):
    server = serve(path_app)
    with RawConn(server.port) as conn:
        conn.send(b"GET /old HTTP/1.0\r\n\r\n")
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"/old")
        assert "keep-alive" not in resp.connection_tokens()
        conn.assert_closed()


def test_http10_keep_alive_on_request(serve):
    server = serve(path_app)
    with RawConn(server.port) as conn:
        for i in range(3):
            conn.send(b"GET /k%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i)
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, b"/k%d" % i)
            assert resp.get("connection", "").lower() == "keep-alive"
            assert resp.get("content-length") == str(len(resp.body))
        conn.send(b"GET /last HTTP/1.0\r\n\r\n")  # without keep-alive: answered, then closed
        resp = conn.read_response()
        assert resp.body == b"/last"
        conn.assert_closed()


def test_http10_keep_alive_with_unknown_length_closes(serve):
    """HTTP/1.0 has no chunked coding: a body of unknown length is delimited by
    the close, so the server cannot keep the connection."""
    server = serve(stream_app)
    with RawConn(server.port) as conn:
        conn.send(b"GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = conn.read_until_close()
    (resp,) = parse_responses(data)
    assert resp.status == 200
    assert resp.framing == "close"
    assert resp.body == b"streamed /s"
    assert "keep-alive" not in resp.connection_tokens()
    assert not resp.has("transfer-encoding")


def test_http10_response_version(serve):
    server = serve(path_app)
    (resp,) = parse_responses(send_raw(server.port, b"GET / HTTP/1.0\r\n\r\n"))
    assert resp.version in ("HTTP/1.1", "HTTP/1.0")
    assert resp.status == 200


def test_keep_alive_after_error_response_from_app(serve):
    def app(environ, start_response):
        start_response("404 Not Found", [("Content-Length", "0")])
        return []

    server = serve(app)
    with RawConn(server.port) as conn:
        for _ in range(3):
            conn.send(request(target="/missing"))
            resp = conn.read_response()
            assert (resp.status, resp.body) == (404, b"")


def test_leading_empty_line_before_request_is_ignored(serve):
    """RFC 9112 §2.2: a server SHOULD ignore at least one empty line received
    before the request-line (some clients send a CRLF after a POST body)."""
    server = serve(path_app)
    raw = (request("POST", "/a", body=b"xy") + b"\r\n" + request(target="/b")
           + b"\r\n" + request(target="/c", headers=[("Connection", "close")]))
    responses = parse_responses(send_raw(server.port, raw))
    assert [(r.status, r.body) for r in responses] == [(200, b"/a"), (200, b"/b"), (200, b"/c")]


def test_client_closing_between_requests_is_quiet(serve, error_log):
    server = serve(path_app)
    for _ in range(5):
        with RawConn(server.port) as conn:
            conn.send(request(target="/q"))
            assert conn.read_response().status == 200
    # the server is fine and logged no error for clients that simply went away
    with RawConn(server.port) as conn:
        conn.send(request(target="/after"))
        assert conn.read_response().body == b"/after"
    assert [r for r in error_log if r.levelname in ("ERROR", "CRITICAL")] == []


def test_error_midway_through_pipeline(serve):
    """A malformed request after good ones: the good ones are answered in order,
    then a 400, then the connection closes (later bytes are not parsed)."""
    server = serve(path_app)
    raw = (request(target="/1") + request(target="/2") + b"BAD\x01REQUEST\r\n\r\n"
           + request(target="/3"))
    with RawConn(server.port) as conn:
        conn.send(raw)
        data = conn.read_until_close()
    responses = parse_responses(data)
    assert [(r.status, r.body) for r in responses[:2]] == [(200, b"/1"), (200, b"/2")]
    assert [r.status for r in responses[2:]] == [400]


def test_app_connection_close_header_closes(serve):
    """An app that says Connection: close gets the connection closed after its response."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "3"), ("Connection", "close")])
        return [b"bye"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request() + request(target="/never"))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"bye")
        assert "close" in resp.connection_tokens()
        conn.assert_closed()


def test_hundred_pipelined_requests(serve):
    server = serve(path_app)
    raw = b"".join(request(target=f"/p{i}") for i in range(100))
    with RawConn(server.port, timeout=10) as conn:
        conn.send(raw)
        bodies = [conn.read_response().body for _ in range(100)]
    assert bodies == [b"/p%d" % i for i in range(100)]


def test_requests_sent_one_byte_at_a_time(serve):
    """Every split point of a head and a chunked body is handled (both engines)."""
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        out = environ["PATH_INFO"].encode() + b":" + body
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]

    server = serve(app)
    raw = (request("POST", "/one", headers=[("X-A", "b")], body=b"abc")
           + request("POST", "/two", headers=[("Transfer-Encoding", "chunked")],
                     body=chunked(b"de", b"fgh")))
    with RawConn(server.port) as conn:
        for i in range(len(raw)):
            conn.send(raw[i:i + 1])
            gevent.sleep(0.001)  # let each byte go out on its own
        assert conn.read_response().body == b"/one:abc"
        assert conn.read_response().body == b"/two:defgh"


def test_head_split_between_cr_and_lf(serve):
    """TCP may split a request anywhere, also inside a CRLF."""
    server = serve(path_app)
    with RawConn(server.port) as conn:
        for piece in (b"GET /split HTTP/1.1\r", b"\nHost: example.com\r", b"\n\r", b"\n"):
            conn.send(piece)
            gevent.sleep(0.05)
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"/split")


def test_head_sent_line_by_line(serve):
    """A client that writes its head one line per send (the pieces end on CRLF)."""
    server = serve(path_app)
    with RawConn(server.port) as conn:
        for piece in (b"GET /lines HTTP/1.1\r\n", b"Host: example.com\r\n", b"X-A: b\r\n",
                      b"\r\n"):
            conn.send(piece)
            gevent.sleep(0.05)
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"/lines")


def test_upgrade_request_to_a_plain_app_is_served_as_http11(serve):
    """RFC 9110 §7.8: a server may ignore Upgrade. An app that does not take the
    connection (no channel) answers normally; the connection then goes on, or
    the response says Connection: close and the server closes."""
    server = serve(path_app)
    h2c = request(target="/up", headers=[("Connection", "Upgrade, HTTP2-Settings"),
                                         ("Upgrade", "h2c"),
                                         ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
    with RawConn(server.port) as conn:
        conn.send(h2c + request(target="/next"))
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"/up")
        assert not first.has("upgrade")
        if "close" in first.connection_tokens():
            conn.assert_closed()
        else:
            second = conn.read_response()
            assert (second.status, second.body) == (200, b"/next")


def test_upgrade_request_with_body_keeps_body_framing(serve):
    """The body of a request that carries Upgrade is still its body (both engines)."""
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = serve(app)
    raw = request("POST", "/", headers=[("Connection", "Upgrade"), ("Upgrade", "foo/2")],
                  body=b"payload") + request(target="/after")
    with RawConn(server.port) as conn:
        conn.send(raw)
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"payload")
        if "close" in first.connection_tokens():
            conn.assert_closed()
        else:
            assert conn.read_response().status == 200
