"""The Flask app of ``bench_range.py``: ``GET /big`` is ``send_file`` of the file
named by ``$GKIT_BENCH_RANGE_FILE`` (conditional, so Range is honoured);
``GET /`` the hello body the readiness probe expects.

``python loadtests/peers/range_app.py PORT`` serves it with werkzeug's own
server (``run_simple``, threaded, as ``flask run`` does).
"""
import os
import sys

from flask import Flask, send_file

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!", 200, {"Content-Type": "text/plain"}


@app.route("/big")
def big():
    return send_file(os.environ["GKIT_BENCH_RANGE_FILE"], mimetype="application/octet-stream")


if __name__ == "__main__":
    import logging

    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
