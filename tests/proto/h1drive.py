"""Drive an HTTP/1.1 engine as gkit's connection loop does, with no sockets.

``drive(engine, chunks)`` feeds the chunks one read at a time, then EOF, and
returns what the app side would see: one tuple per request (method, target,
version, headers, body, keep_alive) and how it ended ("closed", "close",
"upgrade:" and the bytes that followed the upgrade request, "stalled", or
the refusal's status hint). Used by the sans-IO table test and the
differential fuzz test, which compare the two engines on these outcomes.
"""
from __future__ import annotations

from typing import Iterable, List, Tuple, Union

from gkit.errors import ProtocolError
from gkit.proto.engines import make_parser
from gkit.proto.h1 import CLOSED, END, NEED_DATA, Request

Seen = Tuple[str, bytes, str, Tuple[Tuple[bytes, bytes], ...], bytes, bool]
Outcome = Tuple[Tuple[Seen, ...], Union[str, int]]


def drive(engine: str, chunks: Iterable[bytes], max_line: int = 8192, max_head: int = 65536,
          max_body: int = 1 << 20) -> Outcome:
    parser = make_parser(engine, max_line, max_head, max_body)
    reads: List[bytes] = [c for c in chunks if c] + [b""]
    seen: List[Seen] = []
    req = None
    body = b""
    end: Union[str, int] = "closed"
    try:
        while True:
            ev = parser.next_event()
            if ev is NEED_DATA:
                if not reads:
                    end = "stalled"
                    break
                parser.feed(reads.pop(0))
            elif ev is CLOSED:
                break
            elif type(ev) is Request:
                req, body = ev, b""
                if ev.upgrade:  # the bytes after it go to the new protocol, unparsed
                    seen.append(_seen(req, body))
                    end = "upgrade:" + parser.upgrade_data().decode("latin-1")
                    break
            elif type(ev) is bytes:
                body += ev
            elif ev is END:
                assert req is not None
                seen.append(_seen(req, body))
                req = None
                if not seen[-1][5]:
                    end = "close"
                    break
                parser.start_next_cycle()
            else:
                raise AssertionError(f"unexpected event {ev!r}")
    except ProtocolError as exc:
        end = exc.status_hint
    return tuple(seen), end


def _seen(req: Request, body: bytes) -> Seen:
    return (req.method, req.target, req.version, tuple(req.headers), body, req.keep_alive)
