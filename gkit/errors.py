"""One error hierarchy for gkit.

Protocol errors carry a hint for the wire (``status_hint`` for HTTP,
``close_code`` for WebSocket); only the I/O layer turns a hint into bytes.
"""
from __future__ import annotations

from typing import Optional


class GkitError(Exception):
    """Base class of every error gkit raises."""


class ConfigError(GkitError, ValueError):
    """A bad option; the message names the fix."""


class ProtocolError(GkitError):
    """The peer broke the protocol. ``status_hint`` is the HTTP status to answer with;
    ``method`` the request's method when it is known (a ``HEAD`` gets no error body)."""

    method: Optional[str] = None

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class ChannelClosed(GkitError):
    """Raised by ``Channel.receive`` (and ends ``for msg in ch``) once the channel closed."""

    def __init__(self, status: str = "server-close") -> None:
        super().__init__(status)
        self.status = status


class HandshakeError(ProtocolError):
    """A WebSocket upgrade request that cannot be accepted, answered with its
    ``status_hint``: 400, or 426 Upgrade Required for a ``Sec-WebSocket-Version``
    other than 13 (RFC 6455 §4.4); both carry ``Sec-WebSocket-Version: 13``."""


class HubUnavailable(GkitError):
    """A publish could not reach the hub's broker (e.g. Redis is down). The
    message names the URL (password hidden); nothing was delivered."""
