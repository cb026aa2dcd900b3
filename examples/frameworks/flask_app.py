"""gkit's channels in Flask views: ``return ch`` as in the README.

    python -m gkit examples.frameworks.flask_app:app --port 8080

- ``/ws``: WebSocket echo. werkzeug lets a handshake reach only a rule marked
  ``websocket=True``; the plain rule under it answers HTTP GETs.
- ``/stream``: three chunks, 0.1 s apart, then the end of the response.
- ``/poll``: a long poll, answered by the next ``POST /send`` (body: the message).
"""
from flask import Flask, request

from gkit import with_channel
from gkit.timer import schedule_task

app = Flask(__name__)
waiting = []  # parked long polls


@app.route("/ws", websocket=True)
@app.route("/ws")
def ws():
    ch = with_channel(request.environ)
    if ch.is_websocket:
        ch.on_receive(ch.send)
    else:
        ch.send({"status": 400, "body": "connect with a WebSocket client\n"})
    return ch


@app.route("/stream")
def stream():
    ch = with_channel(request.environ)
    for i in range(3):
        schedule_task(i * 0.1, ch.send, f"chunk {i}\n", False)
    schedule_task(0.3, ch.close)
    return ch


@app.route("/poll")
def poll():
    ch = with_channel(request.environ)
    waiting.append(ch)
    ch.on_close(lambda status: ch in waiting and waiting.remove(ch))
    return ch


@app.route("/send", methods=["POST"])
def send():
    message, delivered = request.get_data(as_text=True), 0
    while waiting:
        delivered += waiting.pop().send(message)
    return f"delivered {delivered}\n"
