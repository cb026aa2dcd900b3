"""The chat's WSGI app: the page, WebSocket, long polling and the JSON API.

Routes (all JSON is UTF-8; errors are ``{"error": "..."}`` with 400, 404,
405, 413 or 503):

=====================  =====================================================
``GET /``, ``/r/<room>``  the page (``/`` is room ``lobby``)
``GET /static/<file>``  its script and style sheet
``GET /ws``            WebSocket: ``?room=<room>&nick=<nick>``; first frame
                       is the room's history, then one frame per message;
                       the client sends ``{"text": "..."}``
``GET /poll``          long polling: ``?room=&since=<id>&epoch=<epoch>``
                       (plus ``nick=&cid=`` to be announced as present);
                       answers at once with messages newer than ``since``,
                       else parks until one arrives or ``poll_timeout`` passes
                       (``{"messages": []}``)
``POST /send``         ``room, nick, text`` (form or JSON) → ``{"id": n}``
``POST /leave``        ``room, cid``: a polling client leaves (the page sends
                       it with ``navigator.sendBeacon`` when it closes)
``GET /history``       ``?room=``: the room's last messages
``GET /healthz``       the hub's state; 503 while Redis is unreachable
=====================  =====================================================

A parked poll holds a gkit channel, not a worker greenlet; the WebSocket
handlers are channel callbacks. Slow consumers: ``Channel.send`` never blocks
and gkit closes a channel whose unwritten bytes pass ``max_buffered``, so one
stuck client costs the others nothing and is then dropped like any leaver.
"""
from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import gevent
import gevent.pool

from gkit import with_channel

from .hub import HubUnavailable, LocalHub
from .messages import (
    MAX_BODY,
    InvalidInput,
    Message,
    encode,
    error_frame,
    history_frame,
    new_message,
    poll_body,
    validate_nick,
    validate_room,
    validate_text,
)

log = logging.getLogger("gkit.chat")

STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".html": "text/html; charset=utf-8"}
DEFAULT_ROOM = "lobby"
# The page loads nothing but its own script and style, and talks only to
# this origin: even a message that got past escaping could not run a script.
PAGE_HEADERS = [
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]
JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8"),
                ("Cache-Control", "no-store")]
EMPTY_POLL = poll_body([])
_CID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")

StartResponse = Callable[..., Any]
Environ = Dict[str, Any]


class HTTPError(Exception):
    """An error answer: ``status`` line and a message for the ``error`` field."""

    def __init__(self, status: str, message: str, headers: Iterable[Tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


class Member:
    """A WebSocket client in a room. Until its history frame is out, live
    messages wait in ``pending`` so they cannot overtake the history;
    ``last`` (epoch, id) is the newest message it has, so one that reaches
    it through both the history and the hub is sent once."""

    __slots__ = ("nick", "peer", "ready", "joined", "pending", "last")

    def __init__(self, nick: str, peer: str) -> None:
        self.nick = nick
        self.peer = peer
        self.ready = False
        self.joined = False
        self.pending: List[Message] = []
        self.last: Optional[Tuple[str, int]] = None


def _newer(message: Message, last: Optional[Tuple[str, int]]) -> bool:
    return last is None or message["epoch"] != last[0] or message["id"] > last[1]


class Waiter:
    """A parked long-poll request."""

    __slots__ = ("ch", "since", "epoch", "deadline", "cid", "answered", "counted")

    def __init__(self, ch: Any, since: int, epoch: str, deadline: float,
                 cid: Optional[str]) -> None:
        self.ch = ch
        self.since = since
        self.epoch = epoch
        self.deadline = deadline
        self.cid = cid
        self.answered = False
        self.counted = False      # included in its Poller's ``parked``


class Poller:
    """A long-polling client's presence: present while it keeps polling."""

    __slots__ = ("nick", "peer", "last_seen", "parked")

    def __init__(self, nick: str, peer: str, now: float) -> None:
        self.nick = nick
        self.peer = peer
        self.last_seen = now
        self.parked = 0


class Room:
    __slots__ = ("name", "sockets", "waiters", "pollers")

    def __init__(self, name: str) -> None:
        self.name = name
        self.sockets: Dict[Any, Member] = {}
        self.waiters: Set[Waiter] = set()
        self.pollers: Dict[str, Poller] = {}

    def empty(self) -> bool:
        return not (self.sockets or self.waiters or self.pollers)


class ChatApp:
    """The WSGI app. ``hub`` is a :class:`LocalHub` (default) or a
    :class:`~examples.chat.redis_hub.RedisHub`.

    ``poll_timeout``: seconds a poll stays parked before an empty answer.
    ``poll_grace``: seconds after its last poll ended before a polling client
    that stopped polling is announced as gone.

    >>> from gkit import run_server                      # doctest: +SKIP
    >>> server = run_server(ChatApp(), ip="127.0.0.1", port=8090)  # doctest: +SKIP
    """

    def __init__(self, hub: Any = None, *, poll_timeout: float = 25.0,
                 poll_grace: float = 15.0, sweep_interval: float = 1.0) -> None:
        self.hub = hub if hub is not None else LocalHub()
        self.poll_timeout = poll_timeout
        self.poll_grace = poll_grace
        self.rooms: Dict[str, Room] = {}
        self._page = (STATIC_DIR / "index.html").read_bytes()
        self._static = {p.name: (p.read_bytes(), STATIC_TYPES[p.suffix])
                        for p in STATIC_DIR.iterdir() if p.suffix in STATIC_TYPES}
        self._background = gevent.pool.Group()   # leave announcements in flight
        self.hub.start(self._deliver, rooms=lambda: list(self.rooms))
        self._sweeper = gevent.spawn(self._sweep_forever, sweep_interval)
        self._sweeper.name = "gkit.chat sweeper"

    def close(self, timeout: float = 2.0) -> None:
        """Stop the background greenlets and the hub, after letting the leave
        announcements of a server stop reach the hub (at most ``timeout`` s)."""
        self._sweeper.kill(block=False)
        self._background.join(timeout=timeout)
        self._background.kill(block=False)
        self.hub.stop()

    # -- WSGI ----------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        query = {k: v[0] for k, v in urllib.parse.parse_qs(
            environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        try:
            route = self._route(path)
            allowed = ("POST",) if path in ("/send", "/leave") else ("GET", "HEAD")
            if method not in allowed:
                raise HTTPError("405 Method Not Allowed", f"{path} takes {' or '.join(allowed)}",
                                [("Allow", ", ".join(allowed))])
            return route(environ, start_response, query)
        except InvalidInput as e:
            return _json(start_response, "400 Bad Request", {"error": str(e)})
        except HubUnavailable as e:
            return _json(start_response, "503 Service Unavailable", {"error": str(e)})
        except HTTPError as e:
            return _json(start_response, e.status, {"error": str(e)}, e.headers)

    def _route(self, path: str) -> Callable[[Environ, StartResponse, Dict[str, str]], Any]:
        if path == "/" or path.startswith("/r/"):
            return self._serve_page
        if path.startswith("/static/"):
            return self._serve_static
        routes = {"/ws": self._ws, "/poll": self._poll, "/send": self._send,
                  "/leave": self._leave, "/history": self._history, "/healthz": self._health}
        if path in routes:
            return routes[path]
        raise HTTPError("404 Not Found", f"no such page: {path[:100]}")

    def _serve_page(self, environ: Environ, start_response: StartResponse,
                    query: Dict[str, str]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path != "/":
            try:
                validate_room(path[len("/r/"):].rstrip("/"))   # the page reads /r/<room>/ too
            except InvalidInput as e:
                raise HTTPError("404 Not Found", str(e)) from None
        return _ok(start_response, self._page, "text/html; charset=utf-8", PAGE_HEADERS)

    def _serve_static(self, environ: Environ, start_response: StartResponse,
                      query: Dict[str, str]) -> Iterable[bytes]:
        name = (environ.get("PATH_INFO") or "")[len("/static/"):]
        if name not in self._static or name == "index.html":
            raise HTTPError("404 Not Found", f"no such file: /static/{name[:100]}")
        body, ctype = self._static[name]
        return _ok(start_response, body, ctype,
                   [("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")])

    def _history(self, environ: Environ, start_response: StartResponse,
                 query: Dict[str, str]) -> Iterable[bytes]:
        room = validate_room(query.get("room"))
        return _json(start_response, "200 OK",
                     {"room": room, "messages": self.hub.history(room)})

    def _health(self, environ: Environ, start_response: StartResponse,
                query: Dict[str, str]) -> Iterable[bytes]:
        status = dict(self.hub.status())
        status.update(rooms=len(self.rooms),
                      websockets=sum(len(r.sockets) for r in self.rooms.values()),
                      parked_polls=sum(len(r.waiters) for r in self.rooms.values()))
        return _json(start_response, "200 OK" if status["ok"] else "503 Service Unavailable",
                     status)

    # -- delivery --------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        """The hub's callback: one new message for this process's clients."""
        room = self.rooms.get(message["room"])
        if room is None:
            return
        raw = encode(message)
        for ch, member in list(room.sockets.items()):
            if not member.ready:
                member.pending.append(message)
            elif _newer(message, member.last):
                member.last = (message["epoch"], message["id"])
                # Never blocks; False means it is closed (its on_close cleans up).
                ch.send(raw)
        if room.waiters:
            body = poll_body([message])
            for waiter in list(room.waiters):
                if _newer(message, (waiter.epoch, waiter.since)):
                    self._answer(room, waiter, body)

    def _publish(self, kind: str, room: str, nick: str, text: str = "") -> Message:
        return self.hub.publish(new_message(kind, room, nick, text))

    def _announce(self, kind: str, room: str, nick: str) -> None:
        """Publish a join or leave; a hub outage is logged, not raised."""
        try:
            self._publish(kind, room, nick)
        except HubUnavailable as e:
            log.error("could not announce %s of %r in %s: %s", kind, nick, room, e)

    def _room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name)
        return room

    def _forget_if_empty(self, room: Room) -> None:
        if room.empty() and self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    # -- WebSocket -------------------------------------------------------------

    def _ws(self, environ: Environ, start_response: StartResponse, query: Dict[str, str]) -> Any:
        room_name = validate_room(query.get("room"))
        nick = validate_nick(query.get("nick"))
        if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            raise HTTPError("400 Bad Request", "/ws speaks WebSocket only; "
                            "plain HTTP clients use GET /poll and POST /send")
        ch = with_channel(environ)
        room = self._room(room_name)
        member = Member(nick, environ.get("REMOTE_ADDR", "?"))
        room.sockets[ch] = member
        ch.on_close(lambda status: self._ws_closed(room, ch, member, status))
        try:
            history = self.hub.history(room_name)
        except HubUnavailable as e:
            ch.send(error_frame(str(e)))
            ch.close()
            return ch
        ch.send(history_frame(room_name, history))
        last = (history[-1]["epoch"], history[-1]["id"]) if history else None
        for message in member.pending:
            if _newer(message, last):
                ch.send(encode(message))
                last = (message["epoch"], message["id"])
        member.last = last
        member.pending = []
        member.ready = True
        if not ch.is_open:
            return ch
        member.joined = True
        log.info("join room=%s nick=%r transport=ws peer=%s", room_name, nick, member.peer)
        self._announce("join", room_name, nick)
        ch.on_receive(lambda data: self._ws_message(room, ch, member, data))
        return ch

    def _ws_message(self, room: Room, ch: Any, member: Member, data: Any) -> None:
        if not isinstance(data, str):
            ch.send(error_frame('binary frames are not understood: send text frames '
                                'with JSON like {"text": "hello"}'))
            return
        try:
            obj = json.loads(data)
        except ValueError:
            ch.send(error_frame('frames must be JSON like {"text": "hello"}'))
            return
        try:
            text = validate_text(obj.get("text") if isinstance(obj, dict) else None)
            self._publish("msg", room.name, member.nick, text)
        except (InvalidInput, HubUnavailable) as e:
            ch.send(error_frame(str(e)))

    def _ws_closed(self, room: Room, ch: Any, member: Member, status: str) -> None:
        if room.sockets.pop(ch, None) is None:
            return
        self._forget_if_empty(room)
        if member.joined:
            log.info("leave room=%s nick=%r transport=ws status=%s peer=%s",
                     room.name, member.nick, status, member.peer)
            # Not from inside on_close: it may run in the middle of a delivery.
            self._background.spawn(self._announce, "leave", room.name, member.nick)

    # -- long polling ----------------------------------------------------------

    def _poll(self, environ: Environ, start_response: StartResponse, query: Dict[str, str]) -> Any:
        room_name = validate_room(query.get("room"))
        try:
            since = int(query.get("since") or 0)
        except ValueError:
            raise InvalidInput("since must be a message id (an integer)") from None
        epoch = query.get("epoch") or ""
        nick, cid = query.get("nick"), query.get("cid")
        if nick is not None:
            nick = validate_nick(nick)
            if not cid or not _CID_RE.match(cid):
                raise InvalidInput("a poll with nick= needs cid=<client id> "
                                   "(1-64 letters, digits, '-' or '_')")
        ch = with_channel(environ)
        room = self._room(room_name)
        now = time.monotonic()
        waiter = Waiter(ch, since, epoch, now + self.poll_timeout, cid if nick else None)
        # Parked before reading the history: a message published meanwhile
        # answers the waiter, so nothing falls between the two.
        room.waiters.add(waiter)
        ch.on_close(lambda status: self._waiter_gone(room, waiter))
        try:
            history = self.hub.history(room_name)
        except HubUnavailable as e:
            self._answer(room, waiter, encode({"error": str(e)}), "503 Service Unavailable")
            return ch
        if history and not waiter.answered:
            if history[-1]["epoch"] != epoch:
                self._answer(room, waiter, poll_body(history, reset=True))
            else:
                newer = [m for m in history if m["id"] > since]
                if newer:
                    self._answer(room, waiter, poll_body(newer))
        # After the history: a newcomer's first answer is the room as it was,
        # its own join comes with the next poll.
        if nick is not None and cid is not None:
            self._poller_seen(room, cid, nick, environ.get("REMOTE_ADDR", "?"), waiter)
        return ch

    def _answer(self, room: Room, waiter: Waiter, body: str, status: str = "200 OK") -> None:
        if waiter.answered:
            return
        waiter.answered = True
        room.waiters.discard(waiter)
        self._poller_unparked(room, waiter)
        waiter.ch.send({"status": int(status.split()[0]), "headers": JSON_HEADERS, "body": body})

    def _waiter_gone(self, room: Room, waiter: Waiter) -> None:
        if not waiter.answered:
            waiter.answered = True
            room.waiters.discard(waiter)
            self._poller_unparked(room, waiter)
        self._forget_if_empty(room)

    def _poller_seen(self, room: Room, cid: str, nick: str, peer: str, waiter: Waiter) -> None:
        """A poll from ``cid``: a newcomer is announced; ``parked`` counts its
        polls still waiting (a poller with none for ``poll_grace`` is gone)."""
        poller = room.pollers.get(cid)
        if not waiter.answered:
            waiter.counted = True
        if poller is None:
            poller = room.pollers[cid] = Poller(nick, peer, time.monotonic())
            poller.parked = int(waiter.counted)
            log.info("join room=%s nick=%r transport=poll peer=%s", room.name, nick, peer)
            self._announce("join", room.name, nick)   # may answer the waiter: that unparks it
        else:
            poller.last_seen = time.monotonic()
            poller.parked += int(waiter.counted)

    def _poller_unparked(self, room: Room, waiter: Waiter) -> None:
        poller = room.pollers.get(waiter.cid) if waiter.counted and waiter.cid else None
        waiter.counted = False
        if poller is not None:
            poller.parked = max(0, poller.parked - 1)
            poller.last_seen = time.monotonic()

    def _poller_left(self, room: Room, cid: str, why: str) -> None:
        poller = room.pollers.pop(cid, None)
        if poller is None:
            return
        log.info("leave room=%s nick=%r transport=poll status=%s peer=%s",
                 room.name, poller.nick, why, poller.peer)
        self._forget_if_empty(room)
        self._announce("leave", room.name, poller.nick)

    def _sweep_forever(self, interval: float) -> None:
        """Answer polls that waited ``poll_timeout`` and forget pollers that
        stopped polling. One greenlet for all, instead of a timer per poll."""
        while True:
            gevent.sleep(interval)
            try:
                self._sweep(time.monotonic())
            except Exception:
                log.exception("sweeper failed; carrying on")

    def _sweep(self, now: float) -> None:
        for room in list(self.rooms.values()):
            for waiter in list(room.waiters):
                if waiter.deadline <= now:
                    self._answer(room, waiter, EMPTY_POLL)
            for cid, poller in list(room.pollers.items()):
                if poller.parked == 0 and now - poller.last_seen > self.poll_grace:
                    self._poller_left(room, cid, "timeout")
            self._forget_if_empty(room)

    # -- plain HTTP posts --------------------------------------------------------

    def _send(self, environ: Environ, start_response: StartResponse,
              query: Dict[str, str]) -> Iterable[bytes]:
        form = _read_form(environ)
        room = validate_room(_field(form, "room"))
        nick = validate_nick(_field(form, "nick"))
        text = validate_text(form.get("text"))
        message = self._publish("msg", room, nick, text)
        cid = form.get("cid")
        if isinstance(cid, str) and room in self.rooms and cid in self.rooms[room].pollers:
            self.rooms[room].pollers[cid].last_seen = time.monotonic()
        return _json(start_response, "200 OK", {"ok": True, "id": message["id"]})

    def _leave(self, environ: Environ, start_response: StartResponse,
               query: Dict[str, str]) -> Iterable[bytes]:
        form = _read_form(environ)
        room_name = validate_room(_field(form, "room"))
        cid = _field(form, "cid")
        room = self.rooms.get(room_name)
        if room is not None and cid:
            self._poller_left(room, cid, "left")
        return _json(start_response, "200 OK", {"ok": True})


def _field(form: Dict[str, Any], name: str) -> Optional[str]:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _read_form(environ: Environ) -> Dict[str, Any]:
    """The body of a POST as a dict: JSON object or urlencoded form."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("bad Content-Length") from None
    if length > MAX_BODY:
        raise HTTPError("413 Payload Too Large", f"body too large: {length} bytes, "
                        f"the limit is {MAX_BODY}")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    body = environ["wsgi.input"].read(length if not chunked else MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise HTTPError("413 Payload Too Large", f"body too large: the limit is {MAX_BODY} bytes")
    ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8") from None
    if ctype == "application/json":
        try:
            form = json.loads(text)
        except ValueError:
            raise InvalidInput("the body is not valid JSON") from None
        if not isinstance(form, dict):
            raise InvalidInput('the JSON body must be an object like {"text": "hi"}')
        return form
    return {k: v[0] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}


def _ok(start_response: StartResponse, body: bytes, ctype: str,
        headers: Iterable[Tuple[str, str]] = ()) -> List[bytes]:
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body))),
                              *headers])
    return [body]


def _json(start_response: StartResponse, status: str, obj: Any,
          headers: Iterable[Tuple[str, str]] = ()) -> List[bytes]:
    body = encode(obj).encode("utf-8")
    start_response(status, [*JSON_HEADERS, ("Content-Length", str(len(body))), *headers])
    return [body]
