"""The test routes (see ``apps/__init__``) as a Bottle app; static files by
Bottle's ``static_file``."""
import bottle
from bottle import request, response

from . import STATIC_DIR, Feed, FileWrapperProbe, websocket_echo

bottle_app = bottle.Bottle()
feed = Feed()


@bottle_app.get("/hello")
def hello():
    response.content_type = "text/plain; charset=utf-8"
    return f"hello {request.query.get('name', 'world')} from bottle\n"


@bottle_app.get("/ws")
def ws():
    websocket_echo(request.environ)
    return ""  # discarded: the channel answers


@bottle_app.get("/stream")
def stream():
    feed.open_stream(request.environ)
    return ""


@bottle_app.get("/poll")
def poll():
    feed.park(request.environ)
    return ""


@bottle_app.post("/publish")
def publish():
    message = request.body.read().decode("utf-8")
    n = feed.publish(message, close=request.query.get("close") == "1")
    response.content_type = "text/plain"
    return f"delivered {n}\n"


@bottle_app.get("/static/<path:path>")
def static(path):
    return bottle.static_file(path, root=STATIC_DIR)


app = FileWrapperProbe(bottle_app)
