"""``environ["wsgi.websocket"]`` and ``environ["gunicorn.socket"]`` in detail
(issue 10, points 1 and 2), in-process, per HTTP engine, with raw frames.

The libraries that use them end to end are in ``test_realtime_libs.py``.
"""
from __future__ import annotations

from typing import Optional

import gevent
import gevent.event
import pytest
import simple_websocket
from helpers import RawConn, get
from wshelpers import BINARY, CLOSE, TEXT, RawWs, frame, handshake_request

from gkit import with_channel
from gkit.compat import HandedSocket, WebSocket, WebSocketError


class Recorder:
    """Keeps what an app saw, for the test to look at after the fact."""

    def __init__(self) -> None:
        self.done = gevent.event.Event()
        self.seen: list = []


# -- wsgi.websocket ----------------------------------------------------------------------
def test_only_upgrade_requests_get_them(serve):
    seen = []

    def app(environ, start_response):
        seen.append((environ.get("wsgi.websocket"), environ.get("gunicorn.socket")))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    server = serve(app)
    assert get(server.port, "/").status == 200
    assert seen == [(None, None)]


def test_receive_none_at_the_end_then_errors(serve, error_log):
    rec = Recorder()

    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        assert isinstance(ws, WebSocket) and not ws.closed
        try:
            while True:
                message = ws.receive()
                rec.seen.append(message)
                if message is None:
                    break
            rec.seen.append(ws.closed)
            for call in (ws.receive, lambda: ws.send("late")):
                try:
                    call()
                except WebSocketError as exc:
                    rec.seen.append(str(exc))
        finally:
            rec.done.set()
        return []
    server = serve(app)
    ws = RawWs(server.port, "/x")
    ws.send_frame(TEXT, b"one")
    ws.send_frame(BINARY, b"\x00two")
    ws.send_frame(CLOSE, b"\x03\xe8")
    assert ws.expect_close().close_code == 1000
    assert rec.done.wait(5)
    assert rec.seen == ["one", bytearray(b"\x00two"), None, True,
                        "Connection is already closed", "Connection is already closed"]
    assert type(rec.seen[1]) is bytearray  # as gevent-websocket gives binary messages
    assert error_log == []


def test_send_text_binary_and_closed_when_the_app_returns(serve):
    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        ws.send("text")
        ws.send(b"bytes")
        ws.send(bytearray(b"array"))
        ws.send("forced binary", binary=True)
        ws.send(b"forced text", binary=False)
        return []  # left open: gkit closes it, 1000, as gevent-websocket's handler does
    server = serve(app)
    ws = RawWs(server.port)
    got = [ws.recv_message() for _ in range(5)]
    assert got == [(TEXT, b"text"), (BINARY, b"bytes"), (BINARY, b"array"),
                   (BINARY, b"forced binary"), (TEXT, b"forced text")]
    assert ws.expect_close().close_code == 1000


def test_lazy_an_app_that_calls_with_channel_is_not_disturbed(serve):
    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        assert ws.path == "/lazy" and ws.version == "13"  # reading these answers nothing
        ch = with_channel(environ, subprotocol="mine")
        ch.on_receive(ch.send)
        return ch
    server = serve(app)
    ws = RawWs(server.port, "/lazy", headers=[("Sec-WebSocket-Protocol", "mine")])
    assert ws.header("sec-websocket-protocol") == "mine"
    ws.send_frame(TEXT, b"echo")
    assert ws.recv_message() == (TEXT, b"echo")


def test_gkit_limits_apply(serve):
    """max_ws is gkit's: a message past it closes with 1009; receive() gives None."""
    rec = Recorder()

    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        rec.seen.append(ws.receive())
        rec.done.set()
        return []
    server = serve(app, max_ws=1000)
    ws = RawWs(server.port)
    ws.send_frame(BINARY, b"x" * 1001)
    assert ws.expect_close().close_code == 1009
    assert rec.done.wait(5) and rec.seen == [None]


def test_deflate_is_gkits(serve):
    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        ws.send(ws.receive())
        return []
    server = serve(app)
    ws = RawWs(server.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    assert ws.header("sec-websocket-extensions").startswith("permessage-deflate")


@pytest.mark.parametrize("bad, status", [({"key": None}, 400), ({"version_header": "8"}, 426)],
                         ids=["no-key", "version-8"])
def test_bad_handshake_is_answered_by_gkit(serve, bad, status):
    """with_channel's answer to a bad handshake (400, or 426 for another
    version); the app's receive() raises WebSocketError."""
    rec = Recorder()

    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        try:
            ws.receive()
        except WebSocketError as exc:
            rec.seen.append(str(exc))
        rec.done.set()
        return []
    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(handshake_request("/", **bad))
        resp = conn.read_response()
    assert resp.status == status and resp.get("sec-websocket-version") == "13"
    assert rec.done.wait(5) and rec.seen == ["Connection is already closed"]


# -- gunicorn.socket ----------------------------------------------------------------------
def simple_echo(rec: Recorder, end: Optional[BaseException] = None):
    def app(environ, start_response):
        sock = environ["gunicorn.socket"]
        assert isinstance(sock, HandedSocket) and not sock.taken
        try:
            ws = simple_websocket.Server(environ)
            while True:
                message = ws.receive(timeout=5)
                if message == "bye":
                    ws.close()
                    break
                ws.send(message)
        finally:
            rec.done.set()
        raise end or StopIteration()  # simple-websocket's "already answered" under gunicorn
    return app


def test_raw_handoff_stopiteration_is_the_normal_end(serve, error_log):
    rec = Recorder()
    server = serve(simple_echo(rec), idle_timeout=0.5)
    # the first frame comes in the same write as the request head: gkit read it
    # already, and the app gets it first
    ws = RawWs(server.port, first=frame(TEXT, b"early"))
    assert ws.recv_message() == (TEXT, b"early")
    gevent.sleep(1.0)  # past idle_timeout: the app's socket has no deadline
    ws.send_frame(TEXT, b"later")
    assert ws.recv_message() == (TEXT, b"later")
    ws.send_frame(TEXT, b"bye")
    assert ws.expect_close().close_code == 1000
    assert rec.done.wait(5)
    ws.assert_tcp_closed()  # gkit wrote nothing after the app: no 500, no response
    assert error_log == []


def test_raw_handoff_other_errors_are_logged_and_nothing_written(serve, error_log):
    rec = Recorder()
    server = serve(simple_echo(rec, RuntimeError("app failed after taking the socket")))
    ws = RawWs(server.port)
    ws.send_frame(TEXT, b"bye")
    assert ws.expect_close().close_code == 1000
    ws.assert_tcp_closed()
    assert rec.done.wait(5)
    for _ in range(50):
        if error_log:
            break
        gevent.sleep(0.02)
    assert [r.getMessage() for r in error_log][0].startswith("error in app")
    assert "app failed after taking the socket" in str(error_log[0].exc_info[1])


@pytest.mark.parametrize("n", [5])
def test_raw_handoffs_at_once(serve, n):
    rec = Recorder()
    server = serve(simple_echo(rec))
    sockets = [RawWs(server.port) for _ in range(n)]
    for i, ws in enumerate(sockets):
        ws.send_frame(TEXT, b"m%d" % i)
    assert [ws.recv_message() for ws in sockets] == [(TEXT, b"m%d" % i) for i in range(n)]
    for ws in sockets:
        ws.send_frame(TEXT, b"bye")
        assert ws.expect_close().close_code == 1000


# -- an upgrade the app answers with a plain response ---------------------------------------
@pytest.mark.parametrize("kind, status, body", [
    ("wsgi.websocket", "403 Forbidden", b"no\n"),  # the object is made lazily: unused, no 101
    ("gunicorn.socket", "426 Upgrade Required", b"nope\n"),  # untouched: a normal response
])
def test_an_app_that_answers_the_upgrade_itself(serve, kind, status, body):
    def app(environ, start_response):
        assert kind in environ
        start_response(status, [("Content-Length", str(len(body)))])
        return [body]
    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(handshake_request("/"))
        resp = conn.read_response()
    assert resp.status == int(status[:3]) and resp.body == body


# -- worker slots (issue 10, point 3) -------------------------------------------------------
def gws_echo(environ, start_response):
    ws = environ["wsgi.websocket"]
    while True:
        message = ws.receive()
        if message is None:
            return []
        ws.send(message)


@pytest.mark.parametrize("kind", ["gunicorn.socket", "wsgi.websocket"])
def test_a_handed_over_socket_gives_its_slot_back(serve, kind):
    """thread=1: three sockets taken by their apps, whose calls go on for the
    sockets' whole lives, and a plain request are all served at once."""
    rec = Recorder()
    ws_app = simple_echo(rec) if kind == "gunicorn.socket" else gws_echo

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ws":
            return ws_app(environ, start_response)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    server = serve(app, thread=1, queue_size=0)
    sockets = [RawWs(server.port, "/ws") for _ in range(3)]
    for i, ws in enumerate(sockets):
        ws.send_frame(TEXT, b"m%d" % i)
    assert [ws.recv_message() for ws in sockets] == [(TEXT, b"m%d" % i) for i in range(3)]
    assert get(server.port, "/").status == 200
    for ws in sockets:
        ws.send_frame(TEXT, b"bye") if kind == "gunicorn.socket" else ws.send_frame(CLOSE, b"\x03\xe8")
        assert ws.expect_close().close_code == 1000
