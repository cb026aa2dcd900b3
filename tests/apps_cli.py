"""WSGI apps served by ``python -m gkit`` in the CLI, TLS and nginx tests, and
:class:`GkitProcess`, which runs that command as a real subprocess.

``app`` routes:

- ``/`` (any other path): JSON facts about the request as the app saw it:
  ``pid``, ``remote_addr``, ``remote_port``, ``scheme``, ``peer`` (the TCP
  peer of the connection itself: the proxy's, behind nginx), ``conn`` (a
  serial number per client connection, to see keep-alive), ``multiprocess``;
- ``/sleep?s=SECONDS``: answers after sleeping (an in-flight request);
- ``/spin?s=SECONDS``: busy-loops, blocking its whole process (a hung worker);
- ``/stream?id=ID``: a streaming response: ``first`` at once, ``last`` once
  ``/release?id=ID`` was requested (so a test knows ``first`` came before the end);
- ``/poll?delay=SECONDS``: a long poll answered ``polled`` after the delay;
- ``/ws``: a WebSocket echo (text and binary).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import parse_qs

import gevent
import gevent.event
import helpers

from gkit import schedule_task, with_channel

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

_released: Dict[str, gevent.event.Event] = {}
_conn_serials: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_serials = itertools.count(1)


def _query(environ: Dict[str, Any]) -> Dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _text(start_response: Callable[..., Any], body: str, status: str = "200 OK") -> List[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def info(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    conn = environ.get("gkit.connection")
    if conn is not None and conn not in _conn_serials:
        _conn_serials[conn] = next(_serials)
    facts = {
        "pid": os.getpid(),
        "path": environ["PATH_INFO"],
        "remote_addr": environ.get("REMOTE_ADDR"),
        "remote_port": environ.get("REMOTE_PORT"),
        "scheme": environ["wsgi.url_scheme"],
        "peer": list(conn.addr) if conn is not None else None,
        "conn": _conn_serials.get(conn) if conn is not None else None,
        "multiprocess": environ["wsgi.multiprocess"],
    }
    data = json.dumps(facts).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def sleep(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    errors = environ["wsgi.errors"]
    errors.write(f"apps_cli: sleeping in {os.getpid()}\n")
    errors.flush()
    gevent.sleep(float(_query(environ).get("s", "1")))
    return _text(start_response, "slept")


def spin(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Block the whole process (no greenlet switch) for up to ``s`` seconds."""
    errors = environ["wsgi.errors"]
    errors.write(f"apps_cli: spinning in {os.getpid()}\n")
    errors.flush()
    deadline = time.monotonic() + float(_query(environ).get("s", "20"))
    while time.monotonic() < deadline:
        pass
    return _text(start_response, "spun")


def stream(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    key = _query(environ).get("id", "")
    released = _released.setdefault(key, gevent.event.Event())
    ch = with_channel(environ)
    ch.send({"status": 200, "headers": {"Content-Type": "text/plain"}, "body": "first\n"},
            close_after_send=False)

    def finish() -> None:
        released.wait(30)
        ch.send("last\n", close_after_send=True)
    gevent.spawn(finish)
    return ch


def release(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    _released.setdefault(_query(environ).get("id", ""), gevent.event.Event()).set()
    return _text(start_response, "released")


def poll(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    ch = with_channel(environ)
    schedule_task(float(_query(environ).get("delay", "1")), ch.send,
                  {"status": 200, "headers": {"Content-Type": "text/plain"}, "body": "polled"})
    return ch


def ws(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    ch = with_channel(environ)
    if not ch.is_websocket:
        ch.send({"status": 400, "body": "WebSocket only"})
        return ch
    ch.on_receive(ch.send)
    return ch


ROUTES = {"/sleep": sleep, "/spin": spin, "/stream": stream, "/release": release, "/poll": poll, "/ws": ws}


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    return ROUTES.get(environ["PATH_INFO"], info)(environ, start_response)


NOT_CALLABLE = 42


# -- the gkit command as a subprocess ---------------------------------------------------
LISTENING = re.compile(r"Listening at: (\S+)")


class GkitProcess:
    """``python -m gkit *args`` with stderr collected line by line (a greenlet
    reads it: the test process is monkey-patched)."""

    def __init__(self, *args: str, cwd: Optional[str] = None,
                 env: Optional[Dict[str, Optional[str]]] = None) -> None:
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [REPO, TESTS] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        for name, value in (env or {}).items():  # None: unset
            if value is None:
                full_env.pop(name, None)
            else:
                full_env[name] = value
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "gkit", *args], cwd=cwd,
                                     env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: List[str] = []
        self._reader = gevent.spawn(self._read)
        self.url = ""

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """The first stderr line from index ``start`` on matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[start:]:
                found = regex.search(line)
                if found:
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no stderr line matching {pattern!r} within {timeout}s; "
                                     f"exit code {self.proc.poll()}; stderr:\n{self.stderr}")
            if self.proc.poll() is not None and self._reader.dead:
                raise AssertionError(f"gkit exited ({self.proc.returncode}) before printing "
                                     f"{pattern!r}; stderr:\n{self.stderr}")
            gevent.sleep(0.02)

    def ready(self, timeout: float = 15.0) -> str:
        """Wait for ``Listening at: URL``; return the URL (``http://127.0.0.1:PORT``)."""
        self.url = self.wait_line(LISTENING.pattern, timeout).group(1)
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait(self, timeout: float = 15.0) -> int:
        """The exit code within ``timeout`` seconds (else kill it and fail the test)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"gkit did not exit within {timeout}s; stderr:\n{self.stderr}") from None
        self._reader.join(5)
        return code

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)


class GkitRunner:
    """The ``gkit`` fixture: ``gkit(*args)`` starts a process; all are stopped at teardown."""

    def __init__(self) -> None:
        self.procs: List[GkitProcess] = []

    def __call__(self, *args: str, ready: bool = True, **kwargs: Any) -> GkitProcess:
        proc = GkitProcess(*args, **kwargs)
        self.procs.append(proc)
        if ready:
            proc.ready()
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.proc.poll() is None:
                try:
                    proc.stop(20)
                except AssertionError:
                    pass


def run_gkit() -> Iterator[GkitRunner]:
    """The body of each test module's ``gkit`` fixture: ``gkit(*args, cwd=...,
    env=..., ready=True)`` starts ``python -m gkit *args`` and, unless
    ``ready=False``, waits for its ``Listening at`` line; all stop at teardown."""
    runner = GkitRunner()
    try:
        yield runner
    finally:
        runner.close()


def raw_get(address: Any, target: str = "/", headers: Iterable[Any] = (),
            source: Optional[str] = None, timeout: float = 10.0) -> helpers.Response:
    """One request with ``Connection: close`` over a fresh socket: TCP to
    ``(host, port)`` (from address ``source`` if given) or AF_UNIX to a path."""
    family = socket.AF_UNIX if isinstance(address, str) else (
        socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if source is not None:
            sock.bind((source, 0))
        sock.connect(address)
        sock.sendall(helpers.request(target=target, host="localhost",
                                     headers=list(headers) + [("Connection", "close")]))
        data = b""
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    responses = helpers.final(helpers.parse_responses(data))
    assert len(responses) == 1, data
    return responses[0]
