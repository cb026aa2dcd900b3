"""WebSocket channels with real third-party clients (issue 3, points 2-7).

The normal paths through ``websocket-client`` (and the ``websockets`` library
for permessage-deflate): echo, subprotocol and extra headers, the as_channel
callbacks, delivery in order and nothing lost before ``on_receive`` is set
(http-kit issue 318), close statuses, ping/pong, the synchronous
``receive``/``for msg in ch`` style, ``max_ws``, ``stop()``, slow consumers
(``buffered``, ``drain``, ``max_buffered``) and ``schedule_task``.
Malformed frames are in ``test_ws_raw.py``. Both HTTP engines.
"""
import queue
import socket
import struct

import gevent
import gevent.event
import pytest
import websocket  # websocket-client

from gkit import ChannelClosed, as_channel, with_channel
from gkit.timer import schedule_task
from helpers import get
from wshelpers import CLOSE, PONG, RawWs, frame

WAIT = 10  # seconds an event may take on a loaded 2-core machine
OP_TEXT, OP_BINARY = websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY


def waited(event, what, timeout=WAIT):
    assert event.wait(timeout), f"{what} did not happen within {timeout} s"


class Recorder:
    """A queue of what callbacks saw, read with a deadline."""

    def __init__(self):
        self.q = queue.Queue()

    def put(self, *item):
        self.q.put(item[0] if len(item) == 1 else item)

    def get(self, timeout=WAIT):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no callback within {timeout} s") from None

    def empty(self):
        return self.q.empty()


def url(server, path="/"):
    return f"ws://127.0.0.1:{server.port}{path}"


def connect(server, path="/", **kw):
    kw.setdefault("timeout", WAIT)
    return websocket.create_connection(url(server, path), **kw)


def recv_close(ws):
    """The server's close frame (websocket-client answers it): its code."""
    while True:
        opcode, f = ws.recv_data_frame(True)
        if opcode == CLOSE:
            return struct.unpack("!H", f.data[:2])[0] if len(f.data) >= 2 else None


def echo_app(closes=None):
    def app(environ, start_response):
        ch = with_channel(environ)
        if closes is not None:
            ch.on_close(closes.put)
        ch.on_receive(ch.send)
        return ch
    return app


# -- echo, handshake options ------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "hello", "h\u00e9llo \u2603 \U0001f600", "", "x" * 125, "y" * 126, "z" * 70000,
    b"\x00\xff\x80binary", b"", bytes(range(256)) * 300, b"\xaa" * (1 << 20),
], ids=["ascii", "utf8", "empty-text", "125", "126", "70000", "binary", "empty-binary",
        "76800-binary", "1MiB-binary"])
def test_echo(serve, message):
    server = serve(echo_app())
    ws = connect(server)
    try:
        if isinstance(message, str):
            ws.send(message)
        else:
            ws.send_binary(message)
        opcode, data = ws.recv_data()
        if isinstance(message, str):
            assert (opcode, data.decode("utf-8")) == (OP_TEXT, message)
        else:
            assert (opcode, data) == (OP_BINARY, message)
    finally:
        ws.close()


def test_channel_flags_and_send_kinds(serve):
    import io
    seen = {}

    def app(environ, start_response):
        ch = with_channel(environ)
        seen["flags"] = (ch.is_websocket, ch.is_open)
        ch.send("text")
        ch.send(b"bytes")
        ch.send(bytearray(b"bytearray"))
        ch.send(io.BytesIO(b"file"))
        ch.send({"status": 500, "headers": {"X": "1"}, "body": "dict body"})
        return ch

    server = serve(app)
    ws = connect(server)
    try:
        got = [ws.recv_data() for _ in range(5)]
    finally:
        ws.close()
    assert seen["flags"] == (True, True)
    assert got == [(OP_TEXT, b"text"), (OP_BINARY, b"bytes"), (OP_BINARY, b"bytearray"),
                   (OP_BINARY, b"file"), (OP_TEXT, b"dict body")]


def test_subprotocol_chosen_from_offer(serve):
    def app(environ, start_response):
        return with_channel(environ, subprotocol="chat")

    server = serve(app)
    ws = connect(server, subprotocols=["superchat", "chat"])
    try:
        assert ws.getsubprotocol() == "chat"
        assert ws.getheaders()["sec-websocket-protocol"] == "chat"
    finally:
        ws.close()


def test_extra_headers_in_101(serve):
    def app(environ, start_response):
        return with_channel(environ, headers={"Set-Cookie": "session=abc; Path=/",
                                              "X-Extra": "yes"})

    server = serve(app)
    ws = connect(server)
    try:
        assert ws.getstatus() == 101
        headers = ws.getheaders()
        assert headers["set-cookie"] == "session=abc; Path=/"
        assert headers["x-extra"] == "yes"
    finally:
        ws.close()


def test_as_channel_callbacks_get_channel_first(serve):
    calls = Recorder()
    returned = []

    def app(environ, start_response):
        def on_open(ch):
            calls.put(("open", ch))
            ch.send("welcome")

        def on_receive(ch, message):
            calls.put(("receive", ch, message))
            ch.send(message)

        ch = as_channel(environ, on_open=on_open, on_receive=on_receive,
                        on_ping=lambda ch, data: calls.put(("ping", ch, data)),
                        on_close=lambda ch, status: calls.put(("close", ch, status)))
        returned.append(ch)
        return ch

    server = serve(app)
    ws = connect(server)
    assert ws.recv() == "welcome"
    ws.ping(b"are you there")
    assert ws.recv_data(control_frame=True) == (PONG, b"are you there")
    ws.send("m1")
    assert ws.recv() == "m1"
    ws.close(status=1000, timeout=WAIT)
    ch = returned[0]
    assert calls.get() == ("open", ch)
    assert calls.get() == ("ping", ch, b"are you there")
    assert calls.get() == ("receive", ch, "m1")
    assert calls.get() == ("close", ch, "normal")
    assert calls.empty()


# -- delivery ----------------------------------------------------------------------------------

def test_on_receive_one_at_a_time_in_order(serve):
    got = []
    done = gevent.event.Event()
    busy = []

    def app(environ, start_response):
        ch = with_channel(environ)

        def on_receive(message):
            busy.append(1)
            assert len(busy) == 1, "two deliveries at once"
            if len(got) % 7 == 0:
                gevent.sleep(0)          # a handler that yields must not be overtaken
            got.append(message)
            busy.pop()
            if message == "end":
                done.set()
        ch.on_receive(on_receive)
        return ch

    server = serve(app)
    expected = [f"m{i}:" + "p" * (i * 53 % 3000) if i % 2 else (b"b%d" % i) * (i % 50 + 1)
                for i in range(300)] + ["end"]
    ws = connect(server)
    try:
        for m in expected:
            ws.send(m) if isinstance(m, str) else ws.send_binary(m)
        waited(done, "the last message")
    finally:
        ws.close()
    assert got == expected


def test_messages_before_on_receive_are_kept(serve):
    """http-kit issue 318: messages that come before the handler is set are
    delivered, in order, when it is set."""
    got = []

    def app(environ, start_response):
        ch = with_channel(environ)

        def set_handler_later(_data):
            def later():
                gevent.sleep(0.05)
                ch.on_receive(lambda m: (got.append(m), ch.send(m)))
            gevent.spawn(later)
        # The ping comes after the three messages, so when it is seen they are in.
        ch.on_ping(set_handler_later)
        return ch

    server = serve(app)
    ws = connect(server)
    try:
        ws.send("a")
        ws.send_binary(b"b")
        ws.send("c")
        ws.ping(b"now")
        assert ws.recv_data(control_frame=True) == (PONG, b"now")
        assert ws.recv_data() == (OP_TEXT, b"a")
        assert ws.recv_data() == (OP_BINARY, b"b")
        assert ws.recv_data() == (OP_TEXT, b"c")
        ws.send("d")
        assert ws.recv_data() == (OP_TEXT, b"d")
    finally:
        ws.close()
    assert got == ["a", b"b", "c", "d"]


def test_messages_sent_with_the_handshake_are_kept(serve):
    """Frames in the same TCP segment as the upgrade request are not lost."""
    got = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)
        gevent.spawn(lambda: ch.on_receive(got.put))
        return ch

    server = serve(app)
    with RawWs(server.port, first=frame(1, b"early") + frame(2, b"bird")):
        assert got.get() == "early"
        assert got.get() == b"bird"


# -- closing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code, status", [
    (1000, "normal"), (1001, "going-away"), (1002, "protocol-error"), (1003, "unsupported"),
    (1007, "invalid-payload-data"), (1008, "policy-violation"), (1009, "message-too-big"),
    (1011, "internal-server-error"), (1012, "unknown"), (3000, "unknown"), (4999, "unknown"),
])
def test_on_close_status_by_client_close_code(serve, code, status):
    closes = Recorder()
    server = serve(echo_app(closes))
    ws = connect(server)
    ws.send("hi")
    assert ws.recv() == "hi"
    ws.close(status=code, timeout=WAIT)      # sends the code, waits for the reply
    assert closes.get() == status
    assert closes.empty()


def test_tcp_drop_without_close_frame_is_going_away(serve):
    closes = Recorder()
    server = serve(echo_app(closes))
    ws = connect(server)
    ws.send("hi")
    assert ws.recv() == "hi"
    ws.sock.shutdown(socket.SHUT_RDWR)
    ws.sock.close()
    assert closes.get() == "going-away"


def test_server_close_sends_1000_and_on_close_after_close_runs_at_once(serve):
    calls = []

    def app(environ, start_response):
        ch = with_channel(environ)
        calls.append(("close", ch.close()))
        calls.append(("again", ch.close()))
        calls.append(("send", ch.send("late")))
        ch.on_close(lambda status: calls.append(("on_close", status)))
        calls.append(("returned", ch.is_open))
        return ch

    server = serve(app)
    ws = connect(server)
    try:
        assert recv_close(ws) == 1000
    finally:
        ws.close()
    assert calls == [("close", True), ("again", False), ("send", False),
                     ("on_close", "server-close"), ("returned", False)]


def test_ping_gets_pong_with_and_without_on_ping(serve):
    pings = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)
        if environ["PATH_INFO"] == "/with":
            ch.on_ping(pings.put)
        return ch

    server = serve(app)
    for path in ("/with", "/without"):
        ws = connect(server, path)
        try:
            ws.ping(b"hello")
            assert ws.recv_data(control_frame=True) == (PONG, b"hello")
            ws.ping(b"")
            assert ws.recv_data(control_frame=True) == (PONG, b"")
        finally:
            ws.close()
    assert pings.get() == b"hello"
    assert pings.get() == b""
    assert pings.empty()


# -- the synchronous style -----------------------------------------------------------------------

def test_for_loop_receive_until_close(serve):
    results = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)

        def loop():
            got = []
            for message in ch:
                got.append(message)
                ch.send(message)
            results.put(("loop ended", got))
            try:
                ch.receive()
            except ChannelClosed as exc:
                results.put(("ChannelClosed", exc.status))
        gevent.spawn(loop)
        return ch

    server = serve(app)
    ws = connect(server)
    ws.send("one")
    ws.send_binary(b"two")
    assert ws.recv_data() == (OP_TEXT, b"one")
    assert ws.recv_data() == (OP_BINARY, b"two")
    ws.close(status=1000, timeout=WAIT)
    assert results.get() == ("loop ended", ["one", b"two"])
    assert results.get() == ("ChannelClosed", "normal")


def test_receive_in_the_app_itself(serve):
    """receive() blocks the calling greenlet (here the app's own worker)."""
    results = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)
        first = ch.receive(timeout=WAIT)
        second = ch.receive(timeout=WAIT)
        ch.send(f"{first}+{second}")
        results.put((first, second))
        return ch

    server = serve(app)
    ws = connect(server)
    try:
        ws.send("a")
        ws.send("b")
        assert ws.recv() == "a+b"
    finally:
        ws.close()
    assert results.get() == ("a", "b")


def test_receive_timeout_raises_timeout_error(serve):
    def app(environ, start_response):
        ch = with_channel(environ)

        def loop():
            try:
                ch.receive(timeout=0.2)
            except TimeoutError:
                ch.send("timed out")
            ch.send("got " + ch.receive(timeout=WAIT))
        gevent.spawn(loop)
        return ch

    server = serve(app)
    ws = connect(server)
    try:
        assert ws.recv() == "timed out"
        ws.send("x")
        assert ws.recv() == "got x"
    finally:
        ws.close()


# -- limits -------------------------------------------------------------------------------------

def test_max_ws_closes_with_1009(serve):
    closes = Recorder()
    server = serve(echo_app(closes), max_ws=1000)
    ws = connect(server)
    try:
        ws.send_binary(b"a" * 1000)                  # at the limit: fine
        assert ws.recv_data() == (OP_BINARY, b"a" * 1000)
        ws.send_binary(b"a" * 1001)
        assert recv_close(ws) == 1009
    finally:
        ws.close()
    assert closes.get() == "message-too-big"


def test_permessage_deflate_negotiated_with_websockets_client(serve):
    from websockets.sync.client import connect as ws_connect

    server = serve(echo_app(), ws_deflate=True)
    with ws_connect(url(server), compression="deflate", open_timeout=WAIT,
                    close_timeout=WAIT) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert ext is not None and ext.startswith("permessage-deflate")
        for n in range(5):                            # context takeover across messages
            text = ("compress me %d " % n) * 5000
            ws.send(text)
            assert ws.recv(timeout=WAIT) == text
        ws.send(b"\x00" * 100000)
        assert ws.recv(timeout=WAIT) == b"\x00" * 100000


def test_permessage_deflate_off(serve):
    from websockets.sync.client import connect as ws_connect

    server = serve(echo_app(), ws_deflate=False)
    with ws_connect(url(server), compression="deflate", open_timeout=WAIT,
                    close_timeout=WAIT) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send("plain")
        assert ws.recv(timeout=WAIT) == "plain"


# -- stop ------------------------------------------------------------------------------------------

def test_stop_sends_1001_and_reports_server_close(serve):
    closes = Recorder()
    server = serve(echo_app(closes))
    clients = [connect(server) for _ in range(3)]
    try:
        for ws in clients:                            # all three are open server-side
            ws.send("ready")
            assert ws.recv() == "ready"
        with gevent.Timeout(WAIT, AssertionError("stop() did not return")):
            server.stop()
        for ws in clients:
            assert recv_close(ws) == 1001
        assert [closes.get() for _ in clients] == ["server-close"] * 3
        assert server.status == "stopped"
    finally:
        for ws in clients:
            ws.close()


# -- slow consumers ----------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("rounds", [1, 2])
def test_buffered_and_drain(serve, rounds):
    """A client that does not read: bytes queue (buffered > 0, drain times out);
    once it reads, drain returns True and buffered is 0. The second round
    checks that a drain that once succeeded does not answer True for later,
    unwritten bytes."""
    total, size = 256, 65536                   # 16 MiB: more than the kernel buffers hold
    results = Recorder()
    reading = [gevent.event.Event() for _ in range(rounds)]

    def app(environ, start_response):
        ch = with_channel(environ)

        def flood():
            for r in range(rounds):
                for i in range(total):
                    assert ch.send(bytes([i % 256]) * size) is True
                results.put(("buffered", ch.buffered))
                results.put(("drain short", ch.drain(timeout=0.3), ch.buffered > 0))
                reading[r].set()
                results.put(("drain", ch.drain(timeout=WAIT * 3)))
                results.put(("buffered after", ch.buffered))
        gevent.spawn(flood)
        return ch

    server = serve(app, max_buffered=64 << 20)
    with RawWs(server.port, rcvbuf=65536, timeout=WAIT * 3) as ws:
        for r in range(rounds):
            kind, buffered = results.get()
            assert kind == "buffered" and buffered > 0
            assert results.get() == ("drain short", False, True), f"round {r + 1}"
            waited(reading[r], "the drain timeout")
            for i in range(total):
                f = ws.recv_frame()
                assert (f.opcode, f.fin, f.payload) == (2, True, bytes([i % 256]) * size)
            assert results.get(timeout=WAIT * 3) == ("drain", True)
            assert results.get() == ("buffered after", 0)


@pytest.mark.timeout(60)
def test_max_buffered_closes_slow_consumer_and_server_stays_responsive(serve):
    limit, size = 1 << 20, 65536
    results = Recorder()
    flood_closes = Recorder()

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/plain":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"plain"]
        ch = with_channel(environ)
        if path == "/echo":
            ch.on_receive(ch.send)
            return ch
        ch.on_close(flood_closes.put)

        def flood():
            most = 0
            for i in range(2000):  # noqa: B007 -- 125 MiB: far past the limit; i reported after
                if not ch.send(b"f" * size):
                    break
                most = max(most, ch.buffered)
                gevent.sleep(0)
            results.put((i, ch.is_open, most))
        gevent.spawn(flood)
        return ch

    server = serve(app, max_buffered=limit)
    slow = RawWs(server.port, "/flood", rcvbuf=65536, timeout=WAIT * 3)
    try:
        # Meanwhile other clients are served.
        other = connect(server, "/echo")
        try:
            for n in range(20):
                other.send(f"still here {n}")
                assert other.recv() == f"still here {n}"
        finally:
            other.close()
        resp = get(server.port, "/plain")
        assert (resp.status, resp.body) == (200, b"plain")
        stopped_at, is_open, most = results.get(timeout=WAIT * 3)
        assert is_open is False
        assert stopped_at < 1999, "send never returned False for a client that never reads"
        assert 0 < most <= limit
        assert flood_closes.get() == "server-close"
        slow.wait_closed_ignoring(timeout=WAIT * 3)  # the TCP connection is closed too
    finally:
        slow.close()


# -- timer -------------------------------------------------------------------------------------

@pytest.mark.timeout(15)
def test_schedule_task_runs_later_in_its_own_greenlet():
    ran = Recorder()
    me = gevent.getcurrent()
    task = schedule_task(0.05, lambda a, b: ran.put((a, b, gevent.getcurrent() is not me)), 1, "b")
    assert ran.empty()                               # not at once
    assert ran.get() == (1, "b", True)
    assert task.cancel() is False                    # too late


@pytest.mark.timeout(15)
def test_schedule_task_cancel():
    ran = Recorder()
    cancelled = schedule_task(0.1, ran.put, "cancelled one ran")
    sentinel = schedule_task(0.3, ran.put, "sentinel")
    assert cancelled.cancel() is True
    assert ran.get() == "sentinel"                   # later than the cancelled one's time
    assert ran.empty()
    assert sentinel.cancel() is False


@pytest.mark.timeout(15)
def test_schedule_task_error_is_logged_and_others_run(error_log):
    ran = Recorder()

    def boom():
        raise ValueError("task failed")
    schedule_task(0.01, boom)
    schedule_task(0.05, ran.put, "after")
    assert ran.get() == "after"
    assert any("task failed" in str(r.exc_info[1]) for r in error_log if r.exc_info)


def test_schedule_task_sends_on_a_channel(serve):
    def app(environ, start_response):
        return as_channel(environ, on_open=lambda ch: schedule_task(0.05, ch.send, "later"))

    server = serve(app)
    ws = connect(server)
    try:
        assert ws.recv() == "later"
    finally:
        ws.close()


# -- more edges ----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_ws_concurrent_sends_never_interleave(serve):
    senders, per_sender = 50, 20
    done = gevent.event.Event()

    def piece(i, j):
        body = b"%02d-%03d:" % (i, j) + bytes([65 + i % 26]) * (1 + (i * 977 + j * 131) % 9000)
        return body.decode("ascii") if (i + j) % 2 else body

    def app(environ, start_response):
        ch = with_channel(environ)

        def sender(i):
            for j in range(per_sender):
                assert ch.send(piece(i, j)) is True
                gevent.sleep(0)
        greenlets = [gevent.spawn(sender, i) for i in range(senders)]
        gevent.spawn(lambda: (gevent.joinall(greenlets, raise_error=True), done.set()))
        return ch

    server = serve(app)
    with RawWs(server.port, rcvbuf=65536, timeout=WAIT) as ws:
        waited(done, "all sends")               # nothing read until every send is queued
        seen = {i: [] for i in range(senders)}
        for _ in range(senders * per_sender):
            f = ws.recv_frame()
            i, j = int(f.payload[:2]), int(f.payload[3:6])
            expected = piece(i, j)
            assert f.fin and f.opcode == (1 if isinstance(expected, str) else 2)
            assert f.payload == (expected.encode() if isinstance(expected, str) else expected)
            seen[i].append(j)
    assert all(seen[i] == list(range(per_sender)) for i in range(senders))


def test_send_with_close_after_send(serve):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_receive(lambda m: ch.send("bye " + m, close_after_send=True))
        return ch

    server = serve(app)
    ws = connect(server)
    try:
        ws.send("you")
        assert ws.recv_data() == (OP_TEXT, b"bye you")
        assert recv_close(ws) == 1000
    finally:
        ws.close()


def test_send_after_client_close_is_false(serve):
    results = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(lambda status: results.put((status, ch.is_open, ch.send("late"), ch.close())))
        return ch

    server = serve(app)
    ws = connect(server)
    ws.close(status=1000, timeout=WAIT)
    assert results.get() == ("normal", False, False, False)


def test_on_receive_error_is_logged_and_delivery_goes_on(serve, error_log):
    def app(environ, start_response):
        ch = with_channel(environ)

        def on_receive(message):
            if message == "boom":
                raise ValueError("handler failed")
            ch.send(message)
        ch.on_receive(on_receive)
        return ch

    server = serve(app)
    ws = connect(server)
    try:
        ws.send("boom")
        ws.send("after")
        assert ws.recv() == "after"
    finally:
        ws.close()
    assert any("handler failed" in str(r.exc_info[1]) for r in error_log if r.exc_info)


def test_app_raising_after_handshake_closes_1011(serve, error_log):
    closes = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(closes.put)
        raise RuntimeError("app bug after the handshake")

    server = serve(app)
    ws = connect(server)
    try:
        assert recv_close(ws) == 1011
    finally:
        ws.close()
    assert closes.get() == "internal-server-error"
    assert any("app bug after the handshake" in str(r.exc_info[1])
               for r in error_log if r.exc_info)


def test_open_websockets_hold_no_worker(serve):
    """thread=1: open WebSockets wait for messages without holding the only worker."""
    echo = echo_app()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/plain":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"plain"]
        return echo(environ, start_response)

    server = serve(app, thread=1)
    clients = [connect(server) for _ in range(5)]
    try:
        resp = get(server.port, "/plain")
        assert (resp.status, resp.body) == (200, b"plain")
        for n, ws in enumerate(clients):
            ws.send(f"c{n}")
        for n, ws in enumerate(clients):
            assert ws.recv() == f"c{n}"
    finally:
        for ws in clients:
            ws.close()


@pytest.mark.timeout(60)
def test_stop_with_slow_consumer_returns(serve):
    closes = Recorder()
    flooding = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(closes.put)

        def flood():
            for _ in range(200):                     # 12.5 MiB, under the default limit
                if not ch.send(b"f" * 65536):
                    return
            flooding.set()
        gevent.spawn(flood)
        return ch

    server = serve(app)
    with RawWs(server.port, rcvbuf=65536, timeout=WAIT) as ws:
        waited(flooding, "the flood")
        with gevent.Timeout(WAIT, AssertionError("stop() hung on a client that does not read")):
            server.stop()
        assert closes.get() == "server-close"
        ws.wait_closed_ignoring(timeout=WAIT * 3)


def test_messages_then_close_in_one_write_all_delivered_before_on_close(serve):
    events = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_receive(lambda m: events.put(("message", m)))
        ch.on_close(lambda status: events.put(("close", status)))
        return ch

    server = serve(app)
    with RawWs(server.port) as ws:
        ws.send(b"".join(frame(1, b"m%d" % i) for i in range(5)) + frame(CLOSE, b"\x03\xe8"))
        assert ws.recv_frame().close_code == 1000
        ws.assert_tcp_closed()
    assert [events.get() for _ in range(6)] == [("message", f"m{i}") for i in range(5)] + [
        ("close", "normal")]


def test_receive_returns_queued_messages_before_channel_closed(serve):
    results = Recorder()
    closed = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(lambda status: closed.set())

        def loop():
            waited(closed, "the close")              # every message came before the close
            results.put(list(ch))
        gevent.spawn(loop)
        return ch

    server = serve(app)
    with RawWs(server.port) as ws:
        ws.send(frame(1, b"x") + frame(2, b"y") + frame(CLOSE, b"\x03\xe8"))
        assert ws.recv_frame().close_code == 1000
    assert results.get() == ["x", b"y"]


def test_handler_set_after_close_still_gets_the_messages(serve):
    """Nothing lost: messages that came before the close are handed over when
    the handler is set, even if that is after the close."""
    got = Recorder()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(lambda status: gevent.spawn(ch.on_receive, got.put))
        return ch

    server = serve(app)
    with RawWs(server.port) as ws:
        ws.send(frame(1, b"before") + frame(CLOSE, b"\x03\xe8"))
        assert ws.recv_frame().close_code == 1000
    assert got.get() == "before"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["websocket", "http"])
def test_client_dropping_with_queued_data(serve, kind):
    """A client that stops reading and then goes away while bytes are queued:
    the channel closes as the client's (going-away / client-close) and a
    drain() waiting for those bytes returns False: they were never written
    (drain's contract: True once the queued bytes are written)."""
    closes = Recorder()
    drained = Recorder()
    queued = gevent.event.Event()

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(closes.put)

        def flood():
            for _ in range(200):                     # 12.5 MiB, under the default limit
                ch.send(b"q" * 65536, close_after_send=False)
            queued.set()
            drained.put((ch.drain(timeout=WAIT * 2), ch.is_open, ch.buffered))
        gevent.spawn(flood)
        return ch

    server = serve(app)
    if kind == "websocket":
        client = RawWs(server.port, rcvbuf=65536)
        sock = client.sock
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(WAIT)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    waited(queued, "the flood")
    sock.close()                                     # unread data: the kernel sends a reset
    assert closes.get() == ("going-away" if kind == "websocket" else "client-close")
    ok, is_open, buffered = drained.get(timeout=WAIT * 3)
    assert (is_open, buffered) == (False, 0)
    assert ok is False, "drain() said the bytes were written, but the client was gone"


def test_as_channel_on_open_runs_before_any_on_receive(serve):
    """Frames sent with the upgrade request are there before as_channel returns;
    on_open still comes first (http-kit calls on-open before any on-receive)."""
    calls = Recorder()

    def app(environ, start_response):
        return as_channel(environ, on_open=lambda ch: calls.put("open"),
                          on_receive=lambda ch, message: calls.put(("receive", message)))

    server = serve(app)
    with RawWs(server.port, first=frame(1, b"early")) as ws:
        assert [calls.get(), calls.get()] == ["open", ("receive", "early")]
        ws.send(frame(1, b"later"))
        assert calls.get() == ("receive", "later")
