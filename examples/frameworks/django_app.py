"""gkit's channels in Django views: ``return ch``, with gkit's middleware last.

    python -m gkit examples.frameworks.django_app:app --port 8080

A one-file Django project (settings, URLs, views). Channels are opened from
``request.META``, the WSGI environ; ``gkit.frameworks.DjangoChannelMiddleware``,
last in ``MIDDLEWARE``, lets a view return the channel. Routes as in
``flask_app.py``: ``/ws`` (echo), ``/stream``, ``/poll`` and ``POST /send``.
"""
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="gkit-example-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "gkit.frameworks.DjangoChannelMiddleware",  # last: it sees the view's channel first
    ],
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from gkit import with_channel  # noqa: E402
from gkit.timer import schedule_task  # noqa: E402

waiting = []  # parked long polls


def ws(request):
    ch = with_channel(request.META)
    if ch.is_websocket:
        ch.on_receive(ch.send)
    else:
        ch.send({"status": 400, "body": "connect with a WebSocket client\n"})
    return ch


def stream(request):
    ch = with_channel(request.META)
    for i in range(3):
        schedule_task(i * 0.1, ch.send, f"chunk {i}\n", False)
    schedule_task(0.3, ch.close)
    return ch


def poll(request):
    ch = with_channel(request.META)
    waiting.append(ch)
    ch.on_close(lambda status: ch in waiting and waiting.remove(ch))
    return ch


@csrf_exempt
def send(request):
    message, delivered = request.body.decode("utf-8"), 0
    while waiting:
        delivered += waiting.pop().send(message)
    return HttpResponse(f"delivered {delivered}\n")


urlpatterns = [path("ws", ws), path("stream", stream), path("poll", poll), path("send", send)]
app = get_wsgi_application()
