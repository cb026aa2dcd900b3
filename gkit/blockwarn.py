"""The blocked-hub report (option ``block_warn``): which request stalled
every other connection of the process, and where.

gevent's monitor thread does the watching (``gevent.config.monitor_thread``):
a real OS thread that wakes every ``max_blocking_time`` seconds and asks a
greenlet-switch tracer (``greenlet.settrace``) whether any switch happened
since its last look. None, with a greenlet other than the hub running, means
that greenlet has held the hub for between one and two periods; gevent then
emits ``gevent.events.EventLoopBlocked`` from the monitor thread. gkit
subscribes to that event and writes one ``gkit.error`` record per incident:
the greenlet's worker name, the request line it serves, and its stack as it
is at that moment (taken from the blocked thread's current frame).

"Once per incident": the monitor keeps reporting while the greenlet keeps
the hub; gkit reports the first time and asks the hub (thread-safely) to
call back when it runs again, which ends the incident.

The record is written from the monitor thread, so a greenlet that never
yields (an endless loop) is still reported. gevent's own report to stderr
is turned off (``print_blocking_reports``) while gkit reports.

Cost: the tracer is called on every greenlet switch (a few switches per
request), and the monitor thread takes the GIL once per period; see the
README for a measured figure.
"""
from __future__ import annotations

import logging
import sys
import traceback
import warnings
import weakref
from typing import Any, List, Optional

import gevent
import gevent.events
import gevent.hub
from gevent import config as gevent_config
from gevent.monkey import get_original

error_log = logging.getLogger("gkit.error")

__all__ = ["watch", "unwatch"]


class _Watch:
    """The one subscriber of a process: the servers that asked for reports."""

    def __init__(self) -> None:
        self.servers: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.incident: Any = None   # the greenlet last reported, until the hub runs again
        self.started_monitor = False
        self.saved_print: Optional[bool] = None
        self.saved_max: Optional[float] = None
        # The monitor thread is a real thread: a real lock, even when threading is patched.
        self.lock = get_original("threading", "Lock")()

    def __call__(self, event: Any) -> None:  # any gevent event, in any thread
        if not isinstance(event, gevent.events.EventLoopBlocked) or not self.servers:
            return
        g = event.greenlet
        hub = event.hub or gevent.get_hub()
        frame = sys._current_frames().get(hub.thread_ident)
        if frame is not None and frame.f_code is _HUB_RUN:
            # The hub's own loop is the current frame: it waits for events, and
            # the greenlet gevent names has let go already (a race of the tracer).
            return
        with self.lock:
            if g is self.incident:
                return
            self.incident = g
        try:
            self._report(g, event.blocking_time, frame)
        finally:
            hub.loop.run_callback_threadsafe(self._hub_ran, g)

    def _hub_ran(self, g: Any) -> None:  # in the hub: the blocking greenlet let go
        with self.lock:
            if self.incident is g:
                self.incident = None

    def _report(self, g: Any, period: float, frame: Any) -> None:
        name = getattr(g, "name", None) or repr(g)
        serving = _request_of(g, list(self.servers))
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)\n"
        error_log.warning(
            "the hub was blocked for over %.3g s by %s %s (block_warn): every other "
            "connection of this process waited. Its stack:\n%s", period, name,
            f"serving {serving}" if serving else "(not serving a request)", stack.rstrip())


def _request_of(g: Any, servers: List[Any]) -> str:
    """The request line (and client) that greenlet ``g`` serves, or ""."""
    for server in servers:
        for _ in range(3):  # the blocked thread may change the set under us: retry
            try:
                conns = list(server.connections)
                break
            except RuntimeError:
                conns = []
        for conn in conns:
            ex = conn.exchange
            if conn.greenlet is g and ex is not None:
                req = ex.request
                target = req.target.decode("latin-1")
                return f"{req.method} {target} HTTP/{req.version} from {ex.client}"
    return ""


_HUB_RUN = getattr(getattr(gevent.hub.Hub, "run", None), "__code__", None)
_watch = _Watch()


def watch(server: Any, seconds: float) -> None:
    """Report on ``gkit.error`` when a greenlet blocks ``server``'s hub for
    more than ``seconds`` (turns gevent's monitor thread on; called in the hub's
    thread by ``Server.start``)."""
    hub = server.hub
    if _watch not in gevent.events.subscribers:
        gevent.events.subscribers.append(_watch)
    if _watch.saved_print is None:
        _watch.saved_print = gevent_config.print_blocking_reports
        _watch.saved_max = gevent_config.max_blocking_time
        gevent_config.print_blocking_reports = False
    if not _watch.servers or seconds < gevent_config.max_blocking_time:
        gevent_config.max_blocking_time = seconds  # one monitor per process: the smallest
    _watch.servers.add(server)
    if hub.periodic_monitoring_thread is None:
        gevent_config.monitor_thread = True
        with warnings.catch_warnings():
            # Without psutil gevent warns that it cannot watch memory: not asked for here.
            warnings.filterwarnings("ignore", message="Unable to monitor memory usage")
            hub.start_periodic_monitoring_thread()
        _watch.started_monitor = True


def unwatch(server: Any) -> None:
    """``server`` stopped: stop the monitor thread when no server needs it."""
    _watch.servers.discard(server)
    if _watch.servers:
        return
    if _watch.saved_print is not None:
        gevent_config.print_blocking_reports = _watch.saved_print
        gevent_config.max_blocking_time = _watch.saved_max
        _watch.saved_print = _watch.saved_max = None
    hub = server.hub
    if _watch.started_monitor and hub.periodic_monitoring_thread is not None:
        hub.periodic_monitoring_thread.kill()  # removes the switch tracer, ends the thread
        hub.periodic_monitoring_thread = None
        gevent_config.monitor_thread = False
        _watch.started_monitor = False
