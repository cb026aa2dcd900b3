"""Server lifecycle: run_server, stop(timeout), server(timeout=...), join(), with.

Issue 2, point 6: "stop accepting, close idle keep-alive connections at once,
let in-flight requests finish within the timeout (their responses carry
Connection: close), then close everything; status goes running → stopping →
stopped; join(); context manager. Port 0 works".
"""
import socket

import gevent
import gevent.event
import pytest

from helpers import RawConn, get, request


def hello(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return [b"hello"]


def blocking_app(serve):
    entered = gevent.event.Event()
    release = serve.event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            release.wait()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"done"]
    app.entered, app.release = entered, release
    return app


def refuses_connections(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_status(server, status, timeout=5):
    def poll():
        while server.status != status:
            gevent.sleep(0.005)
        return True
    return gevent.with_timeout(timeout, poll, timeout_value=False)


def test_status_running_then_stopped(serve):
    server = serve(hello)
    port = server.port
    assert server.status == "running"
    assert get(port).status == 200
    server.stop()
    assert server.status == "stopped"
    assert refuses_connections(port)


def test_stop_closes_idle_keep_alive_at_once(serve):
    server = serve(hello)
    conns = []
    for _ in range(3):
        conn = RawConn(server.port)
        conn.send(request())
        assert conn.read_response().status == 200
        conns.append(conn)
    silent = RawConn(server.port)  # connected, never sent anything
    # a generous timeout: stop must not wait for idle connections to use it up
    stopper = gevent.spawn(server.stop, 30)
    for conn in conns + [silent]:
        conn.assert_closed(timeout=5)
        conn.close()
    stopper.get(timeout=5)
    assert server.status == "stopped"


def test_stop_lets_in_flight_request_finish_with_connection_close(serve):
    app = blocking_app(serve)
    server = serve(app)
    port = server.port
    with RawConn(port) as conn:
        conn.send(request(target="/slow"))
        assert app.entered.wait(timeout=5)
        stopper = gevent.spawn(server.stop, 30)
        assert wait_status(server, "stopping"), server.status
        assert refuses_connections(port)  # no new connections while stopping
        assert not stopper.ready()
        app.release.set()
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"done")
        assert "close" in resp.connection_tokens()
        conn.assert_closed()
    stopper.get(timeout=5)
    assert server.status == "stopped"


def test_stop_timeout_expires_with_a_stuck_request(serve):
    app = blocking_app(serve)
    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/slow"))
        assert app.entered.wait(timeout=5)
        with gevent.Timeout(10, AssertionError("stop(0.5) did not return")):
            server.stop(0.5)
        assert server.status == "stopped"
        data = conn.read_until_close(timeout=5)  # everything is closed
        assert b"HTTP/1.1 200" not in data


def test_stop_none_is_immediate(serve):
    app = blocking_app(serve)
    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/slow"))
        assert app.entered.wait(timeout=5)
        with gevent.Timeout(5, AssertionError("stop() without timeout waited")):
            server.stop()
        assert server.status == "stopped"
        conn.read_until_close(timeout=5)


def test_keep_alive_request_during_stopping_is_not_left_hanging(serve):
    """A second keep-alive client that was idle is closed at once even while an
    in-flight request keeps the server in 'stopping'."""
    app = blocking_app(serve)
    server = serve(app)
    idle = RawConn(server.port)
    idle.send(request(target="/fast"))
    assert idle.read_response().status == 200
    busy = RawConn(server.port)
    busy.send(request(target="/slow"))
    assert app.entered.wait(timeout=5)
    stopper = gevent.spawn(server.stop, 30)
    idle.assert_closed(timeout=5)
    assert server.status == "stopping"
    app.release.set()
    assert busy.read_response().status == 200
    stopper.get(timeout=5)
    idle.close()
    busy.close()


def test_join_returns_after_stop(serve):
    server = serve(hello)
    joiner = gevent.spawn(server.join)
    gevent.sleep(0.05)
    assert not joiner.ready(), "join() returned while the server runs"
    server.stop()
    joiner.get(timeout=5)


def test_join_with_timeout_while_running(serve):
    server = serve(hello)
    with gevent.Timeout(5, AssertionError("join(timeout) did not return")):
        server.join(timeout=0.1)
    assert server.status == "running"
    assert get(server.port).status == 200


def test_second_stop_is_a_no_op(serve):
    server = serve(hello)
    server.stop()
    server.stop()
    server.stop(timeout=1)
    assert server.status == "stopped"


def test_server_is_callable_to_stop(serve):
    app = blocking_app(serve)
    server = serve(app)
    port = server.port
    with RawConn(port) as conn:
        conn.send(request(target="/slow"))
        assert app.entered.wait(timeout=5)
        stopper = gevent.spawn(server, timeout=30)
        assert wait_status(server, "stopping")
        app.release.set()
        resp = conn.read_response()
        assert resp.status == 200
        assert "close" in resp.connection_tokens()
    stopper.get(timeout=5)
    assert server.status == "stopped"
    assert refuses_connections(port)


def test_context_manager_stops_on_exit(engine):
    from gkit import run_server

    with run_server(hello, ip="127.0.0.1", port=0, http=engine) as server:
        assert server.status == "running"
        port = server.port
        assert get(port).body == b"hello"
    assert server.status == "stopped"
    assert refuses_connections(port)


def test_context_manager_stops_on_exception(engine):
    from gkit import run_server

    with pytest.raises(ZeroDivisionError):
        with run_server(hello, ip="127.0.0.1", port=0, http=engine) as server:
            raise ZeroDivisionError("inside the with block")
    assert server.status == "stopped"


def test_two_servers_get_different_ports(serve):
    a, b = serve(hello), serve(hello)
    assert a.port != b.port
    assert get(a.port).status == get(b.port).status == 200


def test_busy_port_raises(serve):
    first = serve(hello)
    from gkit import run_server

    with pytest.raises(OSError):
        server = run_server(hello, ip="127.0.0.1", port=first.port, http=serve.engine)
        server.stop()


def test_stop_after_client_streams_forever(serve):
    """An endless response counts as in flight: stop(timeout) ends it at the deadline."""
    def app(environ, start_response):
        start_response("200 OK", [])

        def endless():
            while True:
                yield b"s" * 1024
                gevent.sleep(0.01)
        return endless()

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request())
        conn.read_until(b"ssss")
        with gevent.Timeout(10, AssertionError("stop(0.5) did not return")):
            server.stop(0.5)
        conn.read_until_close(timeout=5)
    assert server.status == "stopped"


def test_stop_with_a_queued_request(serve):
    """thread=1: one request runs, one waits for the slot. stop(timeout) lets the
    running one finish; the waiting one gets a whole response (served, or 503),
    never a hang."""
    app = blocking_app(serve)
    server = serve(app, thread=1)
    running = RawConn(server.port)
    running.send(request(target="/slow"))
    assert app.entered.wait(timeout=5)
    queued = RawConn(server.port)
    queued.send(request(target="/fast"))
    gevent.sleep(0.2)  # let the server read the queued request before stopping
    stopper = gevent.spawn(server.stop, 10)
    assert wait_status(server, "stopping")
    app.release.set()
    assert running.read_response().status == 200
    data = queued.read_until_close(timeout=10)
    stopper.get(timeout=10)
    from helpers import parse_responses
    assert [r.status for r in parse_responses(data)] in ([200], [503]), data
    running.close()
    queued.close()


def test_stop_serves_a_request_that_reached_an_idle_connection(serve):
    """A request already in the socket of a parked connection when stop() is
    called is answered (with Connection: close), not dropped: gunicorn's
    HUP and max_requests recycles stop workers under load."""
    for _ in range(20):
        server = serve(hello)
        conn = RawConn(server.port)
        gevent.sleep(0.01)  # the connection is accepted and parked
        conn.send(request())
        server.stop(timeout=5)
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"hello")
        assert resp.connection_tokens() == ["close"]
        conn.close()


def test_stop_gives_a_just_accepted_connection_a_grace_for_its_request(serve):
    """A client that connected just before a graceful stop (gunicorn's HUP
    and max_requests recycles) had no time to send its request: it is served
    if the request comes within the grace, instead of being reset."""
    server = serve(hello)
    late = RawConn(server.port)
    silent = RawConn(server.port)
    gevent.sleep(0.01)  # both accepted and parked, no request yet
    stopper = gevent.spawn(server.stop, 30)
    gevent.sleep(0.3)
    late.send(request())
    resp = late.read_response()
    assert (resp.status, resp.body) == (200, b"hello")
    assert resp.connection_tokens() == ["close"]
    silent.assert_closed(timeout=5)  # the grace ends: no 30 s wait for it
    stopper.get(timeout=5)
    assert server.status == "stopped"
    late.close()
    silent.close()


def test_max_connections_holds_new_connections_in_the_backlog(serve):
    """At max_connections the server stops accepting; a new connection waits
    in the listen backlog and is served once an open one closes."""
    server = serve(hello, max_connections=2)
    first, second = RawConn(server.port), RawConn(server.port)
    for conn in (first, second):
        conn.send(request())
        assert conn.read_response().status == 200
    third = RawConn(server.port)  # the kernel completes the handshake: it waits
    third.send(request())
    assert third.silent_for(0.3), "the third connection was served past max_connections"
    first.close()
    resp = third.read_response()
    assert (resp.status, resp.body) == (200, b"hello")
    assert len(server.connections) <= 2
    for conn in (second, third):
        conn.close()
