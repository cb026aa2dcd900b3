"""Limits (max_body, max_line, header block) and malformed requests.

Issue 2, point 5: "max_body → 413 (declared length at once; chunked when the
count passes it); max_line → 414 for the request line and each header line; a
header block over max(64 KiB, max_line) → 431; malformed requests (...) → 400
and close".
"""
import pytest

from helpers import RawConn, chunked, get, parse_responses, request, send_raw


class Counting:
    """An app that reads the whole body and counts its calls."""

    def __init__(self):
        self.calls = 0
        self.bodies = []

    def __call__(self, environ, start_response):
        self.calls += 1
        body = environ["wsgi.input"].read()
        self.bodies.append(body)
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]


def only_response(data):
    responses = parse_responses(data)
    assert len(responses) == 1, f"expected one response, got {len(responses)}: {data[:300]!r}"
    return responses[0]


def assert_rejected_and_closed(port, raw, status):
    """Send ``raw`` (keeping the write side open), expect exactly one response with
    ``status`` and the server closing the connection."""
    with RawConn(port) as conn:
        conn.send(raw)
        data = conn.read_until_close()
    resp = only_response(data)
    assert resp.status == status, data[:300]
    return resp


# --- max_body ---------------------------------------------------------------

def test_declared_length_over_max_body_is_413_before_the_app(serve):
    app = Counting()
    server = serve(app, max_body=1000)
    # the body is never sent: the server must answer from the head alone
    raw = request("POST", "/", headers=[("Content-Length", "1001")])
    assert_rejected_and_closed(server.port, raw, 413)
    assert app.calls == 0
    assert get(server.port).status == 200


def test_declared_length_at_max_body_is_fine(serve):
    app = Counting()
    server = serve(app, max_body=1000)
    resp = only_response(send_raw(server.port, request("POST", "/", body=b"b" * 1000)))
    assert (resp.status, len(resp.body)) == (200, 1000)


def test_huge_declared_length_is_413(serve):
    app = Counting()
    server = serve(app)  # default max_body 8 MiB
    raw = request("POST", "/", headers=[("Content-Length", str(10 ** 12))])
    assert_rejected_and_closed(server.port, raw, 413)
    assert app.calls == 0


def test_chunked_body_over_max_body_is_413(serve, error_log):
    app = Counting()
    server = serve(app, max_body=1000)
    body = chunked(*[b"c" * 300] * 4)  # 1200 bytes in all, each chunk under the limit
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")], body=body)
    assert_rejected_and_closed(server.port, raw, 413)
    assert app.bodies == []  # the app never got the whole body
    assert get(server.port).status == 200


def test_single_chunk_over_max_body_is_413(serve, error_log):
    app = Counting()
    server = serve(app, max_body=1000)
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                  body=b"%x\r\n" % 5000 + b"d" * 5000 + b"\r\n0\r\n\r\n")
    assert_rejected_and_closed(server.port, raw, 413)
    assert app.bodies == []


def test_chunked_body_at_max_body_is_fine(serve):
    app = Counting()
    server = serve(app, max_body=1000)
    raw = request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"a" * 600, b"b" * 400))
    resp = only_response(send_raw(server.port, raw))
    assert resp.status == 200
    assert resp.body == b"a" * 600 + b"b" * 400


# --- max_line and the header block -------------------------------------------

def test_long_request_line_is_414(serve):
    app = Counting()
    server = serve(app, max_line=1024)
    raw = request(target="/" + "a" * 1100)
    assert_rejected_and_closed(server.port, raw, 414)
    assert app.calls == 0


def test_request_line_under_max_line_is_fine(serve):
    app = Counting()
    server = serve(app, max_line=1024)
    assert get(server.port, "/" + "a" * 900).status == 200


def test_default_max_line(serve):
    app = Counting()
    server = serve(app)
    assert get(server.port, "/" + "a" * 8000).status == 200
    raw = request(target="/" + "a" * 8300)
    assert_rejected_and_closed(server.port, raw, 414)


def test_long_request_line_without_end_is_414(serve):
    """The limit holds while the line is still arriving (no CRLF yet)."""
    server = serve(Counting(), max_line=1024)
    with RawConn(server.port) as conn:
        conn.send(b"GET /" + b"a" * 5000)
        data = conn.read_until_close()
    assert only_response(data).status == 414


def test_long_header_line_is_414(serve):
    app = Counting()
    server = serve(app, max_line=1024)
    raw = request(headers=[("X-Long", "v" * 1100)])
    assert_rejected_and_closed(server.port, raw, 414)
    assert app.calls == 0


def test_header_lines_under_max_line_are_fine(serve):
    app = Counting()
    server = serve(app, max_line=1024)
    assert get(server.port, headers=[("X-Long", "v" * 900)]).status == 200


def test_header_block_over_64k_is_431(serve):
    app = Counting()
    server = serve(app)  # max_line 8192: block limit max(64 KiB, 8192) = 64 KiB
    headers = [(f"X-H{i}", "v" * 1000) for i in range(70)]  # ~70 KB, each line short
    assert_rejected_and_closed(server.port, request(headers=headers), 431)
    assert app.calls == 0


def test_header_block_under_64k_is_fine(serve):
    app = Counting()
    server = serve(app)
    headers = [(f"X-H{i}", "v" * 1000) for i in range(55)]  # ~56 KB
    assert get(server.port, headers=headers).status == 200


def test_header_block_limit_follows_a_large_max_line(serve):
    """With max_line over 64 KiB the block limit is max_line: a single 90 KB
    header line is fine with max_line=100_000."""
    app = Counting()
    server = serve(app, max_line=100_000)
    assert get(server.port, headers=[("X-Big", "v" * 90_000)]).status == 200
    headers = [(f"X-H{i}", "v" * 10_000) for i in range(12)]  # ~120 KB
    assert_rejected_and_closed(server.port, request(headers=headers), 431)


# --- malformed requests: 400 and close -----------------------------------------

H = b"Host: example.com\r\n"

BAD_REQUESTS = {
    "no-host-http11": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\n" + H + b"Host: other.example\r\n\r\n",
    "host-with-space": b"GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n",
    "method-with-paren": b"G(T / HTTP/1.1\r\n" + H + b"\r\n",
    "method-with-ctl": b"GE\x01T / HTTP/1.1\r\n" + H + b"\r\n",
    "method-with-colon": b"GET: / HTTP/1.1\r\n" + H + b"\r\n",
    "missing-target": b"GET HTTP/1.1\r\n" + H + b"\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    "bare-lf-everywhere": b"GET / HTTP/1.1\n" + b"Host: example.com\n\n",
    "bare-lf-in-headers": b"GET / HTTP/1.1\r\nHost: example.com\nX-A: b\r\n\r\n",
    "ctl-in-header-value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n",
    "nul-in-header-value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "del-in-header-value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n",
    "esc-in-header-value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x1b[31mb\r\n\r\n",
    "header-without-colon": b"GET / HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n",
    "empty-header-name": b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n",
    "space-in-header-name": b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n",
    "cl-and-te": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "te-not-ending-in-chunked": (b"POST / HTTP/1.1\r\n" + H
                                 + b"Transfer-Encoding: chunked, identity\r\n\r\nabc"),
    "te-chunked-twice": (b"POST / HTTP/1.1\r\n" + H
                         + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
    "te-without-chunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "cl-negative": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "cl-not-a-number": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n",
    "cl-plus-sign": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc",
    "cl-decimal": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3.0\r\n\r\nabc",
    "cl-two-numbers": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3 4\r\n\r\nabc",
    "cl-duplicate-differing": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n"
                               b"Content-Length: 4\r\n\r\nabcd"),
    "http-2.0": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "http-3.0": b"GET / HTTP/3.0\r\n" + H + b"\r\n",
    "http-0.9-style": b"GET /\r\n\r\n",
    "version-garbage": b"GET / HTTP/1.x\r\n" + H + b"\r\n",
    "version-lowercase": b"GET / http/1.1\r\n" + H + b"\r\n",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "tls-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
}

BAD_CHUNKED = {
    "chunk-size-not-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-empty": b"\r\nhello\r\n0\r\n\r\n",
    "chunk-size-underscore": b"5\r\nhello\r\n6_0\r\n world\r\n0\r\n\r\n",
    "chunk-data-too-long": b"5\r\nhelloXX\r\n0\r\n\r\n",
    "chunk-size-bare-lf": b"5\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_request_is_400_and_closes(serve, name):
    app = Counting()
    server = serve(app)
    assert_rejected_and_closed(server.port, BAD_REQUESTS[name], 400)
    assert app.calls == 0
    assert get(server.port).status == 200  # the server keeps serving


@pytest.mark.parametrize("name", sorted(BAD_CHUNKED))
def test_malformed_chunked_body_is_400_and_closes(serve, error_log, name):
    app = Counting()
    server = serve(app)
    raw = (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
           + BAD_CHUNKED[name])
    assert_rejected_and_closed(server.port, raw, 400)
    assert app.bodies == []  # the app never got a body
    assert get(server.port).status == 200


def test_overflowing_chunk_size_is_refused(serve, error_log):
    app = Counting()
    server = serve(app)
    raw = (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
           + b"f" * 40 + b"\r\nabc\r\n0\r\n\r\n")
    with RawConn(server.port) as conn:
        conn.send(raw)
        data = conn.read_until_close()
    assert only_response(data).status in (400, 413)  # malformed, or over max_body
    assert app.bodies == []


def test_incomplete_head_then_eof_is_quiet(serve, error_log):
    """A client that sends half a head and closes: nothing reaches the app; the
    server closes (with a 400 or without a response) and keeps serving."""
    app = Counting()
    server = serve(app)
    data = send_raw(server.port, b"GET /foo HTTP/1.1\r\nHost: x\r\nX-Half")
    assert data == b"" or only_response(data).status == 400
    assert app.calls == 0
    assert get(server.port).status == 200


def test_body_shorter_than_content_length_then_eof(serve, error_log):
    """The client promises 10 bytes, sends 3 and closes: the app's read raises (it
    must not take 3 bytes for the whole body), nothing hangs, the server keeps serving."""
    seen = []

    def app(environ, start_response):
        try:
            seen.append(environ["wsgi.input"].read())
        except Exception as exc:  # a server may raise on a truncated body
            seen.append(exc)
            raise
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    raw = request("POST", "/", headers=[("Content-Length", "10")]) + b"abc"
    data = send_raw(server.port, raw)
    # an incomplete message (RFC 9112 §8): closed, or a 400; never a 200 as if complete
    assert [r.status for r in parse_responses(data)] in ([], [400]), data
    assert seen != [b"abc"], "the app got a truncated body as if it were whole"
    assert get(server.port).status == 200


def test_error_response_is_well_formed(serve):
    server = serve(Counting())
    resp = only_response(send_raw(server.port, b"GET / HTTP/1.1\r\n\r\n"))
    assert resp.status_line.startswith("HTTP/1.1 400 ")
    assert resp.framing in ("length", "close")
