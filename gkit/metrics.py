"""Prometheus metrics on their own listener: option ``metrics_bind``
(``--metrics-bind HOST:PORT``), never the app's port.

The listener is answered by gkit itself, in a greenlet per scrape connection
(gevent's WSGI server running ``prometheus_client``'s exposition app), not
by an app call: a full worker pool or queue cannot block it. The numbers
come from ``server.stats()`` (see :mod:`gkit.stats`); with ``--workers N``
from every worker, summed (:mod:`gkit.sharedstats`). Needs the optional
``prometheus_client`` package: ``pip install 'gkit[metrics]'``.

Metric names (see :data:`GAUGES` and :data:`COUNTERS`)::

    gkit_connections_open, gkit_connections_idle, gkit_connections_reading_head,
    gkit_app_calls_in_flight, gkit_requests_queued, gkit_worker_slots,
    gkit_channels_open{kind}, gkit_workers,
    gkit_app_calls_total, gkit_requests_total{status_class},
    gkit_requests_refused_total{status}, gkit_received_bytes_total, gkit_sent_bytes_total

>>> from gkit.stats import empty_stats
>>> text = exposition(lambda: empty_stats())
>>> print(text.split("\\n# HELP gkit_requests_total")[1].splitlines()[2])
gkit_requests_total{status_class="1xx"} 0.0
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .errors import ConfigError

error_log = logging.getLogger("gkit.error")

Source = Callable[[], Dict[str, Any]]

# (stats key, metric name, help)
GAUGES: Tuple[Tuple[str, str, str], ...] = (
    ("connections_open", "gkit_connections_open",
     "Open client connections (idle, in a request, or held by a channel)."),
    ("connections_idle", "gkit_connections_idle",
     "Keep-alive connections parked between requests (no greenlet)."),
    ("connections_reading_head", "gkit_connections_reading_head",
     "Connections parked in the middle of a request head."),
    ("app_calls_in_flight", "gkit_app_calls_in_flight",
     "App calls running, each holding a worker slot."),
    ("requests_queued", "gkit_requests_queued", "Requests waiting for a free worker slot."),
    ("worker_slots", "gkit_worker_slots",
     "Worker slots (the thread option), over all processes; absent when unlimited."),
)
# (stats key, metric name without _total, help, label)
COUNTERS: Tuple[Tuple[str, str, str, Optional[str]], ...] = (
    ("app_calls_total", "gkit_app_calls", "App calls started.", None),
    ("responses_total", "gkit_requests",
     "Requests answered (response heads written, 101 included), by status class.",
     "status_class"),
    ("refused_total", "gkit_requests_refused",
     "Requests gkit refused itself, by status (503: the queue was full; 400, 408, 413, "
     "414, 431, 501: a bad or too large request).", "status"),
    ("bytes_received_total", "gkit_received_bytes", "Bytes received from clients.", None),
    ("bytes_sent_total", "gkit_sent_bytes", "Bytes sent to clients.", None),
)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("metrics_bind needs the prometheus_client package: "
                          "pip install 'gkit[metrics]'") from None
    return prometheus_client


class StatsCollector:
    """A ``prometheus_client`` collector reading a stats dict from ``source``
    at each scrape."""

    def __init__(self, source: Source, workers: Optional[Callable[[], int]] = None) -> None:
        self.source = source
        self.workers = workers or (lambda: 1)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.source()
        for key, name, text in GAUGES:
            if stats.get(key) is not None:
                yield GaugeMetricFamily(name, text, value=stats[key])
        channels = GaugeMetricFamily("gkit_channels_open", "Open channels, by kind.",
                                     labels=["kind"])
        for kind, count in stats["channels_open"].items():
            channels.add_metric([kind], count)
        yield channels
        yield GaugeMetricFamily("gkit_workers", "Server processes whose numbers are summed here.",
                                value=self.workers())
        for key, name, text, label in COUNTERS:
            if label is None:
                yield CounterMetricFamily(name, text, value=stats[key])
                continue
            family = CounterMetricFamily(name, text, labels=[label])
            for value, count in stats[key].items():
                family.add_metric([value], count)
            yield family
        hub = stats.get("hub")
        if isinstance(hub, dict):
            for key, value in hub.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    yield GaugeMetricFamily(f"gkit_hub_{key}", f"Broadcast hub: {key}.",
                                            value=value)


def registry(source: Source, workers: Optional[Callable[[], int]] = None) -> Any:
    """A ``CollectorRegistry`` holding only gkit's collector."""
    client = _client()
    reg = client.CollectorRegistry(auto_describe=False)
    reg.register(StatsCollector(source, workers))
    return reg


def exposition(source: Source) -> str:
    """The Prometheus text exposition of ``source()``'s stats."""
    return str(_client().generate_latest(registry(source)).decode())


class MetricsListener:
    """gkit's metrics endpoint on ``sock`` (a listening gevent socket): any
    path answers the exposition (``/metrics`` by convention)."""

    def __init__(self, sock: Any, source: Source,
                 workers: Optional[Callable[[], int]] = None) -> None:
        from gevent.pywsgi import LoggingLogAdapter, WSGIServer

        app = _client().make_wsgi_app(registry(source, workers))
        self.address = sock.getsockname()
        self._server = WSGIServer(sock, app, log=None,
                                  error_log=LoggingLogAdapter(error_log, logging.ERROR))
        self._server.start()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def close(self) -> None:
        self._server.stop(timeout=1)


def bind(address: str, backlog: int = 128) -> Any:
    """A listening, non-blocking gevent socket on ``HOST:PORT`` (or ``[V6]:PORT``)."""
    from gevent import socket as gsocket

    from .listen import Bind, _bind_tcp, parse_bind

    where: Bind = parse_bind(address)
    sock = _bind_tcp(where, where.port or 0, backlog, False)
    gsock = gsocket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    gsock.setblocking(False)
    return gsock


def serve_for(server: Any) -> MetricsListener:
    """The metrics listener of one in-process server (``run_server(metrics_bind=...)``)."""
    _client()  # a clear error before binding
    return MetricsListener(bind(server.config.metrics_bind), server.stats)


__all__: List[str] = ["GAUGES", "COUNTERS", "StatsCollector", "MetricsListener", "bind",
                      "exposition", "registry", "serve_for"]
