"""The chat as a module-level WSGI app, for the gkit CLI and gunicorn::

    REDIS_URL=redis://127.0.0.1:6379/0 gkit examples.chat.wsgi:app --workers 4
    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn -k gkit.gunicorn.Worker -w 4 examples.chat.wsgi:app

Several processes need ``REDIS_URL``: without it each keeps its own rooms.
The app is built on the first request in each process, not at import, so a
server that imports the app and then forks workers gives each worker its own
hub and Redis subscriber.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Iterable, Optional

from .app import ChatApp

_app: Optional[ChatApp] = None


def build() -> ChatApp:
    url = os.environ.get("REDIS_URL")
    if url:
        from .redis_hub import RedisHub
        return ChatApp(RedisHub(url))
    logging.getLogger("gkit.chat").warning(
        "REDIS_URL is not set: rooms live in this process only")
    return ChatApp()


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _app
    if _app is None:
        _app = build()
    return _app(environ, start_response)
