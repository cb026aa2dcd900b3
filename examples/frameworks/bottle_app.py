"""gkit's channels in Bottle views: ``return ch``, with gkit's Bottle plugin.

    python -m gkit examples.frameworks.bottle_app:app --port 8080

Bottle would iterate a returned channel (``for message in ch`` waits for
messages): ``app.install(bottle_channels)`` lets a view return it.
Routes as in ``flask_app.py``: ``/ws`` (echo), ``/stream``, ``/poll`` and
``POST /send``.
"""
import bottle
from bottle import request

from gkit import with_channel
from gkit.frameworks import bottle_channels
from gkit.timer import schedule_task

app = bottle.Bottle()
app.install(bottle_channels)
waiting = []  # parked long polls


@app.get("/ws")
def ws():
    ch = with_channel(request.environ)
    if ch.is_websocket:
        ch.on_receive(ch.send)
    else:
        ch.send({"status": 400, "body": "connect with a WebSocket client\n"})
    return ch


@app.get("/stream")
def stream():
    ch = with_channel(request.environ)
    for i in range(3):
        schedule_task(i * 0.1, ch.send, f"chunk {i}\n", False)
    schedule_task(0.3, ch.close)
    return ch


@app.get("/poll")
def poll():
    ch = with_channel(request.environ)
    waiting.append(ch)
    ch.on_close(lambda status: ch in waiting and waiting.remove(ch))
    return ch


@app.post("/send")
def send():
    message, delivered = request.body.read().decode("utf-8"), 0
    while waiting:
        delivered += waiting.pop().send(message)
    return f"delivered {delivered}\n"
