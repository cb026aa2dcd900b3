"""WebSocket events and close codes (RFC 6455 §7.4), shared by the sans-IO layer.

The events are what :meth:`gkit.proto.websocket.WsSession.receive_data` returns;
:func:`close_status` turns a close code into the status string that
``Channel.on_close`` reports (``docs: API.md``, "Close statuses").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

# RFC 6455 §7.4.1 codes gkit uses by name.
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
NO_STATUS = 1005  # the peer's close frame carried no code (never on the wire)
ABNORMAL = 1006  # the TCP connection ended without a close frame (never on the wire)
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True)
class Message:
    """A whole data message, fragments reassembled: ``str`` for text, ``bytes`` for binary.

    >>> Message("hi"), Message(b"\\x00")
    (Message(data='hi'), Message(data=b'\\x00'))
    """

    __slots__ = ("data",)  # by hand: dataclass(slots=True) needs Python 3.10
    data: str | bytes


@dataclass(frozen=True)
class Ping:
    """A ping from the peer. The session has already queued the pong (``data_to_send``)."""

    __slots__ = ("data",)
    data: bytes


@dataclass(frozen=True)
class Pong:
    """A pong from the peer (an answer to ``send_ping``, or unsolicited)."""

    __slots__ = ("data",)
    data: bytes


@dataclass(frozen=True)
class Closed:
    """The WebSocket is over; always the last event of a session.

    ``code`` is the peer's close code (1005 if its close frame had none), the
    code the session failed the connection with (1002, 1007, 1009), or 1006 when
    the data ended without a close frame. Any close frame owed to the peer is in
    ``data_to_send()``: send it, then close the TCP connection.

    >>> close_status(Closed(1009, "message too big").code)
    'message-too-big'
    """

    __slots__ = ("code", "reason")
    code: int
    reason: str


Event = Union[Message, Ping, Pong, Closed]

_STATUS = {
    1000: "normal",
    1001: "going-away",
    1002: "protocol-error",
    1003: "unsupported",
    1007: "invalid-payload-data",
    1008: "policy-violation",
    1009: "message-too-big",
    1011: "internal-server-error",
    # Never sent on the wire, so they only come from a Closed event:
    # 1005 is a close frame without a code, which http-kit reports as normal;
    # 1006 is a dropped connection, which the API reports as going-away.
    1005: "normal",
    1006: "going-away",
}


def close_status(code: int) -> str:
    """The ``on_close`` status string for a WebSocket close code.

    >>> close_status(1000), close_status(1006), close_status(4000)
    ('normal', 'going-away', 'unknown')
    """
    return _STATUS.get(code, "unknown")


def valid_close_code(code: int) -> bool:
    """True if ``code`` may appear in a close frame (RFC 6455 §7.4, IANA registry).

    1000-1003 and 1007-1014 are defined, 3000-4999 are for libraries and apps;
    1004 is reserved, 1005/1006/1015 must never be sent, the rest of 0-2999 is
    unassigned and 5000+ does not exist.

    >>> [valid_close_code(c) for c in (1000, 1004, 1005, 1014, 1015, 2999, 3000, 4999, 5000)]
    [True, False, False, True, False, False, True, True, False]
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
