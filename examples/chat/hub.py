"""The room hub: numbers messages, keeps each room's bounded history and
hands every new message to the process's listener.

Two implementations with one interface:

- :class:`LocalHub` (this module): everything in this process. The default.
- :class:`examples.chat.redis_hub.RedisHub`: rooms shared by every process
  that points at the same Redis (pub/sub plus a capped list per room).

The web side (``app.py``) calls ``publish`` and ``history`` and receives
messages through the ``deliver(message)`` callback given to ``start``; it
does not know which hub it talks to.
"""
from __future__ import annotations

import collections
import itertools
import secrets
from typing import Callable, Deque, Dict, Iterable, Iterator, List, Optional

from .messages import HISTORY, Message

Deliver = Callable[[Message], None]


class HubUnavailable(RuntimeError):
    """The hub cannot take or read messages right now (e.g. Redis is down)."""


class LocalHub:
    """Rooms in this process: a counter and a ``deque(maxlen=history)`` per room.

    ``publish`` delivers before it returns, so a client registered before it
    reads the history misses nothing. A publish made while a delivery is under
    way (a listener's callback announcing a leave, say) is queued and delivered
    by the outer call after the current message: listeners always see
    messages in id order.

    >>> hub = LocalHub()
    >>> seen = []
    >>> hub.start(seen.append)
    >>> hub.publish({"room": "r", "type": "msg", "nick": "a", "text": "hi", "ts": 0})["id"]
    1
    >>> [m["text"] for m in seen], [m["id"] for m in hub.history("r")]
    (['hi'], [1])
    """

    kind = "in-process"

    def __init__(self, history: int = HISTORY) -> None:
        self.epoch = secrets.token_hex(4)
        self._history: Dict[str, Deque[Message]] = collections.defaultdict(
            lambda: collections.deque(maxlen=history))
        self._counters: Dict[str, Iterator[int]] = collections.defaultdict(
            lambda: itertools.count(1))
        self._deliver: Optional[Deliver] = None
        self._queue: Deque[Message] = collections.deque()
        self._delivering = False

    def start(self, deliver: Deliver, rooms: Callable[[], Iterable[str]] = lambda: ()) -> None:
        """Hand every new message to ``deliver``. (``rooms`` is for hubs that
        catch up after a reconnect; this one never disconnects.)"""
        self._deliver = deliver

    def stop(self) -> None:
        self._deliver = None

    def publish(self, message: Message) -> Message:
        room = message["room"]
        message = dict(message, id=next(self._counters[room]), epoch=self.epoch)
        self._history[room].append(message)
        self._queue.append(message)
        if not self._delivering:
            self._delivering = True
            try:
                while self._queue:
                    queued = self._queue.popleft()
                    if self._deliver is not None:
                        self._deliver(queued)
            finally:
                self._delivering = False
        return message

    def history(self, room: str) -> List[Message]:
        return list(self._history.get(room, ()))

    def status(self) -> Dict[str, object]:
        return {"hub": self.kind, "ok": True, "rooms": len(self._history)}
