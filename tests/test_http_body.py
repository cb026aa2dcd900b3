"""Request bodies: wsgi.input streaming, chunked bodies, Expect: 100-continue.

Issue 2, point 4: "wsgi.input streams the body as the app reads it, chunked
request bodies included; Expect: 100-continue answered with 100 Continue on the
app's first read, and never when the body is rejected up front".
"""
import hashlib
import json
import os

import gevent
import pytest

from helpers import RawConn, chunked, final, parse_responses, request, send_raw


def report(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def echo_app(environ, start_response):
    """Answers with the body it read (read() to the end)."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def test_content_length_body(serve):
    server = serve(echo_app)
    (resp,) = parse_responses(send_raw(server.port, request("POST", "/", body=b"hello world")))
    assert (resp.status, resp.body) == (200, b"hello world")


def test_read_sizes_readline_and_eof(serve):
    seen = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        seen["parts"] = [inp.read(3), inp.read(0), inp.readline(), inp.read(4)]
        seen["rest"] = inp.read()
        seen["eof"] = [inp.read(), inp.read(10), inp.readline()]
        return report(start_response, {})

    server = serve(app)
    body = b"abcdef\nghijklm\nno"
    (resp,) = parse_responses(send_raw(server.port, request("POST", "/", body=body)))
    assert resp.status == 200
    assert seen["parts"] == [b"abc", b"", b"def\n", b"ghij"]
    assert seen["rest"] == b"klm\nno"
    assert seen["eof"] == [b"", b"", b""]


def test_readline_readlines_and_iteration(serve):
    seen = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        first = inp.readline()
        if environ["PATH_INFO"] == "/iter":
            seen["lines"] = [first] + list(inp)
        else:
            seen["lines"] = [first] + inp.readlines()
        return report(start_response, {})

    server = serve(app)
    body = b"one\ntwo\n\nthree"
    for path in ["/iter", "/readlines"]:
        (resp,) = parse_responses(send_raw(server.port, request("POST", path, body=body)))
        assert resp.status == 200
        assert seen["lines"] == [b"one\n", b"two\n", b"\n", b"three"], path


def test_read_never_passes_the_body_end(serve):
    """read(n) with n beyond the body gives the body only: the next pipelined
    request is not eaten."""
    bodies = []

    def app(environ, start_response):
        bodies.append(environ["wsgi.input"].read(1000))
        bodies.append(environ["wsgi.input"].read(1000))
        return report(start_response, {"path": environ["PATH_INFO"]})

    server = serve(app)
    raw = (request("POST", "/one", body=b"abc") + request("GET", "/two")
           + request("GET", "/three", headers=[("Connection", "close")]))
    responses = parse_responses(send_raw(server.port, raw))
    assert [json.loads(r.body)["path"] for r in responses] == ["/one", "/two", "/three"]
    assert bodies == [b"abc", b"", b"", b"", b"", b""]


def test_get_without_body_reads_empty_at_once(serve):
    """No Content-Length and no Transfer-Encoding: the body is empty, read() must
    not wait for more bytes."""
    seen = []

    def app(environ, start_response):
        seen.append((environ["wsgi.input"].read(), environ["wsgi.input"].read(5)))
        return report(start_response, {})

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request("GET", "/"))  # keep-alive: the client sends nothing more
        assert conn.read_response(timeout=5).status == 200
    assert seen == [(b"", b"")]


def test_unread_body_is_skipped_before_the_next_request(serve):
    """An app that ignores the body: the server discards it and parses the next
    pipelined request correctly."""
    def app(environ, start_response):
        return report(start_response, {"path": environ["PATH_INFO"]})

    server = serve(app)
    raw = (request("POST", "/a", body=b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
           + request("POST", "/b", headers=[("Transfer-Encoding", "chunked")],
                     body=chunked(b"GET /smuggled2 HTTP/1.1\r\n\r\n"))
           + request("GET", "/c", headers=[("Connection", "close")]))
    responses = parse_responses(send_raw(server.port, raw))
    assert [r.status for r in responses] == [200, 200, 200]
    assert [json.loads(r.body)["path"] for r in responses] == ["/a", "/b", "/c"]


def test_large_body_streamed(serve):
    body = os.urandom(3 * 1024 * 1024 + 17)

    def app(environ, start_response):
        digest = hashlib.sha256()
        total = 0
        while True:
            chunk = environ["wsgi.input"].read(65536)
            if not chunk:
                break
            assert len(chunk) <= 65536
            total += len(chunk)
            digest.update(chunk)
        return report(start_response, {"len": total, "sha": digest.hexdigest()})

    server = serve(app)
    with RawConn(server.port, timeout=20) as conn:
        sender = gevent.spawn(conn.send, request("POST", "/", body=body))
        resp = conn.read_response(timeout=20)
        sender.get(timeout=20)
    assert resp.status == 200
    assert json.loads(resp.body) == {"len": len(body), "sha": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_app_sees_body_start_before_the_rest_is_sent(serve, framing):
    """wsgi.input is a stream: the app reads the first bytes while the client
    still holds back the rest of the body."""
    got_first = serve.event()
    seen = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        seen["first"] = inp.read(5)
        got_first.set()
        seen["rest"] = inp.read()
        return report(start_response, {"n": len(seen["first"]) + len(seen["rest"])})

    server = serve(app)
    first, rest = b"hello", b" streaming world"
    with RawConn(server.port) as conn:
        if framing == "chunked":
            conn.send(request("POST", "/", headers=[("Transfer-Encoding", "chunked")])
                      + b"5\r\nhello\r\n")
        else:
            conn.send(request("POST", "/", headers=[("Content-Length", str(len(first + rest)))])
                      + first)
        assert got_first.wait(timeout=5), "the app did not get the first part of the body"
        assert seen["first"] == b"hello"
        conn.send(chunked(rest) if framing == "chunked" else rest)
        resp = conn.read_response()
    assert resp.status == 200
    assert seen["rest"] == rest
    assert json.loads(resp.body) == {"n": len(first + rest)}


def test_chunked_request_body(serve):
    server = serve(echo_app)
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"hello", b" ", b"chunked", b" world"))
    (resp,) = parse_responses(send_raw(server.port, raw))
    assert (resp.status, resp.body) == (200, b"hello chunked world")


def test_chunked_request_environ(serve):
    seen = {}

    def app(environ, start_response):
        seen["cl"] = environ.get("CONTENT_LENGTH", "")
        seen["parts"] = [environ["wsgi.input"].read(3), environ["wsgi.input"].read(4),
                         environ["wsgi.input"].read()]
        return report(start_response, {})

    server = serve(app)
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"ab", b"cdef", b"g"))
    assert parse_responses(send_raw(server.port, raw))[0].status == 200
    assert seen["cl"] == ""  # the length is unknown
    assert b"".join(seen["parts"]) == b"abcdefg"
    assert seen["parts"][0] == b"abc"  # read(n) collects across chunk boundaries
    assert seen["parts"][1] == b"defg"


def test_chunked_with_extensions_trailers_and_uppercase_hex(serve):
    server = serve(echo_app)
    payload = b"0123456789"
    body = (b"A;name=value;quoted=\"a b\"\r\n" + payload + b"\r\n"
            b"3\r\nxyz\r\n0\r\nX-Trailer: yes\r\n\r\n")
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")], body=body)
    (resp,) = parse_responses(send_raw(server.port, raw))
    assert (resp.status, resp.body) == (200, payload + b"xyz")


def test_chunked_then_keep_alive(serve):
    server = serve(echo_app)
    with RawConn(server.port) as conn:
        for i in range(3):
            piece = b"request %d" % i
            conn.send(request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                              body=chunked(piece[:4], piece[4:])))
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, piece)


def test_empty_chunked_body(serve):
    server = serve(echo_app)
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")], body=b"0\r\n\r\n")
    (resp,) = parse_responses(send_raw(server.port, raw))
    assert (resp.status, resp.body) == (200, b"")


def test_http10_post_with_content_length(serve):
    server = serve(echo_app)
    data = send_raw(server.port, b"POST / HTTP/1.0\r\nContent-Length: 4\r\n\r\nabcd")
    (resp,) = parse_responses(data)
    assert (resp.status, resp.body) == (200, b"abcd")


# --- Expect: 100-continue -------------------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\n"


def expect_request(length, body=b"", **kw):
    return request("POST", "/", headers=[("Expect", "100-continue"),
                                         ("Content-Length", str(length))], body=body, **kw)


def test_100_continue_sent_on_first_read(serve):
    entered, go = serve.event(), serve.event()

    def app(environ, start_response):
        entered.set()
        go.wait()
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(expect_request(5))
        assert entered.wait(timeout=5)
        assert conn.silent_for(0.3), f"sent before the app read: {conn.buf!r}"
        go.set()
        interim = conn.read_response()
        assert interim.raw.startswith(CONTINUE), interim.raw
        assert interim.status == 100 and interim.body == b""
        conn.send(b"hello")
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"hello")


def test_100_continue_not_sent_when_app_answers_without_reading(serve):
    def app(environ, start_response):
        start_response("403 Forbidden", [("Content-Length", "2")])
        return [b"no"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(expect_request(5))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (403, b"no"), resp.raw
        if "close" in resp.connection_tokens():
            assert CONTINUE not in conn.read_until_close(timeout=5)
        else:
            # the server said it keeps reading (RFC 9110 §10.1.1): the content
            # comes, then the next request, which must be parsed as a request
            conn.send(b"hello" + request(target="/next"))
            nxt = conn.read_response()
            assert (nxt.status, nxt.body) == (403, b"no")


def test_100_continue_not_sent_when_body_too_large(serve):
    calls = []

    def app(environ, start_response):
        calls.append(1)
        return echo_app(environ, start_response)

    server = serve(app, max_body=100)
    with RawConn(server.port) as conn:
        conn.send(expect_request(101))
        data = conn.read_until_close(timeout=5)  # 413 and close: the body never comes
    responses = parse_responses(data)
    assert [r.status for r in responses] == [413], data
    assert not data.startswith(b"HTTP/1.1 100")
    assert calls == []


def test_100_continue_only_once_and_body_intact(serve):
    seen = []

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        seen.append(inp.read(2))
        seen.append(inp.read(2))
        seen.append(inp.read())
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(expect_request(6))
        assert conn.read_response().status == 100
        conn.send(b"abcdef")
        interims, resp = conn.read_final()
        assert interims == [] and resp.status == 200
        # the next request on the connection gets its own 100 when it asks
        conn.send(expect_request(1))
        assert conn.read_response().status == 100
        conn.send(b"z")
        assert conn.read_response().status == 200
    assert seen == [b"ab", b"cd", b"ef", b"z", b"", b""]


def test_client_sending_body_without_waiting_for_100(serve):
    server = serve(echo_app)
    data = send_raw(server.port, expect_request(5, body=b"hello"))
    responses = final(parse_responses(data))
    assert [(r.status, r.body) for r in responses] == [(200, b"hello")]


def test_no_100_continue_for_http10(serve):
    """RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored."""
    server = serve(echo_app)
    raw = (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
           b"hello")
    data = send_raw(server.port, raw)
    assert b" 100 " not in data.split(b"\r\n", 1)[0]
    responses = parse_responses(data)
    assert [(r.status, r.body) for r in responses] == [(200, b"hello")]


def test_100_continue_with_chunked_body(serve):
    server = serve(echo_app)
    with RawConn(server.port) as conn:
        conn.send(request("POST", "/", headers=[("Expect", "100-continue"),
                                                ("Transfer-Encoding", "chunked")]))
        interim = conn.read_response()
        assert interim.status == 100
        conn.send(chunked(b"chunk", b"ed"))
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"chunked")


def test_read_minus_one_and_none_mean_all(serve):
    seen = []

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        seen.append(inp.read(2))
        seen.append(inp.read(-1))
        start_response("200 OK", [("Content-Length", "0")])
        return []

    server = serve(app)
    assert parse_responses(send_raw(server.port, request("POST", "/", body=b"abcdef")))[0].status == 200
    assert seen == [b"ab", b"cdef"]


def test_zero_content_length_post(serve):
    server = serve(echo_app)
    raw = request("POST", "/", headers=[("Content-Length", "0")])
    (resp,) = parse_responses(send_raw(server.port, raw))
    assert (resp.status, resp.body) == (200, b"")


def test_many_tiny_chunks(serve):
    server = serve(echo_app)
    payload = bytes(range(256)) * 40  # 10240 one-byte chunks
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(*[payload[i:i + 1] for i in range(len(payload))]))
    (resp,) = parse_responses(send_raw(server.port, raw, timeout=20))
    assert (resp.status, resp.body) == (200, payload)
