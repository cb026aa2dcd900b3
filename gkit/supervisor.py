"""Processes sharing listening sockets: ``--workers N`` (gunicorn's pre-fork model).

The master binds every listening socket once (:func:`bind_all`), then forks
the workers; each worker monkey-patches gevent and runs a gkit ``Server`` on
the inherited sockets, so the kernel spreads new connections over them. The
master never patches and never starts a gevent hub: it forks from a clean,
single-threaded process and only waits for signals and children.

The master

- starts one worker and waits until it is serving before it starts the
  others, so an app that fails to import is reported once, and the master
  exits with that worker's code (3: it could not start, 4: the app failed to
  import) instead of forking a crash loop;
- restarts a worker that dies, at once if it ran a while, else after a delay
  that doubles with each quick death, up to :data:`MAX_BACKOFF` seconds;
- on TERM, forwards TERM (each worker stops gracefully within
  ``graceful_timeout``), waits, and KILLs what is left ``kill_after`` seconds
  later; on INT or QUIT it forwards INT (workers stop within a second); a
  second TERM/INT kills at once; exit code 0 when every worker stopped cleanly;
- on HUP starts fresh workers (so new code is imported) and stops the old ones
  gracefully.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple


log = logging.getLogger("gkit")

BOOT_ERROR = 3       # a worker could not start (gunicorn's WORKER_BOOT_ERROR)
APP_LOAD_ERROR = 4   # the app failed to import (gunicorn's APP_LOAD_ERROR)
STABLE_AFTER = 5.0   # a worker that lived this long did not die of a crash loop
MAX_BACKOFF = 10.0   # longest wait before a crashing worker is started again
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


# -- the master ---------------------------------------------------------------------
@dataclass
class _Worker:
    pid: int
    started: float
    ready: bool = False
    retiring: bool = False   # HUP: replaced, stopping
    slot: int = -1           # its slot in the shared stats (--metrics-bind)


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exited with code {os.WEXITSTATUS(status)}"


class Supervisor:
    """Fork ``count`` workers running ``target(ready)`` and keep them running.

    ``target`` runs in the forked child; it calls ``ready()`` once it serves
    and returns the exit code. :meth:`run` returns the master's exit code.
    """

    def __init__(self, target: Callable[[Callable[[], None]], int], count: int, *,
                 graceful_timeout: float = 30.0, kill_after: float = 5.0,
                 on_boot: Optional[Callable[[], None]] = None, shared: Any = None) -> None:
        """``shared``: a :class:`gkit.sharedstats.SharedStats`; each worker
        gets a slot (``shared.slot`` in the child), freed when it is reaped."""
        self.target = target
        self.shared = shared
        self.on_boot = on_boot
        self.count = count
        self.graceful_timeout = graceful_timeout
        self.kill_after = kill_after
        self.workers: Dict[int, _Worker] = {}
        self._booted = False
        self._quick_deaths = 0
        self._spawn_at = 0.0
        self._signals: List[int] = []
        self._exit: Optional[int] = None
        self._fatal: Optional[int] = None  # the exit code when the first worker failed
        self._stopping = False
        self._pipes: Tuple[int, ...] = ()

    # -- setup ------------------------------------------------------------------
    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        ready_r, ready_w = os.pipe()
        for fd in (wake_r, wake_w, ready_r):
            os.set_blocking(fd, False)
        self._pipes = (wake_r, wake_w, ready_r, ready_w)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            self._spawn()
            while self._exit is None:
                self._step()
            return self._exit
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_wakeup)
            for fd in self._pipes:
                os.close(fd)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    # -- the loop -----------------------------------------------------------------
    def _wait(self, timeout: float) -> None:
        wake_r, _, ready_r, _ = self._pipes
        readable, _, _ = select.select([wake_r, ready_r], [], [], max(0.0, timeout))
        if wake_r in readable:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if ready_r in readable:
            self._read_ready()

    def _read_ready(self) -> None:
        try:
            data = os.read(self._pipes[2], 4096)
        except BlockingIOError:
            return
        for (pid,) in struct.iter_unpack("=i", data[: len(data) // 4 * 4]):
            worker = self.workers.get(pid)
            if worker is not None:
                worker.ready = True
                if not self._booted:
                    self._booted = True
                    if self.on_boot is not None:
                        self.on_boot()
                    log.info("master %d: worker %d serves; starting %d more", os.getpid(),
                             pid, self.count - 1)

    def _step(self) -> None:
        now = time.monotonic()
        self._wait(min(1.0, self._spawn_at - now) if self._spawn_at > now else 1.0)
        self._reap()
        if self._fatal is not None:
            self._stop(signal.SIGTERM)
            self._exit = self._fatal
            return
        signals, self._signals = self._signals, []
        for sig in signals:
            if sig == signal.SIGHUP:
                self._replace_all()
            elif self._exit is None:
                self._exit = self._stop(signal.SIGTERM if sig == signal.SIGTERM
                                        else signal.SIGINT)
                return
        if self._exit is None:
            self._maintain()

    def _maintain(self) -> None:
        wanted = self.count if self._booted else 1
        missing = wanted - sum(not w.retiring for w in self.workers.values())
        if missing > 0 and time.monotonic() >= self._spawn_at:
            for _ in range(missing):
                self._spawn()

    def _reap(self) -> List[Tuple[_Worker, int]]:
        gone = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self._release(worker)
            gone.append((worker, status))
            # A worker that ends while a stop signal is pending (systemd signals
            # the whole group) is not a crash.
            stopping = any(sig in _STOP_SIGNALS for sig in self._signals)
            if not (self._stopping or self._fatal is not None or worker.retiring or stopping):
                self._died(worker, status)
        return gone

    def _died(self, worker: _Worker, status: int) -> None:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if not self._booted:
            self._fatal = code if code in (BOOT_ERROR, APP_LOAD_ERROR) else BOOT_ERROR
            if code != APP_LOAD_ERROR:  # else the worker said why, in one line
                log.error("master %d: worker %d %s before it served: stopping", os.getpid(),
                          worker.pid, describe(status))
            return
        lived = time.monotonic() - worker.started
        self._quick_deaths = 0 if lived >= STABLE_AFTER else self._quick_deaths + 1
        delay = min(MAX_BACKOFF, 0.1 * 2 ** (self._quick_deaths - 1)) if self._quick_deaths else 0
        self._spawn_at = time.monotonic() + delay
        log.error("master %d: worker %d %s after %.1fs; starting a new one%s", os.getpid(),
                  worker.pid, describe(status), lived, f" in {delay:.1f}s" if delay else "")

    def _replace_all(self) -> None:
        old = [w for w in self.workers.values() if not w.retiring]
        log.info("master %d: HUP: starting %d new workers, stopping the old ones",
                 os.getpid(), len(old))
        for worker in old:
            worker.retiring = True
        for _ in range(self.count):
            self._spawn()
        for worker in old:
            self._kill(worker.pid, signal.SIGTERM)

    # -- stopping ------------------------------------------------------------------
    def _stop(self, sig: int) -> int:
        """Forward ``sig``, wait, KILL the rest; 0 if every worker stopped cleanly."""
        self._stopping = True
        if self._fatal is None:
            log.info("master %d: %s: stopping %d workers", os.getpid(),
                     signal.Signals(sig).name, len(self.workers))
        clean = True
        for pid in list(self.workers):
            self._kill(pid, sig)
        wait = self.graceful_timeout if sig == signal.SIGTERM else 1.0
        deadline = time.monotonic() + wait + self.kill_after
        self._signals = []
        while self.workers and time.monotonic() < deadline and \
                not any(s in _STOP_SIGNALS for s in self._signals):
            self._wait(min(0.5, deadline - time.monotonic()))
            for worker, status in self._reap():
                if status != 0 and not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig):
                    clean = False
                    log.warning("master %d: worker %d %s while stopping", os.getpid(),
                                worker.pid, describe(status))
        for pid in list(self.workers):
            log.warning("master %d: worker %d did not stop in time: killing it",
                        os.getpid(), pid)
            self._kill(pid, signal.SIGKILL)
            clean = False
        for pid in list(self.workers):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self._release(self.workers.pop(pid))
        if self._fatal is None:
            log.info("master %d: stopped", os.getpid())
        return 0 if clean else 1

    def _release(self, worker: _Worker) -> None:
        if self.shared is not None:
            self.shared.release(worker.slot)

    @staticmethod
    def _kill(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    # -- the child -------------------------------------------------------------------
    def _spawn(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        slot = self.shared.claim() if self.shared is not None else -1
        pid = os.fork()
        if pid:
            self.workers[pid] = _Worker(pid, time.monotonic(), slot=slot)
            if self.shared is not None:
                self.shared.assign(slot, pid)
            return
        if self.shared is not None:
            self.shared.slot = slot
        code = BOOT_ERROR
        try:
            self._in_child()
            code = self.target(self._ready)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int) and exc.code is not None:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _in_child(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                    signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in self._pipes[:3]:
            os.close(fd)
        self._pipes = self._pipes[3:]

    def _ready(self) -> None:
        os.write(self._pipes[0], struct.pack("=i", os.getpid()))
