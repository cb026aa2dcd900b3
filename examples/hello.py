"""Hello world as a plain WSGI app: the app every load test serves.

Run it with gkit::

    python -m gkit examples.hello:app --port 8080

or with any other WSGI server (``gunicorn examples.hello:app``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"Hello, World!"
HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(BODY))),
]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with ``Hello, World!`` as text/plain."""
    start_response("200 OK", list(HEADERS))
    return [BODY]
