"""``gunicorn -k gkit.gunicorn.Worker``: the real gunicorn, started as a
subprocess on a free loopback port, serving ``tests.apps.plain:app``.

Issue 4, point 2: HTTP, streaming and WebSocket through gkit's connection loop
and channels; gunicorn's settings with a gkit meaning; heartbeats; graceful
TERM and HUP; max_requests; monkey-patching in the worker, never at import.

The suite that does not disturb the server runs once per HTTP engine (the
default worker takes httptools, ``tests.apps.workers.H11Worker`` h11), as the
plain-server tests run per engine. Skipped when gunicorn is not installed,
failed instead when ``GKIT_REQUIRE_ALL=1``.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Set

import gevent
import gevent.event
import pytest
import websocket  # websocket-client
from apps.wire import read_chunks, read_head
from helpers import RawConn, get, request

REQUIRE_ALL = os.environ.get("GKIT_REQUIRE_ALL") == "1"
try:
    import gunicorn.config
except ImportError:  # pragma: no cover - depends on the environment
    if REQUIRE_ALL:
        raise pytest.fail.Exception(
            "gunicorn is not installed but GKIT_REQUIRE_ALL=1: pip install gkit[gunicorn]",
            pytrace=False) from None
    pytest.skip("gunicorn is not installed (pip install gkit[gunicorn])",
                allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "tests.apps.plain:app"
BOOT_DEADLINE = 20.0  # seconds for gunicorn to start serving
GRACEFUL = 10         # --graceful-timeout of every instance

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> Set[int]:
    """Process ids of ``pid``'s children (gunicorn's workers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


class Gunicorn:
    """One gunicorn master with its workers; ``stop()`` sends TERM and waits."""

    def __init__(self, *args: str, workers: int = 2, worker_class: str = "gkit.gunicorn.Worker",
                 app: str = APP, wait: bool = True) -> None:
        self.workers = workers
        self.port = free_port()
        self.log_file = tempfile.NamedTemporaryFile(prefix="gkit-gunicorn-", suffix=".log")
        cmd = [sys.executable, "-m", "gunicorn", "-k", worker_class, "-w", str(workers),
               "--bind", f"127.0.0.1:{self.port}", "--graceful-timeout", str(GRACEFUL),
               *args, app]
        if "control_socket_disable" in gunicorn.config.KNOWN_SETTINGS and wait:
            cmd[3:3] = ["--no-control-socket"]  # gunicorn >= 27: one per instance otherwise
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # An in-process Django test (test_frameworks) sets DJANGO_SETTINGS_MODULE
        # to its own import path; this gunicorn imports the app by another one.
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_serving()

    @property
    def log(self) -> str:
        with open(self.log_file.name, errors="replace") as f:
            return f.read()

    def wait_serving(self) -> None:
        """Poll connect (bounded) until the master listens, then one request
        until a worker answers it, then until every worker logged that it serves
        (a signal sent to a worker still booting is lost: gunicorn's workers set
        their handlers only in init_process)."""
        deadline = time.monotonic() + BOOT_DEADLINE
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, \
                    f"gunicorn not listening in {BOOT_DEADLINE} s:\n{self.log}"
                time.sleep(0.02)
        resp = get(self.port, "/hello", timeout=max(1.0, deadline - time.monotonic()))
        assert resp.status == 200, self.log
        self.wait_log("gkit serving", self.workers, deadline)

    def wait_log(self, text: str, count: int, deadline: float) -> None:
        """Poll the log (bounded) until ``text`` occurs ``count`` times."""
        while self.log.count(text) < count:
            assert time.monotonic() < deadline, \
                f"{count} x {text!r} not logged in time:\n{self.log}"
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gunicorn still running after {timeout} s:\n{self.log}") from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=GRACEFUL + 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


@pytest.fixture(scope="module", params=["gkit.gunicorn.Worker", "tests.apps.workers.H11Worker"],
                ids=["httptools", "h11"])
def shared(request):
    """One gunicorn -w 2 per engine for the tests that leave it as it was."""
    g = Gunicorn(worker_class=request.param)
    g.engine = request.param.endswith("H11Worker") and "h11" or "httptools"
    try:
        yield g
    finally:
        assert g.stop() == 0, g.log


@pytest.fixture
def instance():
    """Start a gunicorn of the test's own (``instance(*args, ...)``); stopped at teardown."""
    started: List[Gunicorn] = []

    def start(*args: str, **kw) -> Gunicorn:
        g = Gunicorn(*args, **kw)
        started.append(g)
        return g
    try:
        yield start
    finally:
        for g in started:
            g.stop()


def env_of(port: int, headers=None) -> Dict[str, object]:
    resp = get(port, "/env", headers=headers or [])
    assert resp.status == 200
    return json.loads(resp.body)


# -- the shared suite, per engine -------------------------------------------------------


def test_plain_get(shared):
    resp = get(shared.port, "/hello")
    assert resp.status == 200
    assert resp.body == b"hello from gkit\n"
    assert resp.get("content-length") == "16"
    assert resp.get("server") == "gkit"
    assert env_of(shared.port)["engine"] == shared.engine


def test_keep_alive_reuses_the_connection_and_worker(shared):
    with RawConn(shared.port) as conn:
        bodies = []
        for _ in range(3):
            conn.send(request(target="/pid"))
            resp = conn.read_response()
            assert resp.status == 200
            assert "close" not in resp.connection_tokens()
            bodies.append(resp.body)
    assert re.fullmatch(rb"\d+\n", bodies[0])
    assert bodies == [bodies[0]] * 3  # one connection, one worker process


def test_streaming_sends_chunks_as_they_come(shared):
    with RawConn(shared.port) as conn:
        conn.send(request(target="/stream"))
        head = read_head(conn)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\ntransfer-encoding: chunked" in head.lower()
        assert read_chunks(conn, count=1) == [b"chunk 0\n"]
        assert b"0\r\n\r\n" not in conn.buf  # the rest is sent 0.2 s apart by a timer
        assert read_chunks(conn) == [b"chunk 1\n", b"chunk 2\n"]
        conn.send(request(target="/hello"))  # the connection goes on after the stream
        assert conn.read_response().body == b"hello from gkit\n"


def test_long_poll_is_answered_later(shared):
    # Not get(): it half-closes after the request, and a long poll whose client
    # has shut its side is taken for a client gone (answered by nothing).
    with RawConn(shared.port) as conn:
        conn.send(request(target="/poll"))
        resp = conn.read_response()
    assert resp.status == 200
    assert re.fullmatch(rb"polled \d+", resp.body)
    assert resp.get("content-type") == "text/plain"


def test_websocket_echo(shared):
    ws = websocket.create_connection(f"ws://127.0.0.1:{shared.port}/ws", timeout=5)
    try:
        ws.send("hello gunicorn")
        assert ws.recv() == "hello gunicorn"
        ws.send_binary(bytes(range(256)))
        assert ws.recv() == bytes(range(256))
        ws.close()
        assert ws.status == 101
    finally:
        ws.shutdown()


def test_app_runs_in_a_gkit_worker_greenlet(shared):
    resp = get(shared.port, "/greenlet")
    assert resp.status == 200
    assert re.fullmatch(rb"worker-\d+", resp.body), resp.body


def test_environ_of_a_multiprocess_worker(shared):
    facts = env_of(shared.port)
    assert facts["wsgi.multiprocess"] is True   # -w 2
    assert facts["wsgi.multithread"] is True
    assert facts["REMOTE_ADDR"] == "127.0.0.1"
    assert facts["wsgi.url_scheme"] == "http"


def test_proxy_headers_from_a_trusted_peer(shared):
    # gunicorn's default forwarded_allow_ips trusts 127.0.0.1, the test client.
    facts = env_of(shared.port, [("X-Forwarded-For", "203.0.113.9"),
                                 ("X-Forwarded-Proto", "https")])
    assert facts["REMOTE_ADDR"] == "203.0.113.9"
    assert facts["wsgi.url_scheme"] == "https"


# -- signals and lifecycle: each on its own gunicorn --------------------------------------


def test_graceful_term_finishes_in_flight_request(instance):
    g = instance()
    with RawConn(g.port, timeout=GRACEFUL) as conn:
        conn.send(request(target="/slow?s=1"))
        conn.read_until(b"started\n")          # the app call is in flight
        g.signal(signal.SIGTERM)
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"started\ndone\n"
        assert resp.complete
        assert "close" in resp.connection_tokens() or resp.framing == "chunked"
    assert g.wait(GRACEFUL) == 0, g.log
    assert "Shutting down: Master" in g.log


def test_hup_replaces_workers_and_keeps_serving(instance):
    g = instance()
    old = children(g.proc.pid)
    assert len(old) == 2
    results: List[object] = []
    done = gevent.event.Event()

    def client() -> None:  # fresh connections all through the reload
        while not done.is_set():
            try:
                results.append(get(g.port, "/hello").status)
            except (OSError, AssertionError) as exc:
                results.append(repr(exc))

    clients = [gevent.spawn(client) for _ in range(4)]
    try:
        g.signal(signal.SIGHUP)
        deadline = time.monotonic() + BOOT_DEADLINE
        while True:
            resp = get(g.port, "/pid")
            assert resp.status == 200, g.log
            now = children(g.proc.pid)
            if len(now) == 2 and not now & old and int(resp.body) in now:
                break  # the old workers are gone and a new one answers
            assert time.monotonic() < deadline, f"workers {now} still include {old}:\n{g.log}"
            time.sleep(0.05)
        g.wait_log("gkit serving", 4, deadline)  # the second new worker too
    finally:
        done.set()
        gevent.joinall(clients, timeout=10)
    failures = [r for r in results if r != 200]
    assert results and not failures, f"{len(failures)} of {len(results)} failed: {failures[:3]}"
    assert "Hang up" in g.log


def test_quit_stops_at_once(instance):
    g = instance(workers=1)
    ws = websocket.create_connection(f"ws://127.0.0.1:{g.port}/ws", timeout=5)
    try:
        g.signal(signal.SIGQUIT)
        # The worker stops at once, closing the channel with 1001 (going away).
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 1001
    finally:
        ws.shutdown()
    assert g.wait(GRACEFUL) == 0, g.log


def test_max_requests_recycles_the_worker(instance):
    g = instance("--max-requests", "3", "--max-requests-jitter", "0", workers=1)
    # wait_serving made request 1
    first = [get(g.port, "/pid").body for _ in range(2)]
    assert first[0] == first[1]
    deadline = time.monotonic() + BOOT_DEADLINE
    while True:
        resp = get(g.port, "/pid", timeout=BOOT_DEADLINE)
        assert resp.status == 200, g.log
        if resp.body != first[0]:
            break
        assert time.monotonic() < deadline, g.log
    assert "Autorestarting worker after current request." in g.log


# -- gunicorn settings with a gkit meaning ---------------------------------------------


def test_settings_keepalive_limits_and_trust(instance):
    g = instance("--keep-alive", "1", "--limit-request-line", "100",
                 "--limit-request-field_size", "100", "--forwarded-allow-ips", "10.9.9.9",
                 workers=1)
    # keepalive -> idle_timeout: an idle keep-alive connection is closed.
    with RawConn(g.port) as conn:
        conn.send(request(target="/hello"))
        assert conn.read_response().status == 200
        conn.assert_closed(timeout=5)
    # limit_request_line -> max_line: 414.
    assert get(g.port, "/hello?" + "a" * 200).status == 414
    # forwarded_allow_ips: 127.0.0.1 is not trusted now.
    facts = env_of(g.port, [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https")])
    assert facts["REMOTE_ADDR"] == "127.0.0.1"
    assert facts["wsgi.url_scheme"] == "http"
    assert facts["wsgi.multiprocess"] is False  # -w 1


def test_worker_connections_caps_open_connections(instance):
    g = instance("--worker-connections", "2", workers=1)
    held = [websocket.create_connection(f"ws://127.0.0.1:{g.port}/ws", timeout=5)
            for _ in range(2)]
    try:
        for ws in held:  # both accepted and served
            ws.send("x")
            assert ws.recv() == "x"
        with RawConn(g.port) as conn:
            conn.send(request(target="/hello"))
            assert conn.silent_for(0.5)  # waits in the backlog: the worker is full
            held.pop().close()
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body == b"hello from gkit\n"
    finally:
        for ws in held:
            ws.close()


def test_access_log_goes_to_gunicorns_access_log(instance, tmp_path):
    access = tmp_path / "access.log"
    g = instance("--access-logfile", str(access))
    assert get(g.port, "/hello?x=1", headers=[("User-Agent", "gkit-test")]).status == 200
    assert g.stop() == 0
    lines = access.read_text().splitlines()
    hits = [line for line in lines if '"GET /hello?x=1 HTTP/1.1" 200 16' in line]
    assert len(hits) == 1, lines
    assert hits[0].startswith("127.0.0.1 - - [")
    assert hits[0].endswith('"-" "gkit-test"')  # gunicorn's own default format


def test_access_logformat_atoms(instance, tmp_path):
    access = tmp_path / "access.log"
    fmt = "%(h)s|%(s)s|%(b)s|%(m)s|%(U)s|%(q)s|%(H)s|%({user-agent}i)s|%({content-type}o)s|%(L)s"
    g = instance("--access-logfile", str(access), "--access-logformat", fmt, workers=1)
    assert get(g.port, "/hello?x=%41", headers=[("User-Agent", "fmt-test")]).status == 200
    ws = websocket.create_connection(f"ws://127.0.0.1:{g.port}/ws", timeout=5)
    ws.close()
    assert g.stop() == 0
    lines = [line for line in access.read_text().splitlines()[1:]  # after wait_serving()'s
             if "channel-end" not in line]
    assert re.fullmatch(r"127\.0\.0\.1\|200\|16\|GET\|/hello\|x=%41\|HTTP/1\.1\|fmt-test\|"
                        r"text/plain\|\d+\.\d{6}", lines[0]), lines
    assert lines[1].startswith("127.0.0.1|101|"), lines
    ends = [line for line in access.read_text().splitlines() if "channel-end" in line]
    assert len(ends) == 1 and '"GET /ws HTTP/1.1" channel-end kind=websocket ' in ends[0], ends


def _statsd_packets(sock: socket.socket, want: Dict[str, int], timeout: float = 10.0
                    ) -> List[str]:
    """Datagrams from the UDP socket until each ``want`` prefix was seen so many times."""
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    while not all(sum(p.startswith(w) for p in seen) >= n for w, n in want.items()):
        left = deadline - time.monotonic()
        assert left > 0, f"statsd packets {want} not all received; got {seen}"
        sock.settimeout(left)
        try:
            seen.append(sock.recv(65536).decode())
        except socket.timeout:
            continue
    return seen


def test_statsd_gets_request_metrics(instance):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        g = instance("--statsd-host", f"127.0.0.1:{statsd.getsockname()[1]}",
                     "--statsd-prefix", "app", "--dogstatsd-tags", "env:test,team:web")
        with RawConn(g.port) as conn:  # keep-alive: one packet set per request
            for target in ("/hello", "/nope", "/hello"):
                conn.send(request(target=target))
                conn.read_response()
        packets = _statsd_packets(statsd, {"app.gunicorn.requests:": 4,
                                           "app.gunicorn.request.status.404:": 1,
                                           "app.gunicorn.request.status.200:": 3,
                                           "app.gunicorn.request.duration:": 4})
    requests_ = [p for p in packets if p.startswith("app.gunicorn.requests:")]
    ok = [p for p in packets if p.startswith("app.gunicorn.request.status.200:")]
    # wait_serving() made one request of its own (GET /hello) before ours.
    assert requests_ == ["app.gunicorn.requests:1|c|@1.0|#env:test,team:web"] * 4, packets
    assert ok == ["app.gunicorn.request.status.200:1|c|@1.0|#env:test,team:web"] * 3, packets
    durations = [p for p in packets if p.startswith("app.gunicorn.request.duration:")]
    assert all(re.fullmatch(r"app\.gunicorn\.request\.duration:\d+(\.\d+)?\|ms\|#env:test,"
                            r"team:web", p) for p in durations), durations


def test_proxy_protocol_setting(instance):
    # Its requests need a PROXY header, which wait_serving() does not send.
    quiet = ["--no-control-socket"] if "control_socket_disable" in gunicorn.config.KNOWN_SETTINGS \
        else []
    g = instance("--proxy-protocol", "auto", *quiet, workers=1, wait=False)
    g.wait_log("gkit serving", 1, time.monotonic() + BOOT_DEADLINE)
    with RawConn(g.port) as conn:
        conn.send(b"PROXY TCP4 192.0.2.44 127.0.0.1 4321 80\r\n")
        for _ in range(3):  # every request of the kept-alive connection
            conn.send(request(target="/env"))
            facts = json.loads(conn.read_response().body)
            assert (facts["REMOTE_ADDR"], facts["REMOTE_PORT"]) == ("192.0.2.44", "4321")


def test_proxy_protocol_needs_one_trust_list(instance):
    g = instance("--proxy-protocol", "v2", "--proxy-allow-from", "10.0.0.1", wait=False)
    assert g.wait(BOOT_DEADLINE) != 0
    assert "give --proxy-allow-from the same addresses as --forwarded-allow-ips" in g.log


@pytest.mark.parametrize("framework, app", [
    ("flask", "tests.apps.flask_app:app"),
    ("django", "tests.apps.django_project.wsgi:app"),
    ("bottle", "tests.apps.bottle_app:app"),
])
def test_framework_apps_under_gunicorn(instance, framework, app):
    try:
        __import__(framework)
    except ImportError:
        if REQUIRE_ALL:
            pytest.fail(f"{framework} is not installed but GKIT_REQUIRE_ALL=1", pytrace=False)
        pytest.skip(f"{framework} is not installed (pip install {framework})")
    from apps import STATIC_FILES

    g = instance(workers=1, app=app)  # one process: a publish reaches the parked poll
    assert get(g.port, "/hello?name=g").body == f"hello g from {framework}\n".encode()
    resp = get(g.port, "/static/blob.bin")
    assert resp.status == 200
    assert resp.body == STATIC_FILES["blob.bin"]
    ws = websocket.create_connection(f"ws://127.0.0.1:{g.port}/ws", timeout=5)
    try:
        ws.send("via gunicorn")
        assert ws.recv() == "via gunicorn"
        ws.close()
    finally:
        ws.shutdown()
    with RawConn(g.port) as conn:
        conn.send(request(target="/poll"))
        deadline = time.monotonic() + 5
        while True:  # the poll is parked once a publish reaches it
            publish = get(g.port, "/publish", method="POST", body=b"news")
            assert publish.status == 200
            if publish.body == b"delivered 1\n":
                break
            assert publish.body == b"delivered 0\n" and time.monotonic() < deadline
            time.sleep(0.02)
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"news")


# -- TLS --------------------------------------------------------------------------------


def make_certificate(directory: str) -> tuple:
    """A self-signed certificate for 127.0.0.1: (certfile, keyfile)."""
    x509 = pytest.importorskip("cryptography.x509")
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile = os.path.join(directory, "cert.pem")
    keyfile = os.path.join(directory, "key.pem")
    with open(certfile, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return certfile, keyfile


def test_tls_https_and_wss(instance, tmp_path):
    import ssl

    import requests

    certfile, keyfile = make_certificate(str(tmp_path))
    g = instance("--certfile", certfile, "--keyfile", keyfile, wait=False)
    deadline = time.monotonic() + BOOT_DEADLINE
    while True:  # wait_serving speaks plain HTTP: poll with https instead
        try:
            resp = requests.get(f"https://127.0.0.1:{g.port}/env", verify=certfile, timeout=5)
            break
        except requests.ConnectionError:
            assert g.proc.poll() is None and time.monotonic() < deadline, g.log
            time.sleep(0.05)
    assert resp.status_code == 200
    assert resp.json()["wsgi.url_scheme"] == "https"
    ws = websocket.create_connection(f"wss://127.0.0.1:{g.port}/ws", timeout=5,
                                     sslopt={"ca_certs": certfile,
                                             "cert_reqs": ssl.CERT_REQUIRED})
    try:
        ws.send("over tls")
        assert ws.recv() == "over tls"
        ws.close()
    finally:
        ws.shutdown()


def test_tls_bad_key_is_a_clear_error(instance, tmp_path):
    certfile, _ = make_certificate(str(tmp_path))
    bad = tmp_path / "bad-key.pem"
    bad.write_text("not a key\n")
    g = instance("--certfile", certfile, "--keyfile", str(bad), wait=False)
    assert g.wait(BOOT_DEADLINE) != 0
    assert "gkit worker: cannot load certfile=" in g.log, g.log


# -- the module itself -----------------------------------------------------------------


def test_importing_the_worker_module_does_not_patch():
    code = ("import gkit.gunicorn, gevent.monkey, socket, threading; "
            "print(gevent.monkey.is_module_patched('socket'), "
            "gevent.monkey.is_module_patched('threading'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def _cfg(**settings) -> "gunicorn.config.Config":
    cfg = gunicorn.config.Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


@pytest.mark.parametrize("settings, expected", [
    ({}, {"thread": None, "idle_timeout": 2.0, "max_line": 8190, "proxy_headers": True,
          "forwarded_allow_ips": ("127.0.0.1", "::1"), "max_ws": 16 * 1024 * 1024}),
    ({"threads": 8, "keepalive": 75}, {"thread": 8, "idle_timeout": 75.0}),
    ({"keepalive": 0}, {"idle_timeout": 1.0}),
    ({"limit_request_line": 100, "limit_request_field_size": 200}, {"max_line": 200}),
    ({"limit_request_line": 0, "limit_request_field_size": 0}, {"max_line": 8190}),
    ({"limit_request_line": 10, "limit_request_field_size": 10}, {"max_line": 64}),
    ({"forwarded_allow_ips": "*"}, {"forwarded_allow_ips": ("*",)}),
    ({"secure_scheme_headers": {}}, {"proxy_headers": False}),
    ({"websocket_max_message_size": 0}, {"max_ws": sys.maxsize}),
])
def test_settings_mapping(settings, expected):
    from gkit.config import make_config
    from gkit.gunicorn import gkit_options

    options = gkit_options(_cfg(**settings))
    for name, value in expected.items():
        assert options[name] == value, name
    make_config(**options)  # every mapped value is a valid gkit option
