"""Server-sent events (the WHATWG HTML "event stream" format), sans-IO.

Events in, bytes out: :func:`encode_event` and :func:`encode_comment` build
the bytes of one event or comment; :class:`EventStreamDecoder` is the
browser's side (bytes in, :class:`Event` out), kept here so tests and Python
clients read a stream exactly as ``EventSource`` does. Nothing here imports
gevent, socket or time.

The rules that matter for a server (HTML §9.2.6, "Interpreting an event stream"):

- a line ends at CRLF, CR or LF, so data with line breaks is sent as one
  ``data:`` line per line, and the reader joins them with LF again;
- ``event`` and ``id`` are single-line fields: a CR or LF in them would start
  a new field (an injected ``data:`` or ``retry:``), so they are refused, as is
  NUL in ``id`` (the reader ignores such an id);
- an empty line ends an event; a line starting with ``:`` is a comment, which
  readers ignore and proxies see as traffic (a heartbeat);
- ``retry`` is in milliseconds on the wire; gkit takes seconds, as everywhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Union

__all__ = ["Event", "EventStreamDecoder", "encode_event", "encode_comment", "encode_retry",
           "HEARTBEAT", "CONTENT_TYPE"]

CONTENT_TYPE = "text/event-stream"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
Data = Union[str, bytes, bytearray, memoryview]


def _text(value: Data, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"SSE {what} must be UTF-8 text: an event stream is always "
                             f"UTF-8 (send base64 or JSON for binary data)") from None
    raise TypeError(f"SSE {what} must be str or bytes, not {type(value).__name__} "
                    f"(json.dumps it first)")


def _single_line(value: str, what: str, *, nul: bool = False) -> str:
    if "\r" in value or "\n" in value or (nul and "\0" in value):
        raise ValueError(f"SSE {what} {value!r} contains CR, LF{' or NUL' if nul else ''}: "
                         f"it would start a new field; give a single-line {what}")
    return value


def encode_event(data: Data, event: Optional[str] = None, id: Optional[str] = None,
                 retry: Optional[float] = None) -> bytes:
    """The bytes of one event: optional ``event:``, ``id:``, ``retry:`` lines,
    one ``data:`` line per line of ``data``, and the empty line that ends it.

    ``retry`` is in seconds (written in milliseconds). Raises ``ValueError``
    for CR or LF in ``event`` or ``id`` (and NUL in ``id``), or data that is
    not UTF-8.

    >>> encode_event("one\\ntwo", event="note", id="7")
    b'event: note\\nid: 7\\ndata: one\\ndata: two\\n\\n'
    >>> encode_event("")
    b'data: \\n\\n'
    """
    out: List[str] = []
    if event is not None:
        out.append("event: " + _single_line(_text(event, "event"), "event"))
    if id is not None:
        out.append("id: " + _single_line(_text(id, "id"), "id", nul=True))
    if retry is not None:
        out.append("retry: %d" % _retry_ms(retry))
    for line in _LINE_BREAK.split(_text(data, "data")):
        out.append("data: " + line)
    return ("\n".join(out) + "\n\n").encode("utf-8")


def _retry_ms(retry: float) -> int:
    if isinstance(retry, bool) or not isinstance(retry, (int, float)) or not retry >= 0:
        raise ValueError(f"SSE retry={retry!r}: give a non-negative number of seconds")
    return int(round(retry * 1000))


def encode_retry(retry: float) -> bytes:
    """A ``retry:`` field alone (the client's reconnection delay, given in
    seconds): it dispatches no event.

    >>> encode_retry(3)
    b'retry: 3000\\n\\n'
    """
    return b"retry: %d\n\n" % _retry_ms(retry)


def encode_comment(text: str = "") -> bytes:
    """A comment (ignored by readers, seen as traffic by proxies); a
    multi-line text becomes one comment line per line.

    >>> encode_comment("hello")
    b': hello\\n\\n'
    """
    lines = _LINE_BREAK.split(text)
    return ("".join(": " + line + "\n" if line else ":\n" for line in lines) + "\n").encode("utf-8")


HEARTBEAT = encode_comment()  # b":\n\n": the cheapest line a proxy counts as traffic


@dataclass(frozen=True)
class Event:
    """One dispatched event, as ``EventSource`` hands it to ``onmessage``.

    ``id`` is the last event id in force after this event (ids persist
    across events, as in the browser)."""

    data: str
    event: str = "message"
    id: str = ""


class EventStreamDecoder:
    """The browser's event-stream reader: ``feed(bytes) -> [Event]``.

    >>> d = EventStreamDecoder()
    >>> d.feed(b"data: a\\r\\ndata: b\\r\\n\\n: comment\\n\\n")
    [Event(data='a\\nb', event='message', id='')]
    """

    def __init__(self) -> None:
        self._buf = b""
        self._start = True   # a BOM is dropped at the start of the stream only
        self._data: List[str] = []
        self._type = ""
        self.retry: Optional[float] = None  # the reconnection time last set, in seconds
        self.last_event_id = ""
        self.comments: List[str] = []  # every comment seen, heartbeats included

    def feed(self, data: bytes) -> List[Event]:
        self._buf += data
        events: List[Event] = []
        while True:
            m = re.search(rb"\r\n|\r|\n", self._buf)
            # A CR at the very end may be the first half of a CRLF: wait.
            if m is None or (m.group() == b"\r" and m.end() == len(self._buf)):
                return events
            line, self._buf = self._buf[:m.start()], self._buf[m.end():]
            text = line.decode("utf-8", "replace")
            if self._start:
                self._start = False
                text = text[1:] if text.startswith("\ufeff") else text
            event = self._line(text)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Optional[Event]:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            comment = line[1:]
            self.comments.append(comment[1:] if comment.startswith(" ") else comment)
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value) / 1000
        return None

    def _dispatch(self) -> Optional[Event]:
        data, kind = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None
        return Event("\n".join(data), kind, self.last_event_id)
