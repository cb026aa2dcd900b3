"""``return ch`` from a view, in each framework (issue 10, point 5).

The README's pattern, ``ch = with_channel(environ)`` ... ``return ch``, works
in a bare WSGI app. What each framework needs for it:

- **Flask** (werkzeug): nothing. A :class:`~gkit.Channel` is also a WSGI app
  with an empty answer, and Flask runs a returned callable as one, so
  ``return ch`` logs nothing; gkit discards that answer (the channel
  answers). A WebSocket handshake reaches only a rule marked
  ``websocket=True`` (werkzeug answers 400 otherwise, and gkit logs a
  warning naming the fix): stack ``@app.route("/ws", websocket=True)`` over
  ``@app.route("/ws")`` when the view also answers plain HTTP.
- **Django**: add :class:`DjangoChannelMiddleware` *last* in ``MIDDLEWARE``
  (innermost): it turns a returned channel into an empty ``HttpResponse``
  before any other middleware looks at it.
- **Bottle**: ``app.install(bottle_channels)``: Bottle would iterate a
  returned channel (``for message in ch`` blocks until it closes).

>>> from gkit.frameworks import bottle_channels
>>> bottle_channels(lambda: "plain")()   # anything but a channel passes through
'plain'
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from .channel import Channel

__all__ = ["bottle_channels", "DjangoChannelMiddleware"]


def bottle_channels(callback: Callable[..., Any]) -> Callable[..., Any]:
    """A Bottle plugin: a view that returns a channel answers ``""`` to Bottle.

    >>> import bottle                                     # doctest: +SKIP
    >>> app = bottle.Bottle(); app.install(bottle_channels)   # doctest: +SKIP
    """
    @functools.wraps(callback)
    def view(*args: Any, **kwargs: Any) -> Any:
        result = callback(*args, **kwargs)
        return "" if isinstance(result, Channel) else result
    return view


bottle_channels.name = "gkit-channels"  # type: ignore[attr-defined]  # for Bottle's skip=


class DjangoChannelMiddleware:
    """Django middleware, last in ``MIDDLEWARE``: a view may ``return ch``.

    >>> MIDDLEWARE = [                                      # doctest: +SKIP
    ...     "django.middleware.common.CommonMiddleware",
    ...     "gkit.frameworks.DjangoChannelMiddleware",      # last
    ... ]
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        if isinstance(response, Channel):
            from django.http import HttpResponse
            return HttpResponse()  # discarded by gkit: the channel answers
        return response
