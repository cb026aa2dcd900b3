"""The hub: topics, local subscribers, fan-out, and hand-over from threads.

One :class:`Hub` per URL per process. Subscribers live here, in the process
that holds their connections; an engine carries published messages to every
process's hub: ``memory://`` straight into this fan-out, ``redis://`` through
Redis pub/sub (``redis.py``). Publishes from other processes arrive the same
way as local ones, so every subscriber sees one order per publisher.

Fan-out runs in one greenlet per hub, one message after another (that keeps
order), and yields to the loop every :data:`BATCH` subscribers, so a publish
to 10,000 channels never holds the server for the whole fan-out.
``Channel.send`` never blocks: a slow client's bytes queue on its own channel
(closed past ``max_buffered``), not in front of the others.
"""
from __future__ import annotations

import functools
import logging

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import gevent
from gevent._hub_local import get_hub_if_exists
from gevent.monkey import get_original
from greenlet import GreenletExit, getcurrent

from ..errors import HubUnavailable
from .wire import Message, check_message, check_topic, redact

log = logging.getLogger("gkit.hub")

BATCH = 256          # subscribers served between two yields to the loop
SWEEP_EVERY = 30.0   # seconds between sweeps dropping closed channels
THREAD_WAIT = 10.0   # seconds a foreign thread waits for a broker's answer

_allocate_lock = get_original("_thread", "allocate_lock")   # a real OS lock

Send = Callable[[Message], Any]


class _Outcome:
    """What a foreign OS thread waits for: a real lock, released in the loop."""

    __slots__ = ("lock", "error")

    def __init__(self) -> None:
        self.lock = _allocate_lock()
        self.lock.acquire()
        self.error: Optional[BaseException] = None


class Hub:
    """Topics and their subscribers in this process; see :func:`gkit.hub.open`.

    >>> import gkit.hub
    >>> hub = gkit.hub.open("memory://doctest")   # memory://NAME: a hub of its own
    >>> got = []
    >>> hub.subscribe("news", got.append)
    >>> hub.publish("news", "hello")
    >>> gevent.sleep(0.01); got
    ['hello']
    >>> hub.close()
    """

    def __init__(self, url: str, scheme: str) -> None:
        self.url = url
        self.safe_url = redact(url)
        self.scheme = scheme
        self.closed = False
        self._refs = 1
        self.on_closed: Optional[Callable[["Hub"], None]] = None  # gkit.hub's registry
        self._loop_hub = gevent.get_hub()
        self._topics: Dict[str, Dict[Any, Tuple[Send, bool]]] = {}
        self.engine: Any = None
        if scheme != "memory":   # first: a missing redis-py fails before anything starts
            from .redis import RedisEngine
            self.engine = RedisEngine(self, url)
        self._queue: Deque[Tuple[str, Message]] = deque()
        # The fan-out greenlet exists only while there is something to deliver:
        # an idle hub holds no greenlet (and a Ctrl-C cannot land in one).
        self._fanout: Optional[gevent.Greenlet] = None
        # Foreign threads append to _inbox (deque.append is atomic) and send
        # the async watcher, the one loop object that is safe to poke from
        # another thread; its callback runs in the loop and starts a greenlet.
        self._inbox: Deque[Tuple[Callable[..., Any], Tuple[Any, ...], Optional[_Outcome]]] = deque()
        self._async = self._loop_hub.loop.async_()
        self._async.start(self._from_threads)
        self._inbox_runner: Optional[gevent.Greenlet] = None
        self._sweeper = self._loop_hub.loop.timer(SWEEP_EVERY, SWEEP_EVERY)
        self._sweeper.start(self._sweep)

    # -- public API ------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Does this process receive what others publish? (memory://: always.)"""
        return self.engine is None or self.engine.connected

    def topics(self) -> List[str]:
        """Topics with at least one subscriber in this process."""
        return list(self._topics)

    def subscribers(self, topic: str) -> int:
        """Subscribers of ``topic`` in this process (closed channels not yet dropped count)."""
        return len(self._topics.get(topic, ()))

    def subscribe(self, topic: str, target: Any, *,
                  close_after_send: Optional[bool] = None) -> None:
        """Deliver every message published on ``topic`` to ``target``: a channel
        (``target.send(message)``; dropped once closed) or a callable
        (``target(message)``, run in the fan-out greenlet: it must not block).
        ``close_after_send`` is passed to ``send`` when given: ``False`` keeps an
        HTTP streaming response open (one chunk per message).

        With Redis, returns once Redis confirmed the topic's subscription (at
        most a few seconds; at once while Redis is down: it is restored later).
        """
        if not self._in_loop():
            call = functools.partial(self.subscribe, close_after_send=close_after_send)
            self._handoff(call, (topic, target), wait=True)
            return
        topic = check_topic(topic)
        if hasattr(target, "send") and hasattr(target, "is_open"):
            send: Send = target.send if close_after_send is None else functools.partial(
                target.send, close_after_send=close_after_send)
            entry = (send, True)
        elif callable(target):
            entry = (target, False)
        else:
            raise TypeError(f"cannot subscribe {type(target).__name__}: give a channel "
                            f"(anything with send() and is_open) or a callable")
        subs = self._topics.get(topic)
        if subs is None:
            subs = self._topics[topic] = {}
            subs[target] = entry
            if self.engine is not None:
                self.engine.topic_added(topic)
        else:
            subs[target] = entry

    def unsubscribe(self, topic: str, target: Any) -> bool:
        """Stop delivering ``topic`` to ``target``; False if it was not subscribed."""
        if not self._in_loop():
            found: List[bool] = []
            self._handoff(lambda t, x: found.append(self.unsubscribe(t, x)), (topic, target),
                          wait=True)
            return bool(found and found[0])
        subs = self._topics.get(topic)
        if subs is None or subs.pop(target, None) is None:
            return False
        if not subs:
            self._forget(topic)
        return True

    def publish(self, topic: str, message: Message) -> None:
        """Send ``message`` (str: text, bytes: binary) to every subscriber of
        ``topic`` in every process sharing this hub; returns without waiting
        for the fan-out. Safe from any greenlet and from any OS thread.
        Raises :class:`gkit.HubUnavailable` when the broker cannot take it.
        """
        topic = check_topic(topic)
        message = check_message(message)
        if self.closed:
            raise HubUnavailable(f"cannot publish to {topic!r}: the hub {self.safe_url} is closed")
        if self.engine is None:
            if self._in_loop():
                self._enqueue(topic, message)
            else:  # another thread (or the loop itself): hand it over, in order
                self._handoff(self._enqueue, (topic, message), wait=False)
            return
        if self._in_loop():
            self.engine.publish(topic, message)
        else:
            self._handoff(self.engine.publish, (topic, message), wait=True)

    def close(self) -> None:
        """Release this reference; the last one stops the fan-out and the engine."""
        self._refs -= 1
        if self._refs > 0 or self.closed:
            return
        self.closed = True
        if self.on_closed is not None:
            self.on_closed(self)
        if self.engine is not None:
            self.engine.close()
        if self._fanout is not None:
            self._fanout.kill(block=False)
        self._sweeper.stop()
        self._sweeper.close()
        self._async.stop()
        self._async.close()
        self._topics.clear()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self.connected else "disconnected")
        return f"<gkit.hub.Hub {self.safe_url} {state} topics={len(self._topics)}>"

    # -- fan-out ---------------------------------------------------------------------
    def _enqueue(self, topic: str, message: Message) -> None:
        """A message for this process's subscribers (in the loop's thread)."""
        if topic in self._topics:
            self._queue.append((topic, message))
            if self._fanout is None:
                self._fanout = gevent.spawn(self._fan_out)
                self._fanout.name = "gkit.hub fan-out"

    def _fan_out(self) -> None:
        """Deliver queued messages one after another, then end."""
        queue = self._queue
        try:
            while queue:
                topic, message = queue.popleft()
                self._deliver(topic, message)
        finally:
            self._fanout = None

    def _deliver(self, topic: str, message: Message) -> None:
        subs = self._topics.get(topic)
        if not subs:
            return
        dead: List[Any] = []
        count = 0
        for target, (send, is_channel) in list(subs.items()):
            count += 1
            if count > BATCH:
                count = 1
                gevent.sleep(0)   # let the loop serve I/O and other greenlets
            if is_channel:
                if not target.is_open or send(message) is False or not target.is_open:
                    dead.append(target)
                continue
            try:
                send(message)
            except GreenletExit:
                raise
            except BaseException:  # an app's error, logged; never the fan-out's end
                log.exception("error in the hub subscriber %r of topic %r", target, topic)
        for target in dead:
            self.unsubscribe(topic, target)

    def _sweep(self) -> None:  # in the loop, every SWEEP_EVERY s: drop closed channels
        for topic, subs in list(self._topics.items()):
            dead = [t for t, (_, is_channel) in subs.items() if is_channel and not t.is_open]
            for target in dead:
                del subs[target]
            if not subs:
                self._forget(topic)

    def _forget(self, topic: str) -> None:
        self._topics.pop(topic, None)
        if self.engine is not None:
            self.engine.topic_removed(topic)

    # -- threads -----------------------------------------------------------------------
    def _in_loop(self) -> bool:
        """In a greenlet of this hub's loop (which may block), not in the loop
        itself nor in another OS thread?"""
        current = get_hub_if_exists()
        return current is self._loop_hub and getcurrent() is not current

    def _handoff(self, fn: Callable[..., Any], args: Tuple[Any, ...], wait: bool) -> None:
        in_thread = get_hub_if_exists() is not self._loop_hub
        outcome = _Outcome() if (wait and in_thread) else None
        self._inbox.append((fn, args, outcome))
        self._async.send()
        if outcome is None:
            return None
        if not outcome.lock.acquire(True, THREAD_WAIT):
            raise HubUnavailable(f"the hub {self.safe_url} did not take the call within "
                                 f"{THREAD_WAIT} s (is its server's loop running?)")
        if outcome.error is not None:
            raise outcome.error
        return None

    def _from_threads(self) -> None:  # the async watcher, in the loop
        if self._inbox_runner is None:
            self._inbox_runner = gevent.spawn(self._run_inbox)

    def _run_inbox(self) -> None:
        try:
            while self._inbox:
                fn, args, outcome = self._inbox.popleft()
                try:
                    fn(*args)
                except Exception as exc:
                    if outcome is None:
                        log.error("a call handed to the hub from another thread failed: %s", exc)
                    else:
                        outcome.error = exc
                finally:
                    if outcome is not None:
                        outcome.lock.release()
        finally:
            self._inbox_runner = None
            if self._inbox:  # appended after the loop looked: run those too
                self._async.send()


