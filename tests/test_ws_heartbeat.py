"""WebSocket heartbeats over real sockets, both engines (issue 12, point 3).

ws_ping_interval / ws_ping_timeout: a WebSocket quiet for the interval gets a
ping from the server's sweeper; no answer within the timeout closes it with
code 1011 and on_close("ping-timeout"). A client that answers stays open,
and one that talks gets no pings at all. The client here is raw: it answers
pings only when the test says so.
"""
from __future__ import annotations

import queue
import time

from gkit import with_channel
from gkit.config import Config
from helpers import ReadTimeout
from wshelpers import CLOSE, PING, PONG, TEXT, RawWs, frame

WAIT = 10
INTERVAL = 0.2
# header_timeout=0.4 makes the sweeper run every 0.1 s.
OPTIONS = dict(ws_ping_interval=INTERVAL, ws_ping_timeout=INTERVAL, header_timeout=0.4)


def app_with(closed):
    def app(environ, start_response):
        ch = with_channel(environ)
        ch.on_close(closed.put)
        ch.on_receive(lambda msg: None)
        return ch
    return app


def test_a_client_that_never_answers_is_closed_after_interval_and_timeout(serve):
    closed = queue.Queue()
    port = serve(app_with(closed), **OPTIONS).port
    ws = RawWs(port)
    start = time.monotonic()
    ping = ws.recv_frame(WAIT)
    assert ping.opcode == PING and ping.payload == b""
    pinged = time.monotonic() - start
    close = ws.recv_frame(WAIT)
    assert close.opcode == CLOSE and close.close_code == 1011
    assert close.close_reason == b"ping timeout"
    ws.assert_tcp_closed(WAIT)
    took = time.monotonic() - start
    assert INTERVAL <= pinged and 2 * INTERVAL <= took < 2 * INTERVAL + 3
    assert closed.get(timeout=WAIT) == "ping-timeout"


def test_a_client_that_answers_stays_open_for_several_intervals(serve):
    closed = queue.Queue()
    port = serve(app_with(closed), **OPTIONS).port
    ws = RawWs(port)
    pings = 0
    end = time.monotonic() + 8 * INTERVAL
    while time.monotonic() < end:
        try:
            f = ws.recv_frame(timeout=end - time.monotonic())
        except ReadTimeout:
            break
        assert f.opcode == PING, f
        pings += 1
        ws.send(frame(PONG, f.payload))
    assert pings >= 3
    assert closed.empty()
    ws.send(frame(CLOSE, b"\x03\xe8"))
    assert ws.expect_close(WAIT).close_code == 1000
    assert closed.get(timeout=WAIT) == "normal"


def test_a_talking_client_gets_no_ping_and_none_turns_pings_off(serve):
    closed = queue.Queue()
    port = serve(app_with(closed), **OPTIONS).port
    ws = RawWs(port)
    end = time.monotonic() + 6 * INTERVAL
    while time.monotonic() < end:
        ws.send(frame(TEXT, b"still here"))
        try:
            f = ws.recv_frame(timeout=INTERVAL / 4)
            raise AssertionError(f"a frame came to a talking client: {f}")
        except ReadTimeout:
            pass
    assert closed.empty()
    ws.close()
    quiet_closed = queue.Queue()
    quiet_port = serve(app_with(quiet_closed), ws_ping_interval=None, header_timeout=0.4).port
    quiet = RawWs(quiet_port)
    try:
        f = quiet.recv_frame(timeout=6 * INTERVAL)
        raise AssertionError(f"a frame came with pings off: {f}")
    except ReadTimeout:
        pass
    assert quiet_closed.empty()
    quiet.close()


def test_defaults_keep_a_websocket_alive_behind_a_60_s_proxy():
    config = Config()
    assert config.ws_ping_interval == 20.0 and config.ws_ping_timeout == 20.0
    # A quiet WebSocket gets a ping within interval + one sweep (<= 1 s): well under 60 s.
    assert config.ws_ping_interval + 1.0 < 60


def test_the_cli_turns_heartbeats_off_with_none():
    # "none" on the command line is None, not "flag left out" (which keeps the default).
    from gkit.cli import make_plan
    assert make_plan(["m:app", "--ws-ping-interval", "none"]).config.ws_ping_interval is None
    assert make_plan(["m:app", "--ws-ping-timeout", "none"]).config.ws_ping_timeout is None
    assert make_plan(["m:app"]).config.ws_ping_interval == 20.0
    assert make_plan(["m:app", "--thread", "none"]).config.thread is None
