"""Choosing and making an HTTP/1.1 engine: the one module that imports them.

:mod:`gkit.proto.h1` holds the interface (:mod:`~gkit.proto.h1_checks` and
:mod:`~gkit.proto.chunked` gkit's shared checks); the two engines
(``h1_httptools`` on llhttp, ``h1_h11`` on h11) implement it, and this module
picks one. Keeping the choice here means ``h1`` never imports an engine, so
imports run one way: engines -> engine modules -> checks -> h1.

>>> resolve_engine("h11")
'h11'
>>> make_parser("h11", max_line=8192, max_head=65536, max_body=1024).name
'h11'
"""
from __future__ import annotations

from .h1 import H1Parser


def make_parser(engine: str, max_line: int, max_head: int, max_body: int) -> H1Parser:
    """A parser of the named engine (``"httptools"`` or ``"h11"``)."""
    if engine == "httptools":
        from .h1_httptools import HttptoolsParser
        return HttptoolsParser(max_line, max_head, max_body)
    from .h1_h11 import H11Parser
    return H11Parser(max_line, max_head, max_body)


def resolve_engine(http: str) -> str:
    """``auto`` picks httptools when it is importable, else h11."""
    if http != "auto":
        if http == "httptools":
            import httptools  # noqa: F401  (a clear ImportError if it is missing)
        return http
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"
