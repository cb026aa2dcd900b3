"""The room hub: numbers messages and keeps each room's bounded history;
gkit.hub carries every new message to every process's listener.

Two implementations with one interface:

- :class:`LocalHub` (this module): rooms in this process, messages through
  the in-process gkit hub (``memory://``). The default.
- :class:`examples.chat.redis_hub.RedisHub`: rooms shared by every process
  that points at the same Redis (a capped list per room, and gkit.hub's
  Redis pub/sub for the messages).

The web side (``app.py``) calls ``publish`` and ``history`` and receives
messages through the ``deliver(message)`` callback given to ``start``; it
does not know which hub it talks to. Delivery runs in gkit.hub's fan-out
greenlet, after ``publish`` returned, one message after another in the
order they were published.
"""
from __future__ import annotations

import collections
import itertools
import json
import secrets
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional

import gkit.hub

from .messages import HISTORY, Message, encode

Deliver = Callable[[Message], None]
TOPIC = "gkit-chat:messages"


class HubUnavailable(RuntimeError):
    """The hub cannot take or read messages right now (e.g. Redis is down)."""


class LocalHub:
    """Rooms in this process: a counter and a ``deque(maxlen=history)`` per room.

    >>> import gevent
    >>> hub = LocalHub()
    >>> seen = []
    >>> hub.start(seen.append)
    >>> hub.publish({"room": "r", "type": "msg", "nick": "a", "text": "hi", "ts": 0})["id"]
    1
    >>> gevent.sleep(0.01); [m["text"] for m in seen], [m["id"] for m in hub.history("r")]
    (['hi'], [1])
    """

    kind = "in-process"
    url = "memory://"

    def __init__(self, history: int = HISTORY) -> None:
        self.epoch = secrets.token_hex(4)
        self._history: Dict[str, Deque[Message]] = collections.defaultdict(
            lambda: collections.deque(maxlen=history))
        self._counters: Dict[str, Iterator[int]] = collections.defaultdict(
            lambda: itertools.count(1))
        self._deliver: Optional[Deliver] = None
        self.pubsub: Any = None

    def start(self, deliver: Deliver, rooms: Callable[[], Iterable[str]] = lambda: ()) -> None:
        """Hand every new message to ``deliver``. (``rooms`` is for hubs that
        catch up after a reconnect; this one never disconnects.)"""
        self._deliver = deliver
        self.pubsub = gkit.hub.open(self.url)
        self.pubsub.subscribe(TOPIC, self._on_raw)

    def stop(self) -> None:
        self._deliver = None
        if self.pubsub is not None:
            self.pubsub.unsubscribe(TOPIC, self._on_raw)
            self.pubsub.close()
            self.pubsub = None

    def _on_raw(self, raw: Any) -> None:
        if self._deliver is not None:
            self._deliver(json.loads(raw))

    def publish(self, message: Message) -> Message:
        room = message["room"]
        message = dict(message, id=next(self._counters[room]), epoch=self.epoch)
        self._history[room].append(message)
        if self.pubsub is not None:
            self.pubsub.publish(TOPIC, encode(message))
        return message

    def history(self, room: str) -> List[Message]:
        return list(self._history.get(room, ()))

    def status(self) -> Dict[str, object]:
        return {"hub": self.kind, "ok": True, "rooms": len(self._history)}
