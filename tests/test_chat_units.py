"""examples/chat's pure parts, without sockets: validation, the wire format,
the in-process hub's numbering and ordering, and URL redaction."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

import gevent
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.chat.hub import LocalHub  # noqa: E402
from examples.chat.messages import (  # noqa: E402
    HISTORY,
    MAX_NICK,
    MAX_TEXT,
    InvalidInput,
    Message,
    history_frame,
    new_message,
    poll_body,
    validate_nick,
    validate_room,
    validate_text,
)

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("fn,value,expected", [
    (validate_room, "lobby", "lobby"),
    (validate_room, "A-b_9", "A-b_9"),
    (validate_room, "r" * 40, "r" * 40),
    (validate_nick, "  alice  ", "alice"),
    (validate_nick, "Zoë 🐍", "Zoë 🐍"),
    (validate_nick, "n" * MAX_NICK, "n" * MAX_NICK),
    (validate_text, "hi\n", "hi"),
    (validate_text, "two\nlines\tand a tab", "two\nlines\tand a tab"),
    (validate_text, "<script>alert(1)</script>", "<script>alert(1)</script>"),
    (validate_text, "x" * MAX_TEXT, "x" * MAX_TEXT),
])
def test_valid_input(fn, value, expected) -> None:  # type: ignore[no-untyped-def]
    assert fn(value) == expected


@pytest.mark.parametrize("fn,value,error", [
    (validate_room, None, "missing room: pass room=<name>"),
    (validate_room, "", "missing room: pass room=<name>"),
    (validate_room, "r" * 41, "bad room name"),
    (validate_room, "a/b", "bad room name"),
    (validate_room, "lobby\n", "bad room name"),
    (validate_nick, None, "missing nickname: pass nick=<name>"),
    (validate_nick, "   ", "missing nickname"),
    (validate_nick, "n" * (MAX_NICK + 1),
     f"nickname too long: {MAX_NICK + 1} characters, the limit is {MAX_NICK}"),
    (validate_nick, "a\tb", "nickname contains control characters"),
    (validate_text, None, "missing text: send a string in the 'text' field"),
    (validate_text, 42, "missing text"),
    (validate_text, " \n ", "empty message"),
    (validate_text, "x" * (MAX_TEXT + 1),
     f"message too long: {MAX_TEXT + 1} characters, the limit is {MAX_TEXT}"),
    (validate_text, "bell\x07", "message contains control characters"),
    (validate_text, "c1\x85 inside", "message contains control characters"),
    (validate_text, "lone \ud800 surrogate", "invalid Unicode"),
])
def test_invalid_input_says_why(fn, value, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as info:
        fn(value)
    assert error in str(info.value)


def test_wire_format() -> None:
    m = new_message("msg", "lobby", "zoë", "<b>hi</b>")
    assert set(m) == {"room", "type", "nick", "text", "ts"} and isinstance(m["ts"], int)
    frame = history_frame("lobby", [dict(m, id=1, epoch="e")])
    assert json.loads(frame) == {"type": "history", "room": "lobby",
                                 "messages": [dict(m, id=1, epoch="e")]}
    assert "zoë" in frame                       # UTF-8 as is, not \\u escapes
    assert json.loads(poll_body([], reset=True)) == {"messages": [], "reset": True}
    assert json.loads(poll_body([])) == {"messages": []}


def test_local_hub_numbers_per_room_and_bounds_history() -> None:
    hub = LocalHub()
    seen: List[Message] = []
    hub.start(seen.append)
    for i in range(HISTORY + 5):
        hub.publish(new_message("msg", "a", "n", f"a{i}"))
    hub.publish(new_message("msg", "b", "n", "b0"))
    gevent.sleep(0.05)        # delivery runs in gkit.hub's fan-out greenlet
    hub.stop()
    assert [m["id"] for m in hub.history("a")] == list(range(6, HISTORY + 6))
    assert [(m["id"], m["text"]) for m in hub.history("b")] == [(1, "b0")]
    assert hub.history("nobody-here") == []
    assert len(seen) == HISTORY + 6 and {m["epoch"] for m in seen} == {hub.epoch}


def test_local_hub_keeps_order_when_a_listener_publishes() -> None:
    """A listener that publishes while a message is being delivered (a leave
    announced from inside a send) must not get its message delivered first."""
    hub = LocalHub()
    order: List[int] = []

    def listener(m: Message) -> None:
        order.append(m["id"])
        if m["text"] == "first":
            hub.publish(new_message("leave", "r", "gone"))
            order.append(-1)                   # the nested publish returned

    hub.start(listener)
    hub.publish(new_message("msg", "r", "n", "first"))
    gevent.sleep(0.05)        # delivery runs in gkit.hub's fan-out greenlet
    hub.stop()
    assert order == [1, -1, 2]
    assert [m["id"] for m in hub.history("r")] == [1, 2]


def test_redact_hides_passwords() -> None:
    pytest.importorskip("redis")
    from examples.chat.redis_hub import redact
    assert redact("redis://:s3cret@db:6379/0") == "redis://:***@db:6379/0"
    assert redact("redis://user:pw@db/1") == "redis://user:***@db/1"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
