"""Streamed response bodies, close() on the iterable, wsgi.file_wrapper.

Issue 2, point 4: "response iterables streamed, close() always called,
including when the client goes away; wsgi.file_wrapper using socket.sendfile".
"""
import io
import os

import gevent
import pytest

from helpers import RawConn, get, parse_responses, request, send_raw


class TrackedBody:
    """An iterable with close(); ``closed`` is set when close() runs."""

    def __init__(self, pieces, pause=None):
        self.pieces = pieces
        self.pause = pause
        self.closed = gevent.event.Event()
        self.sent = 0

    def __iter__(self):
        for piece in self.pieces:
            if self.pause:
                gevent.sleep(self.pause)
            self.sent += 1
            yield piece

    def close(self):
        self.closed.set()


def test_body_is_streamed_not_buffered(serve):
    more = serve.event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"early part|"
            more.wait()
            yield b"late part"
        return body()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        conn.read_until(b"early part|")  # arrives while the app still holds the rest
        assert b"late part" not in conn.buf
        more.set()
        resp = conn.read_response()
    assert resp.body == b"early part|late part"


def test_write_callable_is_streamed(serve):
    more = serve.event()

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written early|")
        more.wait()
        return [b"returned late"]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        conn.read_until(b"written early|")
        more.set()
        assert conn.read_response().body == b"written early|returned late"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_close_called_after_normal_response(serve, method):
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(TrackedBody([b"a", b"b"]))
        return bodies[-1]

    server = serve(app)
    resp = get(server.port, method=method)
    assert resp.status == 200
    assert resp.body == (b"ab" if method == "GET" else b"")
    assert bodies[0].closed.wait(timeout=5), "close() was not called"


def test_close_called_for_list_subclass(serve):
    closed = gevent.event.Event()

    class ClosingList(list):
        def close(self):
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [])
        return ClosingList([b"abc"])

    server = serve(app)
    assert get(server.port).body == b"abc"
    assert closed.wait(timeout=5)


def test_close_called_when_iteration_raises(serve, error_log):
    class Failing(TrackedBody):
        def __iter__(self):
            yield b"one"
            raise RuntimeError("iteration failed")

    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [])
        bodies.append(Failing([]))
        return bodies[-1]

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        conn.read_until_close()
    assert bodies[0].closed.wait(timeout=5)


def test_close_called_when_headers_are_refused(serve, error_log):
    bodies = []

    def app(environ, start_response):
        start_response("200 OK", [("X-Bad", "a\r\nb")])
        bodies.append(TrackedBody([b"x"]))
        return bodies[-1]

    server = serve(app)
    assert get(server.port).status == 500
    assert bodies[0].closed.wait(timeout=5)


def test_close_called_when_client_disconnects_mid_stream(serve):
    """An endless slow body: the client reads a little and leaves; the server
    notices on a write, stops iterating, and calls close() (the generator's
    finally runs)."""
    finished = gevent.event.Event()
    produced = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["PATH_INFO"] != "/endless":
            return [b"ok"]

        def endless():
            try:
                while True:
                    produced.append(1)
                    yield b"x" * 1024
                    gevent.sleep(0.01)
            finally:
                finished.set()
        return endless()

    server = serve(app)
    conn = RawConn(server.port)
    conn.send(request(target="/endless"))
    conn.read_until(b"xxxx")
    conn.close()
    assert finished.wait(timeout=10), "the body was not closed after the client left"
    count = len(produced)
    gevent.sleep(0.1)
    assert len(produced) == count, "the server kept iterating after close()"
    assert get(server.port).status == 200  # and the server carries on


def test_close_called_when_client_disconnects_before_response(serve):
    """The client goes away while the app computes; close() still runs."""
    entered, go = serve.event(), serve.event()
    bodies = []

    def app(environ, start_response):
        entered.set()
        go.wait()
        start_response("200 OK", [])
        bodies.append(TrackedBody([b"x" * 65536] * 50))
        return bodies[-1]

    server = serve(app)
    conn = RawConn(server.port)
    conn.send(request())
    assert entered.wait(timeout=5)
    conn.close()
    go.set()

    def wait_closed():
        while not bodies:
            gevent.sleep(0.01)
        return bodies[0].closed.wait()
    assert gevent.with_timeout(10, wait_closed, timeout_value=False), "close() was not called"


def test_large_streamed_response_exact(serve):
    pieces = [os.urandom(65536) for _ in range(40)] + [os.urandom(123)]

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return iter(pieces)

    server = serve(app)
    with RawConn(server.port, timeout=20) as conn:
        conn.send(request())
        resp = conn.read_response(timeout=20)
    assert resp.body == b"".join(pieces)


# --- wsgi.file_wrapper ----------------------------------------------------

@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(300_000) + b"the end"
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


def file_app(path, *, set_length=True, seek=0, blksize=None):
    opened = []

    def app(environ, start_response):
        f = open(path, "rb")
        f.seek(seek)
        opened.append(f)
        headers = [("Content-Type", "application/octet-stream")]
        if set_length:
            headers.append(("Content-Length", str(os.path.getsize(path) - seek)))
        start_response("200 OK", headers)
        wrapper = environ["wsgi.file_wrapper"]
        return wrapper(f) if blksize is None else wrapper(f, blksize)
    app.opened = opened
    return app


def test_file_wrapper_exact_bytes(serve, data_file):
    path, data = data_file
    app = file_app(path)
    server = serve(app)
    with RawConn(server.port, timeout=10) as conn:
        conn.send(request())
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.get("content-length") == str(len(data))
        assert resp.body == data
        conn.send(request())  # keep-alive goes on after a sendfile
        assert conn.read_response().body == data
    assert all(f.closed for f in app.opened), "file_wrapper did not close the file"


def test_file_wrapper_without_content_length(serve, data_file):
    path, data = data_file
    server = serve(file_app(path, set_length=False, blksize=8192))
    with RawConn(server.port, timeout=10) as conn:
        conn.send(request())
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.body == data
    if resp.has("content-length"):  # a file's size is known: a server may send it
        assert resp.get("content-length") == str(len(data))


def test_file_wrapper_starts_at_current_position(serve, data_file):
    path, data = data_file
    server = serve(file_app(path, seek=1000))
    with RawConn(server.port, timeout=10) as conn:
        conn.send(request())
        resp = conn.read_response()
    assert resp.body == data[1000:]


def test_file_wrapper_head(serve, data_file):
    path, data = data_file
    server = serve(file_app(path))
    with RawConn(server.port) as conn:
        conn.send(request("HEAD") + request(target="/after"))
        head = conn.read_response(head=True)
        assert head.get("content-length") == str(len(data))
        assert conn.read_response().body == data


def test_file_wrapper_http10(serve, data_file):
    path, data = data_file
    server = serve(file_app(path, set_length=False))
    (resp,) = parse_responses(send_raw(server.port, b"GET / HTTP/1.0\r\n\r\n", timeout=10))
    assert resp.body == data


def test_file_wrapper_with_file_like_without_fileno(serve):
    """Not every file-like has a descriptor: the wrapper must fall back to read()."""
    data = os.urandom(100_000)
    closed = []

    class NoFileno(io.BytesIO):
        def fileno(self):
            raise io.UnsupportedOperation("no fileno")

        def close(self):
            closed.append(True)
            super().close()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](NoFileno(data), 4096)

    server = serve(app)
    resp = get(server.port, timeout=10)
    assert resp.body == data
    assert closed == [True]


def test_file_wrapper_iterable_by_middleware(serve, data_file):
    """PEP 3333: the wrapper is an iterable too, so middleware may iterate it."""
    path, data = data_file

    def app(environ, start_response):
        start_response("200 OK", [])
        wrapped = environ["wsgi.file_wrapper"](open(path, "rb"), 65536)
        try:
            return [b"".join(wrapped)]
        finally:
            wrapped.close()

    server = serve(app)
    assert get(server.port, timeout=10).body == data


def test_file_wrapper_client_disconnect_closes_file(serve, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * (32 * 1024 * 1024))
    app = file_app(big)
    server = serve(app)
    conn = RawConn(server.port)
    conn.send(request())
    conn.read_until(b"zzzz")
    conn.close()

    def wait_closed():
        while not (app.opened and app.opened[0].closed):
            gevent.sleep(0.02)
        return True
    assert gevent.with_timeout(10, wait_closed, timeout_value=False), "file left open"
    assert get(server.port, "/").status == 200
