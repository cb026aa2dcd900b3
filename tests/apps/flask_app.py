"""The test routes (see ``apps/__init__``) as a Flask app; static files by
Flask's own ``static_folder`` route (``send_from_directory``)."""
from flask import Flask, request

from . import STATIC_DIR, Feed, FileWrapperProbe, websocket_echo

flask_app = Flask(__name__, static_folder=STATIC_DIR, static_url_path="/static")
feed = Feed()


@flask_app.route("/hello")
def hello():
    name = request.args.get("name", "world")
    return f"hello {name} from flask\n", 200, {"Content-Type": "text/plain; charset=utf-8"}


# werkzeug routes a WebSocket handshake only to a rule marked websocket=True
# (others answer it 400); the plain rule lets the view answer HTTP GETs too.
@flask_app.route("/ws", websocket=True)
@flask_app.route("/ws")
def ws():
    websocket_echo(request.environ)
    return ""  # discarded: the channel answers


@flask_app.route("/stream")
def stream():
    feed.open_stream(request.environ)
    return ""


@flask_app.route("/poll")
def poll():
    feed.park(request.environ)
    return ""


@flask_app.route("/publish", methods=["POST"])
def publish():
    n = feed.publish(request.get_data(as_text=True), close=request.args.get("close") == "1")
    return f"delivered {n}\n", 200, {"Content-Type": "text/plain"}


app = FileWrapperProbe(flask_app)
