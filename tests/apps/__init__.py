"""Apps the integration tests serve: the same routes in Flask, Django and Bottle
(``flask_app``, ``django_project``, ``bottle_app``) and a plain WSGI app for the
gunicorn worker (``plain``).

Every framework app has, at the same paths:

- ``GET /hello?name=N``: a normal view, ``hello N from <framework>``;
- ``GET /ws``: a WebSocket echo, opened with ``with_channel`` from the view;
- ``GET /stream``: a chunked stream; its first chunk is ``stream open\\n``, then
  one chunk per ``POST /publish``;
- ``GET /poll``: a long poll, parked until a ``POST /publish`` answers it;
- ``POST /publish`` (body: the message): delivers to every open stream and
  parked poll, answers ``delivered <n>\\n``; ``POST /publish?close=1`` also
  ends the streams;
- ``GET /static/<name>``: the framework's own static file handling, from
  :data:`STATIC_DIR`, whose files are :data:`STATIC_FILES`.

Nothing here monkey-patches: the test process (conftest) or the server does.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Tuple

import gevent.event

from gkit import Channel, with_channel

# Static files are made at import, so the repository holds no binary blobs;
# a larger file makes the server send it in more than one sendfile call.
STATIC_FILES: Dict[str, bytes] = {
    "hello.txt": b"hello, static world\n",
    "blob.bin": bytes(range(256)) * 1024 + b"tail",  # 262,148 bytes, every byte value
}
STATIC_DIR = tempfile.mkdtemp(prefix="gkit-static-")
for _name, _data in STATIC_FILES.items():
    with open(os.path.join(STATIC_DIR, _name), "wb") as _f:
        _f.write(_data)
atexit.register(shutil.rmtree, STATIC_DIR, True)


def websocket_echo(environ: Dict[str, Any]) -> Channel:
    """The /ws route body: echo every message; plain HTTP gets a 400."""
    ch = with_channel(environ)
    if ch.is_websocket:
        ch.on_receive(ch.send)
    else:
        ch.send({"status": 400, "headers": {"Content-Type": "text/plain"},
                 "body": "this route speaks WebSocket\n"})
    return ch


class Feed:
    """Long polls and streams of one app, fed by ``publish``."""

    def __init__(self) -> None:
        self.polls: List[Channel] = []
        self.streams: List[Channel] = []
        self.joined = gevent.event.Event()  # set whenever a listener registers

    def park(self, environ: Dict[str, Any]) -> Channel:
        """The /poll route body: park the request until the next publish."""
        ch = with_channel(environ)
        self._add(self.polls, ch)
        return ch

    def open_stream(self, environ: Dict[str, Any]) -> Channel:
        """The /stream route body: start a chunked response, keep it open."""
        ch = with_channel(environ)
        ch.send({"status": 200, "headers": {"Content-Type": "text/plain"},
                 "body": "stream open\n"}, close_after_send=False)
        self._add(self.streams, ch)
        return ch

    def _add(self, group: List[Channel], ch: Channel) -> None:
        group.append(ch)
        ch.on_close(lambda status: group.remove(ch) if ch in group else None)
        self.joined.set()

    def wait_for(self, polls: int = 0, streams: int = 0, timeout: float = 5.0) -> None:
        """Block until that many listeners are registered (for in-process tests)."""
        with gevent.Timeout(timeout, AssertionError(
                f"expected {polls} polls and {streams} streams; have "
                f"{len(self.polls)} and {len(self.streams)}")):
            while len(self.polls) < polls or len(self.streams) < streams:
                self.joined.clear()
                self.joined.wait()

    def publish(self, message: str, close: bool = False) -> int:
        """Answer every parked poll and send a chunk to every stream."""
        delivered = 0
        for ch in list(self.polls):
            delivered += ch.send({"status": 200, "headers": {"Content-Type": "text/plain"},
                                  "body": message})
        for ch in list(self.streams):
            delivered += ch.send(message + "\n", close_after_send=close)
        return delivered


class FileWrapperProbe:
    """WSGI middleware that records whether a response went out through the
    server's ``wsgi.file_wrapper``: for each request, (path, wrappers made,
    whether the app returned one of them untouched, so the server can
    sendfile it)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.records: List[Tuple[str, int, bool]] = []

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        made: List[Any] = []
        original = environ.get("wsgi.file_wrapper")
        if original is not None:
            def file_wrapper(filelike: Any, *blksize: int) -> Any:
                wrapper = original(filelike, *blksize)
                made.append(wrapper)
                return wrapper
            environ["wsgi.file_wrapper"] = file_wrapper
        result = self.app(environ, start_response)
        self.records.append((environ.get("PATH_INFO", ""), len(made),
                             any(result is w for w in made)))
        return result
