"""``server.join()`` stops the server on Ctrl-C, however busy it is.

SIGINT's KeyboardInterrupt lands in whichever greenlet runs Python code at
that moment (often a worker writing a response); join must stop the server
all the same. One process runs the README example's shape ten times, under a
request load, and gets ten Ctrl-Cs.
"""
import signal
import subprocess
import sys
import textwrap

import gevent
import gevent.event
import pytest

from helpers import RawConn, request

SCRIPT = textwrap.dedent("""
    import sys
    from gevent import monkey; monkey.patch_all()
    from gkit import run_server

    def app(environ, start_response):
        total = sum(range(20000))  # Python code running in a worker when SIGINT comes
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(total).encode()]

    for round in range(10):
        server = run_server(app, ip="127.0.0.1", port=0)
        print("PORT", server.port, flush=True)
        assert server.join() is True
        assert server.status == "stopped", server.status
        print("STOPPED", flush=True)
    print("DONE", flush=True)
""")


def load(port, stop):
    while not stop.is_set():
        try:
            with RawConn(port, timeout=2) as conn:
                for _ in range(50):
                    conn.send(request())
                    conn.read_response()
        except (OSError, AssertionError):
            gevent.sleep(0.01)


@pytest.mark.timeout(90)
def test_ten_ctrl_c_under_load_each_stop_the_server(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for round in range(10):
            with gevent.Timeout(10, AssertionError(f"round {round}: no port")):
                line = proc.stdout.readline()
            assert line.startswith("PORT "), (line, proc.stderr.read())
            port = int(line.split()[1])
            stop = gevent.event.Event()
            clients = [gevent.spawn(load, port, stop) for _ in range(4)]
            gevent.sleep(0.3)  # the load runs (a negative check: nothing waits on it)
            proc.send_signal(signal.SIGINT)
            with gevent.Timeout(10, AssertionError(f"round {round}: Ctrl-C did not stop it")):
                line = proc.stdout.readline()
            stop.set()
            gevent.joinall(clients, timeout=5)
            assert line == "STOPPED\n", (line, proc.stderr.read())
        assert proc.stdout.readline() == "DONE\n"
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        err = proc.stderr.read()
    assert "KeyboardInterrupt" not in err, err
