"""What the chat's tests share: real chat and redis-server processes on free
loopback ports, a small WebSocket client on top of websocket-client, and
bounded waits. No mocks: every helper talks to a real process over sockets.

Used by ``tests/test_chat_*.py`` and handy in a REPL::

    with ChatProcess() as chat:
        ws = ws_connect(chat.url, "lobby", "alice")
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def require(ok: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless ``ok``; with
    ``GKIT_REQUIRE_ALL=1`` (CI) fail instead, so nothing is silently skipped."""
    if ok:
        return
    import pytest
    if os.environ.get("GKIT_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (GKIT_REQUIRE_ALL=1: required here)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Optional[T]], timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Call ``check`` until it returns something truthy (returned) or
    ``timeout`` passes (AssertionError naming ``what``). Exceptions from
    ``check`` count as "not yet"; the last one is reported."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def room_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class ChatProcess:
    """``python -m examples.chat --ip 127.0.0.1 --port 0 ...`` as a subprocess.

    The server prints ``gkit chat on http://127.0.0.1:PORT/`` once it is
    bound; the constructor reads that line (bounded), so the server accepts
    connections when it returns. Logs go to ``self.log_path``.
    """

    def __init__(self, *args: str, startup_timeout: float = 20.0,
                 env: Optional[Dict[str, str]] = None) -> None:
        self._dir = tempfile.mkdtemp(prefix="gkit-chat-")
        self.log_path = Path(self._dir) / "chat.log"
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.pop("REDIS_URL", None)      # only what the test asks for
        full_env.update(env or {})
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.chat", "--ip", "127.0.0.1", "--port", "0", *args],
            cwd=str(ROOT), env=full_env, stdout=subprocess.PIPE, stderr=self._log,
            start_new_session=True)
        try:
            line = self._read_line(startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.url = line.split(" on ", 1)[1].strip()
        self.port = int(urllib.parse.urlsplit(self.url).port or 0)
        self.ws_url = "ws" + self.url[len("http"):]

    def _read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"the chat server printed no URL within {timeout} s; "
                                       f"its log:\n{self.log_text()}")
                if sel.select(remaining):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        raise RuntimeError(f"the chat server exited ({self.proc.wait(5)}) "
                                           f"before serving; its log:\n{self.log_text()}")
                    buf += chunk
        return buf.split(b"\n", 1)[0].decode()

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM (graceful stop), then SIGKILL if it lingers; returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "ChatProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_server_path() -> Optional[str]:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


class RedisProcess:
    """A throw-away ``redis-server`` on 127.0.0.1 (no persistence)."""

    def __init__(self, port: Optional[int] = None, startup_timeout: float = 10.0) -> None:
        path = redis_server_path()
        if path is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="gkit-redis-")
        self.proc = subprocess.Popen(
            [path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.ping, startup_timeout, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> "RedisProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a WebSocket chat client (websocket-client) ------------------------------

def ws_connect(base_url: str, room: str, nick: str, timeout: float = 10.0) -> Any:
    """Open ``/ws`` and read the history frame; returns the connection with
    ``.history`` (the messages) set."""
    import websocket  # websocket-client
    ws_base = "ws" + base_url[len("http"):] if base_url.startswith("http") else base_url
    query = urllib.parse.urlencode({"room": room, "nick": nick})
    ws: Any = websocket.create_connection(f"{ws_base.rstrip('/')}/ws?{query}", timeout=timeout)
    first = json.loads(ws.recv())
    assert first["type"] == "history", first
    ws.history = first["messages"]
    return ws


def ws_say(ws: Any, text: str) -> None:
    ws.send(json.dumps({"text": text}))


def ws_recv_until(ws: Any, match: Callable[[Dict[str, Any]], bool], timeout: float = 10.0,
                  skipped: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Read frames until one ``match``es (returned); others go to ``skipped``."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {timeout} s; saw {skipped}")
        ws.settimeout(remaining)
        frame = json.loads(ws.recv())
        if match(frame):
            return frame
        if skipped is not None:
            skipped.append(frame)


def is_msg(nick: str, text: str) -> Callable[[Dict[str, Any]], bool]:
    return lambda f: f.get("type") == "msg" and f.get("nick") == nick and f.get("text") == text


def is_event(kind: str, nick: str) -> Callable[[Dict[str, Any]], bool]:
    return lambda f: f.get("type") == kind and f.get("nick") == nick
