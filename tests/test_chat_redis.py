"""examples/chat with ``--redis``: a real redis-server on a free loopback port
and two ``python -m examples.chat`` processes carry one conversation, and
survive Redis going away and coming back.

Needs the ``redis-server`` binary (Debian package ``redis-server``) and
redis-py; skips without them, fails without them under GKIT_REQUIRE_ALL=1.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.chat.testing import (  # noqa: E402
    ChatProcess,
    RedisProcess,
    free_port,
    is_event,
    is_msg,
    redis_server_path,
    require,
    room_name,
    wait_until,
    ws_connect,
    ws_recv_until,
    ws_say,
)

pytestmark = pytest.mark.timeout(120)


def _redis_py() -> bool:
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    require(redis_server_path() is not None,
            "redis-server not found (Debian: apt-get install redis-server)")
    require(_redis_py(), "redis-py is not installed (pip install redis)")
    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()


def healthy(chat: ChatProcess) -> Dict[str, Any]:
    r = requests.get(chat.url + "healthz", timeout=5)
    return r.json() if r.status_code == 200 else {}


def reaches_redis(chat: ChatProcess) -> Callable[[], bool]:
    return lambda: bool(healthy(chat).get("ok"))


def logged(chat: ChatProcess, text: str) -> Callable[[], bool]:
    return lambda: text in chat.log_text()


@pytest.fixture
def two_chats(redis_server: RedisProcess) -> Iterator[Tuple[ChatProcess, ChatProcess]]:
    a = ChatProcess("--redis", redis_server.url)
    try:
        b = ChatProcess("--redis", redis_server.url)
    except BaseException:
        a.stop()
        raise
    try:
        for chat in (a, b):     # subscribed to Redis, not only listening on HTTP
            wait_until(reaches_redis(chat), 20, f"{chat.url} to reach Redis")
        yield a, b
    finally:
        codes = [a.stop(), b.stop()]
        for chat in (a, b):
            assert "Traceback" not in chat.log_text(), chat.log_text()
        assert codes == [0, 0], codes


def test_two_processes_carry_one_conversation(two_chats: Tuple[ChatProcess, ChatProcess]) -> None:
    a, b = two_chats
    assert a.port != b.port
    room = room_name("redis")
    alice = ws_connect(a.url, room, "alice")        # on process A
    bob = ws_connect(b.url, room, "bob")            # on process B
    ws_recv_until(alice, is_event("join", "bob"))

    ws_say(alice, "from A")
    got = ws_recv_until(bob, is_msg("alice", "from A"))
    ws_say(bob, "from B")
    back = ws_recv_until(alice, is_msg("bob", "from B"))
    assert back["id"] == got["id"] + 1 and back["epoch"] == got["epoch"]

    # POST /send on A reaches the WebSocket client on B too.
    sent = requests.post(a.url + "send", json={"room": room, "nick": "carol", "text": "by POST"},
                         timeout=10)
    assert sent.status_code == 200 and sent.json()["id"] == back["id"] + 1
    ws_recv_until(bob, is_msg("carol", "by POST"))

    # History lives in Redis: a newcomer on either process sees it all, in order.
    dave = ws_connect(b.url, room, "dave")
    texts = [(m["nick"], m["text"]) for m in dave.history if m["type"] == "msg"]
    assert texts == [("alice", "from A"), ("bob", "from B"), ("carol", "by POST")]
    ids = [m["id"] for m in dave.history]
    assert ids == list(range(ids[0], ids[0] + len(ids)))

    bob.close()
    ws_recv_until(alice, is_event("leave", "bob"))
    for ws in (alice, dave):
        ws.close()


def test_long_poll_on_one_process_sees_websocket_on_the_other(
        two_chats: Tuple[ChatProcess, ChatProcess]) -> None:
    a, b = two_chats
    room = room_name("redis-poll")
    alice = ws_connect(a.url, room, "alice")
    first = requests.get(b.url + "poll", params={"room": room}, timeout=40).json()
    last = first["messages"][-1]
    with requests.Session() as http:
        result: List[Dict[str, Any]] = []
        t = threading.Thread(target=lambda: result.append(http.get(
            b.url + "poll", params={"room": room, "since": last["id"], "epoch": last["epoch"]},
            timeout=40).json()))
        t.start()
        wait_until(lambda: healthy(b).get("parked_polls", 0) >= 1, 10, "the poll to park on B")
        ws_say(alice, "across processes")
        t.join(40)
    got = [(m["nick"], m["text"]) for m in result[0]["messages"]]
    assert got == [("alice", "across processes")]
    alice.close()


def test_losing_redis_is_reported_and_survived(redis_server: RedisProcess,
                                               two_chats: Tuple[ChatProcess, ChatProcess]) -> None:
    a, b = two_chats
    room = room_name("outage")
    alice = ws_connect(a.url, room, "alice")
    bob = ws_connect(b.url, room, "bob")
    ws_recv_until(alice, is_event("join", "bob"))

    redis_server.stop()
    # Both processes notice, keep serving, and say what is wrong.
    for chat in (a, b):
        wait_until(logged(chat, "gkit.hub: lost the connection to"), 20, "the lost-Redis log line")
        r = requests.get(chat.url + "healthz", timeout=5)
        assert r.status_code == 503 and r.json()["ok"] is False
        assert requests.get(chat.url, timeout=5).status_code == 200
    ws_say(alice, "into the void")
    err = ws_recv_until(alice, lambda f: f["type"] == "error")
    assert err["error"].startswith("chat backend unavailable (Redis:")
    r = requests.post(a.url + "send", json={"room": room, "nick": "x", "text": "y"}, timeout=10)
    assert r.status_code == 503 and "chat backend unavailable" in r.json()["error"]

    # Redis comes back (empty: no persistence): both reconnect by themselves.
    with RedisProcess(port=redis_server.port):
        for chat in (a, b):
            wait_until(reaches_redis(chat), 30, f"{chat.url} to reconnect")
        ws_say(alice, "back again")
        got = ws_recv_until(bob, is_msg("alice", "back again"))
        assert got["id"] == 1          # a new epoch: the ids started over
        ws_recv_until(alice, is_msg("alice", "back again"))
        for ws in (alice, bob):
            ws.close()
        for chat in (a, b):
            log = chat.log_text()
            assert "ERROR gkit.hub: lost the connection to redis://127.0.0.1:" in log
            assert "INFO gkit.hub: subscribed to redis://127.0.0.1:" in log
            assert "INFO gkit.hub: reconnected to redis://127.0.0.1:" in log


def test_starts_without_redis_and_connects_when_it_appears() -> None:
    """REDIS_URL pointing at nothing yet: the chat serves, says what is
    wrong, and starts sharing rooms once Redis is up."""
    require(redis_server_path() is not None,
            "redis-server not found (Debian: apt-get install redis-server)")
    require(_redis_py(), "redis-py is not installed (pip install redis)")
    port = free_port()
    with ChatProcess(env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"}) as chat:
        wait_until(logged(chat, f"gkit.hub: cannot reach redis://127.0.0.1:{port}/0"), 20,
                   "the cannot-reach log line")
        r = requests.get(chat.url + "healthz", timeout=5)
        assert r.status_code == 503 and r.json()["hub"] == "redis"
        assert requests.get(chat.url, timeout=5).status_code == 200
        with RedisProcess(port=port):
            wait_until(reaches_redis(chat), 30, "the chat to reach Redis")
            room = room_name("late")
            alice = ws_connect(chat.url, room, "alice")
            ws_say(alice, "redis is here")
            ws_recv_until(alice, is_msg("alice", "redis is here"))
            alice.close()
        assert "Traceback" not in chat.log_text()


def test_first_healthz_of_each_worker_is_200_when_redis_is_fine(
        redis_server: RedisProcess) -> None:
    """Issue 8 point 16: under `gkit --workers N --hub redis://...` the first
    /healthz a fresh worker answered was 503 with "error": null."""
    from apps_cli import GkitProcess

    proc = GkitProcess("examples.chat.wsgi:app", "--ip", "127.0.0.1", "--port", "0",
                       "--workers", "3", "--hub", redis_server.url, cwd=str(ROOT))
    try:
        url = proc.ready()
        proc.wait_line("worker serving", 15)
        answers = []
        for _ in range(9):  # fresh connections: the first ones land on fresh workers
            r = requests.get(url + "/healthz", headers={"Connection": "close"}, timeout=5)
            answers.append((r.status_code, r.json()["ok"], r.json()["error"]))
        assert answers == [(200, True, None)] * 9, answers
    finally:
        proc.signal()
        proc.wait(20)
