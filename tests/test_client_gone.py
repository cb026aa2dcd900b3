"""Client-gone detection for streamed WSGI bodies, both engines (issue 12, point 5).

A generator blocked between items learns at once that its client left:
gkit.ClientDisconnected (a GeneratorExit) is raised where it waits, its
finally runs, and the iterable's close() is called. Bytes of a pipelined next
request are not a close: the stream goes on and the next request is served
after it, in order.
"""
from __future__ import annotations

import socket
import struct

import flask
import gevent
import gevent.event

from gkit import ClientDisconnected
from helpers import RawConn, request
from wshelpers import read_head

WAIT = 10


def flask_stream_app(release, seen, before_first=False):
    app = flask.Flask(__name__)

    @app.route("/stream")
    def stream():
        def events():
            try:
                if not before_first:
                    yield "first\n"
                release.wait()           # waiting on an event, as an SSE generator does
                yield "second\n"
            except BaseException as exc:
                seen["raised"] = exc
                raise
            finally:
                seen["finally"].set()
        return flask.Response(events(), mimetype="text/plain")

    @app.route("/next")
    def next_():
        return "next request\n"

    return app


def stream_started(serve):
    """A client that has read the first item of ``/stream``: (release, seen, conn)."""
    release = serve.event()
    seen = {"finally": gevent.event.Event()}
    port = serve(flask_stream_app(release, seen)).port
    conn = RawConn(port)
    conn.send(request(target="/stream"))
    head = read_head(conn, WAIT)
    assert head.status_line == "HTTP/1.1 200 OK"
    conn.read_until(b"first\n", WAIT)
    return release, seen, conn


def test_a_flask_generator_sees_its_finally_within_a_second_of_the_client_closing(serve):
    _, seen, conn = stream_started(serve)
    conn.close()
    assert seen["finally"].wait(1.0), "the generator's finally did not run within 1 s"
    assert isinstance(seen["raised"], ClientDisconnected)
    assert isinstance(seen["raised"], GeneratorExit)


def test_before_the_first_item_and_on_a_reset(serve):
    release = serve.event()
    seen = {"finally": gevent.event.Event()}
    port = serve(flask_stream_app(release, seen, before_first=True)).port
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request(target="/stream"))
    gevent.sleep(0.2)  # let the app reach its wait (nothing is sent before the first item)
    assert not seen["finally"].is_set()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, not a FIN
    assert seen["finally"].wait(1.0)
    assert isinstance(seen["raised"], ClientDisconnected)


def test_a_pipelined_request_is_not_a_close(serve):
    release, seen, conn = stream_started(serve)
    conn.send(request(target="/next"))   # the next request, while the first streams
    gevent.sleep(0.3)
    assert not seen["finally"].is_set(), "a pipelined request was taken for a close"
    release.set()
    assert seen["finally"].wait(WAIT)
    assert "raised" not in seen
    conn.read_until(b"0\r\n\r\n", WAIT)
    assert b"second\n" in conn.buf
    conn.buf = conn.buf[conn.buf.index(b"0\r\n\r\n") + 5:]
    resp = conn.read_response(timeout=WAIT)
    assert (resp.status, resp.body) == (200, b"next request\n")
    conn.close()


def test_a_plain_wsgi_generator_gets_close_called_after_the_exception(serve):
    release = serve.event()
    events = []
    done = gevent.event.Event()

    class Body:
        def __iter__(self):
            yield b"one"
            try:
                release.wait()
            except GeneratorExit as exc:
                events.append(type(exc).__name__)
                raise
            yield b"two"

        def close(self):
            events.append("close")
            done.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    port = serve(app).port
    conn = RawConn(port)
    conn.send(request())
    read_head(conn, WAIT)
    conn.read_until(b"one", WAIT)
    conn.close()
    assert done.wait(1.0)
    assert events == ["ClientDisconnected", "close"]
