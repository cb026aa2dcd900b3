"""Listening sockets for the gkit command: ``--bind``/``--uds`` addresses,
binding them once (TCP or Unix), and handing them to workers or a reloaded
child by descriptor number."""
from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any, List, Optional

# A child started by --reload gets the listening sockets' descriptors here
# (see :func:`adopt`).
FDS_ENV = "GKIT_LISTEN_FDS"


class BindError(ValueError):
    """A bad ``--bind`` address; the message is one line."""


@dataclass(frozen=True)
class Bind:
    """One address to listen on: ``kind`` is "tcp" (host, port) or "unix" (path)."""

    kind: str
    host: str = ""
    port: Optional[int] = None
    path: str = ""


def parse_bind(text: str) -> Bind:
    """Parse gunicorn's address forms.

    >>> parse_bind("127.0.0.1:8000"), parse_bind("[::1]:80").host, parse_bind("unix:/tmp/s").path
    (Bind(kind='tcp', host='127.0.0.1', port=8000, path=''), '::1', '/tmp/s')
    """
    if text.startswith("unix:"):
        if not text[5:]:
            raise BindError(f"--bind {text!r}: give a path after unix:")
        return Bind("unix", path=text[5:])
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise BindError(f"--bind {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:  # a host alone, or a bare IPv6 address
        host, port_text = text, None
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise BindError(f"--bind {text!r}: the port must be an integer from 0 to 65535")
        port = int(port_text)
    return Bind("tcp", host=host or "0.0.0.0", port=port)


class Listener:
    """A bound, listening socket; ``owned``: this process created it (and
    removes a Unix socket's file when it closes it)."""

    def __init__(self, sock: socket.socket, path: str = "", owned: bool = True) -> None:
        self.sock = sock
        self.path = path
        self.owned = owned
        self._inode = os.stat(path).st_ino if path and owned else None

    def url(self, scheme: str = "http") -> str:
        if self.sock.family == socket.AF_UNIX:
            return "unix:" + (self.path or self.sock.getsockname())
        host, port = self.sock.getsockname()[:2]
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if self._inode is not None:  # unlink our socket file, not one that replaced it
            try:
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self._inode = None


def _bind_tcp(bind: Bind, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(bind.host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(errno.EINVAL, f"cannot bind {bind.host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {bind.host}:{port}: {exc.strerror}") from None
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(errno.EEXIST, f"cannot bind unix:{path}: the file exists and is "
                                        f"not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:  # nobody listens: a stale socket file from an earlier run
            os.unlink(path)
        else:
            raise OSError(errno.EADDRINUSE, f"cannot bind unix:{path}: another server "
                                            f"listens on it")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind unix:{path}: {exc.strerror}") from None
    return sock


def bind_all(binds: List[Bind], config: Any) -> List[Listener]:
    """Bind and listen on every address (non-blocking); OSError names the one that failed."""
    listeners: List[Listener] = []
    try:
        for bind in binds:
            if bind.kind == "unix":
                lst = Listener(_bind_unix(bind.path, config.backlog), bind.path)
            else:
                port = config.port if bind.port is None else bind.port
                lst = Listener(_bind_tcp(bind, port, config.backlog, config.reuse_port))
            lst.sock.setblocking(False)
            listeners.append(lst)
    except BaseException:
        for lst in listeners:
            lst.close()
        raise
    return listeners


def adopt(fds: str) -> List[Listener]:
    """The listeners a parent passed down as descriptor numbers ("3,4") in
    the environment variable :data:`FDS_ENV`."""
    return [Listener(socket.socket(fileno=int(fd)), owned=False) for fd in fds.split(",") if fd]


def cooperative(listener: Listener) -> Any:
    """Make ``listener.sock`` a gevent socket (call after monkey-patching); return it."""
    from gevent import socket as gsocket

    sock = listener.sock
    if not isinstance(sock, gsocket.socket):
        sock = gsocket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        sock.setblocking(False)
        listener.sock = sock
    return sock
