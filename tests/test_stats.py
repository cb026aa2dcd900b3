"""``server.stats()`` over real sockets: the numbers move as connections open,
park, start a head, run the app, wait for a slot, hand over to channels and
close; counters of responses by class, of refusals, and of bytes each way
are exact.

The server's state changes in its own greenlets after the client's bytes
arrive, so tests wait for a stats value with :func:`until` (bounded polling
of the condition itself, never a fixed sleep).
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import pytest
from helpers import RawConn, poll_until, request
from wshelpers import TEXT, RawWs, frame, handshake_request

from gkit import with_channel


def until(server: Any, check: Callable[[Dict[str, Any]], bool], timeout: float = 5.0
          ) -> Dict[str, Any]:
    """Poll server.stats() until ``check`` holds; returns that snapshot."""
    return poll_until(server.stats, check, timeout, "stats", interval=0.002)


def make_app(serve: Any) -> Any:
    release = serve.event()
    channels: Dict[str, Any] = {}

    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path == "/block":
            release.wait()
        elif path in ("/poll", "/stream", "/ws"):
            ch = channels[path] = with_channel(environ)
            if path == "/stream":
                ch.send("first", close_after_send=False)
            return ch
        elif path == "/body":
            environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    app.release = release  # type: ignore[attr-defined]
    app.channels = channels  # type: ignore[attr-defined]
    return app


def test_fields_at_rest(serve: Any) -> None:
    server = serve(make_app(serve), thread=3)
    stats = server.stats()
    assert stats == {
        "status": "running", "connections_open": 0, "connections_idle": 0,
        "connections_reading_head": 0, "app_calls_in_flight": 0, "requests_queued": 0,
        "worker_slots": 3,
        "channels_open": {"http_stream": 0, "long_poll": 0, "websocket": 0, "sse": 0},
        "app_calls_total": 0,
        "responses_total": {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
        "refused_total": {"400": 0, "408": 0, "413": 0, "414": 0, "431": 0, "501": 0, "503": 0},
        "bytes_received_total": 0, "bytes_sent_total": 0,
        "hub": {"engine": "memory", "connected": 1, "topics": 0, "subscribers": 0}}


def test_connections_park_read_and_run(serve: Any) -> None:
    app = make_app(serve)
    server = serve(app, thread=2, queue_size=1)
    idle = RawConn(server.port)
    until(server, lambda s: s["connections_open"] == 1 and s["connections_idle"] == 1)
    half = RawConn(server.port)
    half.send(b"GET / HTTP/1.1\r\nHo")
    until(server, lambda s: s["connections_reading_head"] == 1 and s["connections_idle"] == 1)
    blocked = [RawConn(server.port) for _ in range(3)]
    for conn in blocked:
        conn.send(request(target="/block"))
    stats = until(server, lambda s: s["requests_queued"] == 1)
    assert (stats["connections_open"], stats["app_calls_in_flight"], stats["connections_idle"],
            stats["app_calls_total"]) == (5, 2, 1, 2)  # the queued call has not started
    with RawConn(server.port) as full:  # every slot busy, the queue full: 503
        full.send(request(target="/block"))
        assert full.read_response().status == 503
    assert server.stats()["refused_total"]["503"] == 1
    app.release.set()
    for conn in blocked:
        assert conn.read_response().body == b"ok"
    stats = until(server, lambda s: s["connections_idle"] == 4)
    assert (stats["app_calls_in_flight"], stats["requests_queued"], stats["app_calls_total"],
            stats["responses_total"]["2xx"], stats["responses_total"]["5xx"]) == (0, 0, 3, 3, 1)
    for conn in [idle, half, *blocked]:
        conn.close()
    until(server, lambda s: s["connections_open"] == 0 and s["connections_idle"] == 0
          and s["connections_reading_head"] == 0)


def test_channels_by_kind(serve: Any) -> None:
    app = make_app(serve)
    server = serve(app)
    kinds = lambda s: s["channels_open"]  # noqa: E731
    with RawConn(server.port) as poll, RawConn(server.port) as stream, \
            RawWs(server.port, "/ws") as ws:
        poll.send(request(target="/poll"))
        stream.send(request(target="/stream"))
        stream.read_until(b"first")
        stats = until(server, lambda s: kinds(s)["long_poll"] == 1 and kinds(s)["websocket"] == 1)
        assert kinds(stats) == {"http_stream": 1, "long_poll": 1, "websocket": 1, "sse": 0}
        assert stats["app_calls_in_flight"] == 0  # a channel holds no slot
        app.channels["/poll"].send("done")
        assert poll.read_response().body == b"done"
        stats = until(server, lambda s: kinds(s)["long_poll"] == 0)
        assert kinds(stats) == {"http_stream": 1, "long_poll": 0, "websocket": 1, "sse": 0}
        ws.send_frame(0x8, b"\x03\xe8")
        stream.close()
        until(server, lambda s: sum(kinds(s).values()) == 0)
    assert server.stats()["responses_total"]["1xx"] == 1  # the 101


@pytest.mark.parametrize("data,status", [
    (b"GET / HTTP/1.1\r\n\r\n", "400"),                           # no Host
    (request(target="/" + "a" * 300), "414"),
    (request(headers=[("X-Big", "b" * 200)] * 400), "431"),
    (request(method="POST", target="/body", body=b"x" * 2000), "413"),
    (request(method="POST", headers=[("Transfer-Encoding", "gzip, chunked")]), "501"),
])
def test_refusals_by_status(serve: Any, data: bytes, status: str) -> None:
    server = serve(make_app(serve), max_line=256, max_body=1000)
    with RawConn(server.port) as conn:
        conn.send(data)
        assert conn.read_response().status == int(status)
    stats = server.stats()
    assert {k: v for k, v in stats["refused_total"].items() if v} == {status: 1}
    assert stats["responses_total"]["4xx" if status < "500" else "5xx"] == 1


def test_bytes_each_way_are_exact(serve: Any) -> None:
    server = serve(make_app(serve))
    sent = received = 0
    with RawConn(server.port) as conn:
        for req in (request(), request(method="POST", target="/body", body=b"y" * 70000)):
            conn.send(req)
            sent += len(req)
            received += len(conn.read_response().raw)
    stats = until(server, lambda s: s["connections_open"] == 0)
    assert (stats["bytes_received_total"], stats["bytes_sent_total"]) == (sent, received)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    text, close = frame(TEXT, b"hello"), frame(0x8, b"\x03\xe8")
    with RawWs(server.port, "/ws", key=key) as ws:
        ws.send(text + close)
        reply = ws.recv_frame()
        assert reply.opcode == 0x8
        sent += len(handshake_request("/ws", key, ())) + len(text) + len(close)
        received += len(ws.head) + 4 + 2 + len(reply.payload)
    stats = until(server, lambda s: s["connections_open"] == 0)
    assert (stats["bytes_received_total"], stats["bytes_sent_total"]) == (sent, received)


def test_slow_head_counts_as_408(serve: Any) -> None:
    server = serve(make_app(serve), header_timeout=0.2)
    with RawConn(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\n")
        assert conn.read_response().status == 408
    assert server.stats()["refused_total"]["408"] == 1


class _Hub:
    """Stands in for a hub with a callable ``connected``: public methods only."""

    scheme = "memory"

    def connected(self) -> bool:
        return True

    def topics(self) -> list:
        return ["room:1", "room:2"]

    def subscribers(self, topic: str) -> int:
        return {"room:1": 3, "room:2": 1}[topic]


def test_hub_state_when_a_hub_is_open(serve: Any) -> None:
    import gkit.hub

    server = serve(make_app(serve))
    assert server.stats()["hub"] == {"engine": "memory", "connected": 1, "topics": 0,
                                     "subscribers": 0}
    gkit.hub.subscribe("room:1", lambda message: None)
    assert server.stats()["hub"]["topics"] == 1 and server.stats()["hub"]["subscribers"] == 1
    real, server.pubsub = server.pubsub, _Hub()
    try:
        assert server.stats()["hub"] == {"engine": "memory", "connected": 1, "topics": 2,
                                         "subscribers": 4}
    finally:
        server.pubsub = real


def test_sse_counts_as_sse(serve: Any) -> None:
    from gkit.sse import sse_channel

    held: Dict[str, Any] = {}

    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        ch = held["ch"] = sse_channel(environ, heartbeat=None)
        return ch

    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/events"))
        conn.read_until(b"\r\n\r\n")
        stats = until(server, lambda s: s["channels_open"]["sse"] == 1)
        assert stats["channels_open"] == {"http_stream": 0, "long_poll": 0, "websocket": 0,
                                          "sse": 1}
        held["ch"].close()
        until(server, lambda s: s["channels_open"]["sse"] == 0)
