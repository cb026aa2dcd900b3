"""A realtime chat served by gkit: WebSocket with a long-polling fallback.

Run it with ``python -m examples.chat`` and open http://127.0.0.1:8090/.
See ``examples/chat/README.md``.

This package's ``__init__`` imports nothing on purpose: ``python -m
examples.chat`` imports it before ``__main__`` gets to monkey-patch gevent,
and anything imported here would then hold unpatched sockets and locks.
"""
