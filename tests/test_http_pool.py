"""The worker pool: thread, queue_size, 503, worker names.

Issue 2, point 3: "at most `thread` at once (greenlets named
worker_name_prefix + n while they run the app), at most `queue_size` more
waiting, and beyond that an immediate 503; thread=None means no limit. Idle
keep-alive connections never hold a pool slot, and the pool never limits how
many connections are open".
"""
import gevent
import gevent.event
import pytest

from helpers import RawConn, get, request


class Gate:
    """An app that blocks every call until released, and counts concurrency."""

    def __init__(self, serve, expect=None):
        self.release = serve.event()
        self.active = 0
        self.max_active = 0
        self.entered = 0
        self.names = []
        self.expect = expect
        self.reached = gevent.event.Event()

    def __call__(self, environ, start_response):
        self.active += 1
        self.entered += 1
        self.max_active = max(self.max_active, self.active)
        self.names.append(gevent.getcurrent().name)
        if self.expect is not None and self.entered >= self.expect:
            self.reached.set()
        try:
            if environ["PATH_INFO"] != "/fast":
                self.release.wait()
        finally:
            self.active -= 1
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]


def name_app(environ, start_response):
    body = gevent.getcurrent().name.encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def spawn_gets(port, n, path="/"):
    return [gevent.spawn(get, port, path, 10) for _ in range(n)]


def test_worker_names_with_two_threads(serve):
    gate = Gate(serve, expect=2)
    server = serve(gate, thread=2)
    jobs = spawn_gets(server.port, 2)
    assert gate.reached.wait(timeout=5), f"only {gate.entered} of 2 calls started"
    assert sorted(gate.names) == ["worker-1", "worker-2"]
    gate.release.set()
    gevent.joinall(jobs, timeout=10, raise_error=True)
    for _ in range(6):  # later calls reuse the same names
        assert get(server.port, "/fast").status == 200
    assert set(gate.names) == {"worker-1", "worker-2"}


def test_worker_names_sequential(serve):
    server = serve(name_app, thread=2)
    names = {get(server.port).body.decode() for _ in range(8)}
    assert names <= {"worker-1", "worker-2"}, names
    assert names  # not empty


def test_custom_worker_name_prefix(serve):
    gate = Gate(serve, expect=3)
    server = serve(gate, thread=3, worker_name_prefix="api-")
    jobs = spawn_gets(server.port, 3)
    assert gate.reached.wait(timeout=5)
    assert sorted(gate.names) == ["api-1", "api-2", "api-3"]
    gate.release.set()
    gevent.joinall(jobs, timeout=10, raise_error=True)


def test_default_thread_is_1000(serve):
    """Issue 10, point 3: gunicorn's gevent worker_connections, not http-kit's 4
    JVM threads: twenty blocked calls all run at once, the 21st too."""
    gate = Gate(serve, expect=21)
    server = serve(gate)
    assert server.config.thread == 1000
    jobs = spawn_gets(server.port, 21)
    assert gate.reached.wait(timeout=5)
    assert gate.max_active == 21
    assert len(set(gate.names)) == 21 and all(n.startswith("worker-") for n in gate.names)
    gate.release.set()
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert [j.value.status for j in jobs] == [200] * 21


def test_at_most_thread_calls_at_once(serve):
    gate = Gate(serve, expect=3)
    server = serve(gate, thread=3)
    jobs = spawn_gets(server.port, 10)
    assert gate.reached.wait(timeout=5)
    gevent.sleep(0.3)  # negative check: no fourth call starts while three are blocked
    assert gate.entered == 3
    assert gate.max_active == 3
    gate.release.set()
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert [j.value.status for j in jobs] == [200] * 10
    assert gate.entered == 10
    assert gate.max_active == 3


def test_thread_none_runs_many_at_once(serve):
    n = 60
    gate = Gate(serve, expect=n)
    server = serve(gate, thread=None)
    jobs = spawn_gets(server.port, n)
    assert gate.reached.wait(timeout=10), f"only {gate.entered} of {n} calls started"
    assert gate.max_active == n
    gate.release.set()
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert [j.value.status for j in jobs] == [200] * n


def test_queue_full_gives_immediate_503(serve):
    """thread=1, queue_size=1: one request runs, one waits, the next is refused at
    once with 503 (before the running one finishes); the first two then get 200."""
    gate = Gate(serve, expect=1)
    server = serve(gate, thread=1, queue_size=1)
    first = gevent.spawn(get, server.port, "/", 10)
    assert gate.reached.wait(timeout=5)
    # Which of the next two is queued and which refused depends on arrival order;
    # exactly one must be refused while the first is still running.
    others = [gevent.spawn(get, server.port, f"/{i}", 10) for i in range(2)]
    done = gevent.wait(others, count=1, timeout=5)
    assert done, "no immediate 503 while the pool and the queue are full"
    refused = done[0]
    waiting = others[1 - others.index(refused)]
    assert refused.get().status == 503
    assert not first.ready() and not waiting.ready()
    gate.release.set()
    assert first.get(timeout=10).status == 200
    assert waiting.get(timeout=10).status == 200
    assert gate.entered == 2  # the refused request never reached the app


def test_queue_size_zero(serve):
    gate = Gate(serve, expect=1)
    server = serve(gate, thread=1, queue_size=0)
    first = gevent.spawn(get, server.port, "/", 10)
    assert gate.reached.wait(timeout=5)
    assert get(server.port, "/").status == 503
    gate.release.set()
    assert first.get(timeout=10).status == 200
    assert get(server.port, "/fast").status == 200  # the slot is free again


def test_503_response_is_well_formed_and_server_recovers(serve):
    gate = Gate(serve, expect=1)
    server = serve(gate, thread=1, queue_size=0)
    first = gevent.spawn(get, server.port, "/", 10)
    assert gate.reached.wait(timeout=5)
    with RawConn(server.port) as conn:
        conn.send(request())
        resp = conn.read_response()
        assert resp.status == 503
        assert resp.get("content-length") is not None or resp.framing == "close"
    gate.release.set()
    first.get(timeout=10)
    for _ in range(5):
        assert get(server.port, "/fast").status == 200


def test_idle_keep_alive_connections_hold_no_slot(serve):
    server = serve(name_app, thread=1)
    conns = []
    try:
        for _ in range(5):
            conn = RawConn(server.port)
            conn.send(request())
            assert conn.read_response().status == 200
            conns.append(conn)  # stays open and idle
        assert get(server.port).status == 200  # a new client is still served
        conns[2].send(request())  # and an idle one can come back
        assert conns[2].read_response().status == 200
    finally:
        for conn in conns:
            conn.close()


def test_open_connections_are_not_limited_by_the_pool(serve):
    server = serve(name_app, thread=1, queue_size=1)
    silent = [RawConn(server.port) for _ in range(50)]  # connected, sent nothing
    try:
        assert get(server.port).status == 200
        for conn in silent[:5]:
            conn.send(request())
            assert conn.read_response().status == 200
    finally:
        for conn in silent:
            conn.close()


def test_app_error_frees_its_slot(serve, error_log):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        return name_app(environ, start_response)

    server = serve(app, thread=1, queue_size=0)
    for _ in range(3):
        assert get(server.port, "/boom").status == 500
        assert get(server.port, "/ok").status == 200


def test_slot_freed_when_client_leaves_mid_stream(serve):
    def app(environ, start_response):
        start_response("200 OK", [])

        def endless():
            while True:
                yield b"y" * 4096
                gevent.sleep(0.005)
        return endless() if environ["PATH_INFO"] == "/endless" else iter([b"ok"])

    server = serve(app, thread=1, queue_size=5)
    conn = RawConn(server.port)
    conn.send(request(target="/endless"))
    conn.read_until(b"yyyy")
    conn.close()
    assert get(server.port, "/ok", timeout=10).body == b"ok"


@pytest.mark.parametrize("thread", [1, 2])
def test_pipelined_requests_on_one_connection_do_not_deadlock(serve, thread):
    server = serve(name_app, thread=thread, queue_size=0)
    with RawConn(server.port) as conn:
        conn.send(request() * 5)
        for _ in range(5):
            assert conn.read_response().status == 200
