"""gkit behind a real nginx, configured by the shipped examples/nginx files.

nginx (the Debian package) runs from a temporary prefix on a free loopback
port, with ``examples/nginx/gkit.conf.template`` rendered for the test's
ports (its ``${GKIT_LISTEN}`` and ``${GKIT_UPSTREAM}`` placeholders, as
``envsubst`` would) and ``examples/nginx/nginx.conf`` as is, in front of
``python -m gkit --proxy-headers`` on TCP and on a Unix socket. Checked: plain
requests over one kept-alive upstream connection, streaming, a long poll,
WebSocket, and X-Forwarded-For reaching the app as REMOTE_ADDR without being
spoofable.

Skips when nginx is missing; fails instead when GKIT_REQUIRE_ALL=1 (CI).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any, Optional

import gevent
import helpers
import pytest
import requests
import websocket
from apps_cli import REPO, GkitRunner, raw_get

EXAMPLE = os.path.join(REPO, "examples", "nginx")


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if found is None:
        reason = "nginx is not installed (Debian: apt-get install nginx)"
        if os.environ.get("GKIT_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and GKIT_REQUIRE_ALL=1")
        pytest.skip(reason)
    return found


def render(template: str, **values: str) -> str:
    """Fill ``${NAME}`` placeholders as ``envsubst '${NAME} ...'`` does: nginx's
    own ``$variables`` stay as they are."""
    text = string.Template(template).safe_substitute(values)
    assert "${GKIT_" not in text, "a placeholder of the template was not filled"
    return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    """nginx in the foreground from ``prefix``, in front of ``upstream``."""

    def __init__(self, prefix: str, upstream: str) -> None:
        self.prefix = prefix
        self.upstream = upstream
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.log = b""

    def start(self) -> Nginx:
        binary = nginx_binary()
        os.makedirs(self.prefix, exist_ok=True)
        shutil.copy(os.path.join(EXAMPLE, "nginx.conf"), self.prefix)
        with open(os.path.join(EXAMPLE, "gkit.conf.template")) as f:
            template = f.read()
        directives = "daemon off; error_log stderr;"
        if os.geteuid() == 0:  # else workers run as nobody, who cannot enter the prefix
            directives += " user root;"
        for _ in range(3):  # a free port may be taken between probing and binding
            self.port = free_port()
            with open(os.path.join(self.prefix, "gkit.conf"), "w") as f:
                f.write(render(template, GKIT_LISTEN=f"127.0.0.1:{self.port}",
                               GKIT_UPSTREAM=self.upstream))
            self.proc = subprocess.Popen(
                [binary, "-p", self.prefix + "/", "-c", os.path.join(self.prefix, "nginx.conf"),
                 "-e", "stderr", "-g", directives],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._ready(10.0):
                return self
            self.log = self.proc.stderr.read() if self.proc.stderr else b""
            if b"Address already in use" not in self.log:
                break
        raise AssertionError(f"nginx did not start: {self.log.decode(errors='replace')}")

    def _ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                gevent.sleep(0.05)
        return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stack:
    def __init__(self, gkit: Any, nginx: Nginx, kind: str) -> None:
        self.gkit = gkit
        self.nginx = nginx
        self.kind = kind


@pytest.fixture(scope="module", params=["tcp", "unix"])
def stack(request: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    """gkit (--proxy-headers --access-log) on TCP or a Unix socket, nginx in front."""
    nginx_binary()
    tmp = tmp_path_factory.mktemp(f"nginx-{request.param}")
    runner = GkitRunner()
    nginx: Optional[Nginx] = None
    try:
        if request.param == "tcp":
            gkit = runner("apps_cli:app", "--ip", "127.0.0.1", "--port", "0",
                          "--proxy-headers", "--access-log")
            upstream = f"127.0.0.1:{gkit.port}"
        else:
            path = str(tmp / "gkit.sock")
            gkit = runner("apps_cli:app", "--uds", path, "--proxy-headers", "--access-log")
            upstream = f"unix:{path}"
        nginx = Nginx(str(tmp / "prefix"), upstream).start()
        yield Stack(gkit, nginx, request.param)
    finally:
        if nginx is not None:
            nginx.stop()
        runner.close()


def test_rendered_config_is_the_shipped_one(stack: Stack) -> None:
    with open(os.path.join(stack.nginx.prefix, "gkit.conf")) as f:
        rendered = f.read()
    assert f"server {stack.nginx.upstream};" in rendered
    assert f"listen 127.0.0.1:{stack.nginx.port};" in rendered
    assert "proxy_set_header Connection $gkit_connection;" in rendered


def test_requests_reuse_one_upstream_connection(stack: Stack) -> None:
    with requests.Session() as session:  # one client connection: one nginx worker
        seen = [session.get(stack.nginx.url + "/", timeout=10).json() for _ in range(6)]
    assert {s["conn"] for s in seen} == {seen[0]["conn"]}, \
        f"nginx opened several connections to gkit: {[s['conn'] for s in seen]}"
    assert all(s["path"] == "/" for s in seen)


def test_x_forwarded_for_becomes_remote_addr(stack: Stack) -> None:
    # The client connects from 127.0.0.2, so nginx (127.0.0.1, trusted) and
    # the client have different addresses.
    spoof = [("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-Proto", "https")]
    plain = json.loads(raw_get(("127.0.0.1", stack.nginx.port), source="127.0.0.2").body)
    assert (plain["remote_addr"], plain["scheme"]) == ("127.0.0.2", "http")
    # A client's own X-Forwarded-For is passed on by nginx, but gkit takes the
    # address nginx appended; X-Forwarded-Proto is replaced by nginx.
    spoofed = json.loads(raw_get(("127.0.0.1", stack.nginx.port), headers=spoof,
                                 source="127.0.0.2", target="/spoofed").body)
    assert (spoofed["remote_addr"], spoofed["scheme"]) == ("127.0.0.2", "http")
    # The access log names the client too, not nginx.
    stack.gkit.wait_line(r'^127\.0\.0\.2 - - \[.+\] "GET /spoofed HTTP/1\.1" 200 ')
    if stack.kind == "tcp":  # the same headers sent to gkit directly are ignored
        direct = json.loads(raw_get(("127.0.0.1", stack.gkit.port), headers=spoof,
                                    source="127.0.0.2").body)
        assert (direct["remote_addr"], direct["scheme"]) == ("127.0.0.2", "http")
        assert direct["peer"][0] == "127.0.0.2"


def test_streaming_chunks_arrive_before_the_end(stack: Stack) -> None:
    key = uuid.uuid4().hex
    with helpers.RawConn(stack.nginx.port, timeout=10) as conn:
        conn.send(helpers.request(target=f"/stream?id={key}", host="localhost"))
        head_and_first = conn.read_until(b"first\n")
        assert head_and_first.startswith(b"HTTP/1.1 200 ")
        assert b"last" not in head_and_first
        # The end of the response depends on this request: "first" came before it.
        assert requests.get(f"{stack.nginx.url}/release?id={key}", timeout=10).text == "released"
        rest = conn.read_until(b"0\r\n\r\n")
        assert b"last\n" in rest


@pytest.mark.timeout(60)
def test_long_poll_is_answered_through_nginx(stack: Stack) -> None:
    started = time.monotonic()
    resp = requests.get(stack.nginx.url + "/poll?delay=4", timeout=30)
    assert (resp.status_code, resp.text) == (200, "polled")
    assert time.monotonic() - started >= 4  # it was parked, not answered early
    stack.gkit.wait_line(r'"GET /poll\?delay=4 HTTP/1\.1" 200 ')


def test_websocket_through_nginx(stack: Stack) -> None:
    ws = websocket.create_connection(stack.nginx.url.replace("http", "ws") + "/ws", timeout=10)
    try:
        ws.send("through nginx")
        assert ws.recv() == "through nginx"
        big = os.urandom(200_000)
        ws.send_binary(big)
        assert ws.recv() == big
    finally:
        ws.close()
    stack.gkit.wait_line(r'"GET /ws HTTP/1\.1" 101 ')
    # The upgrade did not spoil keep-alive for plain requests after it.
    with requests.Session() as session:
        seen = {session.get(stack.nginx.url + "/", timeout=10).json()["conn"] for _ in range(3)}
    assert len(seen) == 1
