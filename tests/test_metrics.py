"""Prometheus metrics on their own listener (``metrics_bind``), scraped over
real sockets and parsed with ``prometheus_client``'s own parser: the
listener answers while every worker slot is busy and the queue is full;
with ``--workers 2`` the totals cover both workers and survive one dying.
"""
from __future__ import annotations

import os
import re
import signal
from typing import Any, Dict, Iterator, Tuple

import pytest
import requests
from apps_cli import GkitRunner, run_gkit
from helpers import RawConn, poll_until, request

pytest.importorskip("prometheus_client", reason="pip install 'gkit[metrics]'")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

LOCAL = ("--ip", "127.0.0.1", "--port", "0")


@pytest.fixture
def gkit() -> Iterator[GkitRunner]:
    yield from run_gkit()


Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    resp = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def until(port: int, check: Any, timeout: float = 10.0) -> Samples:
    return poll_until(lambda: scrape(port), check, timeout, "metrics", interval=0.05)


def test_answers_while_every_slot_is_busy_and_the_queue_full(serve: Any) -> None:
    release = serve.event()

    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        release.wait()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app, thread=2, queue_size=1, metrics_bind="127.0.0.1:0")
    port = server.metrics.port
    assert port not in (0, server.port)
    held = [RawConn(server.port) for _ in range(3)]
    for conn in held:
        conn.send(request())
    samples = until(port, lambda s: s[("gkit_requests_queued", ())] == 1)
    with RawConn(server.port) as full:
        full.send(request())
        assert full.read_response().status == 503
    samples = scrape(port)
    assert samples[("gkit_app_calls_in_flight", ())] == 2
    assert samples[("gkit_worker_slots", ())] == 2
    assert samples[("gkit_connections_open", ())] == 3
    assert samples[("gkit_requests_refused_total", (("status", "503"),))] == 1
    assert samples[("gkit_requests_total", (("status_class", "5xx"),))] == 1
    assert samples[("gkit_workers", ())] == 1
    release.set()
    for conn in held:
        assert conn.read_response().body == b"ok"
        conn.close()
    samples = until(port, lambda s: s[("gkit_connections_open", ())] == 0)
    assert samples[("gkit_requests_total", (("status_class", "2xx"),))] == 3
    assert samples[("gkit_app_calls_total", ())] == 3
    assert samples[("gkit_received_bytes_total", ())] == 4 * len(request())
    server.stop()
    with pytest.raises(requests.ConnectionError):  # the listener stops with the server
        scrape(port)


def test_metrics_port_cannot_be_the_apps() -> None:
    from gkit.config import make_config
    from gkit.errors import ConfigError

    with pytest.raises(ConfigError, match="is the app's own address"):
        make_config(ip="127.0.0.1", port=8090, metrics_bind="127.0.0.1:8090")
    with pytest.raises(ConfigError, match="give HOST:PORT"):
        make_config(metrics_bind="unix:/tmp/m")


def _facts(url: str) -> Dict[str, Any]:
    resp = requests.get(url + "/", headers={"Connection": "close"}, timeout=10)
    assert resp.status_code == 200
    return resp.json()


@pytest.mark.timeout(60)
def test_workers_totals_cover_both_and_survive_a_death(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--workers", "2", "--metrics-bind", "127.0.0.1:0")
    port = int(proc.wait_line(r"Metrics at: http://127\.0\.0\.1:(\d+)/metrics").group(1))
    proc.wait_line(r"worker serving .*")
    pids: Dict[int, int] = {}
    while len(pids) < 2 or sum(pids.values()) < 20:  # requests spread over both workers
        pid = _facts(proc.url)["pid"]
        pids[pid] = pids.get(pid, 0) + 1
        assert sum(pids.values()) < 2000, "one worker took every connection"
    total = sum(pids.values())
    two_xx = ("gkit_requests_total", (("status_class", "2xx"),))
    samples = until(port, lambda s: s[("gkit_app_calls_total", ())] == total)
    assert samples[two_xx] == total
    assert samples[("gkit_workers", ())] == 2
    from gkit.config import Config
    assert samples[("gkit_worker_slots", ())] == 2 * Config().thread  # the default, twice
    # A worker dies: the master keeps its counters; a new one takes its place.
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    proc.wait_line(rf"worker {victim} killed by SIGKILL")
    samples = until(port, lambda s: s[("gkit_workers", ())] == 2)
    assert samples[("gkit_app_calls_total", ())] == total
    assert samples[two_xx] == total
    assert proc.stop() == 0, proc.stderr


def test_cli_metrics_bind_errors(gkit: Any) -> None:
    proc = gkit("apps_cli:app", "-b", "127.0.0.1:0", "--metrics-bind", "nonsense:x", ready=False)
    assert proc.wait() == 2
    assert re.search(r"gkit: error: metrics_bind 'nonsense:x': the port must be an integer",
                     proc.stderr), proc.stderr


def test_hub_gauges() -> None:
    from gkit.metrics import exposition
    from gkit.stats import empty_stats

    stats = dict(empty_stats(), hub={"engine": "redis", "connected": 1, "topics": 2,
                                     "subscribers": 4})
    text = exposition(lambda: stats)
    assert "gkit_hub_topics 2.0" in text and "gkit_hub_subscribers 4.0" in text
    assert "gkit_hub_connected 1.0" in text and "engine" not in text
