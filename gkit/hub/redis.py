"""The Redis engine: topics shared by every process that opens the same URL.

Per process: one pub/sub connection, subscribed once per topic that has local
subscribers (plus ``gkit:__hub__``, so the connection is always in subscribed
mode and its state is known), read by one greenlet that hands each message to
the hub's fan-out; publishes go out on a small pool of command connections.
A publish is delivered back to this process through Redis like everyone
else's, so all processes see one order per publisher.

Failures: ``publish`` raises :class:`gkit.HubUnavailable` at once (commands
fail fast: no retries); the reader logs what happened, retries with backoff
(:data:`BACKOFF_START` doubling to :data:`BACKOFF_MAX`) and, once Redis
answers again, subscribes to every topic again. Delivery is at-most-once:
what is published while a process is not subscribed does not reach it.

Writes to the pub/sub connection (SUBSCRIBE, UNSUBSCRIBE, PING) all go
through redis-py's ``PubSub.execute_command``, which holds the PubSub's lock;
only the reader greenlet reads. Health checks are the reader's own PINGs
(redis-py's ``health_check_interval`` would write without that lock).
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Dict, Optional, Set

import gevent
from gevent.event import Event
from greenlet import getcurrent

from ..errors import ConfigError, HubUnavailable
from .wire import Message, channel, decode, encode, topic_of

log = logging.getLogger("gkit.hub")

CONTROL = b"gkit:__hub__"
BACKOFF_START = 0.25   # seconds before the first reconnect; doubles up to BACKOFF_MAX
BACKOFF_MAX = 5.0
PING_AFTER = 15.0      # seconds of silence before the reader pings Redis
PING_WAIT = 10.0       # and how long it waits for the answer before reconnecting
CONFIRM_WAIT = 5.0     # seconds subscribe() waits for Redis to confirm a new topic
PUBLISH_CONNECTIONS = 8   # per process; more publishing greenlets wait for one


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError("a redis:// hub needs redis-py: pip install 'gkit[redis]'") from None
    return redis


def client(url: str, pool: int = 0, **options: Any) -> Any:
    """A redis-py client for ``url`` that fails fast (no retries, short
    timeouts); with ``pool``, at most that many connections, which callers
    beyond it wait for (so a burst of publishing greenlets cannot open
    thousands of connections)."""
    redis = _redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    options = dict(dict(socket_connect_timeout=2.0, socket_timeout=5.0,
                        retry=Retry(NoBackoff(), 0), health_check_interval=0), **options)
    try:
        if pool:
            return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
                url, max_connections=pool, timeout=5.0, **options))
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"hub URL {url!r}: {exc} (expected redis://host:port/db)") from None


class RedisEngine:
    """Carries a :class:`~gkit.hub.core.Hub`'s messages through Redis pub/sub.
    It uses of the hub: ``safe_url``, ``topics()`` and ``_enqueue(topic,
    message)`` (in the loop's thread) and ``_topics``."""

    def __init__(self, hub: Any, url: str) -> None:
        self.hub = hub
        self.safe_url = hub.safe_url
        self._redis = _redis()
        self._client = client(url, pool=PUBLISH_CONNECTIONS)
        self._sub_client = client(url, socket_timeout=PING_AFTER + PING_WAIT)
        self._ps: Any = None           # the PubSub while connected
        self._confirmed: Dict[bytes, Event] = {}
        self._first = Event()          # set at the first connection or failure
        self.connected = False
        self.last_error: Optional[str] = None
        self._closing = False
        self._reader = gevent.spawn(self._read_forever)
        self._reader.name = "gkit.hub redis reader"

    # -- used by the hub -------------------------------------------------------------
    def publish(self, topic: str, message: Message) -> None:
        try:
            self._client.publish(channel(topic), encode(message))
        except self._redis.RedisError as exc:
            raise HubUnavailable(
                f"cannot publish to topic {topic!r}: the hub {self.safe_url} is unreachable "
                f"({exc}); nothing was delivered (at-most-once): retry later") from exc

    def topic_added(self, topic: str) -> None:
        name = channel(topic)
        can_wait = gevent.get_hub() is not getcurrent()
        if not self._first.is_set() and can_wait:
            self._first.wait(CONFIRM_WAIT)   # just opened: wait for the first connection
        ps = self._ps
        if ps is None:
            return   # the reader subscribes every topic when it (re)connects
        event = self._confirmed.setdefault(name, Event())
        if can_wait:
            self._send(ps, "subscribe", name)
            event.wait(CONFIRM_WAIT)
        else:
            gevent.spawn(self._send, ps, "subscribe", name)

    def topic_removed(self, topic: str) -> None:
        ps = self._ps
        self._confirmed.pop(channel(topic), None)
        if ps is not None:
            gevent.spawn(self._unsubscribe, ps, topic)

    def _unsubscribe(self, ps: Any, topic: str) -> None:
        if topic not in self.hub._topics:   # not subscribed again meanwhile
            self._send(ps, "unsubscribe", channel(topic))

    def close(self) -> None:
        self._closing = True
        if gevent.get_hub() is getcurrent():
            self._reader.kill(block=False)
        else:
            self._reader.kill(block=True, timeout=2.0)
        with contextlib.suppress(Exception):
            self._client.close()
        with contextlib.suppress(Exception):
            self._sub_client.close()

    # -- the reader greenlet ------------------------------------------------------------
    def _send(self, ps: Any, command: str, name: bytes) -> None:
        try:
            getattr(ps, command)(name)
        except (self._redis.RedisError, OSError) as exc:
            # The reader sees the same failure and reconnects; the topic is
            # subscribed again then, from the hub's list.
            log.debug("%s %r on %s failed: %s", command, name, self.safe_url, exc)

    def _read_forever(self) -> None:
        backoff = BACKOFF_START
        lost_at: Optional[float] = None
        tries = 0
        while not self._closing:
            ps = self._sub_client.pubsub()
            try:
                names = [channel(t) for t in self.hub.topics()] + [CONTROL]
                ps.subscribe(*names)
                self._ps = ps
                self._read(ps, lost_at, set(names))
            except (self._redis.RedisError, OSError, ValueError) as exc:
                self._ps = None
                if self._closing:
                    return
                self.last_error = str(exc) or type(exc).__name__
                tries += 1
                if self.connected:
                    lost_at = time.monotonic()
                    log.error("lost the connection to %s: %s; reconnecting in %.2g s "
                              "(subscribers stay open; publish fails until then)",
                              self.safe_url, self.last_error, backoff)
                elif lost_at is None and tries == 1:
                    log.error("cannot reach %s: %s; retrying in %.2g s "
                              "(publish fails until then)", self.safe_url, self.last_error, backoff)
                else:
                    log.warning("still cannot reach %s: %s; retrying in %.2g s",
                                self.safe_url, self.last_error, backoff)
                self.connected = False
                self._first.set()
                for event in self._confirmed.values():
                    event.set()    # nobody waits for a confirmation that cannot come
                self._confirmed.clear()
                gevent.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            finally:
                self._ps = None
                with contextlib.suppress(Exception):
                    ps.close()
            backoff, tries = BACKOFF_START, 0

    def _read(self, ps: Any, lost_at: Optional[float], sent: Set[bytes]) -> None:
        hub = self.hub
        last_heard = time.monotonic()
        pinged = False
        while not self._closing:
            item = ps.get_message(timeout=1.0)
            now = time.monotonic()
            if item is None:
                if now - last_heard > PING_AFTER + PING_WAIT:
                    raise self._redis.ConnectionError(
                        f"no answer to PING within {PING_WAIT:g} s")
                if not pinged and now - last_heard > PING_AFTER:
                    ps.ping()
                    pinged = True
                continue
            last_heard, pinged = now, False
            kind = item["type"]
            if kind == "message":
                try:
                    message = decode(item["data"])
                except ValueError as exc:
                    log.error("ignoring a message on %r from %s: %s",
                              item["channel"], self.safe_url, exc)
                    continue
                hub._enqueue(topic_of(item["channel"]), message)
            elif kind == "subscribe":
                name = item["channel"]
                if name == CONTROL and not self.connected:
                    # Topics added while the SUBSCRIBE above was on its way.
                    missing = {channel(t) for t in hub.topics()} - sent
                    if missing:
                        ps.subscribe(*missing)
                    self.connected = True
                    self._first.set()
                    self.last_error = None
                    topics = len(hub.topics())
                    if lost_at is None:
                        log.info("subscribed to %s (%d topics)", self.safe_url, topics)
                    else:
                        log.info("reconnected to %s after %.1f s; %d topics subscribed again",
                                 self.safe_url, time.monotonic() - lost_at, topics)
                event = self._confirmed.pop(name, None)
                if event is not None:
                    event.set()
