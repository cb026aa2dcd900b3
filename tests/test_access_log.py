"""Access log lines (``gkit.access``) in both formats, over real sockets: JSON
lines parse with ``json.loads``, with typed fields, and no header a client
sends can add or change a field; WebSocket upgrades and long polls get their
line too; the server's access hook sees every request.
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable, Dict, Iterator, List

import gevent
import pytest
from helpers import RawConn, request
from wshelpers import CLOSE, TEXT, RawWs, frame

from gkit import async_response, schedule_task, with_channel

FIELDS = ["event", "time", "remote_addr", "remote_port", "method", "target", "protocol", "status",
          "bytes", "duration", "referer", "user_agent"]


def app(environ: Dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/ws":
        ch = with_channel(environ)
        ch.on_receive(ch.send)
        return ch
    if path == "/poll":
        respond = async_response(environ)
        schedule_task(0.05, respond, {"status": 202, "body": "polled"})
        return []
    if path == "/stream":
        ch = with_channel(environ)
        ch.send("one", close_after_send=False)
        ch.send("two", close_after_send=False)
        schedule_task(0.01, ch.send, "three", True)
        return ch
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Out", "yes")])
    return [b"hello"]


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``check`` (bounded): a channel's line comes when the server saw the end."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        gevent.sleep(0.002)


@pytest.fixture
def access_lines() -> Iterator[List[str]]:
    logger = logging.getLogger("gkit.access")
    lines: List[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = _Collect(level=logging.INFO)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# Quotes, backslashes, a tab and a non-ASCII byte: what a header value may hold
# (CR, LF and other control characters get 400 before any app or log line).
HOSTILE = b'x", "status": 999, "admin": true, "user_agent": "\\\\ \t \xff }{'



def test_json_lines_have_typed_fields(serve: Any, access_lines: List[str]) -> None:
    server = serve(app, access_log_format="json")
    with RawConn(server.port) as conn:
        port = conn.sock.getsockname()[1]
        conn.send(request(target="/a?b=%22c", headers=[("Referer", "/from"),
                                                        ("User-Agent", "test/1")]))
        assert conn.read_response().body == b"hello"
        conn.send(request(method="HEAD", target="/h", version="HTTP/1.0"))
        assert conn.read_response(head=True).status == 200
    assert len(access_lines) == 2, access_lines
    first, second = (json.loads(line) for line in access_lines)
    assert list(first) == FIELDS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", first["time"])
    assert isinstance(first["duration"], float) and 0 <= first["duration"] < 5
    del first["time"], first["duration"]
    assert first == {"event": "request", "remote_addr": "127.0.0.1", "remote_port": port, "method": "GET",
                     "target": "/a?b=%22c", "protocol": "HTTP/1.1", "status": 200, "bytes": 5,
                     "referer": "/from", "user_agent": "test/1"}
    assert (second["method"], second["protocol"], second["status"], second["bytes"],
            second["referer"], second["user_agent"]) == ("HEAD", "HTTP/1.0", 200, 0, None, None)


def test_json_line_cannot_be_forged_by_headers(serve: Any, access_lines: List[str]) -> None:
    server = serve(app, access_log_format="json")
    raw = (b"GET /x HTTP/1.1\r\nHost: x\r\nUser-Agent: " + HOSTILE
           + b"\r\nReferer: \"}{\"status\": 1\r\nConnection: close\r\n\r\n")
    with RawConn(server.port) as conn:
        conn.send(raw)
        assert conn.read_response().status == 200
    assert len(access_lines) == 1 and "\n" not in access_lines[0], access_lines
    entry = json.loads(access_lines[0])
    assert list(entry) == FIELDS
    assert entry["status"] == 200
    assert entry["user_agent"] == HOSTILE.decode("latin-1")
    assert entry["referer"] == '"}{"status": 1'


def test_a_header_with_a_newline_is_refused_not_logged(serve: Any,
                                                      access_lines: List[str]) -> None:
    server = serve(app, access_log_format="json")
    with RawConn(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: a\nstatus: 1\r\n\r\n")
        assert conn.read_response().status == 400
    assert access_lines == []


def test_json_lines_for_websocket_and_long_poll(serve: Any, access_lines: List[str]) -> None:
    server = serve(app, access_log_format="json")
    with RawWs(server.port, "/ws") as ws:
        ws.send_frame(TEXT, b"hi")
        assert ws.recv_message() == (TEXT, b"hi")
    with RawConn(server.port) as conn:
        conn.send(request(target="/poll"))
        assert conn.read_response().body == b"polled"
    entries = [e for e in map(json.loads, access_lines) if e["event"] == "request"]
    assert [(e["target"], e["status"]) for e in entries] == [("/ws", 101), ("/poll", 202)]
    assert entries[1]["bytes"] == 6


CHANNEL_FIELDS = ["event", "time", "remote_addr", "remote_port", "method", "target", "protocol",
                  "kind", "close_status", "duration", "messages_in", "messages_out", "bytes_in",
                  "bytes_out"]


def _ends(lines: List[str]) -> List[Dict[str, Any]]:
    return [e for e in map(json.loads, lines) if e["event"] == "channel_end"]


def test_channel_end_line_of_a_websocket(serve: Any, access_lines: List[str]) -> None:
    server = serve(app, access_log_format="json", ws_deflate=False)
    frames = [frame(TEXT, b"hi"), frame(TEXT, b"you"), frame(CLOSE, b"\x03\xe8")]
    with RawWs(server.port, "/ws") as ws:
        ws.send(frames[0] + frames[1])
        assert ws.recv_message() == (TEXT, b"hi")
        assert ws.recv_message() == (TEXT, b"you")
        ws.send(frames[2])
        reply = ws.recv_frame()
        assert reply.opcode == CLOSE
        wire_out = len(ws.head) + 4 + (2 + 2) + (2 + 3) + (2 + len(reply.payload))
    wait_for(lambda: _ends(access_lines))
    (end,) = _ends(access_lines)
    assert list(end) == CHANNEL_FIELDS
    assert isinstance(end["duration"], float) and 0 <= end["duration"] < 5
    del end["time"], end["duration"], end["remote_port"]
    assert end == {"event": "channel_end", "remote_addr": "127.0.0.1", "method": "GET",
                   "target": "/ws", "protocol": "HTTP/1.1", "kind": "websocket",
                   "close_status": "normal", "messages_in": 2, "messages_out": 2,
                   "bytes_in": sum(map(len, frames)), "bytes_out": wire_out}


def test_channel_end_lines_of_a_long_poll_and_a_stream(serve: Any,
                                                       access_lines: List[str]) -> None:
    server = serve(app, access_log_format="json")
    with RawConn(server.port) as conn:
        conn.send(request(target="/poll"))
        poll = conn.read_response()
        conn.send(request(target="/stream"))
        stream = conn.read_response()
    assert (poll.body, stream.body) == (b"polled", b"onetwothree")
    wait_for(lambda: len(_ends(access_lines)) == 2)
    ends = _ends(access_lines)
    assert [(e["target"], e["kind"], e["close_status"], e["messages_in"], e["messages_out"],
             e["bytes_in"], e["bytes_out"]) for e in ends] == [
        ("/poll", "long_poll", "server-close", 0, 1, 0, len(poll.raw)),
        ("/stream", "http_stream", "server-close", 0, 3, 0, len(stream.raw))]
    assert ends[0]["duration"] >= 0.04  # answered by a timer after 0.05 s


def test_channel_end_line_combined(serve: Any, access_lines: List[str]) -> None:
    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(request(target="/poll"))
        assert conn.read_response().body == b"polled"
    wait_for(lambda: any("channel-end" in line for line in access_lines))
    (line,) = [line for line in access_lines if "channel-end" in line]
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /poll HTTP/1\.1" channel-end '
                        r'kind=long_poll status=server-close duration=\d+\.\d{6} messages_in=0 '
                        r'messages_out=1 bytes_in=0 bytes_out=\d+', line), line


def test_combined_stays_the_default(serve: Any, access_lines: List[str]) -> None:
    server = serve(app)
    with RawConn(server.port) as conn:
        conn.send(b'GET /c HTTP/1.1\r\nHost: x\r\nUser-Agent: a "quoted" agent\r\n\r\n')
        assert conn.read_response().status == 200
    assert len(access_lines) == 1
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /c HTTP/1\.1" 200 5 "-" '
                        r'"a \'quoted\' agent" \d+\.\d{6}', access_lines[0]), access_lines


def test_access_hook_sees_every_request(serve: Any) -> None:
    server = serve(app)
    seen: List[Any] = []
    server.access_hook = seen.append
    with RawConn(server.port) as conn:
        conn.send(request(target="/one") + request(target="/two"))
        assert conn.read_response().status == 200
        assert conn.read_response().status == 200
    assert [(r.target, r.status, r.length, r.header(b"host")) for r in seen] == [
        (b"/one", 200, 5, "example.com"), (b"/two", 200, 5, "example.com")]
    assert ("X-Out", "yes") in seen[0].response_headers


def test_bad_format_is_a_clear_error() -> None:
    from gkit.config import make_config
    from gkit.errors import ConfigError
    with pytest.raises(ConfigError, match="access_log_format='xml': choose one of combined, json"):
        make_config(access_log_format="xml")
