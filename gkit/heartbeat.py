"""Heartbeats of long-lived channels, driven by the server's sweeper.

A channel that wants a beat when it has been quiet (an SSE stream's comment,
later a WebSocket's ping) joins the server's :class:`Heartbeats`; the
server's periodic sweep calls :meth:`Heartbeats.sweep`, which asks each
member ``beat(now)``. There is no timer or greenlet per channel: one dict
entry each, and one pass per sweep.
"""
from __future__ import annotations

from typing import Dict, Protocol


class Beating(Protocol):
    """What a member offers: whether it is still open, and its beat."""

    @property
    def is_open(self) -> bool: ...

    def beat(self, now: float) -> None:
        """Called from the hub on every sweep: send what is due, never block."""


class Heartbeats:
    """The channels of one server that get heartbeats.

    >>> hb = Heartbeats()
    >>> len(hb)
    0
    """

    def __init__(self) -> None:
        self._members: Dict[Beating, None] = {}  # insertion-ordered set

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: Beating) -> None:
        self._members[member] = None

    def discard(self, member: Beating) -> None:
        self._members.pop(member, None)

    def sweep(self, now: float) -> None:
        """In the hub: beat every open member; forget the closed ones."""
        for member in list(self._members):
            if member.is_open:
                member.beat(now)
            else:
                self._members.pop(member, None)

