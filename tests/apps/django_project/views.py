"""Views: channels are opened from ``request.META``, the WSGI environ."""
from django.http import HttpResponse, HttpResponseNotAllowed

from .. import Feed, websocket_echo

feed = Feed()


def hello(request):
    name = request.GET.get("name", "world")
    return HttpResponse(f"hello {name} from django\n", content_type="text/plain; charset=utf-8")


def ws(request):
    websocket_echo(request.META)
    return HttpResponse()  # discarded: the channel answers


def stream(request):
    feed.open_stream(request.META)
    return HttpResponse()


def poll(request):
    feed.park(request.META)
    return HttpResponse()


def publish(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    n = feed.publish(request.body.decode("utf-8"), close=request.GET.get("close") == "1")
    return HttpResponse(f"delivered {n}\n", content_type="text/plain")
