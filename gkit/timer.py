"""``schedule_task``: run a function later in its own greenlet (http-kit's timer)."""
from __future__ import annotations

import logging
from typing import Any, Callable

import gevent
from greenlet import GreenletExit

error_log = logging.getLogger("gkit.error")


class Task:
    """A scheduled call; ``cancel()`` stops it if it has not started."""

    def __init__(self, delay: float, fn: Callable[..., Any], args: tuple) -> None:
        self.fn = fn
        self.args = args
        self._ran = False
        self._greenlet = gevent.spawn_later(delay, self._run)

    def _run(self) -> None:
        self._ran = True
        try:
            self.fn(*self.args)
        except GreenletExit:
            raise  # cancel() while it runs
        except BaseException:  # SystemExit, gevent.Timeout: logged, never raised in the hub
            error_log.exception("error in scheduled task %r", self.fn)

    def cancel(self) -> bool:
        """True if the task was stopped before it ran."""
        if self._ran or self._greenlet.dead:
            return False
        self._greenlet.kill(block=False)
        return True

    @property
    def done(self) -> bool:
        return self._greenlet.dead


def schedule_task(delay: float, fn: Callable[..., Any], *args: Any) -> Task:
    """Run ``fn(*args)`` after ``delay`` seconds in its own greenlet.

    >>> task = schedule_task(0.2, print, "later")
    >>> task.cancel()
    True
    """
    return Task(delay, fn, args)
