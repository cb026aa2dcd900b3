"""Flask, Django and Bottle apps run unchanged on a real gkit server.

Issue 4, point 1 (http-kit's "routing with compojure"): each framework's app
(``tests/apps``) opens channels from inside its views, with
``with_channel(request.environ)`` (Django: ``request.META``), for a WebSocket
route, a streaming route and a long-poll route, and serves static files with
the framework's own static handling, which must hand the file to gkit through
``wsgi.file_wrapper``. Every test runs per framework and per HTTP engine.

A framework that is not installed is skipped, or failed when
``GKIT_REQUIRE_ALL=1``.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import pytest
import websocket
from apps import STATIC_FILES
from apps.wire import read_chunks, read_head
from helpers import RawConn, get, request

REQUIRE_ALL = os.environ.get("GKIT_REQUIRE_ALL") == "1"

# framework: (the package it needs, the module whose ``app`` and ``feed`` are served)
FRAMEWORKS = {
    "flask": ("flask", "apps.flask_app"),
    "django": ("django", "apps.django_project.wsgi"),
    "bottle": ("bottle", "apps.bottle_app"),
}


@dataclass
class Site:
    name: str     # the framework
    module: Any   # its app module: ``app`` (a FileWrapperProbe) and ``feed``
    port: int

    def publish(self, message: str, close: bool = False) -> bytes:
        resp = get(self.port, "/publish" + ("?close=1" if close else ""), method="POST",
                   body=message.encode(), headers=[("Content-Type", "text/plain")])
        assert resp.status == 200, resp.raw
        return resp.body


@pytest.fixture(params=sorted(FRAMEWORKS))
def site(request: Any, serve: Any) -> Site:
    name = request.param
    package, module_name = FRAMEWORKS[name]
    try:
        importlib.import_module(package)
    except ImportError:
        if REQUIRE_ALL:
            pytest.fail(f"{package} is not installed but GKIT_REQUIRE_ALL=1", pytrace=False)
        pytest.skip(f"{package} is not installed (pip install {package})")
    module = importlib.import_module(module_name)
    return Site(name, module, serve(module.app).port)


def test_normal_view(site):
    resp = get(site.port, "/hello?name=gkit")
    body = f"hello gkit from {site.name}\n".encode()
    assert resp.status == 200
    assert resp.body == body
    assert resp.get("content-length") == str(len(body))
    assert resp.get("content-type").startswith("text/plain")


def test_websocket_route(site):
    ws = websocket.create_connection(f"ws://127.0.0.1:{site.port}/ws", timeout=5)
    try:
        assert ws.status == 101
        ws.send(f"hello {site.name}")
        assert ws.recv() == f"hello {site.name}"
        ws.send_binary(b"\x00\xff" * 1000)
        assert ws.recv() == b"\x00\xff" * 1000
        ws.close()
    finally:
        ws.shutdown()
    # The same view on plain HTTP: its channel answers, not the framework.
    resp = get(site.port, "/ws")
    assert resp.status == 400
    assert resp.body == b"this route speaks WebSocket\n"


def test_streaming_route(site):
    with RawConn(site.port) as conn:
        conn.send(request(target="/stream"))
        head = read_head(conn)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\ntransfer-encoding: chunked" in head.lower()
        assert read_chunks(conn, count=1) == [b"stream open\n"]
        site.module.feed.wait_for(streams=1)
        assert site.publish("one") == b"delivered 1\n"
        assert read_chunks(conn, count=1) == [b"one\n"]   # arrives while the stream is open
        assert site.publish("two", close=True) == b"delivered 1\n"
        assert read_chunks(conn) == [b"two\n"]            # then the last chunk
        conn.send(request(target="/hello"))               # keep-alive goes on
        resp = conn.read_response()
        assert resp.body == f"hello world from {site.name}\n".encode()


def test_long_poll_route(site):
    with RawConn(site.port) as conn:
        conn.send(request(target="/poll"))
        site.module.feed.wait_for(polls=1)    # the view returned; the request is parked
        assert conn.buf == b"" and not conn.eof
        assert site.publish("news for the poll") == b"delivered 1\n"
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"news for the poll"
        assert resp.get("content-length") == str(len(b"news for the poll"))
        conn.send(request(target="/hello"))   # keep-alive goes on
        assert conn.read_response().status == 200
    assert site.module.feed.polls == []


@pytest.mark.parametrize("name", sorted(STATIC_FILES))
def test_static_files_go_through_file_wrapper(site, name):
    probe = site.module.app
    del probe.records[:]
    resp = get(site.port, f"/static/{name}")
    assert resp.status == 200
    assert resp.body == STATIC_FILES[name]
    assert resp.get("content-length") == str(len(STATIC_FILES[name]))
    assert resp.framing == "length"
    # The framework made exactly one wsgi.file_wrapper and returned it as is,
    # so gkit serves the file from its descriptor (sendfile).
    assert probe.records == [(f"/static/{name}", 1, True)]
