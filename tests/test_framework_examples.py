"""``examples/frameworks``: the README's channel pattern, ``return ch``, in Flask,
Django and Bottle views (issue 10, point 5), run as users run them
(``gkit examples.frameworks.X:app``), per HTTP engine: WebSocket echo,
streaming and a long poll, and no error line in the server's log.
"""
from __future__ import annotations

import importlib
import os
import re
from typing import Any, Iterator

import gevent
import pytest
import requests
import websocket
from apps_cli import GkitProcess, GkitRunner, run_gkit
from helpers import RawConn, get, request

from gkit.frameworks import bottle_channels

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ["flask", "django", "bottle"]
ERROR_LINE = re.compile(r"\bERROR\b|Traceback|Error\b|error in|exception", re.IGNORECASE)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def runner() -> Iterator[GkitRunner]:
    yield from run_gkit()


@pytest.fixture(scope="module", params=[(f, e) for f in FRAMEWORKS for e in ("httptools", "h11")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def site(request: Any, runner: GkitRunner) -> GkitProcess:
    name, engine = request.param
    try:
        importlib.import_module(name)
    except ImportError:
        if os.environ.get("GKIT_REQUIRE_ALL") == "1":
            pytest.fail(f"{name} is not installed but GKIT_REQUIRE_ALL=1", pytrace=False)
        pytest.skip(f"{name} is not installed (pip install {name})")
    return runner(f"examples.frameworks.{name}_app:app", "--ip", "127.0.0.1", "--port", "0",
                  "--http", engine, cwd=REPO, env={"DJANGO_SETTINGS_MODULE": None})


def test_websocket_echo(site):
    ws = websocket.create_connection(f"ws://127.0.0.1:{site.port}/ws", timeout=10)
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send_binary(b"\x00\x01")
        assert ws.recv() == b"\x00\x01"
        ws.close()
    finally:
        ws.shutdown()
    resp = get(site.port, "/ws")
    assert resp.status == 400 and resp.body == b"connect with a WebSocket client\n"


def test_streaming(site):
    with RawConn(site.port) as conn:
        conn.send(request(target="/stream"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.framing == "chunked"
        assert resp.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_long_poll(site):
    with RawConn(site.port) as conn:
        conn.send(request(target="/poll"))
        for _ in range(250):  # until the poll is parked (bounded: 5 s)
            answer = requests.post(site.url + "/send", data="news", timeout=10)
            assert answer.status_code == 200
            if answer.text == "delivered 1\n":
                break
            gevent.sleep(0.02)
        else:
            raise AssertionError("the long poll never parked")
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"news"
        conn.send(request(target="/ws"))  # keep-alive goes on after the poll's answer
        assert conn.read_response().status == 400


def test_no_error_lines(site):
    requests.get(site.url + "/ws", timeout=10)  # one more request: earlier lines are written
    bad = [line for line in site.lines if ERROR_LINE.search(line)]
    assert bad == [], site.stderr


# -- the helpers themselves, in-process -------------------------------------------------
def test_bottle_plugin_passes_other_results_through():
    assert bottle_channels(lambda: "x")() == "x"
    assert bottle_channels(lambda: [b"y"])() == [b"y"]


def test_flask_warns_when_werkzeug_refuses_a_handshake(serve, error_log):
    from flask import Flask, request as flask_request

    from gkit import with_channel

    app = Flask(__name__)
    path = f"/unmarked-{serve.engine}"  # warned once per path, per process

    @app.route(path)
    def unmarked():
        ch = with_channel(flask_request.environ)
        return ch

    server = serve(app)
    from wshelpers import handshake_request
    for _ in range(2):
        with RawConn(server.port) as conn:
            conn.send(handshake_request(path))
            assert conn.read_response().status == 400
    warnings = [r.getMessage() for r in error_log]
    assert len(warnings) == 1 and "websocket=True" in warnings[0], warnings  # once
    assert f"@app.route('{path}', websocket=True)" in warnings[0]
    assert error_log[0].levelname == "WARNING"
