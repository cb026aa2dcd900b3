"""Worker slots: http-kit's ``thread`` and ``queue_size`` limits.

An app call takes a slot for as long as it computes (the app call and the
iteration of its response); an idle keep-alive connection or an open channel
holds none. At most ``thread`` calls run at once, at most ``queue_size`` more
wait, and past that :class:`PoolFull` is raised at once (answered with 503).
The greenlet running the app is named after its slot: ``worker-1``, ...
"""
from __future__ import annotations

from typing import List, Optional

from gevent.lock import Semaphore

from .errors import GkitError


class PoolFull(GkitError):
    """Every worker is busy and the wait queue is full."""


class WorkerPool:
    """Slots numbered from 1; ``size=None`` means no limit.

    >>> pool = WorkerPool(2, queue_size=0, prefix="worker-")
    >>> pool.acquire(), pool.acquire()
    ('worker-1', 'worker-2')
    """

    def __init__(self, size: Optional[int], queue_size: int, prefix: str) -> None:
        self.size = size
        self.queue_size = queue_size
        self.prefix = prefix
        self.waiting = 0
        self.running = 0
        self._counter = 0
        if size is None:
            self._sem: Optional[Semaphore] = None
            self._free: List[str] = []
        else:
            self._sem = Semaphore(size)
            self._free = [prefix + str(n) for n in range(size, 0, -1)]

    def acquire(self) -> str:
        """Take a slot and return its worker name; may wait; raises PoolFull."""
        sem = self._sem
        if sem is None:
            self._counter += 1
            self.running += 1
            return self.prefix + str(self._counter)
        if sem.locked():
            if self.waiting >= self.queue_size:
                raise PoolFull(f"all {self.size} workers busy and {self.waiting} requests queued")
            self.waiting += 1
            try:
                sem.acquire()
            finally:
                self.waiting -= 1
        else:
            sem.acquire()
        self.running += 1
        return self._free.pop()

    def release(self, name: str) -> None:
        self.running -= 1
        if self._sem is not None:
            self._free.append(name)
            self._sem.release()
