"""The process-wide budget of channels' unwritten bytes (``max_buffered_total``).

``max_buffered`` bounds one channel; this bounds them all together, so many
clients that stop reading cannot take the process's memory between them.
Channels report what they queue and what they write; when the sum passes
the limit, the channels holding the most are closed first (each reports
``"server-close"`` and gets one warning on ``gkit.error``) until it fits again.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class WriteBudget:
    """Unwritten bytes per channel and their sum.

    >>> budget = WriteBudget(limit=10)
    >>> budget.queued("a", 4), budget.queued("b", 8)
    ([], ['b'])
    >>> budget.forget("b"); budget.total
    4
    """

    __slots__ = ("limit", "total", "_held")

    def __init__(self, limit: Optional[int]) -> None:
        self.limit = limit
        self.total = 0
        self._held: Dict[Any, int] = {}

    def queued(self, channel: Any, n: int) -> List[Any]:
        """``channel`` queued ``n`` more bytes: the channels to close now
        (largest first) for the sum to fit again; usually none."""
        held = self._held
        held[channel] = held.get(channel, 0) + n
        self.total += n
        limit = self.limit
        if limit is None or self.total <= limit:
            return []
        victims = []
        excess = self.total - limit
        for other, size in sorted(held.items(), key=lambda item: -item[1]):
            if excess <= 0:
                break
            victims.append(other)
            excess -= size
        return victims

    def written(self, channel: Any, n: int) -> None:
        """``channel`` wrote ``n`` of its queued bytes."""
        have = self._held.get(channel)
        if have is None:
            return
        n = min(n, have)
        self.total -= n
        if have == n:
            del self._held[channel]
        else:
            self._held[channel] = have - n

    def forget(self, channel: Any) -> None:
        """``channel`` dropped everything it had queued."""
        self.total -= self._held.pop(channel, 0)
