"""ws_allowed_origins over real sockets, both engines (issue 12, point 6).

A handshake from an origin not in the list gets 403 and the connection
closes before the app runs; an allowed origin and a handshake without Origin
open as usual; plain HTTP requests are never checked. One case goes through a
real client (websocket-client) as a browser page's would.
"""
from __future__ import annotations

import pytest
import websocket  # websocket-client

from gkit import with_channel
from helpers import RawConn, parse_responses, request, send_raw
from wshelpers import TEXT, RawWs, frame, handshake_request

ALLOWED = "https://app.example.com, https://*.example.org, http://127.0.0.1:8000"


def echo_app(calls):
    def app(environ, start_response):
        calls.append(environ.get("HTTP_ORIGIN"))
        if environ.get("HTTP_UPGRADE"):
            ch = with_channel(environ)
            ch.on_receive(ch.send)
            return ch
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]
    return app


@pytest.mark.parametrize("origin", ["https://app.example.com", "https://a.b.example.org",
                                    "http://127.0.0.1:8000", None])
def test_allowed_or_absent_origin_opens(serve, origin) -> None:
    calls = []
    port = serve(echo_app(calls), ws_allowed_origins=ALLOWED).port
    ws = RawWs(port, "/", headers=[("Origin", origin)] if origin else [])
    ws.send(frame(TEXT, b"hi"))
    assert ws.recv_message() == (1, b"hi")
    assert calls == [origin]
    ws.close()


@pytest.mark.parametrize("origin", ["https://evil.test", "https://example.org",
                                    "http://app.example.com", "null",
                                    "https://app.example.com.evil.test"])
def test_other_origin_gets_403_and_the_app_never_runs(serve, origin) -> None:
    calls = []
    port = serve(echo_app(calls), ws_allowed_origins=ALLOWED).port
    data = send_raw(port, handshake_request("/", headers=[("Origin", origin)]), shut_wr=False)
    [resp] = parse_responses(data)
    assert resp.status == 403 and resp.reason == "Forbidden"
    assert resp.body == f"403 Forbidden: Origin {origin} is not allowed (ws_allowed_origins)\n" \
        .encode()
    assert resp.connection_tokens() == ["close"]
    assert calls == []


def test_plain_http_is_not_checked_and_off_by_default(serve) -> None:
    calls = []
    port = serve(echo_app(calls), ws_allowed_origins=ALLOWED).port
    conn = RawConn(port)
    conn.send(request(headers=[("Origin", "https://evil.test")]))
    assert conn.read_response().body == b"plain"
    conn.close()
    open_port = serve(echo_app(calls)).port
    ws = RawWs(open_port, "/", headers=[("Origin", "https://evil.test")])
    ws.close()


def test_a_real_client_with_a_refused_origin(serve) -> None:
    port = serve(echo_app([]), ws_allowed_origins=ALLOWED).port
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(f"ws://127.0.0.1:{port}/", origin="https://evil.test",
                                    timeout=5)
    assert info.value.status_code == 403
    ok = websocket.create_connection(f"ws://127.0.0.1:{port}/",
                                     origin="https://app.example.com", timeout=5)
    ok.send("x")
    assert ok.recv() == "x"
    ok.close()
