"""Stats of every worker process in one place: ``--workers N`` with
``--metrics-bind``. Imports no gevent (the master uses it unpatched).

The master maps an anonymous shared memory block before it forks, so every
worker sees the same block. Each worker owns one slot and writes its
``server.stats()`` numbers there twice a second; whichever worker takes a
scrape on the (shared) metrics socket sums every live slot. When the master
reaps a worker, it adds that worker's counters into a "retired" slot and
frees its slot, so totals never go backwards when a worker dies or is
replaced (HUP); a dead worker's gauges (its open connections) just vanish.

The master's fold and a reader's sum are kept apart by a sequence number
(a seqlock): odd while the master folds; a reader that sees it odd or
changed reads again. Workers need no lock: a slot has one writer.

>>> shared = SharedStats(workers=2)
>>> a, b = shared.claim(101), shared.claim(102)
>>> shared.publish(a, [1] * len(FIELDS)); shared.publish(b, [2] * len(FIELDS))
>>> shared.total()["app_calls_total"], shared.workers()
(3, 2)
>>> shared.release(a)
>>> shared.total()["app_calls_total"], shared.total()["connections_open"], shared.workers()
(3, 2, 1)
"""
from __future__ import annotations

import array
import mmap
import time
from typing import Any, Dict, List, Optional, Sequence

from .stats import FIELDS, is_counter, unflatten

WIDTH = 1 + len(FIELDS)  # a slot: the worker's pid, then its fields
COUNTERS = [i for i, (key, _) in enumerate(FIELDS) if is_counter(key)]
SLOTS_INDEX = [i for i, (key, _) in enumerate(FIELDS) if key == "worker_slots"][0]


class SharedStats:
    """The shared block: a sequence number, a retired slot, then one slot
    per worker (twice the count, since HUP runs old and new workers together)."""

    def __init__(self, workers: int) -> None:
        self.nslots = 2 * workers + 2
        self._map = mmap.mmap(-1, 8 * (1 + WIDTH * (1 + self.nslots)))
        self._v = memoryview(self._map).cast("q")
        self.slot: Optional[int] = None  # this worker's, set in the child after the fork

    def _base(self, slot: int) -> int:
        return 1 + WIDTH * (1 + slot)

    # -- the master ------------------------------------------------------------------
    def claim(self, pid: int = -1) -> int:
        """A free slot for the worker ``pid`` (-1 if none is free); claim
        before the fork with the default, then :meth:`assign` the pid."""
        v = self._v
        for slot in range(self.nslots):
            base = self._base(slot)
            if v[base] == 0:
                v[base] = pid
                return slot
        return -1

    def assign(self, slot: int, pid: int) -> None:
        if slot >= 0:
            self._v[self._base(slot)] = pid

    def release(self, slot: int) -> None:
        """The worker of ``slot`` is gone: keep its counters, free the slot."""
        if slot < 0:
            return
        v = self._v
        base, retired = self._base(slot), 1
        v[0] += 1  # odd: readers retry
        try:
            for i in COUNTERS:
                v[retired + 1 + i] += v[base + 1 + i]
            for i in range(WIDTH):
                v[base + i] = 0
        finally:
            v[0] += 1

    # -- a worker ----------------------------------------------------------------------
    def publish(self, slot: int, values: Sequence[int]) -> None:
        """Write this worker's numbers (``gkit.stats.flatten`` order) into its slot."""
        if slot < 0:
            return
        base = self._base(slot) + 1
        self._v[base:base + len(values)] = memoryview(array.array("q", values))

    def total(self, mine: Optional[int] = None, values: Optional[Sequence[int]] = None
              ) -> Dict[str, Any]:
        """Every worker's numbers summed, as a ``server.stats()`` dict; ``mine``
        and ``values``: use these fresh numbers for that slot instead."""
        for _ in range(1000):
            seq = self._v[0]
            if seq % 2 == 0:
                sums = self._sum(mine, values)
                if self._v[0] == seq:
                    return sums
            time.sleep(0)
        return self._sum(mine, values)

    def workers(self) -> int:
        """How many worker slots are in use."""
        return sum(1 for slot in range(self.nslots) if self._v[self._base(slot)] != 0)

    def _sum(self, mine: Optional[int], values: Optional[Sequence[int]]) -> Dict[str, Any]:
        v = self._v
        n = len(FIELDS)
        sums: List[int] = list(v[2:2 + n])  # the retired slot's counters
        unlimited = False
        for slot in range(self.nslots):
            base = self._base(slot)
            if v[base] == 0:
                continue
            row = values if slot == mine and values is not None else v[base + 1:base + 1 + n]
            for i in range(n):
                sums[i] += row[i]
            unlimited = unlimited or row[SLOTS_INDEX] < 0
        if unlimited:
            sums[SLOTS_INDEX] = -1
        return unflatten(sums)
