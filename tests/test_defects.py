"""Defects found by outside tests (issue 8), each with the test that failed before its fix.

Points 1 (trailers crossing requests), 6 (SystemExit/KeyboardInterrupt from an
app) and 7 (gevent.Timeout/GreenletExit from an app leaking the connection).
"""
import gevent
import pytest
from greenlet import GreenletExit

from helpers import RawConn, connect, parse_responses, request, send_raw


def record_headers(store):
    def app(environ, start_response):
        environ["wsgi.input"].read()
        store.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]
    return app


@pytest.mark.parametrize("trailer", [b"X-Injected: from-trailer\r\n", b"Host: evil\r\n",
                                     b"X-A: 1\r\nX-B: 2\r\n"])
def test_trailers_never_become_headers_of_the_next_request(serve, trailer):
    seen = []
    server = serve(record_headers(seen))
    data = (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n" + trailer + b"\r\n"
            b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses = parse_responses(send_raw(server.port, data))
    assert [(r.status, r.body) for r in responses] == [(200, b"/a"), (200, b"/b")]
    assert seen == [{"HTTP_HOST": "x", "HTTP_TRANSFER_ENCODING": "chunked"},
                    {"HTTP_HOST": "x", "HTTP_CONNECTION": "close"}]


def test_trailers_are_not_headers_of_their_own_request_either(serve):
    """Trailers are dropped on both engines (documented in the README)."""
    seen = []
    server = serve(record_headers(seen))
    data = (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            b"\r\n0\r\nX-Late: 1\r\n\r\n")
    assert parse_responses(send_raw(server.port, data))[0].status == 200
    assert seen == [{"HTTP_HOST": "x", "HTTP_TRANSFER_ENCODING": "chunked",
                     "HTTP_CONNECTION": "close"}]


ESCAPES = [SystemExit, KeyboardInterrupt, gevent.Timeout, GreenletExit]


@pytest.mark.parametrize("exc", ESCAPES, ids=lambda e: e.__name__)
def test_base_exception_from_app_answers_500_and_server_goes_on(serve, error_log, exc):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise exc()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"alive"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request("GET", "/boom"))
        assert conn.read_response().status == 500
        conn.assert_closed()
    assert parse_responses(send_raw(server.port, request("GET", "/")))[0].body == b"alive"
    assert any(r.exc_info and r.exc_info[0] is exc for r in error_log)


@pytest.mark.parametrize("exc", ESCAPES, ids=lambda e: e.__name__)
def test_base_exception_from_iterable_and_close_is_contained(serve, error_log, exc):
    closed = []

    class Body:
        def __iter__(self):
            yield b"first"
            raise exc()

        def close(self):
            closed.append(True)
            raise exc()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    server = serve(app)
    data = send_raw(server.port, request("GET", "/"))
    resp = parse_responses(data, allow_incomplete=True)[0]
    assert resp.status == 200 and not resp.complete  # the head was out: cut, not re-answered
    assert closed == [True]
    with gevent.Timeout(5):
        while server.connections:
            gevent.sleep(0.01)


def test_timeouts_escaping_the_app_leak_no_connection(serve):
    """The everyday ``with gevent.Timeout(...)`` idiom, letting it escape."""
    def app(environ, start_response):
        with gevent.Timeout(0.01):
            gevent.sleep(1)
        start_response("200 OK", [])
        return [b"never"]

    server = serve(app)
    socks = []
    for _ in range(20):
        sock = connect(server.port)
        sock.sendall(request("GET", "/"))
        socks.append(sock)
    for sock in socks:
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 500 ")
        sock.close()
    with gevent.Timeout(5, AssertionError(f"connections still held: {server.connections}")):
        while server.connections:
            gevent.sleep(0.01)


def test_system_exit_in_a_channel_callback_is_logged_not_fatal(serve, error_log):
    from gkit import with_channel
    from wshelpers import TEXT, RawWs

    def app(environ, start_response):
        ch = with_channel(environ)

        def on_message(message):
            if message == "exit":
                raise SystemExit(1)
            ch.send(message)
        ch.on_receive(on_message)
        return ch

    server = serve(app)
    ws = RawWs(server.port)
    ws.send_frame(TEXT, b"exit")
    ws.send_frame(TEXT, b"still here")
    assert ws.recv_message() == (TEXT, b"still here")
    assert any(r.exc_info and r.exc_info[0] is SystemExit for r in error_log)
