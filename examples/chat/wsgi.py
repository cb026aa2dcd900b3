"""The chat as a module-level WSGI app, for the gkit CLI and gunicorn::

    gkit examples.chat.wsgi:app --workers 4 --hub redis://127.0.0.1:6379/0
    GKIT_HUB=redis://127.0.0.1:6379/0 gunicorn -k gkit.gunicorn.Worker -w 4 examples.chat.wsgi:app

The rooms follow the server's gkit.hub: with a ``redis://`` hub (``--hub``
or ``GKIT_HUB``) every worker shares them; with ``memory://`` each process
keeps its own. (``REDIS_URL`` is still read when the hub is ``memory://``.)
The app is built on the first request in each process, not at import, so a
server that imports the app and then forks workers gives each worker its
own rooms on its own hub.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Iterable, Optional

import gkit.hub

from .app import ChatApp

_app: Optional[ChatApp] = None


def build() -> ChatApp:
    hub = gkit.hub.current()
    url = hub.url if hub.scheme != "memory" else os.environ.get("REDIS_URL")
    if url:
        from .redis_hub import RedisHub
        return ChatApp(RedisHub(url))
    logging.getLogger("gkit.chat").warning(
        "the gkit hub is memory:// (no --hub redis://... nor GKIT_HUB): "
        "rooms live in this process only")
    return ChatApp()


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _app
    if _app is None:
        _app = build()
    return _app(environ, start_response)
