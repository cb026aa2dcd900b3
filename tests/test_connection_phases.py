"""The connection's phase and the hand-over's worker slot (issue 9, point 2).

API.md: "A request handed over to a channel gives its slot back at once (a
channel holds no worker, as in http-kit)". With thread=1 and no wait queue,
an app that opens a channel and then keeps running (a flask-sock handler
loops inside its app call) must not stop a second request from being served;
and the slot is given back once only, however the request then ends.
"""
import gevent
import gevent.event
import pytest

from gkit import Channel, as_channel, async_response, with_channel
from gkit.connection import MOVES, Connection, IllegalMove, Phase
from helpers import RawConn, get, request
from wshelpers import TEXT, RawWs

HANDOVERS = {
    "with_channel": lambda environ: with_channel(environ),
    "as_channel": lambda environ: as_channel(environ),
    "async_response": lambda environ: async_response(environ),
}


def holding_app(serve, make):
    """/hold opens a channel, then blocks in the app call until released,
    then answers through the channel; anything else answers "ok"."""
    release = serve.event()
    opened = gevent.event.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/hold":
            handle = make(environ)
            opened.set()
            release.wait()          # the app call goes on after the hand-over
            # a Channel is callable too (a WSGI app, for Flask): ask for the type
            send = handle.send if isinstance(handle, Channel) else handle
            send({"status": 200, "headers": {"Content-Type": "text/plain"},
                  "body": "late answer"})
            return handle if isinstance(handle, Channel) else []
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app, opened, release


@pytest.mark.parametrize("how", sorted(HANDOVERS))
def test_handed_over_request_gives_its_slot_back_at_once(serve, how):
    app, opened, release = holding_app(serve, HANDOVERS[how])
    server = serve(app, thread=1, queue_size=0)
    held = RawConn(server.port)
    held.send(request(target="/hold"))
    assert opened.wait(5), "the app never opened its channel"
    # The one slot is free again although the app call still runs.
    resp = get(server.port, "/next")
    assert (resp.status, resp.body) == (200, b"ok")
    release.set()
    late = held.read_response()
    assert (late.status, late.body) == (200, b"late answer")
    # Given back once only: two blocking calls at once still find one slot.
    assert server.pool.running == 0


def test_websocket_handed_over_gives_its_slot_back(serve):
    release = serve.event()
    opened = gevent.event.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ws":
            ch = with_channel(environ)
            ch.on_receive(ch.send)
            opened.set()
            release.wait()
            return ch
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app, thread=1, queue_size=0)
    ws = RawWs(server.port, "/ws")
    assert opened.wait(5)
    assert get(server.port, "/next").body == b"ok"
    ws.send_frame(TEXT, b"echo")
    assert ws.recv_frame().payload == b"echo"
    release.set()
    assert get(server.port, "/again").body == b"ok"


def test_slot_is_released_once_only(serve):
    """After a hand-over and the app's return, thread=1 still means one call at
    a time: a second blocking call while one runs gets 503 (queue_size=0)."""
    gate = serve.event()
    entered = gevent.event.Event()
    channelled = gevent.event.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/channel":
            async_response(environ)  # handed over; never answered here
            channelled.set()
            return []
        if environ["PATH_INFO"] == "/block":
            entered.set()
            gate.wait()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app, thread=1, queue_size=0)
    conn = RawConn(server.port)
    conn.send(request(target="/channel"))
    assert channelled.wait(5)
    blocker = RawConn(server.port)
    blocker.send(request(target="/block"))
    assert entered.wait(5)
    assert get(server.port, "/other").status == 503
    gate.set()
    assert blocker.read_response().body == b"ok"
    assert server.pool.running == 0


def test_phase_table_refuses_illegal_moves():
    conn = Connection.__new__(Connection)
    conn.addr = ("127.0.0.1", 1)
    conn.phase = Phase.IDLE
    conn._move(Phase.IN_APP)
    conn._move(Phase.CHANNEL)
    with pytest.raises(IllegalMove, match="CHANNEL -> IN_APP"):
        conn._move(Phase.IN_APP)
    conn.phase = Phase.CLOSED
    for phase in Phase:
        with pytest.raises(IllegalMove):
            conn._move(phase)
    assert all(Phase.CLOSED in MOVES[p] for p in Phase if p is not Phase.CLOSED)
    assert MOVES[Phase.SOCKET] == {Phase.CLOSED}  # a socket the app owns never comes back


def test_environ_connection_is_a_small_documented_object(serve):
    import weakref
    seen = []

    def app(environ, start_response):
        info = environ["gkit.connection"]
        seen.append((info, weakref.ref(info), hash(info), info.addr, info.secure, info.engine))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    conn = RawConn(server.port)
    for _ in range(2):
        conn.send(request())
        assert conn.read_response().body == b"ok"
    (first, ref, h, addr, secure, engine), (second, *_) = seen
    assert first is second and ref() is first  # one per connection, weak-referenceable
    assert addr[0] == "127.0.0.1" and secure is False and engine == server.engine
    assert not hasattr(first, "server") and not hasattr(first, "sock")


def test_raw_socket_hand_off_closes_after_the_app_returns(serve):
    """The hook of issue 10 point 2: the app owns the socket, gkit writes
    nothing more and closes it once the app call returns."""
    from gkit.connection import connection_of

    def app(environ, start_response):
        sock = connection_of(environ["gkit.connection"]).hand_over_socket()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")
        start_response("500 Ignored", [])
        return [b"never written"]

    server = serve(app, thread=1, queue_size=0)
    conn = RawConn(server.port)
    conn.send(request())
    assert conn.read_until_close() == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw"
    assert server.pool.running == 0


@pytest.mark.parametrize("when", ["before-return", "after-return"])
def test_channel_response_is_logged_with_its_own_status(serve, when):
    """The access line of a channel's response carries the channel's status and
    length, whether it ended before or after the app call returned."""
    import logging

    lines = []
    logged = gevent.event.Event()

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
            logged.set()

    logger = logging.getLogger("gkit.access")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def app(environ, start_response):
        respond = async_response(environ)
        answer = {"status": 202, "headers": {"Content-Type": "text/plain"}, "body": "now"}
        if when == "before-return":
            respond(answer)
        else:
            gevent.spawn(respond, answer)
        return []

    try:
        server = serve(app)
        resp = get(server.port, "/poll")
        assert (resp.status, resp.body) == (202, b"now")
        assert logged.wait(5)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    requests = [line for line in lines if " channel-end " not in line]  # issue 13's line
    assert len(requests) == 1 and '"GET /poll HTTP/1.1" 202 3 ' in requests[0], lines
