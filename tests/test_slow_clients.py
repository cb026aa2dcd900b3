"""Slow and stalled clients (issue 8 points 2-5 and 10): a client that sends its
body slowly, or reads its response slowly or not at all, holds no worker slot
while gkit waits on it; waits on a client have deadlines on progress (a slow
but moving client gets everything), and a request body has a deadline of its
own (``body_timeout`` + 1 s per ``body_min_rate`` bytes).
"""
import socket
import time

import gevent
import gevent.event
import pytest

from gkit import with_channel
from helpers import RawConn, get, parse_responses, request

BIG = 8 * 1024 * 1024


def slow_socket(port, rcvbuf=16384):
    """A client socket with a small receive buffer (set before connecting)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def served_promptly(port, within=2.0):
    """A fresh client's GET /fast is answered within ``within`` seconds."""
    resp = get(port, "/fast", timeout=within)
    assert (resp.status, resp.body) == (200, b"fast")


def fast_or(app):
    def wrapper(environ, start_response):
        if environ["PATH_INFO"] == "/fast":
            start_response("200 OK", [("Content-Length", "4")])
            return [b"fast"]
        return app(environ, start_response)
    return wrapper


# --- point 2: slow request bodies ---------------------------------------------------------

def reads_body(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def ignores_body(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def dribble(sock, stop, every=0.3):
    try:
        while not stop.is_set():
            sock.sendall(b"x")
            stop.wait(every)
    except OSError:
        pass


@pytest.mark.parametrize("app", [reads_body, ignores_body], ids=["app-reads", "gkit-drains"])
def test_thread_dribbling_uploads_do_not_stop_everyone_else(serve, app):
    server = serve(fast_or(app), thread=4)
    stop = gevent.event.Event()
    socks, dribblers = [], []
    try:
        for _ in range(4):
            sock = slow_socket(server.port)
            sock.sendall(request("POST", "/up", headers=[("Content-Length", "1000")]))
            socks.append(sock)
            dribblers.append(gevent.spawn(dribble, sock, stop))
        gevent.sleep(0.3)  # let the four take their slots (a negative check: nothing waits on it)
        served_promptly(server.port)
    finally:
        stop.set()
        gevent.joinall(dribblers, timeout=5)
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("app", [reads_body, ignores_body], ids=["app-reads", "gkit-drains"])
def test_a_dribbled_body_is_cut_at_the_body_deadline(serve, app):
    server = serve(app, body_timeout=1.0, body_min_rate=100)
    stop = gevent.event.Event()
    with RawConn(server.port, timeout=6) as conn:
        conn.send(request("POST", "/", headers=[("Content-Length", "1000")]))
        feeder = gevent.spawn(dribble, conn.sock, stop, 0.2)
        try:
            started = time.monotonic()
            data = conn.read_until_close(timeout=6)
        finally:
            stop.set()
            feeder.join(timeout=5)
    statuses = [r.status for r in parse_responses(data)]
    # the app that reads gets no body: 408; the one that does not answered 200 at once
    assert statuses == ([408] if app is reads_body else [200]), data
    assert time.monotonic() - started < 4


def test_expect_100_continue_client_that_never_sends_holds_no_slot(serve):
    server = serve(fast_or(reads_body), thread=1, body_timeout=1.0)
    with RawConn(server.port, timeout=6) as conn:
        conn.send(request("POST", "/up", headers=[("Expect", "100-continue"),
                                                  ("Content-Length", "5")]))
        assert conn.read_response().status == 100
        served_promptly(server.port, within=0.9)  # while the only slot's request waits
        resp = conn.read_response()
        assert resp.status == 408, resp.raw
        conn.assert_closed()


def test_a_slow_but_steady_upload_gets_through(serve):
    """1 KiB every 0.1 s for 2 s: slower than idle_timeout allows in total, never stalled."""
    server = serve(reads_body, idle_timeout=0.5, body_timeout=0.5, body_min_rate=5000)
    body = b"y" * 20 * 1024
    with RawConn(server.port, timeout=10) as conn:
        conn.send(request("POST", "/", headers=[("Content-Length", str(len(body)))]))
        for i in range(0, len(body), 1024):
            conn.send(body[i:i + 1024])
            gevent.sleep(0.1)
        resp = conn.read_response()
    assert (resp.status, resp.body) == (200, body)


# --- points 3 and 4: clients that never read -----------------------------------------------

def file_app(path):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))
    return app


def generator_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (b"g" * 65536 for _ in range(BIG // 65536))


def list_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [b"l" * BIG]


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"f" * BIG)
    return str(path)


@pytest.mark.parametrize("kind", ["file_wrapper", "generator", "list"])
def test_thread_non_reading_clients_cannot_starve_the_server(serve, big_file, kind):
    app = {"file_wrapper": file_app(big_file), "generator": generator_app,
           "list": list_app}[kind]
    server = serve(fast_or(app), thread=2)
    socks = []
    try:
        for _ in range(2):
            sock = slow_socket(server.port)
            sock.sendall(request("GET", "/big"))
            socks.append(sock)
        gevent.sleep(0.3)  # let both fill their socket buffers (negative check)
        served_promptly(server.port)
        assert server.pool.running == 0, "a stalled writer holds a slot"
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("kind", ["file_wrapper", "generator", "list"])
def test_a_client_that_never_reads_is_cut_after_idle_timeout(serve, big_file, kind):
    app = {"file_wrapper": file_app(big_file), "generator": generator_app,
           "list": list_app}[kind]
    server = serve(app, idle_timeout=1.0)
    sock = slow_socket(server.port)
    try:
        sock.sendall(request("GET", "/big"))
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")  # started; now it stops reading
        with gevent.Timeout(5, AssertionError("a stalled response was never cut")):
            while server.connections:
                gevent.sleep(0.05)
    finally:
        sock.close()


# --- point 5: deadlines on progress, not on the whole call ----------------------------------

def read_steadily(sock, rate, total, piece=65536):
    """Read ``total`` bytes at about ``rate`` bytes/s, never pausing long."""
    got = bytearray()
    started = time.monotonic()
    while True:
        try:
            chunk = sock.recv(piece)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
        if len(got) >= total:
            break
        ahead = len(got) / rate - (time.monotonic() - started)
        if ahead > 0:
            gevent.sleep(min(ahead, 0.1))
    return bytes(got)


def channel_flush_app(environ, start_response):
    ch = with_channel(environ)
    ch.send(b"c" * BIG)
    return ch


@pytest.mark.parametrize("app", [list_app, channel_flush_app], ids=["list-body", "channel-flush"])
def test_a_response_read_slowly_but_steadily_arrives_whole(serve, app):
    """4 s of reading at 2 MiB/s with idle_timeout=1: every pause is short."""
    server = serve(app, idle_timeout=1.0)
    sock = slow_socket(server.port)
    with sock:
        sock.sendall(request("GET", "/", headers=[("Connection", "close")]))
        data = read_steadily(sock, 2 * 1024 * 1024, BIG + 1000)
    (resp,) = parse_responses(data)
    assert resp.status == 200 and len(resp.body) == BIG and resp.complete


# --- point 10 -------------------------------------------------------------------------------

@pytest.mark.parametrize("first", ["text", 42], ids=["str", "int"])
def test_an_iterable_yielding_non_bytes_first_gets_500(serve, error_log, first):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([first, b"later"])

    server = serve(app)
    resp = get(server.port)
    assert resp.status == 500
    assert b"bytes" in resp.body
    assert any("not bytes" in r.getMessage() or (r.exc_info and "not bytes" in str(r.exc_info[1]))
               for r in error_log)


# --- point 8: all channels' unwritten bytes together ------------------------------------------

STALLED = 20


def test_max_buffered_total_closes_the_channels_holding_most_first(serve, error_log):
    import queue
    chans = queue.Queue()
    closed = []

    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(lambda status: closed.append((environ["PATH_INFO"], status)))
        chans.put((environ["PATH_INFO"], ch))
        return ch

    limit = 8 * 1024 * 1024
    server = serve(app, max_buffered_total=limit, max_buffered=64 * 1024 * 1024)
    socks = []
    try:
        for i in range(STALLED):
            sock = slow_socket(server.port)
            sock.sendall(request("GET", f"/stalled{i}"))
            socks.append(sock)
        reader = RawConn(server.port, timeout=10)
        reader.send(request("GET", "/reader"))
        got = {}
        while len(got) < STALLED + 1:
            path, ch = chans.get(timeout=5)
            got[path] = ch
        piece = b"s" * (1024 * 1024)
        for _ in range(8):
            for i in range(STALLED):
                got[f"/stalled{i}"].send(piece, close_after_send=False)
            got["/reader"].send(b"r" * 1024, close_after_send=False)
            assert server.budget.total <= limit
            gevent.sleep(0)
        assert got["/reader"].is_open
        got["/reader"].close()
        resp = reader.read_response()
        assert resp.status == 200 and resp.body == b"r" * 1024 * 8
        reader.close()
    finally:
        for sock in socks:
            sock.close()
    with gevent.Timeout(5, AssertionError(f"bytes still counted: {server.budget.total}")):
        while server.budget.total:  # every channel ended: nothing stays counted
            gevent.sleep(0.05)
    cut = [path for path, status in closed if status == "server-close" and path != "/reader"]
    assert cut, "no channel was closed though their unwritten bytes passed the budget"
    warnings = [r for r in error_log if "max_buffered_total" in r.getMessage()]
    assert len(warnings) == len(cut)
