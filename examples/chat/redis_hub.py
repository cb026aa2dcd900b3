"""Rooms shared through Redis, so several gkit processes carry one conversation.

Storage per room: ``<prefix>:room:<room>:seq`` (the id counter) and
``<prefix>:room:<room>:history`` (a list capped with LTRIM). ``<prefix>:epoch``
names the data set: when Redis comes back empty the ids restart and a new
epoch tells clients to re-read the history. One Lua script numbers, stores and
publishes a message in a single atomic step (to gkit.hub's Redis channel for
the chat's topic, in gkit.hub's wire format), so the history and the pub/sub
stream agree on the order.

Subscribing, reconnecting with backoff and logging each step are gkit.hub's
(logger ``gkit.hub``); what stays here is room-specific: while Redis is away
``publish``/``history`` raise :class:`HubUnavailable` at once (the web side
answers 503 or an error frame), and once gkit.hub is subscribed again the
rooms of this process read back from their history what they missed.
"""
from __future__ import annotations

import json
import logging
import secrets
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import gevent
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

import gkit.hub
from gkit.hub.wire import redact  # noqa: F401  (re-exported: the chat's tests use it)

from .hub import Deliver, HubUnavailable
from .messages import HISTORY, Message, encode

log = logging.getLogger("gkit.chat")

# KEYS: seq, history, epoch. ARGV: message JSON (no id/epoch), a fresh epoch
# in case none exists yet, history length, gkit.hub's Redis channel.
_PUBLISH_LUA = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[3], epoch)
end
local m = cjson.decode(ARGV[1])
m['id'] = redis.call('INCR', KEYS[1])
m['epoch'] = epoch
local s = cjson.encode(m)
redis.call('RPUSH', KEYS[2], s)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('PUBLISH', ARGV[4], 't' .. s)
return s
"""


class RedisHub:
    """The hub interface of :class:`examples.chat.hub.LocalHub`, backed by Redis."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "gkit-chat", history: int = HISTORY) -> None:
        self.url = url
        self.safe_url = redact(url)
        self._prefix = prefix
        self._history_len = history
        self._topic = f"{prefix}:messages"
        # Commands fail fast (one quick retry) so a request never hangs on a dead Redis.
        self._client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1))
        self._publish = self._client.register_script(_PUBLISH_LUA)
        self._deliver: Optional[Deliver] = None
        self._rooms: Callable[[], Iterable[str]] = lambda: ()
        self._seen: Dict[str, Tuple[str, int]] = {}   # room -> (epoch, last id delivered)
        self.pubsub: Any = None
        self._watcher: Optional[gevent.Greenlet] = None

    def _key(self, room: str, what: str) -> str:
        return f"{self._prefix}:room:{room}:{what}"

    # -- the hub interface -------------------------------------------------

    def start(self, deliver: Deliver, rooms: Callable[[], Iterable[str]] = lambda: ()) -> None:
        """Subscribe to the chat's topic on gkit.hub (the server's own hub when
        it was started with the same URL). ``rooms()`` names the rooms this
        process has listeners in: those are caught up after a reconnect."""
        self._deliver = deliver
        self._rooms = rooms
        self.pubsub = gkit.hub.open(self.url)
        self.pubsub.subscribe(self._topic, self._on_raw)
        self._watcher = gevent.spawn(self._watch)
        self._watcher.name = "gkit.chat catch-up"

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.kill(block=True, timeout=2)
        if self.pubsub is not None:
            self.pubsub.unsubscribe(self._topic, self._on_raw)
            self.pubsub.close()
            self.pubsub = None
        self._client.close()

    def publish(self, message: Message) -> Message:
        try:
            raw = self._publish(
                keys=[self._key(message["room"], "seq"), self._key(message["room"], "history"),
                      f"{self._prefix}:epoch"],
                args=[encode(message), secrets.token_hex(4), self._history_len,
                      gkit.hub.channel(self._topic)])
        except redis.RedisError as e:
            log.error("redis: cannot publish to %s: %s", self.safe_url, e)
            raise HubUnavailable(f"chat backend unavailable (Redis: {e}); try again") from e
        return json.loads(raw)

    def history(self, room: str) -> List[Message]:
        try:
            raws = self._client.lrange(self._key(room, "history"), 0, -1)
        except redis.RedisError as e:
            log.error("redis: cannot read history from %s: %s", self.safe_url, e)
            raise HubUnavailable(f"chat backend unavailable (Redis: {e}); try again") from e
        return [json.loads(r) for r in raws]

    @property
    def connected(self) -> bool:
        return self.pubsub is not None and self.pubsub.connected

    def status(self) -> Dict[str, object]:
        error = None if self.connected else getattr(
            getattr(self.pubsub, "engine", None), "last_error", "not started")
        return {"hub": self.kind, "ok": self.connected, "redis": self.safe_url, "error": error}

    # -- delivery ---------------------------------------------------------------

    def _watch(self) -> None:
        """After gkit.hub subscribed again: deliver what this process's rooms missed."""
        was = self.connected
        while True:
            gevent.sleep(0.2)
            now = self.connected
            if now and not was:
                try:
                    self._catch_up()
                except HubUnavailable:
                    now = False     # try again at the next turn
            was = now

    def _on_raw(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
            room, epoch, mid = message["room"], message["epoch"], int(message["id"])
        except (ValueError, KeyError, TypeError) as e:
            log.error("redis: ignoring a malformed message on %s: %s", self._topic, e)
            return
        seen = self._seen.get(room)
        if seen is not None and seen[0] == epoch and mid <= seen[1]:
            return                      # already delivered (by a catch-up)
        self._seen[room] = (epoch, mid)
        if self._deliver is not None:
            self._deliver(message)

    def _catch_up(self) -> None:
        for room in list(self._rooms()):
            seen = self._seen.get(room)
            if seen is None:
                continue
            for message in self.history(room):
                if message["epoch"] != seen[0] or message["id"] > seen[1]:
                    self._on_raw(encode(message))
