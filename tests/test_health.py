"""The health path (option ``health_path``) over real sockets: answered by
gkit before the worker pool (so a full pool and queue do not delay it), 200
while running and 503 from the moment ``stop(timeout)`` begins, with the
listener still open during the graceful wait so a load balancer sees it.
"""
from __future__ import annotations

import socket
import time
from typing import Any, Dict, List

import gevent
import pytest
from helpers import RawConn, request


def make_app(serve: Any) -> Any:
    release = serve.event()
    calls: List[str] = []

    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        calls.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/block":
            release.wait()
        start_response("200 OK", [("Content-Length", "3")])
        return [b"app"]

    app.release = release  # type: ignore[attr-defined]
    app.calls = calls  # type: ignore[attr-defined]
    return app


def wait_busy(server: Any, busy: int) -> None:
    deadline = time.monotonic() + 5
    while server.stats()["app_calls_in_flight"] != busy:
        assert time.monotonic() < deadline
        gevent.sleep(0.002)


def test_answered_before_a_full_pool(serve: Any) -> None:
    app = make_app(serve)
    server = serve(app, thread=1, queue_size=0, health_path="/healthz")
    blocker = RawConn(server.port)
    blocker.send(request(target="/block"))
    wait_busy(server, 1)
    with RawConn(server.port) as conn:
        conn.send(request(target="/other"))  # the pool is full: 503 from the pool
        assert conn.read_response().status == 503
    with RawConn(server.port) as conn:  # keep-alive probes, query strings ignored
        for target, method in (("/healthz", "GET"), ("/healthz?full=1", "GET"),
                               ("/healthz", "HEAD")):
            conn.send(request(method=method, target=target))
            resp = conn.read_response(head=method == "HEAD")
            assert (resp.status, resp.body, resp.get("cache-control")) == \
                (200, b"ok\n" if method == "GET" else b"", "no-store")
            assert "close" not in resp.connection_tokens()
    assert app.calls == ["/block"]  # the app never saw a probe
    app.release.set()
    assert blocker.read_response().body == b"app"
    blocker.close()


def test_503_from_the_moment_stop_begins(serve: Any) -> None:
    app = make_app(serve)
    server = serve(app, health_path="/healthz")
    with RawConn(server.port) as probe:
        probe.send(request(target="/healthz"))
        assert probe.read_response().status == 200
    blocker = RawConn(server.port)
    blocker.send(request(target="/block"))
    wait_busy(server, 1)
    stopper = gevent.spawn(server.stop, 10)
    gevent.sleep(0)  # let stop() begin: status is "stopping" from its first line
    assert server.status == "stopping"
    for _ in range(2):  # new connections are still accepted during the graceful wait
        with RawConn(server.port) as conn:
            conn.send(request(target="/healthz"))
            resp = conn.read_response()
            assert (resp.status, resp.body) == (503, b"stopping\n")
            assert "close" in resp.connection_tokens()
            conn.assert_closed()
    with RawConn(server.port) as conn:  # and other requests served, then closed
        conn.send(request(target="/late"))
        resp = conn.read_response()
        assert resp.body == b"app" and "close" in resp.connection_tokens()
    app.release.set()
    assert blocker.read_response().body == b"app"
    blocker.close()
    stopper.join(10)
    assert server.status == "stopped"
    with pytest.raises(ConnectionRefusedError):  # the listener closed after the wait
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


def test_not_logged_nor_counted(serve: Any) -> None:
    import logging
    lines: List[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("gkit.access")
    handler = _Collect(level=logging.INFO)
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        server = serve(make_app(serve), health_path="/healthz")
        with RawConn(server.port) as conn:
            conn.send(request(target="/healthz") + request(target="/x"))
            assert conn.read_response().status == 200
            assert conn.read_response().body == b"app"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert len(lines) == 1 and '"GET /x HTTP/1.1" 200' in lines[0], lines
    stats = server.stats()
    assert (stats["app_calls_total"], stats["responses_total"]["2xx"]) == (1, 2)


@pytest.mark.parametrize("bad", ["healthz", "/a b", "/h?x=1"])
def test_bad_path_is_a_clear_error(bad: str) -> None:
    from gkit.config import make_config
    from gkit.errors import ConfigError

    with pytest.raises(ConfigError, match="give a path starting with /"):
        make_config(health_path=bad)


def test_without_health_path_stop_closes_the_listener_at_once(serve: Any) -> None:
    app = make_app(serve)
    server = serve(app)
    blocker = RawConn(server.port)
    blocker.send(request(target="/block"))
    wait_busy(server, 1)
    stopper = gevent.spawn(server.stop, 10)
    gevent.sleep(0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)
    app.release.set()
    assert blocker.read_response().body == b"app"
    blocker.close()
    stopper.join(10)
