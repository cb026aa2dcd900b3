"""``environ["gunicorn.socket"]``: the raw-socket hand-off of gunicorn's contract.

simple-websocket (so flask-sock, and engineio without gevent-websocket) looks
for the connection's socket under ``gunicorn.socket``, answers the handshake
on it itself and reads and writes frames on it from a thread (a greenlet
here). gkit puts a :class:`HandedSocket` there on WebSocket upgrade requests.
Nothing happens until the app touches it; from its first use the
connection is the app's: gkit takes the connection's idle deadline off,
writes nothing more on it (whatever the app returns or raises is dropped;
``StopIteration``, which simple-websocket and flask-sock raise to say "I
answered on the socket", is the normal end), and closes it once the app
returned. Bytes the client sent right after its request head, which gkit
already read, are the first ones the app receives.

>>> def app(environ, start_response):                  # doctest: +SKIP
...     ws = simple_websocket.Server(environ)            # finds gunicorn.socket
...     ws.send(ws.receive())
...     ws.close()
...     raise StopIteration                              # gunicorn's "already answered"
"""
from __future__ import annotations

import socket
from typing import Any, Callable, Optional

__all__ = ["HandedSocket"]


class HandedSocket:
    """The connection's socket, handed to the app; ``taken`` once it used it.

    Every attribute is the socket's own; the first access calls ``on_take``
    exactly once: it gives the connection to the app and returns the bytes
    already read past the request head (the first ones ``recv`` returns).
    """

    __slots__ = ("_sock", "_pending", "_on_take", "taken")

    def __init__(self, sock: socket.socket, on_take: Callable[[], Optional[bytes]]) -> None:
        self._sock = sock
        self._pending = b""
        self._on_take: Optional[Callable[[], Optional[bytes]]] = on_take
        self.taken = False

    def _take(self) -> socket.socket:
        if not self.taken:
            self.taken = True
            on_take, self._on_take = self._on_take, None
            if on_take is not None:
                self._pending = on_take() or b""
        return self._sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._take(), name)

    # recv and recv_into first return what gkit had read past the request head.
    def recv(self, size: int, *flags: int) -> bytes:
        sock = self._take()
        if self._pending and not flags:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        return sock.recv(size, *flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, *flags: int) -> int:
        sock = self._take()
        if self._pending and not flags:
            n = min(len(self._pending), nbytes or len(buffer))
            memoryview(buffer)[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        return sock.recv_into(buffer, nbytes, *flags)

    def fileno(self) -> int:
        return self._take().fileno()

    def __repr__(self) -> str:
        return f"<gkit.compat.HandedSocket {'taken' if self.taken else 'not used'} {self._sock!r}>"
