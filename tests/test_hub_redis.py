"""gkit.hub through a real redis-server: two gkit processes (one of them with
--workers 3) with WebSocket, streaming and long-poll subscribers; publishes
from a view, from a real OS thread in a server and from a plain Python process
with no server; Redis killed and started again.

Needs the ``redis-server`` binary and redis-py; skips without them, fails
without them under GKIT_REQUIRE_ALL=1.
"""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Iterator, List, Tuple

import gevent
import pytest
import requests
from apps_cli import REPO, GkitRunner, run_gkit
from helpers import RawConn, request
from wshelpers import BINARY, PING, PONG, TEXT, RawWs

sys.path.insert(0, REPO)
from examples.chat.testing import RedisProcess, redis_server_path, require  # noqa: E402

import gkit.hub  # noqa: E402
from gkit import HubUnavailable  # noqa: E402

pytestmark = pytest.mark.timeout(90)
APP = "apps.hub_app:app"
RESUME_BOUND = 8.0   # seconds from Redis answering again to delivery resuming


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    require(redis_server_path() is not None,
            "redis-server not found (Debian: apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        require(False, "redis-py is not installed (pip install 'gkit[redis]')")
    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gk() -> Iterator[GkitRunner]:
    yield from run_gkit()


def start(gk: GkitRunner, url: str, *args: str) -> Any:
    return gk(APP, "--ip", "127.0.0.1", "--port", "0", "--hub", url, *args)


def port(proc: Any) -> int:
    return int(proc.url.rsplit(":", 1)[1])


class Stream:
    """An HTTP streaming subscriber: one chunk per message."""

    def __init__(self, p: int, topic: str) -> None:
        self.conn = RawConn(p)
        self.conn.send(request("GET", f"/stream?topic={topic}"))
        head = self.conn.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        self.buf = self.conn.read_some().split(b"\r\n\r\n", 1)[1]
        assert self.chunk().startswith(b"subscribed ")

    def chunk(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            line_end = self.buf.find(b"\r\n")
            if line_end >= 0:
                size = int(self.buf[:line_end], 16)
                end = line_end + 2 + size + 2
                if len(self.buf) >= end:
                    data, self.buf = self.buf[line_end + 2:end - 2], self.buf[end:]
                    return data
            self.buf += self.conn.read_some(timeout=max(0.01, deadline - time.monotonic()))


def ws_message(ws: RawWs, timeout: float = 10.0) -> Any:
    f = ws.recv_frame(timeout=timeout)
    assert f.opcode in (TEXT, BINARY), f
    return f.payload.decode() if f.opcode == TEXT else f.payload


def subscribe_ws(p: int, topic: str) -> Tuple[RawWs, int]:
    ws = RawWs(p, f"/ws?topic={topic}")
    first = ws_message(ws)
    assert first.startswith("subscribed ")
    return ws, int(first.split()[1])


def publish_from_another_process(url: str, topic: str, messages: List[Any]) -> None:
    code = ("import sys, gkit.hub\n"
            "for m in sys.argv[3:]:\n"
            "    gkit.hub.publish_to(sys.argv[1], sys.argv[2], "
            "m[4:].encode() if m.startswith('bin:') else m)\n")
    subprocess.run([sys.executable, "-c", code, url, topic, *messages], cwd=REPO,
                   check=True, timeout=30)


def expected(source: str, n: int) -> List[Any]:
    return [f"{source}-{i}".encode() if i % 3 == 2 else f"{source}-{i}" for i in range(n)]


def as_query(messages: List[Any]) -> List[str]:
    return [("bin:" + m.decode()) if isinstance(m, bytes) else m for m in messages]


def test_every_subscriber_in_every_process_gets_every_message_once_in_order(
        redis_server: RedisProcess, gk: GkitRunner) -> None:
    url = redis_server.url
    one = start(gk, url)
    three = start(gk, url, "--workers", "3")
    topic = "news"
    sockets: List[RawWs] = []
    pids = set()
    for p, count in ((port(one), 2), (port(three), 6)):
        for _ in range(count):
            ws, pid = subscribe_ws(p, topic)
            sockets.append(ws)
            pids.add(pid)
    streams = [Stream(port(one), topic), Stream(port(three), topic), Stream(port(three), topic)]
    assert len(pids) >= 2, pids

    n = 12
    view, thread, proc = expected("view", n), expected("thread", n), expected("proc", n)
    r = requests.get(f"{one.url}/thread", params={"topic": topic, "msg": as_query(thread)},
                     timeout=10)
    assert r.status_code == 202
    r = requests.get(f"{three.url}/publish", params={"topic": topic, "msg": as_query(view)},
                     timeout=10)
    assert (r.status_code, r.text) == (200, f"published {n}")
    publish_from_another_process(url, topic, as_query(proc))

    def check(got: List[Any]) -> None:
        assert len(got) == 3 * n, got
        for source, messages in (("view", view), ("thread", thread), ("proc", proc)):
            mine = [m for m in got if (m.decode() if isinstance(m, bytes) else m)
                    .startswith(source + "-")]
            assert mine == messages, (source, got)   # once each, in order, str/bytes kept

    for ws in sockets:
        check([ws_message(ws) for _ in range(3 * n)])
    for stream in streams:
        raw = [stream.chunk() for _ in range(3 * n)]
        check([r if r.decode() in {m.decode() for m in view + thread + proc
                                   if isinstance(m, bytes)} else r.decode() for r in raw])

    # Long polls on both processes, each answered by exactly the next message.
    import redis
    ready = redis.Redis.from_url(url).pubsub()
    ready.subscribe(gkit.hub.channel("ready"))
    for round_, source in enumerate(("view", "thread", "proc")):
        polls = []
        for i, p in enumerate((port(one), port(three))):
            conn = RawConn(p)
            conn.send(request("GET", f"/poll?topic=lp&ready=r{round_}-{i}"))
            polls.append(conn)
        seen = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            item = ready.get_message(timeout=1.0)
            if item and item["type"] == "message":
                seen.add(gkit.hub.decode(item["data"]))
        assert seen == {f"r{round_}-0", f"r{round_}-1"}
        message = f"poll-{source}"
        if source == "view":
            requests.get(f"{one.url}/publish", params={"topic": "lp", "msg": message}, timeout=10)
        elif source == "thread":
            requests.get(f"{three.url}/thread", params={"topic": "lp", "msg": message}, timeout=10)
        else:
            publish_from_another_process(url, "lp", [message])
        for conn in polls:
            answer = conn.read_response()
            assert (answer.status, answer.body) == (200, message.encode())
            conn.close()
    ready.close()
    for ws in sockets:
        ws.close()
    for proc_ in (one, three):
        assert proc_.stop() == 0
        assert "Traceback" not in proc_.stderr, proc_.stderr


def test_redis_going_away_and_coming_back(redis_server: RedisProcess, gk: GkitRunner) -> None:
    url = redis_server.url
    server = start(gk, url)
    ws, _ = subscribe_ws(port(server), "alerts")
    stream = Stream(port(server), "alerts")
    r = requests.get(f"{server.url}/publish", params={"topic": "alerts", "msg": "before"},
                     timeout=10)
    assert r.status_code == 200 and ws_message(ws) == "before" and stream.chunk() == b"before"

    redis_server.stop()
    server.wait_line(rf"\[ERROR\] gkit\.hub: lost the connection to {url}: .*; reconnecting in ")
    r = requests.get(f"{server.url}/publish", params={"topic": "alerts", "msg": "lost"}, timeout=10)
    assert r.status_code == 503
    assert f"cannot publish to topic 'alerts': the hub {url} is unreachable" in r.text
    with pytest.raises(HubUnavailable, match=f"the hub {url} is unreachable"):
        gkit.hub.publish_to(url, "alerts", "lost too")
    ws.send_frame(PING, b"still here?")      # the subscribers stay open meanwhile
    assert (ws.recv_frame().opcode, ) == (PONG, )
    assert server.proc.poll() is None

    with RedisProcess(port=redis_server.port):
        back = time.monotonic()
        got = None
        while got is None:   # at-most-once: publishes before the resubscribe are lost
            assert time.monotonic() - back < RESUME_BOUND, server.stderr
            requests.get(f"{server.url}/publish", params={"topic": "alerts", "msg": "back"},
                         timeout=10)
            try:
                got = ws_message(ws, timeout=0.2)
            except AssertionError:
                pass
        assert got == "back"
        server.wait_line(rf"\[INFO\] gkit\.hub: reconnected to {url} after .* s; "
                         r"1 topics subscribed again")
        r = requests.get(f"{server.url}/publish", params={"topic": "alerts", "msg": "final"},
                         timeout=10)
        assert r.status_code == 200
        rest_ws, rest_stream = [ws_message(ws)], [stream.chunk()]
        while rest_ws[-1] != "final":
            rest_ws.append(ws_message(ws))
        while rest_stream[-1] != b"final":
            rest_stream.append(stream.chunk())
        # once back, nothing is lost: the stream got the first "back" too
        assert set(rest_ws[:-1]) <= {"back"} and set(rest_stream[:-1]) == {b"back"}
        ws.close()
        assert server.stop() == 0
    assert "Traceback" not in server.stderr, server.stderr


def test_gunicorn_workers_share_the_hub_named_by_GKIT_HUB(redis_server: RedisProcess) -> None:
    pytest.importorskip("gunicorn")
    from test_gunicorn import Gunicorn
    server = Gunicorn("-e", f"GKIT_HUB={redis_server.url}", workers=2,
                      app="tests.apps.hub_app:app")
    try:
        sockets, pids = [], set()
        for _ in range(8):
            ws, pid = subscribe_ws(server.port, "g")
            sockets.append(ws)
            pids.add(pid)
        assert gkit.hub.publish_to(redis_server.url, "g", "to all workers") == len(pids)
        for ws in sockets:
            assert ws_message(ws) == "to all workers"
            ws.close()
        assert "Traceback" not in server.log, server.log
    finally:
        assert server.stop() == 0


def test_an_in_process_redis_hub_resubscribes_and_pings(redis_server: RedisProcess,
                                                        monkeypatch: Any) -> None:
    from gkit.hub import redis as engine
    monkeypatch.setattr(engine, "PING_AFTER", 0.3)   # a quiet connection is pinged, not dropped
    hub = gkit.hub.open(redis_server.url)
    try:
        got: List[Any] = []
        for _ in range(5):      # unsubscribe and subscribe again at once: still subscribed
            hub.subscribe("flip", got.append)
            assert hub.unsubscribe("flip", got.append) is True
        hub.subscribe("flip", got.append)
        gevent.sleep(1.5)       # several PINGs answered meanwhile
        assert hub.connected
        gkit.hub.publish_to(redis_server.url, "flip", "once")
        hub.publish("flip", b"twice")
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert got == ["once", b"twice"]
    finally:
        hub.close()
    assert hub.closed and not hub.engine._reader


def test_a_burst_of_publishing_greenlets_shares_a_few_connections(
        redis_server: RedisProcess) -> None:
    import redis
    hub = gkit.hub.open(redis_server.url)
    try:
        got: List[Any] = []
        hub.subscribe("burst", got.append)
        jobs = [gevent.spawn(hub.publish, "burst", f"m{i}") for i in range(500)]
        gevent.joinall(jobs, timeout=20, raise_error=True)
        deadline = time.monotonic() + 10
        while len(got) < 500 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert sorted(got) == sorted(f"m{i}" for i in range(500))
        clients = redis.Redis.from_url(redis_server.url).client_list()
        assert len(clients) <= 8 + 1 + 1, clients   # publishers + the subscriber + this one
    finally:
        hub.close()
