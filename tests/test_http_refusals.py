"""gkit's own answers (issue 8 point 13): error responses to HEAD carry no
body; response header names and values the app gives are checked (500, never
written); an absolute-form target's authority wins over Host. Both engines."""
import pytest

from helpers import final, get, parse_responses, request, send_raw


def hello(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return [b"hello"]


def failing(environ, start_response):
    raise RuntimeError("boom")


def head_error(port, data):
    """Send ``data`` (a HEAD request) and parse the answer as a response to HEAD:
    a body after the head would be a second, malformed response."""
    received = send_raw(port, data)
    responses = final(parse_responses(received, head=True))
    assert len(responses) == 1, received
    assert received.endswith(b"\r\n\r\n"), received  # nothing after the head
    return responses[0]


@pytest.mark.parametrize("name,app,data,status", [
    ("no-host", hello, b"HEAD / HTTP/1.1\r\n\r\n", 400),
    ("bad-host", hello, b"HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("body-too-large", hello, request("HEAD", headers=[("Content-Length", "2000")]), 413),
    ("app-fails", failing, request("HEAD"), 500),
], ids=lambda v: v if isinstance(v, str) else "")
def test_error_answer_to_head_has_no_body(serve, name, app, data, status, error_log):
    server = serve(app, max_body=1000)
    resp = head_error(server.port, data)
    assert resp.status == status
    assert int(resp.get("content-length")) > 0  # the length a GET would get, as for any HEAD
    assert resp.body == b""


def test_error_answer_to_get_keeps_its_body(serve):
    server = serve(hello)
    resp, = parse_responses(send_raw(server.port, b"GET / HTTP/1.1\r\n\r\n"))
    assert resp.status == 400 and resp.body.startswith(b"400 Bad Request: ")


@pytest.mark.parametrize("header", [
    ("X-Test: evil", "v"),   # would go out as "X-Test: evil: v"
    ("X Test", "v"),
    ("", "v"),
    ("X-Ünï", "v"),
    ("X-Nul", "a\x00b"),
    ("X-Del", "a\x7fb"),
    ("X-Esc", "a\x1bb"),
    ("X-Cr", "a\rb"),
    ("X-Lf", "a\nb"),
], ids=repr)
def test_bad_response_header_is_refused_with_500(serve, header, error_log):
    def app(environ, start_response):
        bad = [header] if environ["PATH_INFO"] == "/bad" else []
        start_response("200 OK", bad + [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    received = send_raw(server.port, request(target="/bad", headers=[("Connection", "close")]))
    resp, = final(parse_responses(received))  # a header line "X-Test: evil: v" would fail here
    assert resp.status == 500, received
    head = received.split(b"\r\n\r\n")[0]
    assert not resp.has("x-test") and b"\x00" not in head and b"\x7f" not in head
    assert get(server.port).status == 200


def test_tab_and_latin1_in_response_values_are_fine(serve):
    def app(environ, start_response):
        start_response("200 OK", [("X-Tab", "a\tb"), ("X-Latin", "caf\xe9"),
                                  ("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    resp = get(server.port)
    assert resp.status == 200
    assert (resp.get("x-tab"), resp.get("x-latin")) == ("a\tb", "caf\xe9")


def report_host(environ, start_response):
    body = environ.get("HTTP_HOST", "-").encode("latin-1")
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


@pytest.mark.parametrize("target,host,expected", [
    ("http://target.example:8080/p?q=1", "other.example", b"target.example:8080"),
    ("http://target.example", "other.example", b"target.example"),
    ("https://[::1]:8443/", "other.example", b"[::1]:8443"),
    ("/p", "other.example", b"other.example"),
])
def test_absolute_form_authority_wins_over_host(serve, target, host, expected):
    """RFC 9112 §3.2.2: the target's authority is the host; Host is ignored."""
    server = serve(report_host)
    resp = get(server.port, target, host=host)
    assert (resp.status, resp.body) == (200, expected)
