"""Chat messages: limits, validation and the JSON wire format. No I/O.

Every message on the wire is one JSON object::

    {"id": 7, "epoch": "3f9c0d1e", "room": "lobby", "type": "msg",
     "nick": "alice", "text": "hello", "ts": 1700000000000}

``type`` is ``"msg"``, ``"join"`` or ``"leave"``. ``id`` grows by one per
message within a room; ``epoch`` names the store the ids come from (a process
start for the in-process hub, a Redis data set for the Redis hub), so a client
that sees a new epoch knows the ids restarted and re-reads the history.
``ts`` is the server's clock in milliseconds.

Frames only the server sends: ``{"type": "history", "room": ..., "messages":
[...]}`` right after a WebSocket opens, and ``{"type": "error", "error":
"..."}`` when the client sent something the server refused.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, Dict, List, Optional

MAX_NICK = 32           # characters; the page's <input maxlength> says the same
MAX_TEXT = 2000         # characters; the page's <input maxlength> says the same
MAX_ROOM = 40
HISTORY = 100           # messages kept per room
MAX_BODY = 16 * 1024    # bytes of a POST /send or /leave body

KINDS = ("msg", "join", "leave")

_ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,%d}\Z" % MAX_ROOM)
# C0 controls, DEL, C1 controls and lone surrogates (which JSON can carry
# but UTF-8 cannot); newline and tab are allowed in text only.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_NICK_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

Message = Dict[str, Any]


class InvalidInput(ValueError):
    """Input a client sent that the chat refuses; the message says why and what fits."""


def validate_room(room: Optional[str]) -> str:
    """Return ``room`` if it is a valid room name, else raise :class:`InvalidInput`.

    >>> validate_room("lobby")
    'lobby'
    """
    if not room:
        raise InvalidInput("missing room: pass room=<name>")
    if not _ROOM_RE.match(room):
        raise InvalidInput(
            f"bad room name {room[:60]!r}: use 1-{MAX_ROOM} letters, digits, '-' or '_'")
    return room


def validate_nick(nick: Optional[str]) -> str:
    """Return the trimmed nickname or raise :class:`InvalidInput`.

    >>> validate_nick("  alice ")
    'alice'
    """
    nick = (nick or "").strip()
    if not nick:
        raise InvalidInput("missing nickname: pass nick=<name>")
    if len(nick) > MAX_NICK:
        raise InvalidInput(
            f"nickname too long: {len(nick)} characters, the limit is {MAX_NICK}")
    if _NICK_CONTROL_RE.search(nick):
        raise InvalidInput("nickname contains control characters or invalid Unicode")
    return nick


def validate_text(text: Any) -> str:
    """Return the message text (trailing whitespace removed) or raise :class:`InvalidInput`.

    >>> validate_text("hi\\n")
    'hi'
    """
    if not isinstance(text, str):
        raise InvalidInput("missing text: send a string in the 'text' field")
    text = text.rstrip()
    if not text.strip():
        raise InvalidInput("empty message")
    if len(text) > MAX_TEXT:
        raise InvalidInput(
            f"message too long: {len(text)} characters, the limit is {MAX_TEXT}")
    if _CONTROL_RE.search(text):
        raise InvalidInput("message contains control characters or invalid Unicode")
    return text


def new_message(kind: str, room: str, nick: str, text: str = "") -> Message:
    """A message without ``id`` and ``epoch``: the hub assigns those."""
    assert kind in KINDS, kind
    return {"room": room, "type": kind, "nick": nick, "text": text,
            "ts": int(time.time() * 1000)}


def encode(obj: Any) -> str:
    """Compact JSON, non-ASCII kept as is (the frames are UTF-8 anyway)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def history_frame(room: str, messages: List[Message]) -> str:
    return encode({"type": "history", "room": room, "messages": messages})


def error_frame(error: str) -> str:
    return encode({"type": "error", "error": error})


def poll_body(messages: List[Message], *, reset: bool = False) -> str:
    """The body of a ``/poll`` answer. ``reset`` says the client's epoch was
    stale and ``messages`` is the whole history, to be shown from scratch."""
    body: Dict[str, Any] = {"messages": messages}
    if reset:
        body["reset"] = True
    return encode(body)
