"""gkit.hub: publish to channels across greenlets, threads, processes and machines.

A hub is opened from a URL: ``memory://`` (the default) keeps topics in this
process; ``redis://host:port/db`` shares them through Redis pub/sub with every
process that opens the same URL. A server opens one at start (option ``hub``,
CLI ``--hub``, env ``GKIT_HUB``) and closes it at stop; the app reaches it with
the module-level functions::

    import gkit.hub

    def app(environ, start_response):
        ch = gkit.with_channel(environ)
        gkit.hub.subscribe("news", ch)        # dropped by itself once closed
        return ch

    gkit.hub.publish("news", "hello")          # any greenlet or thread
    gkit.hub.publish_to("redis://127.0.0.1:6379/0", "news", "hi")  # any process

Delivery is at-most-once: a message published while Redis is unreachable
raises :class:`gkit.HubUnavailable` and reaches no one.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional

from gevent._hub_local import get_hub_if_exists

from ..errors import ConfigError, HubUnavailable
from .core import Hub
from .wire import Message, channel, check_message, check_topic, check_url, decode, encode, redact

__all__ = ["Hub", "open", "current", "publish", "subscribe", "unsubscribe", "publish_to",
           "resolve_url", "HubUnavailable", "encode", "decode", "channel"]

DEFAULT_URL = "memory://"
ENV = "GKIT_HUB"

_open: Dict[str, Hub] = {}       # URL -> the open hub of this process
_servers: List[Hub] = []         # hubs of running servers, the last started last
_default: Optional[Hub] = None   # opened by current() when no server runs


def resolve_url(url: Optional[str] = None) -> str:
    """``url``, else ``$GKIT_HUB``, else ``memory://``; checked (no I/O).
    ``memory://NAME`` names a separate in-process hub (tests, isolation).

    >>> resolve_url("memory://")
    'memory://'
    """
    if url is None:
        url = os.environ.get(ENV, "").strip() or DEFAULT_URL
    return check_url(url)[1]


def open(url: Optional[str] = None) -> Hub:  # noqa: A001 (gkit.hub.open, like io.open)
    """The hub for ``url`` (see :func:`resolve_url`) in this process: opened
    on the first call, shared after it; each call takes one reference that
    :meth:`Hub.close` gives back. Call it from the server's loop (a greenlet).

    >>> hub = open("memory://doctest")
    >>> hub.scheme, hub.connected, hub is open("memory://doctest")
    ('memory', True, True)
    >>> hub.close(); hub.close(); hub.closed
    True
    """
    url = resolve_url(url)
    hub = _open.get(url)
    if hub is not None and not hub.closed:
        hub._refs += 1
        return hub
    if _open and get_hub_if_exists() is None:
        raise RuntimeError(f"gkit.hub.open({url!r}) from a thread that runs no gevent loop: "
                           f"open it in the server's loop (at start or in a view) and hand the "
                           f"Hub to the thread, or use gkit.hub.publish_to(url, ...) here")
    hub = _open[url] = Hub(url, check_url(url)[0])
    hub.on_closed = _forget_hub
    return hub


def _forget_hub(hub: Hub) -> None:
    if _open.get(hub.url) is hub:
        del _open[hub.url]
    while hub in _servers:
        _servers.remove(hub)


def attach(url: Optional[str]) -> Hub:
    """Open the hub of a server that starts (``gkit.Server.start`` calls this):
    it becomes :func:`current` until that server stops and closes it."""
    hub = open(url)
    _servers.append(hub)
    return hub


def detach(hub: Hub) -> None:
    """A server stops: give back its hub (``gkit.Server.stop`` calls this)."""
    if hub in _servers:
        _servers.remove(hub)
    hub.close()


def current() -> Hub:
    """The hub of the running server (the last one started in this process),
    else a hub for ``$GKIT_HUB`` or ``memory://``, opened once and kept.

    >>> current().publish("nobody-listens", "fine")  # doctest: +SKIP
    """
    global _default
    if _servers:
        return _servers[-1]
    if _default is None or _default.closed:
        _default = open(None)
    return _default


def publish(topic: str, message: Message) -> None:
    """``current().publish(topic, message)``: see :meth:`Hub.publish`."""
    current().publish(topic, message)


def subscribe(topic: str, target: Any, *, close_after_send: Optional[bool] = None) -> None:
    """``current().subscribe(...)``: see :meth:`Hub.subscribe`."""
    current().subscribe(topic, target, close_after_send=close_after_send)


def unsubscribe(topic: str, target: Any) -> bool:
    """``current().unsubscribe(topic, target)``."""
    return current().unsubscribe(topic, target)


_clients: Dict[str, Any] = {}
_clients_lock = threading.Lock()


def publish_to(url: str, topic: str, message: Message) -> int:
    """Publish from any process, with no server and no gevent loop: a cron
    job, a Celery task, a script. Returns how many gkit processes were
    subscribed to ``topic`` (Redis's answer). Raises HubUnavailable naming
    the URL when Redis cannot be reached.

    >>> publish_to("redis://127.0.0.1:6379/0", "news", "hi")  # doctest: +SKIP
    3
    """
    scheme, url = check_url(url)
    if scheme == "memory":
        raise ConfigError("publish_to needs a hub shared between processes (redis://host:port/db); "
                          "memory:// lives inside one server: use gkit.hub.publish there")
    topic, message = check_topic(topic), check_message(message)
    from .redis import client
    with _clients_lock:
        redis_client = _clients.get(url)
        if redis_client is None:
            redis_client = _clients[url] = client(url)
    import redis
    try:
        return int(redis_client.publish(channel(topic), encode(message)))
    except redis.RedisError as exc:
        raise HubUnavailable(f"cannot publish to topic {topic!r}: the hub {redact(url)} is "
                             f"unreachable ({exc}); nothing was delivered") from exc
