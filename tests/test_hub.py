"""gkit.hub in one process (memory://): channels of every kind subscribe,
publishes come from views, callbacks and real OS threads, in order, and
closed channels drop out by themselves."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

import gevent
import pytest
from gevent.monkey import get_original
from helpers import RawConn, get, request
from wshelpers import BINARY, TEXT, RawWs

import gkit.hub
from gkit import ConfigError, HubUnavailable, run_server
from apps.hub_app import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

start_os_thread = get_original("_thread", "start_new_thread")
allocate_lock = get_original("_thread", "allocate_lock")


def wait_for(check: Any, timeout: float = 5.0) -> None:
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {check}")):
        while not check():
            gevent.sleep(0.01)


def test_websocket_streaming_and_long_poll_subscribers_get_each_message(serve: Any) -> None:
    server = serve(app)
    assert gkit.hub.current() is server.pubsub and server.pubsub.url == "memory://"
    ws = RawWs(server.port, "/ws?topic=news")
    assert ws.recv_frame().payload.startswith(b"subscribed ")
    stream = RawConn(server.port)
    stream.send(request("GET", "/stream?topic=news"))
    assert stream.read_until(b"subscribed").startswith(b"HTTP/1.1 200 OK\r\n")
    poll = RawConn(server.port)
    poll.send(request("GET", "/poll?topic=news"))
    wait_for(lambda: server.pubsub.subscribers("news") == 3)

    assert get(server.port, "/publish?topic=news&msg=hello&msg=bin:raw").body == b"published 2"
    first, second = ws.recv_frame(), ws.recv_frame()
    assert (first.opcode, first.payload) == (TEXT, b"hello")
    assert (second.opcode, second.payload) == (BINARY, b"raw")
    assert stream.read_until(b"3\r\nraw\r\n").endswith(b"5\r\nhello\r\n3\r\nraw\r\n")
    answer = poll.read_response()     # a long poll: the first message is the response
    assert (answer.status, answer.body) == (200, b"hello")

    # The answered poll dropped out; a closed WebSocket drops out at the next publish.
    wait_for(lambda: server.pubsub.subscribers("news") == 2)
    ws.close()
    gevent.sleep(0.05)
    gkit.hub.publish("news", "again")
    assert stream.read_until(b"again\r\n").endswith(b"5\r\nagain\r\n")
    wait_for(lambda: server.pubsub.subscribers("news") == 1)
    stream.close()


def test_publish_from_a_real_os_thread_keeps_its_order(serve: Any) -> None:
    server = serve(app)
    got: List[Any] = []
    gkit.hub.subscribe("seq", got.append)
    done = allocate_lock()
    done.acquire()
    idents: List[int] = []

    def publisher() -> None:    # runs in a new OS thread, not in gevent's loop
        idents.append(get_original("_thread", "get_ident")())
        for i in range(500):
            server.pubsub.publish("seq", f"t{i}" if i % 2 else f"t{i}".encode())
        done.release()

    start_os_thread(publisher, ())
    for i in range(500):          # and the test's greenlet publishes at the same time
        gkit.hub.publish("seq", f"g{i}")
        if i % 50 == 0:
            gevent.sleep(0.001)
    wait_for(lambda: len(got) == 1000)
    assert idents[0] != get_original("_thread", "get_ident")()
    mine = [m for m in got if isinstance(m, str) and m.startswith("g")]
    theirs = [m if isinstance(m, str) else m.decode() for m in got if m not in mine]
    assert mine == [f"g{i}" for i in range(500)]
    assert theirs == [f"t{i}" for i in range(500)]
    assert [type(m) for m in got if m in (b"t0", "t1")] == [bytes, str]
    assert gkit.hub.unsubscribe("seq", got.append) is True   # equal bound methods match


def test_a_big_fan_out_yields_to_other_greenlets(serve: Any) -> None:
    serve(app)
    order: List[Any] = []
    for i in range(2000):
        def sub(message: str, i: int = i) -> None:
            if i == 0:
                gevent.spawn(order.append, "other greenlet")
            order.append(i)
        gkit.hub.subscribe("big", sub)
    gkit.hub.publish("big", "x")
    wait_for(lambda: len(order) == 2001)
    assert 0 < order.index("other greenlet") < 1000, order.index("other greenlet")


def test_a_failing_subscriber_is_logged_and_the_others_still_get_it(serve: Any,
                                                                    error_log: Any) -> None:
    serve(app)
    got: List[str] = []

    def broken(message: str) -> None:
        raise RuntimeError("boom")

    gkit.hub.subscribe("f", broken)
    gkit.hub.subscribe("f", got.append)
    gkit.hub.publish("f", "one")
    wait_for(lambda: got == ["one"])
    assert gkit.hub.unsubscribe("f", broken) is True


def test_errors_name_the_fix(serve: Any) -> None:
    serve(app)
    with pytest.raises(TypeError, match="publish str .* or bytes"):
        gkit.hub.publish("t", {"a": 1})
    with pytest.raises(TypeError, match="give a channel"):
        gkit.hub.subscribe("t", 42)
    with pytest.raises(ConfigError, match="unknown scheme 'amqp'"):
        run_server(app, port=0, hub="amqp://x")
    with pytest.raises(ConfigError, match="memory:// lives inside one server"):
        gkit.hub.publish_to("memory://", "t", "x")


def test_publish_to_an_unreachable_redis_names_the_url() -> None:
    pytest.importorskip("redis")
    with pytest.raises(HubUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1:9/0 is unreachable"):
        gkit.hub.publish_to("redis://:secret@127.0.0.1:9/0", "t", "x")


def test_servers_share_the_process_hub_and_close_it_last(serve: Any) -> None:
    a, b = serve(app), serve(app)
    assert a.pubsub is b.pubsub and gkit.hub.current() is b.pubsub
    b.stop()
    assert not a.pubsub.closed and gkit.hub.current() is a.pubsub
    hub = a.pubsub
    a.stop()
    assert hub.closed and a.pubsub is None
    with pytest.raises(HubUnavailable, match="closed"):
        hub.publish("t", "x")


def test_the_readme_example_streams_and_publishes(serve: Any) -> None:
    from examples.hub_broadcast import app as example
    server = serve(example)
    stream = RawConn(server.port)
    stream.send(request("GET", "/stream?topic=news"))
    stream.read_until(b"subscribed to news\n")
    ws = RawWs(server.port, "/ws")
    wait_for(lambda: server.pubsub.subscribers("news") == 2)
    assert get(server.port, "/publish?msg=hi").body == b"published\n"
    assert stream.read_until(b"hi\r\n").endswith(b"2\r\nhi\r\n")
    assert ws.recv_frame().payload == b"hi"


def test_a_slow_subscriber_is_cut_and_never_delays_the_others(serve: Any) -> None:
    server = serve(app, max_buffered=256 * 1024)
    slow = RawWs(server.port, "/ws?topic=big", rcvbuf=4096)   # never reads
    fast = RawWs(server.port, "/ws?topic=big")
    assert fast.recv_frame().payload.startswith(b"subscribed ")
    wait_for(lambda: server.pubsub.subscribers("big") == 2)
    chunk = "x" * 65536     # 13 MB in all: more than the kernel's buffers take

    def publisher() -> None:
        for i in range(200):
            gkit.hub.publish("big", f"{i:03d}{chunk}")
            gevent.sleep(0.002)

    gevent.spawn(publisher)
    for i in range(200):
        assert fast.recv_frame().payload[:3] == f"{i:03d}".encode()
    gkit.hub.publish("big", "after")
    assert fast.recv_frame().payload == b"after"
    wait_for(lambda: server.pubsub.subscribers("big") == 1)   # the slow one was closed
    slow.close()


def test_subscribe_and_unsubscribe_from_a_real_os_thread(serve: Any) -> None:
    server = serve(app)
    got: List[str] = []
    done = allocate_lock()
    done.acquire()
    results: List[Any] = []

    def in_thread() -> None:
        server.pubsub.subscribe("th", got.append)
        results.append(server.pubsub.subscribers("th"))
        done.release()

    start_os_thread(in_thread, ())
    wait_for(lambda: results == [1])
    gkit.hub.publish("th", "hi")
    wait_for(lambda: got == ["hi"])
    assert done.acquire(False)
    start_os_thread(lambda: results.append(server.pubsub.unsubscribe("th", got.append)), ())
    wait_for(lambda: len(results) == 2)
    assert results[1] is True and server.pubsub.subscribers("th") == 0


def test_a_server_sent_events_channel_gets_one_event_per_message(serve: Any) -> None:
    server = serve(app)
    sse = RawConn(server.port)
    sse.send(request("GET", "/sse?topic=ev"))
    assert b"text/event-stream" in sse.read_until(b"\r\n\r\n")
    wait_for(lambda: server.pubsub.subscribers("ev") == 1)
    gkit.hub.publish("ev", "first")
    gkit.hub.publish("ev", "two\nlines")
    data = sse.read_until(b"data: lines\n\n")
    assert data.index(b"data: first\n\n") < data.index(b"data: two\ndata: lines\n\n")
    sse.close()
