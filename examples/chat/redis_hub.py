"""Rooms shared through Redis, so several gkit processes carry one conversation.

Storage per room: ``<prefix>:room:<room>:seq`` (the id counter) and
``<prefix>:room:<room>:history`` (a list capped with LTRIM). ``<prefix>:epoch``
names the data set: when Redis comes back empty the ids restart and a new
epoch tells clients to re-read the history. One Lua script numbers, stores and
publishes a message in a single atomic step, so the history and the pub/sub
stream agree on the order.

Every process runs one subscriber greenlet on ``<prefix>:messages`` and hands
each message to its listener, including the messages it published itself:
all processes see one order. The server runs monkey-patched by gevent, so
redis-py's blocking sockets only block the calling greenlet.

When Redis goes away, ``publish``/``history`` raise :class:`HubUnavailable`
at once (the web side answers 503 or an error frame), the subscriber logs the
error and reconnects with exponential backoff (0.5 s doubling to 10 s), and
after reconnecting it reads back what its rooms missed meanwhile.
"""
from __future__ import annotations

import contextlib
import json
import logging
import secrets
import urllib.parse
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import gevent
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .hub import Deliver, HubUnavailable
from .messages import HISTORY, Message, encode

log = logging.getLogger("gkit.chat")

# KEYS: seq, history, epoch. ARGV: message JSON (no id/epoch), a fresh epoch
# in case none exists yet, history length, pub/sub channel.
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
redis.call('PUBLISH', ARGV[4], s)
return s
"""

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0


def redact(url: str) -> str:
    """The URL with its password replaced, for logs.

    >>> redact("redis://:secret@db:6379/0")
    'redis://:***@db:6379/0'
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class RedisHub:
    """The hub interface of :class:`examples.chat.hub.LocalHub`, backed by Redis."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "gkit-chat", history: int = HISTORY) -> None:
        self.url = url
        self.safe_url = redact(url)
        self._prefix = prefix
        self._history_len = history
        self._channel = f"{prefix}:messages"
        # Commands: fail fast (one quick retry) so a request never hangs on
        # a dead Redis; the subscriber does its own reconnecting.
        self._client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1))
        self._sub_client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=30,
            health_check_interval=10, retry=Retry(NoBackoff(), 0))
        self._publish = self._client.register_script(_PUBLISH_LUA)
        self._deliver: Optional[Deliver] = None
        self._rooms: Callable[[], Iterable[str]] = lambda: ()
        self._seen: Dict[str, Tuple[str, int]] = {}   # room -> (epoch, last id delivered)
        self._greenlet: Optional[gevent.Greenlet] = None
        self._stopping = False
        self.connected = False
        self.last_error: Optional[str] = None

    def _key(self, room: str, what: str) -> str:
        return f"{self._prefix}:room:{room}:{what}"

    # -- the hub interface -------------------------------------------------

    def start(self, deliver: Deliver, rooms: Callable[[], Iterable[str]] = lambda: ()) -> None:
        """Start the subscriber greenlet. ``rooms()`` names the rooms this
        process has listeners in: those are caught up after a reconnect."""
        self._deliver = deliver
        self._rooms = rooms
        self._greenlet = gevent.spawn(self._subscribe_forever)
        self._greenlet.name = "gkit.chat redis subscriber"

    def stop(self) -> None:
        self._stopping = True
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
        self._client.close()
        self._sub_client.close()

    def publish(self, message: Message) -> Message:
        try:
            raw = self._publish(
                keys=[self._key(message["room"], "seq"), self._key(message["room"], "history"),
                      f"{self._prefix}:epoch"],
                args=[encode(message), secrets.token_hex(4), self._history_len, self._channel])
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

    def status(self) -> Dict[str, object]:
        return {"hub": self.kind, "ok": self.connected, "redis": self.safe_url,
                "error": None if self.connected else self.last_error}

    # -- the subscriber greenlet -------------------------------------------

    def _subscribe_forever(self) -> None:
        backoff = BACKOFF_START
        while not self._stopping:
            pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                self._catch_up()
                self.connected = True
                self.last_error = None
                backoff = BACKOFF_START
                log.info("redis: subscribed to %s on %s", self._channel, self.safe_url)
                while not self._stopping:
                    item = pubsub.get_message(timeout=1.0)
                    if item is not None and item.get("type") == "message":
                        self._on_raw(item["data"])
            except (redis.RedisError, OSError, HubUnavailable) as e:
                what = "lost the connection to" if self.connected else "cannot reach"
                self.connected = False
                self.last_error = str(e)
                log.error("redis: %s %s: %s; retrying in %.1f s (the chat keeps serving; "
                          "sending fails until Redis is back)", what, self.safe_url, e, backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()

    def _on_raw(self, raw: str) -> None:
        try:
            message = json.loads(raw)
            room, epoch, mid = message["room"], message["epoch"], int(message["id"])
        except (ValueError, KeyError, TypeError) as e:
            log.error("redis: ignoring a malformed message on %s: %s", self._channel, e)
            return
        seen = self._seen.get(room)
        if seen is not None and seen[0] == epoch and mid <= seen[1]:
            return                      # already delivered (by a catch-up)
        self._seen[room] = (epoch, mid)
        if self._deliver is not None:
            self._deliver(message)

    def _catch_up(self) -> None:
        """After a (re)subscribe: deliver what this process's rooms missed."""
        for room in list(self._rooms()):
            seen = self._seen.get(room)
            if seen is None:
                continue
            for message in self.history(room):
                if message["epoch"] != seen[0] or message["id"] > seen[1]:
                    self._on_raw(encode(message))
