"""block_warn: a greenlet that holds the hub is reported on gkit.error once
per incident, with its worker name, request line and stack (issue 12, point 2).
Both engines; real sockets."""
from __future__ import annotations

import time

import gevent
from gevent import config as gevent_config

from helpers import RawConn, request


def spin_in_the_app(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # CPU-bound: never yields to the hub
        pass


def app(environ, start_response):
    if environ["PATH_INFO"] == "/spin":
        spin_in_the_app(0.8)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


def blocked_reports(records, by=""):
    """The block_warn reports; with ``by``, those naming that greenlet. (On a
    loaded machine the OS may also starve the whole process past the limit,
    which gevent reports against whichever greenlet ran: the tests count the
    reports about the spinning request.)"""
    return [r for r in records if "block_warn" in r.getMessage() and by in r.getMessage()]


def test_a_cpu_bound_request_is_reported_once_with_its_request_and_stack(serve, error_log):
    server = serve(app, block_warn=0.25, worker_name_prefix="spinner-")
    assert server.hub.periodic_monitoring_thread is not None
    conn = RawConn(server.port)
    conn.send(request(target="/spin?n=1", headers=[("User-Agent", "t")]))
    assert conn.read_response(timeout=10).body == b"done"
    gevent.sleep(0.3)  # a few more monitor periods: no second report for the same block
    reports = blocked_reports(error_log, "by spinner-")
    assert len(reports) == 1, [r.getMessage()[:300] for r in reports]
    [record] = reports
    message = record.getMessage()
    assert record.levelname == "WARNING" and record.name == "gkit.error"
    assert "blocked for over 0.25 s by spinner-1 serving GET /spin?n=1 HTTP/1.1 from 127.0.0.1" \
        in message
    assert "in spin_in_the_app" in message and "in app" in message
    # A second incident is a second report.
    conn.send(request(target="/spin?n=2"))
    assert conn.read_response(timeout=10).body == b"done"
    gevent.sleep(0.3)
    assert len(blocked_reports(error_log, "by spinner-")) == 2
    assert "GET /spin?n=2 HTTP/1.1" in blocked_reports(error_log, "by spinner-")[1].getMessage()
    conn.close()


def test_quick_requests_are_not_reported_and_stop_turns_the_monitor_off(serve, error_log):
    server = serve(app, block_warn=0.5)
    for _ in range(20):
        conn = RawConn(server.port)
        conn.send(request())
        assert conn.read_response().body == b"done"
        conn.close()
    gevent.sleep(0.5)
    assert blocked_reports(error_log) == []
    server.stop()
    assert server.hub.periodic_monitoring_thread is None
    assert gevent_config.print_blocking_reports is True


def test_off_by_default(serve):
    server = serve(app)
    assert server.config.block_warn is None
    assert server.hub.periodic_monitoring_thread is None
