"""Load examples/chat with locust: plain HTTP, long-polling chat and WebSocket chat.

Start the chat, then run locust headless and bounded::

    python -m examples.chat &
    locust -f loadtests/locustfile.py --headless -u 1000 -r 200 -t 60s --host http://127.0.0.1:8090

Users (weights 1 : 3 : 6):

- ``PageUser``: ``GET /``, the script and a room's history, like people opening the page.
- ``PollChatUser``: the page's long-polling loop, ``GET /poll`` (parks until a
  message arrives, at most 25 s) plus ``POST /send`` every few seconds.
- ``WebSocketChatUser``: a custom ``User`` on websocket-client (cooperative,
  since locust runs monkey-patched by gevent). It reports to locust's
  statistics through ``environment.events.request.fire`` as locust's docs
  describe for non-HTTP clients: ``WS connect``, ``WS send`` (time to hand the
  frame to the socket), ``WS round trip`` (own message sent until its echo
  from the room arrives) and ``WS receive`` (delivery latency of other users'
  messages: receive time minus the server's timestamp; same clock here).

The HTTP users are locust's ``FastHttpUser`` (geventhttpclient): a load
generator that shares a small machine with the server needs the cheap client.
The long-poll users report ``POLL round trip`` the same way (POST /send until
the message comes back on the user's own poll). ``/poll`` response times are
long by design: a poll parks until the room has news.

Environment knobs: ``CHAT_ROOMS`` (default 20; users spread evenly over
them, so fan-out per message is users/rooms), ``CHAT_SEND_EVERY`` (seconds,
``min,max``, default ``5,15``). At the end the script prints the most
WebSockets and parked polls the server held at once (from ``/healthz``).
"""
from __future__ import annotations

import json
import os
import random
import time
import urllib.parse
import uuid
from typing import Any, Dict, Optional

import gevent
import requests
import websocket  # websocket-client
from locust import FastHttpUser, User, between, constant, events, task
from locust.runners import WorkerRunner

ROOMS = int(os.environ.get("CHAT_ROOMS", "20"))
SEND_MIN, SEND_MAX = (float(x) for x in os.environ.get("CHAT_SEND_EVERY", "5,15").split(","))
POLL_NAME = "/poll (parks up to 25 s)"


def pick_room() -> str:
    return f"load-{random.randrange(ROOMS)}"


def new_nick(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


def forget_old(pending: Dict[str, float], now: float, horizon: float = 60.0) -> None:
    for token in [t for t, t0 in pending.items() if now - t0 > horizon]:
        del pending[token]


class PageUser(FastHttpUser):
    """Someone opening the page: HTML, script, the room's history."""

    weight = 1
    wait_time = between(1, 3)

    @task(3)
    def page(self) -> None:
        self.client.get("/", name="/")

    @task(1)
    def static(self) -> None:
        self.client.get("/static/chat.js", name="/static/chat.js")

    @task(1)
    def history(self) -> None:
        self.client.get("/history?room=" + pick_room(), name="/history")


class PollChatUser(FastHttpUser):
    """The page's long-polling transport: poll, and send every few seconds."""

    weight = 3
    wait_time = constant(0)          # the parked poll is the wait
    network_timeout = 40.0           # a poll parks for up to 25 s

    def on_start(self) -> None:
        self.room = pick_room()
        self.nick = new_nick("poll")
        self.cid = uuid.uuid4().hex
        self.since = 0
        self.epoch = ""
        self.pending: Dict[str, float] = {}
        self.next_send = time.monotonic() + random.uniform(0, SEND_MAX)

    def on_stop(self) -> None:
        self.client.post("/leave", data={"room": self.room, "cid": self.cid}, name="/leave")

    @task
    def poll_and_send(self) -> None:
        if time.monotonic() >= self.next_send:
            self.send()
            self.next_send = time.monotonic() + random.uniform(SEND_MIN, SEND_MAX)
        params = {"room": self.room, "since": self.since, "epoch": self.epoch,
                  "nick": self.nick, "cid": self.cid}
        with self.client.get("/poll?" + urllib.parse.urlencode(params), name=POLL_NAME,
                             catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
                return
            try:
                messages = r.json()["messages"]
            except (ValueError, KeyError) as e:
                r.failure(f"bad poll answer: {e}")
                return
        now = time.perf_counter()
        for m in messages:
            if m["epoch"] != self.epoch:
                self.epoch, self.since = m["epoch"], 0
            self.since = max(self.since, m["id"])
            token = m["text"].split(" ", 1)[0] if m["type"] == "msg" else ""
            t0 = self.pending.pop(token, None)
            if t0 is not None:
                self.environment.events.request.fire(
                    request_type="POLL", name="round trip (send → own poll)",
                    response_time=(now - t0) * 1000, response_length=len(m["text"]),
                    exception=None, context={})
        forget_old(self.pending, now)

    def send(self) -> None:
        token = uuid.uuid4().hex[:12]
        self.pending[token] = time.perf_counter()
        self.client.post("/send", json={"room": self.room, "nick": self.nick, "cid": self.cid,
                                        "text": f"{token} hello from {self.nick}"},
                         name="/send")


class WebSocketChatUser(User):
    """A WebSocket chat client; a reader greenlet takes every frame."""

    weight = 6
    wait_time = between(SEND_MIN, SEND_MAX)

    def on_start(self) -> None:
        self.room = pick_room()
        self.nick = new_nick("ws")
        self.ws: Optional[Any] = None
        self.reader: Optional[gevent.Greenlet] = None
        self.pending: Dict[str, float] = {}
        self.stopping = False
        self.connect()

    def on_stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            self.ws.close()
        if self.reader is not None:
            self.reader.kill(block=False)

    def fire(self, name: str, started: float, length: int,
             exception: Optional[BaseException] = None,
             response_time: Optional[float] = None) -> None:
        self.environment.events.request.fire(
            request_type="WS", name=name,
            response_time=(time.perf_counter() - started) * 1000 if response_time is None
            else response_time,
            response_length=length, exception=exception, context={})

    def connect(self) -> None:
        base = (self.host or "http://127.0.0.1:8090").rstrip("/")
        url = "ws" + base[len("http"):] + f"/ws?room={self.room}&nick={self.nick}"
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(url, timeout=30)
            history = ws.recv()              # the history frame ends the "connect"
            ws.settimeout(None)
        except Exception as e:
            self.fire("connect", started, 0, e)
            return
        self.fire("connect", started, len(history))
        self.ws = ws
        self.reader = gevent.spawn(self.read_forever, ws)

    def read_forever(self, ws: Any) -> None:
        while True:
            try:
                raw = ws.recv()
            except Exception as e:
                if not self.stopping:
                    self.fire("receive", time.perf_counter(), 0, e)
                    self.ws = None           # the next task reconnects
                return
            if not raw:                      # closed
                if not self.stopping:
                    self.fire("receive", time.perf_counter(), 0,
                              ConnectionError("the server closed the WebSocket"))
                    self.ws = None
                return
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame.get("type") != "msg":
                continue
            t0 = self.pending.pop(frame["text"].split(" ", 1)[0], None)
            if t0 is not None:
                self.fire("round trip (send → echo)", t0, len(raw))
            else:
                self.fire("receive (delivery latency)", now, len(raw),
                          response_time=max(0.0, time.time() * 1000 - frame["ts"]))
            forget_old(self.pending, now)

    @task
    def say(self) -> None:
        if self.ws is None:
            self.connect()
            return
        token = uuid.uuid4().hex[:12]
        payload = json.dumps({"text": f"{token} hello from {self.nick}"})
        started = time.perf_counter()
        self.pending[token] = started
        try:
            self.ws.send(payload)
        except Exception as e:
            self.fire("send", started, 0, e)
            self.ws = None
            return
        self.fire("send", started, len(payload))


# -- what the server held: sampled from /healthz during the run ------------------

_held = {"websockets": 0, "parked_polls": 0, "samples": 0}


def _sample(host: str) -> None:
    while True:
        try:
            h = requests.get(host.rstrip("/") + "/healthz", timeout=5).json()
            _held["websockets"] = max(_held["websockets"], h.get("websockets", 0))
            _held["parked_polls"] = max(_held["parked_polls"], h.get("parked_polls", 0))
            _held["samples"] += 1
        except (requests.RequestException, ValueError):
            pass
        gevent.sleep(2)


@events.test_start.add_listener
def _start_sampling(environment: Any, **_: Any) -> None:
    # Once per run: on the master (or the only process), not on every worker.
    if environment.host and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_sample, environment.host)


@events.quitting.add_listener
def _report_held(environment: Any, **_: Any) -> None:
    if _held["samples"]:
        print(f"chat server held at most {_held['websockets']} WebSockets and "
              f"{_held['parked_polls']} parked polls at once "
              f"({_held['samples']} samples of /healthz)", flush=True)
