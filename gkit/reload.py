"""``--reload``: serve from a child process, restarted when a .py file changes.

The reloading process binds the listening sockets once and keeps them, so
the address never goes away and connections made during a restart wait in
the listen backlog. It starts the server as a fresh interpreter
(``python -m gkit`` with the same arguments) that inherits the sockets by
descriptor (:data:`gkit.listen.FDS_ENV`), so every restart imports the app's
code anew, and watches the source directories with watchfiles (Rust
``notify``: inotify on Linux) in this process, which never imports the app
and never monkey-patches.

A child that fails (a syntax error while you edit) is reported and restarted
at the next change; TERM or INT stops the child gracefully and exits 0.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any, List, Optional

from .listen import FDS_ENV, Listener
from .supervisor import APP_LOAD_ERROR

log = logging.getLogger("gkit")


class Reloader:
    """Run ``python -m gkit *argv`` on ``listeners``; restart it on changes under ``dirs``."""

    def __init__(self, argv: Sequence[str], listeners: List[Listener], dirs: Sequence[str],
                 graceful_timeout: float = 30.0, kill_after: float = 5.0) -> None:
        self.argv = list(argv)
        self.listeners = listeners
        self.dirs = list(dirs)
        self.graceful_timeout = graceful_timeout
        self.kill_after = kill_after
        self.child: Optional[subprocess.Popen] = None
        self._reported = False

    def run(self) -> int:
        import watchfiles

        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
        previous = {sig: signal.signal(sig, on_signal) for sig in handled}
        log.info("reloader %d: watching %s for changes to .py files", os.getpid(),
                 ", ".join(self.dirs))
        try:
            self._start()
            # watchfiles checks stop_event and Python signals every step (50 ms).
            for changes in watchfiles.watch(*self.dirs, watch_filter=watchfiles.PythonFilter(),
                                            stop_event=stop, rust_timeout=1000,
                                            yield_on_timeout=True, raise_interrupt=False):
                self._check_child()
                if changes and not stop.is_set():
                    paths = sorted({os.path.relpath(path) for _, path in changes})
                    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
                    log.warning("reloader %d: %s changed: restarting the server", os.getpid(),
                                ", ".join(paths[:3]) + more)
                    self._stop_child()
                    self._start()
            return 0 if self._stop_child() else 1
        finally:
            self._stop_child()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self) -> None:
        fds = [lst.sock.fileno() for lst in self.listeners]
        env = dict(os.environ)
        env[FDS_ENV] = ",".join(map(str, fds))
        # A .pyc is keyed on the source's mtime in whole seconds and its size:
        # an edit within the same second that keeps the size would load the
        # old code. Writing no bytecode for the app avoids that.
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        self.child = subprocess.Popen([sys.executable, "-m", "gkit", *self.argv], env=env,
                                      pass_fds=fds)
        self._reported = False

    def _check_child(self) -> None:
        child = self.child
        if child is None or self._reported or child.poll() is None:
            return
        self._reported = True
        why = ("the app failed to import" if child.returncode == APP_LOAD_ERROR
               else f"the server exited with code {child.returncode}")
        log.error("reloader %d: %s; it restarts when a .py file changes", os.getpid(), why)

    def _stop_child(self) -> bool:
        """Stop the child gracefully (KILL after the timeout); True if it stopped cleanly."""
        child, self.child = self.child, None
        if child is None:
            return True
        if child.poll() is not None:
            return True  # it had ended by itself, and was reported then
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(self.graceful_timeout + self.kill_after)
        except subprocess.TimeoutExpired:
            log.warning("reloader %d: the server %d did not stop in time: killing it",
                        os.getpid(), child.pid)
            child.kill()
            child.wait()
            return False
        return child.returncode in (0, -signal.SIGTERM)
