"""Reusable greenlets for connection work.

A connection that wakes from parking needs a greenlet; creating one and
letting it die costs about 20 µs here (greenlet 3), switching into an idle
one about 1 µs. So finished runners wait in a free list instead of dying,
like a thread pool's threads. Each task runs in a fresh
``contextvars.Context``, so context variables never leak from one request to
the next (greenlet-locals, ``gevent.local``, do persist on a runner, as
thread-locals do on a pooled thread).
"""
from __future__ import annotations

import contextvars
from typing import Any, Callable, List

from greenlet import getcurrent, greenlet

KEEP = 512  # idle runners kept; more die when their task ends


class Runners:
    """A free list of greenlets whose parent is ``hub``."""

    def __init__(self, hub: Any, keep: int = KEEP) -> None:
        self.hub = hub
        self.keep = keep
        self.idle: List[greenlet] = []

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in a runner: at once when called in the hub, else
        from the hub's next loop turn (a greenlet switched to from another
        one would never switch back to it). ``fn`` must not raise."""
        idle = self.idle
        g = idle.pop() if idle else greenlet(self._main, parent=self.hub)
        if getcurrent() is self.hub:
            g.switch(fn, args)
        else:
            self.hub.loop.run_callback(g.switch, fn, args)

    def _main(self, fn: Callable[..., Any], args: tuple) -> None:
        idle = self.idle
        switch = self.hub.switch
        me = getcurrent()
        while True:
            contextvars.Context().run(fn, *args)
            if len(idle) >= self.keep:
                return
            idle.append(me)
            fn, args = switch()
