"""What the load-test scripts share: server specs, starting and stopping
server processes, readiness checks, and reading a process tree's RSS.

Every server runs as its own subprocess in its own session (process group),
so stopping it also stops the workers it forked (gunicorn, granian).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "loadtests" / "peers"
APP = "examples.hello:app"
EXPECTED_BODY = b"Hello, World!"


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: ``argv`` is a template where ``{python}``,
    ``{port}``, ``{app}`` and ``{peers}`` are filled in.

    ``requires`` names Python modules that must be importable (``gkit.__main__``
    for the gkit CLI). ``default`` says whether the server runs when no
    ``--only`` is given; ``smoke`` whether ``--smoke`` runs it.
    """

    name: str
    argv: tuple[str, ...]
    requires: tuple[str, ...] = ()
    default: bool = True
    smoke: bool = False

    def command(self, port: int) -> list[str]:
        fields = {"python": sys.executable, "port": str(port), "app": APP, "peers": str(PEERS)}
        return [part.format(**fields) for part in self.argv]

    def missing(self) -> str | None:
        """Why this server cannot run here, or None when it can."""
        executable = self.command(0)[0]
        if shutil.which(executable) is None:
            return f"{executable} not found"
        for module in self.requires:
            if not module_available(module):
                return f"python module {module} not importable"
        return None


def module_available(module: str) -> bool:
    """Whether ``module`` can be found, checked in a child interpreter so a
    half-written package cannot break the benchmark process itself."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)"
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe, module],
            cwd=REPO, env=child_env(), capture_output=True, timeout=30, check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def select_specs(specs: list[ServerSpec], only: str | None, smoke: bool) -> list[ServerSpec]:
    """The specs named by ``--only`` (in the order given), else the smoke or default ones."""
    if only:
        by_name = {spec.name: spec for spec in specs}
        names = [name.strip() for name in only.split(",") if name.strip()]
        unknown = [name for name in names if name not in by_name]
        if unknown:
            known = ", ".join(by_name)
            raise SystemExit(f"unknown server(s) {', '.join(unknown)}; known: {known}")
        return [by_name[name] for name in names]
    return [spec for spec in specs if (spec.smoke if smoke else spec.default)]


def child_env() -> dict[str, str]:
    """The environment for servers: the repo on the path, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class NotReady(Exception):
    """A readiness probe saw the server up but not answering right yet."""


class ServerFailed(RuntimeError):
    """A server process exited or never answered ``GET /`` correctly."""


class ServerProcess:
    """One running server subprocess, optionally pinned to a CPU core."""

    def __init__(self, spec: ServerSpec, core: int | None = None) -> None:
        self.spec = spec
        self.port = free_port()
        # The log lives as long as the server; stop() closes and removes it.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"gkit-bench-{spec.name}-", suffix=".log", delete=False)
        argv = spec.command(self.port)
        if core is not None:
            argv = ["taskset", "-c", str(core), *argv]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """utime + stime of the server process so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def probe(self) -> None:
        """One readiness check; raises (OSError or ``NotReady``) while not ready.
        The default: ``GET /`` answers the hello body. Subclasses override it."""
        check_hello(self.port)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``probe()`` until it passes; bounded, and failing fast when the
        server process has exited."""
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerFailed(f"{self.spec.name} exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                self.probe()
                return
            except (OSError, NotReady) as exc:
                last_error = str(exc)
                time.sleep(0.1)
        raise ServerFailed(f"{self.spec.name} not ready after {timeout:.0f}s ({last_error})\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> None:
        """Stop the server and everything it forked: TERM, then KILL after 5 s."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=5)
        else:
            self._signal_group(signal.SIGKILL)  # forked workers may outlive the parent
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)  # the session we started: pgid == pid
        except ProcessLookupError:
            pass


def check_hello(port: int, timeout: float = 2.0) -> None:
    """One ``GET /`` with ``Connection: close``; raises OSError unless it is a 200 hello."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200") or EXPECTED_BODY not in data:
        raise OSError(f"unexpected response {data[:80]!r}")


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop the servers."""

    def raise_exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc/PID/task/*/children."""
    found = [pid]
    for current in found:
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            found.extend(int(child) for child in children if int(child) not in found)
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants, in KiB (forked workers included)."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total
