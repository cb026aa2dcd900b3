"""Shared fixtures: a real gkit server per test, on 127.0.0.1 port 0, for each HTTP engine.

The test process is monkey-patched (gkit itself never patches), so the server
runs in this process and the test clients (raw sockets, ``requests``) are
cooperative greenlets beside it.
"""
from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any, Callable, List  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for `import helpers`

ENGINES = ["httptools", "h11"]
DEADLINE = 30  # seconds; every test gets it unless it has its own timeout mark


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEADLINE))


@pytest.fixture(params=ENGINES)
def engine(request: Any) -> str:
    """The HTTP/1.1 engine: the whole suite runs once per engine."""
    return request.param


class Serve:
    """``serve(app, **options)`` starts ``gkit.run_server`` on 127.0.0.1:0 with the
    test's engine and returns the Server; every server is stopped at teardown.

    ``serve.event()`` makes a gevent Event that is set at teardown before the
    servers stop, so an app blocked on it never outlives its test.
    """

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.servers: List[Any] = []
        self.events: List[gevent.event.Event] = []

    def __call__(self, app: Callable, **options: Any) -> Any:
        from gkit import run_server

        options.setdefault("ip", "127.0.0.1")
        options.setdefault("port", 0)
        options.setdefault("http", self.engine)
        server = run_server(app, **options)
        self.servers.append(server)
        return server

    def event(self) -> gevent.event.Event:
        ev = gevent.event.Event()
        self.events.append(ev)
        return ev

    def close(self) -> None:
        for ev in self.events:
            ev.set()
        for server in self.servers:
            with gevent.Timeout(10, AssertionError("server.stop() did not return in 10 s")):
                server.stop(timeout=1)


@pytest.fixture
def serve(engine: str) -> Any:
    s = Serve(engine)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def error_log(caplog: Any) -> Any:
    """Records of the ``gkit.error`` logger (attached directly, so a logger that
    does not propagate to the root is still seen)."""
    logger = logging.getLogger("gkit.error")
    caplog.set_level(logging.DEBUG, logger="gkit.error")
    records: List[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Collect(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
