"""request_timeout over real sockets, both engines (issue 12, point 1).

gevent.Timeout is raised in the app's greenlet wherever it waits: 504 with
Connection: close when nothing was sent, a cut connection after the head;
the iterable's close() runs; gkit.error gets one record with the request
line, the elapsed time and the stack where the app was stopped. A request
handed over to a channel is exempt.
"""
from __future__ import annotations

import gevent
import gevent.event
import pytest

from gkit import ConfigError, run_server, with_channel
from gkit.timeouts import RequestTimeout
from helpers import RawConn, request
from wshelpers import read_head

WAIT = 10
TIMEOUT = 0.3


def timeout_records(records):
    return [r for r in records if "request timed out" in r.getMessage()]


def test_a_handler_blocked_on_an_event_gets_504_and_its_stack_is_logged(serve, error_log):
    never = serve.event()
    seen = {}

    def wait_for_upstream():
        never.wait()  # a dead upstream

    def app(environ, start_response):
        try:
            wait_for_upstream()
        except gevent.Timeout as exc:
            seen["raised"] = exc
            raise
        return [b"never"]

    port = serve(app, request_timeout=TIMEOUT).port
    conn = RawConn(port)
    conn.send(request(target="/slow?x=1"))
    resp = conn.read_response(timeout=WAIT)
    assert resp.status == 504 and resp.reason == "Gateway Timeout"
    assert resp.body == b"504 Gateway Timeout: the app did not answer within request_timeout\n"
    assert resp.connection_tokens() == ["close"]
    assert conn.read_until_close(WAIT) == b""
    assert isinstance(seen["raised"], RequestTimeout)
    [record] = timeout_records(error_log)
    message = record.getMessage()
    assert record.levelname == "ERROR"
    assert "GET /slow?x=1 HTTP/1.1 from 127.0.0.1, in worker-1" in message
    elapsed = float(message.split("request timed out after ")[1].split(" s")[0])
    assert TIMEOUT <= elapsed < TIMEOUT + 2
    assert "in wait_for_upstream" in message and "never.wait()" in message
    # Nothing else was logged for it (no "error in app" traceback).
    assert [r for r in error_log if "error in app" in r.getMessage()] == []


def test_a_stream_that_stalls_after_its_head_is_cut_and_closed(serve, error_log):
    never = serve.event()
    finished = gevent.event.Event()
    closed = gevent.event.Event()

    class Stalling:
        """A response iterable with a close(), as frameworks return."""

        def __iter__(self):
            try:
                yield b"first"
                never.wait()
                yield b"second"
            finally:
                finished.set()

        def close(self):
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Stalling()

    port = serve(app, request_timeout=TIMEOUT).port
    conn = RawConn(port)
    conn.send(request())
    head = read_head(conn, WAIT)
    assert head.status_line == "HTTP/1.1 200 OK" and head.get("transfer-encoding") == "chunked"
    rest = conn.read_until_close(WAIT)
    assert rest == b"5\r\nfirst\r\n"   # no last chunk: the client sees the response was cut
    assert finished.wait(WAIT) and closed.wait(WAIT)   # the iterable's close() ran
    assert len(timeout_records(error_log)) == 1


def test_a_channel_request_outlives_the_timeout(serve, error_log):
    later = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ)
        if environ["PATH_INFO"] == "/async":
            gevent.spawn_later(3 * TIMEOUT, ch.send, "answered late")
            return ch
        # flask-sock style: the app call itself goes on after the hand-over
        later.wait(3 * TIMEOUT)
        ch.send("answered by the app call")
        return ch

    port = serve(app, request_timeout=TIMEOUT).port
    for path, body in (("/async", b"answered late"), ("/inline", b"answered by the app call")):
        conn = RawConn(port)
        conn.send(request(target=path))
        resp = conn.read_response(timeout=WAIT)
        assert (resp.status, resp.body) == (200, body)
        conn.close()
    assert timeout_records(error_log) == []


def test_quick_requests_keep_their_connection(serve, error_log):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"quick"]

    port = serve(app, request_timeout=TIMEOUT).port
    conn = RawConn(port)
    for _ in range(3):
        conn.send(request())
        assert conn.read_response().body == b"quick"
    gevent.sleep(2 * TIMEOUT)  # past the deadline of each: nothing fires later
    conn.send(request())
    assert conn.read_response().body == b"quick"
    assert timeout_records(error_log) == []
    conn.close()


def test_option_checks_and_default():
    from gkit.config import Config
    assert Config().request_timeout is None
    for bad in (0, -1, "x"):
        with pytest.raises(ConfigError, match="request_timeout"):
            run_server(lambda e, s: [], port=0, request_timeout=bad)
