"""gkit.proto.h1 and its two engines, sans-IO: bytes in, events out, no sockets.

One table of (reads, expected events) runs over both engines
(``h1_httptools`` and ``h1_h11``). Events are written as: ``("request",
method, target, version, keep_alive)``, ``b"body bytes"`` (consecutive
pieces joined: engines cut bodies where reads end), ``"END"``, ``"CLOSED"``,
and a refusal as ``("error", status_hint)``, which ends the list. The driver
feeds the reads one at a time, as the connection loop does, then EOF, and
calls ``start_next_cycle`` after each END.
"""
from __future__ import annotations

from typing import Any, List

import pytest

from gkit.errors import ProtocolError
from gkit.proto.engines import make_parser
from gkit.proto.h1 import CLOSED, END, NEED_DATA, Request
from gkit.proto.h1_checks import check_head

ENGINES = ["httptools", "h11"]
H = b"Host: x\r\n"
TE = b"Transfer-Encoding: chunked\r\n"


def events(engine: str, reads: List[bytes], max_body: int = 1000, eof: bool = True) -> List[Any]:
    parser = make_parser(engine, max_line=100, max_head=65536, max_body=max_body)
    pending = list(reads) + ([b""] if eof else [])
    out: List[Any] = []
    try:
        while True:
            ev = parser.next_event()
            if ev is NEED_DATA:
                if not pending:
                    break
                parser.feed(pending.pop(0))
            elif ev is CLOSED:
                out.append("CLOSED")
                break
            elif type(ev) is Request:
                out.append(("request", ev.method, ev.target, ev.version, ev.keep_alive))
                if ev.upgrade:
                    out.append(("upgrade", parser.upgrade_data()))
                    break
            elif type(ev) is bytes:
                if out and type(out[-1]) is bytes:
                    out[-1] += ev
                else:
                    out.append(ev)
            elif ev is END:
                out.append("END")
                parser.start_next_cycle()
    except ProtocolError as exc:
        out.append(("error", exc.status_hint))
    return out


def req(method: str = "GET", target: bytes = b"/", version: str = "1.1",
        keep_alive: bool = True) -> tuple:
    return ("request", method, target, version, keep_alive)


GET = b"GET / HTTP/1.1\r\n" + H + b"\r\n"
POST_CHUNKED = b"POST / HTTP/1.1\r\n" + H + TE + b"\r\n"

TABLE = [
    # whole requests, and requests cut anywhere
    ("get", [GET], [req(), "END", "CLOSED"]),
    ("get-byte-by-byte", [GET[i:i + 1] for i in range(len(GET))], [req(), "END", "CLOSED"]),
    ("leading-empty-lines", [b"\r\n\r\n" + GET], [req(), "END", "CLOSED"]),
    ("pipelined", [GET + b"GET /b HTTP/1.1\r\n" + H + b"\r\n"],
     [req(), "END", req(target=b"/b"), "END", "CLOSED"]),
    ("http10", [b"GET / HTTP/1.0\r\n\r\n"], [req(version="1.0", keep_alive=False), "END",
                                              "CLOSED"]),
    ("http10-keep-alive", [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"],
     [req(version="1.0"), "END", "CLOSED"]),
    ("close", [b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"],
     [req(keep_alive=False), "END", "CLOSED"]),
    ("body", [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhel", b"lo"],
     [req("POST"), b"hello", "END", "CLOSED"]),
    ("chunked", [POST_CHUNKED + b"3;a=b\r\nabc\r\n", b"2\r\nde\r\n0\r\nT: v\r\n\r\n"],
     [req("POST"), b"abcde", "END", "CLOSED"]),
    ("chunked-cut-everywhere", [bytes([c]) for c in POST_CHUNKED + b"3\r\nabc\r\n0\r\n\r\n"],
     [req("POST"), b"abc", "END", "CLOSED"]),
    ("chunked-then-pipelined", [POST_CHUNKED + b"1\r\nx\r\n0\r\n\r\n" + GET],
     [req("POST"), b"x", "END", req(), "END", "CLOSED"]),
    ("absolute-form", [b"GET http://a.example:8080/p HTTP/1.1\r\n" + H + b"\r\n"],
     [req(target=b"http://a.example:8080/p"), "END", "CLOSED"]),
    ("upgrade", [b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                 b"\x81\x80"], [req(), ("upgrade", b"\x81\x80")]),
    # refusals and their status hints
    ("no-host", [b"GET / HTTP/1.1\r\n\r\n"], [("error", 400)]),
    ("unknown-method", [b"BREW / HTTP/1.1\r\n" + H + b"\r\n"], [("error", 400)]),
    ("two-spaces", [b"GET  / HTTP/1.1\r\n" + H + b"\r\n"], [("error", 400)]),
    ("bare-lf", [b"GET / HTTP/1.1\n" + H + b"\r\n"], [("error", 400)]),
    ("obs-fold", [b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n"], [("error", 400)]),
    ("version-2", [b"GET / HTTP/2.0\r\n" + H + b"\r\n"], [("error", 400)]),
    ("cl-twice", [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"],
     [("error", 400)]),
    ("cl-and-te", [b"POST / HTTP/1.1\r\n" + H + TE + b"Content-Length: 1\r\n\r\n"],
     [("error", 400)]),
    ("cl-too-large", [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n"],
     [("error", 413)]),
    ("te-comma", [b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n"],
     [("error", 400)]),
    ("te-gzip", [b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n"],
     [("error", 501)]),
    ("chunk-space", [POST_CHUNKED + b"3 \r\nabc\r\n0\r\n\r\n"], [req("POST"), ("error", 400)]),
    ("chunk-too-large", [POST_CHUNKED + b"3e9\r\n"], [req("POST"), ("error", 413)]),
    ("trailer-content-length", [POST_CHUNKED + b"0\r\nContent-Length: 1\r\n\r\n"],
     [req("POST"), ("error", 400)]),
    ("line-too-long", [b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n" + H + b"\r\n"], [("error", 414)]),
    ("line-never-ends", [b"GET /" + b"a" * 200], [("error", 414)]),
    ("closed-mid-head", [b"GET / HTTP/1.1\r\nHo"], [("error", 400)]),
    ("closed-mid-body", [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nab"],
     [req("POST"), b"ab", ("error", 400)]),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name,reads,expected", TABLE, ids=[row[0] for row in TABLE])
def test_events(engine: str, name: str, reads: List[bytes], expected: List[Any]) -> None:
    assert events(engine, reads) == expected


# -- in_head: which bytes count as a request head (issue 8 point 11) -------------------------

IN_HEAD = [
    ("nothing", [], False),
    ("partial-head", [b"GET / HT"], True),
    ("whole-request", [GET], False),
    ("chunk-size-line-alone", [POST_CHUNKED, b"5\r\n"], False),
    ("chunk-crlf-alone", [POST_CHUNKED + b"1\r\nx", b"\r\n"], False),
    ("partial-head-after-request", [GET + b"GET /b HT"], True),
    ("partial-head-after-chunked-body", [POST_CHUNKED + b"0\r\n\r\nGET /b HT"], True),
    ("empty-lines-only", [GET + b"\r\n"], False),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name,reads,in_head", IN_HEAD, ids=[row[0] for row in IN_HEAD])
def test_in_head(engine: str, name: str, reads: List[bytes], in_head: bool) -> None:
    parser = make_parser(engine, max_line=8192, max_head=65536, max_body=1 << 20)
    for data in reads:
        parser.feed(data)
        while True:  # take what there is, as the connection loop does
            ev = parser.next_event()
            if ev is NEED_DATA:
                break
            if ev is END:
                parser.start_next_cycle()
    assert parser.in_head is in_head


@pytest.mark.parametrize("engine", ENGINES)
def test_many_small_chunks_never_add_up_to_a_head(engine: str) -> None:
    parser = make_parser(engine, max_line=8192, max_head=65536, max_body=1 << 30)
    parser.feed(POST_CHUNKED)
    assert type(parser.next_event()) is Request
    for _ in range(40000):  # 40,000 x 2 head-less bytes: past 64 KiB if they counted
        parser.feed(b"1\r\nx")
        assert parser.next_event() == b"x"
        parser.feed(b"\r\n")
        assert parser.next_event() is NEED_DATA
    assert not parser.in_head


def test_check_head_refusal_carries_the_method() -> None:
    with pytest.raises(ProtocolError) as info:
        check_head(b"HEAD", b"/", "1.1", [], 8192, 1000)
    assert (info.value.status_hint, info.value.method) == (400, "HEAD")
