"""examples/chat over real sockets: a real ``python -m examples.chat`` process,
websocket-client for WebSocket, requests for long polling and POST /send."""
from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests
import websocket

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.chat.messages import HISTORY, MAX_NICK, MAX_TEXT  # noqa: E402
from examples.chat.testing import (  # noqa: E402
    ChatProcess,
    is_event,
    is_msg,
    room_name,
    wait_until,
    ws_connect,
    ws_recv_until,
    ws_say,
)

POLL_TIMEOUT = 2.0
MAX_BUFFERED = 256 * 1024

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatProcess]:
    proc = ChatProcess("--poll-timeout", str(POLL_TIMEOUT), "--max-buffered", str(MAX_BUFFERED))
    try:
        yield proc
    finally:
        code = proc.stop()
        log = proc.log_text()
        assert "Traceback" not in log, log
        assert code == 0, f"exit code {code}; log:\n{log}"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def poll(http: requests.Session, chat: ChatProcess, room: str, since: int = 0,
         epoch: str = "", **extra: str) -> Dict[str, Any]:
    params: Dict[str, Any] = {"room": room, "since": since, "epoch": epoch, **extra}
    r = http.get(chat.url + "poll", params=params, timeout=POLL_TIMEOUT + 10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    return r.json()


def send(http: requests.Session, chat: ChatProcess, room: str, nick: str, text: str) -> int:
    r = http.post(chat.url + "send", json={"room": room, "nick": nick, "text": text}, timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


# -- the page ---------------------------------------------------------------

def test_page_static_files_and_404s(chat: ChatProcess, http: requests.Session) -> None:
    for path in ("", "r/dev-room", "r/dev-room/"):
        r = http.get(chat.url + path, timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert '<ol id="log"' in r.text and 'src="/static/chat.js"' in r.text
    js = http.get(chat.url + "static/chat.js", timeout=10)
    assert js.status_code == 200
    assert js.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "textContent" in js.text and "innerHTML" not in js.text.replace("never innerHTML", "")
    css = http.get(chat.url + "static/chat.css", timeout=10)
    assert css.headers["Content-Type"] == "text/css; charset=utf-8"
    for path in ("r/bad%20room", "static/app.py", "static/..%2Fapp.py", "nowhere"):
        r = http.get(chat.url + path, timeout=10)
        assert r.status_code == 404, path
        assert r.json()["error"]
    r = http.get(chat.url + "send", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


# -- WebSocket ----------------------------------------------------------------

def test_two_websocket_clients_exchange(chat: ChatProcess) -> None:
    room = room_name()
    alice = ws_connect(chat.url, room, "alice")
    assert alice.history == []
    ws_recv_until(alice, is_event("join", "alice"))
    bob = ws_connect(chat.url, room, "bob")
    assert [(m["type"], m["nick"]) for m in bob.history] == [("join", "alice")]
    ws_recv_until(alice, is_event("join", "bob"))
    ws_recv_until(bob, is_event("join", "bob"))

    ws_say(alice, "hi bob")
    got = ws_recv_until(bob, is_msg("alice", "hi bob"))
    assert got["room"] == room and isinstance(got["id"], int) and got["epoch"]
    ws_recv_until(alice, is_msg("alice", "hi bob"))          # the sender sees it too
    ws_say(bob, "héllo ✓ <b>alice</b>")
    back = ws_recv_until(alice, is_msg("bob", "héllo ✓ <b>alice</b>"))
    assert back["id"] == got["id"] + 1

    bob.close()
    ws_recv_until(alice, is_event("leave", "bob"))
    alice.close()


def test_history_on_join_in_order(chat: ChatProcess, http: requests.Session) -> None:
    room = room_name()
    ids = [send(http, chat, room, "carol", f"line {i}") for i in range(5)]
    assert ids == list(range(1, 6))
    dave = ws_connect(chat.url, room, "dave")
    assert [(m["id"], m["nick"], m["text"]) for m in dave.history] == [
        (i, "carol", f"line {i - 1}") for i in ids]
    r = http.get(chat.url + "history", params={"room": room}, timeout=10)
    assert [m["text"] for m in r.json()["messages"]][:5] == [f"line {i}" for i in range(5)]
    dave.close()


def test_history_is_bounded(chat: ChatProcess, http: requests.Session) -> None:
    room = room_name()
    for i in range(HISTORY + 20):
        send(http, chat, room, "erin", f"n{i}")
    messages = http.get(chat.url + "history", params={"room": room}, timeout=10).json()["messages"]
    assert len(messages) == HISTORY
    assert [m["id"] for m in messages] == list(range(21, HISTORY + 21))
    assert messages[-1]["text"] == f"n{HISTORY + 19}"


def test_vanished_websocket_client_is_announced_as_gone(chat: ChatProcess) -> None:
    room = room_name()
    alice = ws_connect(chat.url, room, "alice")
    ghost = ws_connect(chat.url, room, "ghost")
    ws_recv_until(alice, is_event("join", "ghost"))
    ghost.sock.shutdown(socket.SHUT_RDWR)     # TCP goes away, no close frame
    ghost.sock.close()
    ws_recv_until(alice, is_event("leave", "ghost"))
    ws_say(alice, "still here")
    ws_recv_until(alice, is_msg("alice", "still here"))
    alice.close()


# -- long polling and the cross-transport path ------------------------------------

def test_long_poll_sees_websocket_messages_and_back(chat: ChatProcess,
                                                    http: requests.Session) -> None:
    room = room_name()
    alice = ws_connect(chat.url, room, "alice")
    first = poll(http, chat, room, cid="carolcid", nick="carol")
    # The room's history as it was, in full, since the client named no epoch;
    # carol's own join comes with her next poll.
    assert first.get("reset") is True
    assert [(m["type"], m["nick"]) for m in first["messages"]] == [("join", "alice")]
    ws_recv_until(alice, is_event("join", "carol"))
    last, epoch = first["messages"][-1]["id"], first["messages"][-1]["epoch"]
    second = poll(http, chat, room, since=last, epoch=epoch, cid="carolcid", nick="carol")
    assert "reset" not in second
    assert [(m["type"], m["nick"], m["id"]) for m in second["messages"]] == [
        ("join", "carol", last + 1)]
    last += 1

    result: List[Dict[str, Any]] = []
    parked = threading.Thread(target=lambda: result.append(
        poll(http, chat, room, since=last, epoch=epoch, cid="carolcid", nick="carol")))
    parked.start()
    # The poll parks; wait until the server holds it, then talk over WebSocket.
    wait_until(lambda: http.get(chat.url + "healthz", timeout=5).json()["parked_polls"] >= 1,
               10, "the poll to park")
    ws_say(alice, "to the poller")
    parked.join(POLL_TIMEOUT + 10)
    assert [(m["nick"], m["text"], m["id"]) for m in result[0]["messages"]] == [
        ("alice", "to the poller", last + 1)]

    r = http.post(chat.url + "send", data={"room": room, "nick": "carol", "text": "to the socket",
                                           "cid": "carolcid"}, timeout=10)   # form-encoded
    assert r.status_code == 200 and r.json() == {"ok": True, "id": last + 2}
    ws_recv_until(alice, is_msg("carol", "to the socket"))

    r = http.post(chat.url + "leave", data={"room": room, "cid": "carolcid"}, timeout=10)
    assert r.status_code == 200
    ws_recv_until(alice, is_event("leave", "carol"))
    alice.close()


def test_poll_parks_then_answers_empty(chat: ChatProcess, http: requests.Session) -> None:
    room = room_name()
    since = send(http, chat, room, "frank", "only message")
    epoch = poll(http, chat, room)["messages"][0]["epoch"]
    started = time.monotonic()
    assert poll(http, chat, room, since=since, epoch=epoch) == {"messages": []}
    assert time.monotonic() - started >= POLL_TIMEOUT - 0.5     # it was parked
    # A stale epoch (the server restarted) gets the whole history, flagged.
    again = poll(http, chat, room, since=since, epoch="stale")
    assert again["reset"] is True and [m["id"] for m in again["messages"]] == [since]


def test_polling_client_that_stops_polling_is_announced_as_gone() -> None:
    with ChatProcess("--poll-timeout", "1", "--poll-grace", "2") as chat, \
            requests.Session() as http:
        room = room_name()
        alice = ws_connect(chat.url, room, "alice")
        poll(http, chat, room, cid="gonecid", nick="gina")
        ws_recv_until(alice, is_event("join", "gina"))
        # No further polls: after the grace period (2 s here, 15 s by default)
        # gina is gone.
        ws_recv_until(alice, is_event("leave", "gina"), timeout=20)
        alice.close()
        assert "leave room=%s nick='gina' transport=poll status=timeout" % room in chat.log_text()


# -- bounds and bad input ----------------------------------------------------------

@pytest.mark.parametrize("body,status,needle", [
    ({"room": "ok", "nick": "n", "text": "x" * (MAX_TEXT + 1)}, 400,
     f"message too long: {MAX_TEXT + 1} characters, the limit is {MAX_TEXT}"),
    ({"room": "ok", "nick": "n" * (MAX_NICK + 1), "text": "hi"}, 400,
     f"nickname too long: {MAX_NICK + 1} characters, the limit is {MAX_NICK}"),
    ({"room": "ok", "nick": "n", "text": "   "}, 400, "empty message"),
    ({"room": "no room", "nick": "n", "text": "hi"}, 400, "bad room name"),
    ({"room": "ok", "nick": "n\u0007", "text": "hi"}, 400, "control characters"),
    ({"room": "ok", "nick": "n", "text": 5}, 400, "missing text"),
])
def test_send_rejects_bad_input(chat: ChatProcess, http: requests.Session,
                                body: Dict[str, Any], status: int, needle: str) -> None:
    r = http.post(chat.url + "send", json=body, timeout=10)
    assert r.status_code == status
    assert needle in r.json()["error"]


def test_send_rejects_bad_bodies(chat: ChatProcess, http: requests.Session) -> None:
    r = http.post(chat.url + "send", data=b"{not json", timeout=10,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "the body is not valid JSON"
    r = http.post(chat.url + "send", data=b"x" * (16 * 1024 + 1), timeout=10)
    assert r.status_code == 413 and "the limit is 16384" in r.json()["error"]


def test_websocket_rejects_bad_input(chat: ChatProcess) -> None:
    room = room_name()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(chat.url, room, "n" * (MAX_NICK + 1))
    assert info.value.status_code == 400
    assert b"nickname too long" in (info.value.resp_body or b"")

    alice = ws_connect(chat.url, room, "alice")
    bob = ws_connect(chat.url, room, "bob")
    ws_say(alice, "x" * (MAX_TEXT + 1))
    err = ws_recv_until(alice, lambda f: f["type"] == "error")
    assert err["error"] == f"message too long: {MAX_TEXT + 1} characters, the limit is {MAX_TEXT}"
    alice.send("not json")
    err = ws_recv_until(alice, lambda f: f["type"] == "error")
    assert err["error"] == 'frames must be JSON like {"text": "hello"}'
    alice.send_binary(b"\x00\x01")
    assert "binary frames" in ws_recv_until(alice, lambda f: f["type"] == "error")["error"]
    # The connection is still good, and bob saw none of the refused input.
    ws_say(alice, "fine")
    skipped: List[Dict[str, Any]] = []
    ws_recv_until(bob, is_msg("alice", "fine"), skipped=skipped)
    assert [f["type"] for f in skipped] == ["join"]          # bob's own join only
    alice.close()
    bob.close()


def test_ws_endpoint_without_upgrade_is_400(chat: ChatProcess, http: requests.Session) -> None:
    r = http.get(chat.url + "ws", params={"room": "r", "nick": "n"}, timeout=10)
    assert r.status_code == 400 and "WebSocket only" in r.json()["error"]


# -- slow clients ------------------------------------------------------------------

def test_slow_client_is_dropped_without_holding_up_others(chat: ChatProcess) -> None:
    room = room_name()
    fast = ws_connect(chat.url, room, "fast")
    # A client that completes the handshake and then never reads again.
    slow = socket.create_connection(("127.0.0.1", chat.port), timeout=10)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall((f"GET /ws?room={room}&nick=slow HTTP/1.1\r\nHost: x\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    assert slow.recv(12) == b"HTTP/1.1 101"
    ws_recv_until(fast, is_event("join", "slow"))

    text = "z" * 2000
    sent = 0
    left = False
    # Far more than max_buffered plus the kernel's socket buffers (~8 MB).
    while sent < 4000 and not left:
        for _ in range(50):
            ws_say(fast, text)
        for _ in range(50):
            frame = ws_recv_until(fast, lambda f: f["type"] in ("msg", "leave"))
            while frame["type"] == "leave":
                assert frame["nick"] == "slow"
                left = True
                frame = ws_recv_until(fast, lambda f: f["type"] == "msg")
        sent += 50
    if not left:
        ws_recv_until(fast, is_event("leave", "slow"), timeout=20)
    assert "leave room=%s nick='slow'" % room in chat.log_text()
    ws_say(fast, "after the drop")
    ws_recv_until(fast, is_msg("fast", "after the drop"))
    fast.close()
    slow.close()
