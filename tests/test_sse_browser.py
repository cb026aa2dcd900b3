"""Server-sent events in a real browser (issue 12, point 4): Debian's
chromium driven by Playwright, as tests/test_chat_browser.py does, against
``python -m gkit examples.sse:app`` in a subprocess.

The page's ``EventSource`` receives ticks; the server is stopped and started
again on the same port; the browser reconnects by itself and sends the last
id it saw as ``Last-Event-ID``, which the new server prints, and the ticks go
on from the next number with none lost or repeated.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.chat.testing import free_port  # noqa: E402
from test_chat_browser import browser  # noqa: E402,F401  (the module-scoped fixture)

WAIT = 15.0

pytestmark = pytest.mark.timeout(120)


class SseServer:
    """``python -m gkit examples.sse:app`` on ``port``; lines of its stdout on demand."""

    def __init__(self, port: int) -> None:
        self.port = port
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gkit", "examples.sse:app", "--ip", "127.0.0.1",
             "--port", str(port), "--log-level", "info", "--graceful-timeout", "2"],
            cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self._out = b""
        self._err = b""
        self.wait_for(lambda: b"Listening at:" in self._err, "the server to listen")

    def _read(self, timeout: float) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ, "out")
            sel.register(self.proc.stderr, selectors.EVENT_READ, "err")
            for key, _ in sel.select(timeout):
                data = os.read(key.fileobj.fileno(), 65536)
                if not data and self.proc.poll() is not None:
                    raise AssertionError(f"the server exited: {self._err.decode()[-2000:]}")
                if key.data == "out":
                    self._out += data
                else:
                    self._err += data

    def wait_for(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {WAIT} s; stdout: {self._out!r}; "
                                     f"stderr: {self._err.decode()[-2000:]}")
            self._read(left)

    def connected_ids(self) -> List[str]:
        prefix = "events: connected, Last-Event-ID="
        return [line[len(prefix):] for line in self._out.decode().splitlines()
                if line.startswith(prefix)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def servers() -> Iterator[List[SseServer]]:
    started: List[SseServer] = []
    try:
        yield started
    finally:
        for s in started:
            s.stop()


def seen(page: Any) -> List[str]:
    return page.evaluate("() => window.seen")


def test_event_source_receives_and_resumes_after_a_server_restart(browser: Any,  # noqa: F811
                                                                   servers: List[SseServer]):
    port = free_port()
    first = SseServer(port)
    servers.append(first)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT * 1000)
    errors: List[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{port}/?every=0.1")
    page.wait_for_function("() => window.seen.length >= 3")
    assert seen(page)[:3] == ["1", "2", "3"]
    assert page.text_content("#state") == "open"
    first.wait_for(lambda: first.connected_ids(), "the page's connection")
    assert first.connected_ids() == ["None"]   # the first connection sends no Last-Event-ID

    first.stop()
    page.wait_for_function("() => document.querySelector('#state').textContent === "
                           "'reconnecting'")
    last = seen(page)[-1]
    second = SseServer(port)                 # the same port: the page's URL does not change
    servers.append(second)
    second.wait_for(lambda: second.connected_ids(), "reconnection from the browser")
    assert second.connected_ids() == [last]
    page.wait_for_function(f"() => window.seen.includes('{int(last) + 2}')")
    ids = [int(i) for i in seen(page)]
    assert ids[:ids.index(int(last) + 2) + 1] == list(range(1, int(last) + 3))  # none lost or repeated
    assert page.text_content("#state") == "open"
    assert errors == []
    context.close()
