"""What a running server is doing: ``server.stats()``, a plain dict.

Gauges are read from what the server keeps anyway (its connection registry,
its parked-connection tables, the worker pool); counters are plain integer
attributes of one :class:`Counters` object that the hot path increments
(one attribute add each: no lock, no clock, no allocation; a gevent process
runs its hub in one thread). Taking a snapshot walks the open channels once,
so it costs microseconds per open channel: call it once a second or per
scrape, not per request.

>>> sorted(empty_stats())[:4]
['app_calls_in_flight', 'app_calls_total', 'bytes_received_total', 'bytes_sent_total']
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

CHANNEL_KINDS = ("http_stream", "long_poll", "websocket", "sse")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Requests refused by gkit itself, by status: 503 a full queue; 400 a malformed
# request; 408 a head too slow; 413, 414, 431 the limits; 501 a transfer coding.
REFUSALS = ("400", "408", "413", "414", "431", "501", "503")

# The numeric fields, in a fixed order (the shared-memory layout of
# gkit.metrics): (key, label or None). Keys ending in _total are counters.
SCALARS = ("connections_open", "connections_idle", "connections_reading_head",
           "app_calls_in_flight", "requests_queued", "worker_slots", "app_calls_total",
           "bytes_received_total", "bytes_sent_total")
LABELLED = (("channels_open", CHANNEL_KINDS), ("responses_total", STATUS_CLASSES),
            ("refused_total", REFUSALS))
FIELDS: Tuple[Tuple[str, Optional[str]], ...] = tuple(
    [(key, None) for key in SCALARS]
    + [(key, label) for key, labels in LABELLED for label in labels])


class Counters:
    """The server's counters; the hot path adds to them, :func:`snapshot` reads them."""

    __slots__ = ("bytes_in", "bytes_out", "by_class", "refused")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.by_class = [0] * 6       # responses, indexed by status // 100
        self.refused: Dict[int, int] = {int(s): 0 for s in REFUSALS}

    def response(self, status: int) -> None:
        """A response with ``status`` started (head written)."""
        if 100 <= status < 600:
            self.by_class[status // 100] += 1

    def refuse(self, status: int) -> None:
        """gkit answered ``status`` itself, refusing a request."""
        if status in self.refused:
            self.refused[status] += 1
        self.response(status)


def empty_stats() -> Dict[str, Any]:
    """A stats dict with every field zero (the shape of :func:`snapshot`)."""
    out: Dict[str, Any] = {key: 0 for key in SCALARS}
    for key, labels in LABELLED:
        out[key] = dict.fromkeys(labels, 0)
    out["status"] = "stopped"
    out["hub"] = None
    return out


def snapshot(server: Any) -> Dict[str, Any]:
    """``server.stats()`` of a ``gkit.server.Server``: see the README's
    "Seeing inside" section for each field."""
    counters = server.counters
    channels = dict.fromkeys(CHANNEL_KINDS, 0)
    for conn in server.connections:
        ex = conn.exchange
        if ex is not None and ex.channel is not None and not ex.channel_ended \
                and ex.channel.is_open:
            kind = ex.channel.kind
            channels[kind] = channels.get(kind, 0) + 1
    pool = server.pool
    deadlines = server.deadlines
    hub = getattr(server, "pubsub", None)  # gkit.hub's Hub, when the server opened one
    return {
        "status": server.status,
        "connections_open": len(server.connections),
        "connections_idle": len(deadlines.idle),
        "connections_reading_head": len(deadlines.head),
        "app_calls_in_flight": server.busy,
        "requests_queued": pool.waiting,
        "worker_slots": pool.size,  # None: no limit
        "channels_open": channels,
        "app_calls_total": server.requests,
        "responses_total": dict(zip(STATUS_CLASSES, counters.by_class[1:])),
        "refused_total": {str(s): n for s, n in counters.refused.items()},
        "bytes_received_total": counters.bytes_in,
        "bytes_sent_total": counters.bytes_out,
        "hub": hub_stats(hub) if hub is not None else None,
    }


def hub_stats(hub: Any) -> Dict[str, Any]:
    """What the broadcast hub says of itself: its own ``stats()`` if it has
    one, else its engine, whether it is connected, its topics and their
    subscribers (read through its public methods)."""
    own = getattr(hub, "stats", None)
    if callable(own):
        return dict(own())
    out: Dict[str, Any] = {"engine": getattr(hub, "scheme", None)}
    if hasattr(hub, "connected"):
        out["connected"] = int(bool(hub.connected() if callable(hub.connected)
                                    else hub.connected))
    if hasattr(hub, "topics"):
        topics = list(hub.topics())
        out["topics"] = len(topics)
        if hasattr(hub, "subscribers"):
            out["subscribers"] = sum(hub.subscribers(t) for t in topics)
    return out


def flatten(stats: Dict[str, Any]) -> List[int]:
    """The numeric fields of ``stats`` in :data:`FIELDS` order."""
    out = []
    for key, label in FIELDS:
        value = stats[key] if label is None else stats[key].get(label, 0)
        out.append(-1 if value is None else int(value))  # worker_slots None: no limit
    return out


def unflatten(values: Iterable[int]) -> Dict[str, Any]:
    """The inverse of :func:`flatten` (``status`` and ``hub`` left empty)."""
    out = empty_stats()
    for (key, label), value in zip(FIELDS, values):
        if label is None:
            out[key] = None if value < 0 else value
        else:
            out[key][label] = value
    return out


def is_counter(key: str) -> bool:
    return key.endswith("_total")
