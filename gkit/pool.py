"""Worker slots: http-kit's ``thread`` and ``queue_size`` limits.

An app call takes a slot for as long as it computes (the app call and the
iteration of its response); an idle keep-alive connection or an open channel
holds none. At most ``thread`` calls run at once, at most ``queue_size`` more
wait, and past that :class:`PoolFull` is raised at once (answered with 503).
The greenlet running the app is named after its slot: ``worker-1``, ...
"""
from __future__ import annotations

from typing import List, Optional

from gevent.queue import Queue

from .errors import GkitError


class PoolFull(GkitError):
    """Every worker is busy and the wait queue is full."""


class WorkerPool:
    """Slots numbered from 1; ``size=None`` means no limit.

    Taking a free slot is a list pop (the hot path); only when every slot is
    taken does a request wait, on a queue through which released slots are
    handed to waiters first, in order.

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
        self._free: List[str] = ([prefix + str(n) for n in range(size, 0, -1)]
                                 if size is not None else [])
        self._handoff: Queue = Queue()

    def acquire(self, admitted: bool = False) -> str:
        """Take a slot and return its worker name; may wait; raises PoolFull.
        ``admitted``: the request already had a slot and lent it while it
        waited on its client: it waits for one again whatever the queue holds."""
        self.running += 1
        if self.size is None:
            self._counter += 1
            return self.prefix + str(self._counter)
        if self._free:
            return self._free.pop()
        if self.waiting >= self.queue_size and not admitted:
            self.running -= 1
            raise PoolFull(f"all {self.size} workers busy and {self.waiting} requests queued")
        self.waiting += 1
        try:
            return self._handoff.get()
        except BaseException:
            self.running -= 1
            raise
        finally:
            self.waiting -= 1

    def release(self, name: str) -> None:
        self.running -= 1
        if self.size is None:
            return
        # A slot released while someone waits goes to the waiters; one that a
        # waiter gave up on stays in the queue for the next one to wait.
        if self.waiting > self._handoff.qsize():
            self._handoff.put(name)
        else:
            self._free.append(name)
