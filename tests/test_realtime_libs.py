"""The realtime code people already have, unchanged, on gkit (issue 10).

``tests/apps/realtime.py`` (Flask-SocketIO with its async mode auto-detected,
``socketio.WSGIApp`` in gevent and threading modes, flask-sock's echo
example, an app written for gevent-websocket) is served as users run it:
``gkit tests.apps.realtime:app`` with the default options and
``gunicorn -k gkit.gunicorn.Worker``, on both HTTP engines, and each of them
with gevent-websocket installed and hidden (``tests/without_geventwebsocket``
first on PYTHONPATH: importing it fails, so engineio takes simple-websocket
and the raw ``gunicorn.socket`` hand-off). Real clients: python-socketio's,
websocket-client. Every server's log must have no error line.

One server process per combination, shared by the module's tests.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, List

import gevent
import pytest
import requests
import socketio
import websocket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIDE_GWS = os.path.join(REPO, "tests", "without_geventwebsocket")
APP = "tests.apps.realtime:app"
BOOT_DEADLINE = 30.0
SIO_PATHS = ["socket.io", "sio-gevent", "sio-threading"]  # Flask-SocketIO, WSGIApp x 2
ERROR_LINE = re.compile(r"\bERROR\b|Traceback|Error\b|error in|exception", re.IGNORECASE)
# engineio's complaint about a long poll that python-socketio's client sends after
# it disconnected a polling session: a client race, logged the same under
# gevent's pywsgi (the server engineio documents for gevent); not the server's.
CLIENT_RACE = re.compile(r"'Session is disconnected' \S+|Invalid session \S+")

pytestmark = pytest.mark.timeout(60)

try:
    import gunicorn.config
    import flask_socketio  # noqa: F401
    import flask_sock  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    if os.environ.get("GKIT_REQUIRE_ALL") == "1":
        raise pytest.fail.Exception(f"{exc.name} is not installed but GKIT_REQUIRE_ALL=1: "
                                    f"pip install -e '.[test]'", pytrace=False) from None
    pytest.skip(f"{exc.name} is not installed (pip install -e '.[test]')", allow_module_level=True)


class ServerProcess:
    """A server subprocess whose output goes to a file; ``port`` from its
    ``Listening at`` line (gkit's and gunicorn's)."""

    def __init__(self, way: str, engine: str, gws: bool) -> None:
        self.log_file = tempfile.NamedTemporaryFile(prefix=f"gkit-rt-{way}-", suffix=".log")
        if way == "gkit":
            cmd = [sys.executable, "-m", "gkit", APP, "--ip", "127.0.0.1", "--port", "0"]
            if engine == "h11":
                cmd += ["--http", "h11"]
        else:
            worker = "gkit.gunicorn.Worker" if engine == "httptools" else \
                "tests.apps.workers.H11Worker"
            cmd = [sys.executable, "-m", "gunicorn", "-k", worker, "-w", "1",
                   "-b", "127.0.0.1:0", "--graceful-timeout", "5", APP]
            if "control_socket_disable" in gunicorn.config.KNOWN_SETTINGS:
                cmd[3:3] = ["--no-control-socket"]  # gunicorn >= 27: one per instance otherwise
        path = [REPO] if gws else [HIDE_GWS, REPO]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        self.port = self._wait_port()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        with open(self.log_file.name, errors="replace") as f:
            return f.read()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + BOOT_DEADLINE
        while True:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", self.log)
            if found:
                port = int(found.group(1))
                try:  # gunicorn logs it before its worker serves: one request through
                    if requests.get(f"http://127.0.0.1:{port}/hello", timeout=5).status_code == 200:
                        return port
                except requests.RequestException:
                    pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            assert time.monotonic() < deadline, f"not serving in {BOOT_DEADLINE} s:\n{self.log}"
            gevent.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


WAYS = [(way, engine, gws) for way in ("gkit", "gunicorn") for engine in ("httptools", "h11")
        for gws in (True, False)]


@pytest.fixture(scope="module", params=WAYS,
                ids=[f"{w}-{e}-{'gws' if g else 'no-gws'}" for w, e, g in WAYS])
def srv(request: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(*request.param)
    server.gws = request.param[2]
    try:
        yield server
    finally:
        server.stop()


def sio_client(srv: ServerProcess, path: str, transports: Any = None) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(srv.url, socketio_path=path, transports=transports, wait_timeout=10)
    return client


def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        gevent.sleep(0.02)


# -- which drivers engineio picked --------------------------------------------------------
def test_engineio_picks_gevent_and_the_websocket_driver(srv):
    mode = requests.get(srv.url + "/mode", timeout=10).json()
    assert mode == {"flask_socketio": "gevent", "gevent_websocket": srv.gws}


# -- Socket.IO ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SIO_PATHS)
def test_socketio_websocket_transport_echo_with_ack(srv, path):
    client = sio_client(srv, path, transports=["websocket"])
    try:
        assert client.transport() == "websocket"
        assert client.call("echo", {"n": 1, "text": "héllo"}, timeout=10) == {"n": 1, "text": "héllo"}
        assert client.call("echo", b"\x00\xff" * 100, timeout=10) == b"\x00\xff" * 100
    finally:
        client.disconnect()


@pytest.mark.parametrize("path", SIO_PATHS)
def test_socketio_default_client_upgrades_to_websocket(srv, path):
    client = sio_client(srv, path)
    try:
        until(lambda: client.transport() == "websocket", 10, "upgrade from polling")
        assert client.call("echo", "after upgrade", timeout=10) == "after upgrade"
    finally:
        client.disconnect()


@pytest.mark.parametrize("path", SIO_PATHS)
def test_socketio_broadcast_reaches_two_clients(srv, path):
    got: List[List[Any]] = [[], []]
    clients = []
    try:
        for n, transports in enumerate((["websocket"], ["polling"])):
            client = sio_client(srv, path, transports=transports)
            client.on("news", lambda data, n=n: got[n].append(data))
            clients.append(client)
        clients[0].emit("shout", "to everyone")
        until(lambda: got[0] and got[1], 10, "the broadcast at both clients")
        assert got == [["to everyone"], ["to everyone"]]
    finally:
        for client in clients:
            client.disconnect()


@pytest.mark.parametrize("path", SIO_PATHS)
def test_socketio_twenty_clients_at_once(srv, path):
    """Ten long-polling and ten WebSocket clients, all connected together
    (with http-kit's 4 slots, the fifth used to wait 25 s)."""
    def one(n: int) -> Any:
        transports = ["polling"] if n % 2 else ["websocket"]
        client = sio_client(srv, path, transports=transports)
        return client, client.call("echo", n, timeout=10)
    jobs = [gevent.spawn(one, n) for n in range(20)]
    gevent.joinall(jobs, timeout=30)
    try:
        assert all(j.successful() for j in jobs), [j.exception for j in jobs if j.exception]
        assert [j.value[1] for j in jobs] == list(range(20))
        assert sorted(j.value[0].transport() for j in jobs) == ["polling"] * 10 + ["websocket"] * 10
    finally:
        for j in jobs:
            if j.successful():
                j.value[0].disconnect()


# -- flask-sock ---------------------------------------------------------------------------
def ws_connect(srv: ServerProcess, path: str, **kw: Any) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{srv.port}{path}", timeout=10, **kw)


def test_flask_sock_echo(srv):
    ws = ws_connect(srv, "/sock/echo")
    try:
        ws.send("hello flask-sock")
        assert ws.recv() == "hello flask-sock"
        ws.send_binary(bytes(range(256)))
        assert ws.recv() == bytes(range(256))
        big = os.urandom(200 * 1024)
        ws.send_binary(big)
        assert ws.recv() == big
        ws.close()
    finally:
        ws.shutdown()


def test_flask_sock_twenty_sockets(srv):
    sockets = [ws_connect(srv, "/sock/echo") for _ in range(20)]
    try:
        for n, ws in enumerate(sockets):
            ws.send(f"message {n}")
        assert [ws.recv() for ws in sockets] == [f"message {n}" for n in range(20)]
        for ws in sockets:
            ws.close()
    finally:
        for ws in sockets:
            ws.shutdown()


# -- an app written for gevent-websocket -------------------------------------------------
def test_gevent_websocket_app_echo_and_interface(srv):
    ws = ws_connect(srv, "/gws/echo", origin="http://example.test")
    try:
        ws.send("text")
        assert ws.recv() == "text"
        ws.send_binary(b"\x00bin")
        assert ws.recv() == b"\x00bin"
        ws.send("info")
        assert json.loads(ws.recv()) == {"path": "/gws/echo", "origin": "http://example.test",
                                         "protocol": None, "version": "13",
                                         "environ_version": "13"}
    finally:
        ws.shutdown()


@pytest.mark.parametrize("code", [1000, 4000, 1008])
def test_gevent_websocket_app_close_codes(srv, code):
    ws = ws_connect(srv, "/gws/close")
    try:
        ws.send(f"close {code} bye now")
        opcode, frame = ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert frame.data == code.to_bytes(2, "big") + b"bye now"
    finally:
        ws.shutdown()


def test_gevent_websocket_app_client_close(srv):
    """receive() returns None when the client closes; the app returns."""
    ws = ws_connect(srv, "/gws/echo")
    try:
        ws.close(status=1000)
        assert ws.status == 101
    finally:
        ws.shutdown()


def test_gevent_websocket_subprotocol_from_app_protocol(srv):
    ws = ws_connect(srv, "/gws/proto", subprotocols=["other", "chat"])
    try:
        assert ws.getsubprotocol() == "chat"
        ws.send("with a protocol")
        assert ws.recv() == "with a protocol"
    finally:
        ws.shutdown()


def test_gevent_websocket_app_plain_http(srv):
    resp = requests.get(srv.url + "/gws/echo", timeout=10)
    assert resp.status_code == 400 and resp.text == "WebSocket only\n"


# -- last: the server's log -------------------------------------------------------------
def test_server_log_has_no_error_lines(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5):
        pass  # one more connection in and out: the log is up to date for what came before
    bad = [line for line in srv.log.splitlines()
           if ERROR_LINE.search(line) and not CLIENT_RACE.search(line)]
    assert bad == [], srv.log
