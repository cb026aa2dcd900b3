"""Both engines give exactly the same status for the requests they used to
disagree on (issue 8 point 12), decided by gkit's checks in
gkit/proto/h1_checks.py and gkit/proto/chunked.py.

Each row is (request bytes, expected status of the one final response); the
``serve`` fixture runs every row on httptools and on h11. The README's
"Refused requests" bullet says which RFC each answer follows.
"""
import pytest

from helpers import final, get, parse_responses, send_raw

H = b"Host: x\r\n"
TE = b"Transfer-Encoding: chunked\r\n"


def post(head: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\n" + H + head + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return post(TE, body)


ROWS = [
    # Content-Length: one field of 1 to 18 digits (RFC 9110 §8.6 lets a server refuse repeats)
    ("cl-twice", post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), 400),
    ("cl-list", post(b"Content-Length: 3, 3\r\n", b"abc"), 400),
    ("cl-5000-zeros", post(b"Content-Length: " + b"0" * 5000 + b"\r\n"), 400),
    ("cl-leading-zeros", post(b"Content-Length: 0003\r\n", b"abc"), 200),
    ("cl-sign", post(b"Content-Length: +3\r\n", b"abc"), 400),
    # Transfer-Encoding: chunked last, once; an empty list element is refused, never 5xx
    ("te-trailing-comma", post(b"Transfer-Encoding: chunked,\r\n", b"0\r\n\r\n"), 400),
    ("te-leading-comma", post(b"Transfer-Encoding: , chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-empty", post(b"Transfer-Encoding: \r\n"), 400),
    ("te-upper-case", post(b"Transfer-Encoding: CHUNKED\r\n", b"0\r\n\r\n"), 200),
    ("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501),
    ("te-chunked-gzip", post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), 400),
    # chunk-size lines: RFC 9112 §7.1, no whitespace, at most 16 hex digits
    ("chunk-ok", chunked(b"3\r\nabc\r\n0\r\n\r\n"), 200),
    ("chunk-bare-lf", chunked(b"3\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-bare-cr", chunked(b"3\rabc\r\n0\r\n\r\n"), 400),
    ("chunk-trailing-space", chunked(b"3 \r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-trailing-tab", chunked(b"3\t\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-16-digits", chunked(b"0000000000000003\r\nabc\r\n0\r\n\r\n"), 200),
    ("chunk-17-digits", chunked(b"00000000000000003\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-25-digits", chunked(b"0" * 24 + b"3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-18-f", chunked(b"f" * 18 + b"\r\nabc"), 400),
    ("chunk-over-max-body", chunked(b"ffffffff\r\nabc"), 413),
    ("chunk-data-without-crlf", chunked(b"3\r\nabcX\r\n0\r\n\r\n"), 400),
    # chunk extensions: ";" token ["=" token / quoted-string], nothing else
    ("ext-ok", chunked(b"3;a=b\r\nabc\r\n0\r\n\r\n"), 200),
    ("ext-quoted", chunked(b'3;a="b c"\r\nabc\r\n0\r\n\r\n'), 200),
    ("ext-no-value", chunked(b"3;a\r\nabc\r\n0\r\n\r\n"), 200),
    ("ext-empty", chunked(b"3;\r\nabc\r\n0\r\n\r\n"), 400),
    ("ext-empty-value", chunked(b"3;a=\r\nabc\r\n0\r\n\r\n"), 400),
    ("ext-control", chunked(b"3;a\x01\r\nabc\r\n0\r\n\r\n"), 400),
    ("ext-spaces", chunked(b"3 ; a = b\r\nabc\r\n0\r\n\r\n"), 400),
    # trailer lines: read like header lines, then dropped
    ("trailer-ok", chunked(b"0\r\nX: y\r\n\r\n"), 200),
    ("trailer-control", chunked(b"0\r\nX: y\x01\r\n\r\n"), 400),
    ("trailer-bare-lf", chunked(b"0\r\nX: y\n\r\n"), 400),
    ("trailer-obs-fold", chunked(b"0\r\nX: y\r\n z\r\n\r\n"), 400),
    ("trailer-no-colon", chunked(b"0\r\nXy\r\n\r\n"), 400),
    ("trailer-content-length", chunked(b"0\r\nContent-Length: 5\r\n\r\n"), 400),
    # request line: one SP between its three parts (RFC 9112 §3)
    ("two-spaces-before-target", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("two-spaces-after-target", b"GET /  HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab-separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    # absolute-form authority (RFC 3986 §3.2, RFC 9110 §4.2)
    ("absolute-ok", b"GET http://a:80/p?q HTTP/1.1\r\n" + H + b"\r\n", 200),
    ("absolute-bad-char", b"GET http://a^b/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-unclosed-ipv6", b"GET http://[::1/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-empty-host", b"GET http:/// HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-userinfo", b"GET http://u@a/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-bad-port", b"GET http://a:8x/ HTTP/1.1\r\n" + H + b"\r\n", 400),
]


def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


@pytest.mark.parametrize("name,data,status", ROWS, ids=[r[0] for r in ROWS])
def test_engines_give_this_status(serve, name, data, status):
    server = serve(app, max_body=1 << 20)
    received = send_raw(server.port, data)
    responses = final(parse_responses(received))
    assert [r.status for r in responses] == [status], received[:300]
    if status >= 400:
        body = responses[0].body.decode("utf-8")
        # a clean reason: no Python repr (h11's bytearray(b'...')), no uncaught error
        assert "bytearray" not in body and "b'" not in body and "callback" not in body, body
        assert get(server.port).status == 200
