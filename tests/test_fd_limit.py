"""At the open-file limit (issue 8 point 13): one gkit.error line naming the
limit and the fix instead of gevent's tracebacks, and the server goes on
serving once descriptors are free again. Runs the server in a subprocess
whose RLIMIT_NOFILE is low."""
import resource
import signal
import socket
import subprocess
import sys
import textwrap

import gevent
import pytest

from helpers import get

SCRIPT = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    from gkit import run_server

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = run_server(app, ip="127.0.0.1", port=0)
    print("PORT", server.port, flush=True)
    server.join()
""")
LIMIT = 64


def low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


@pytest.mark.timeout(60)
def test_out_of_file_descriptors_is_one_line_and_the_server_recovers(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=low_fd_limit)
    socks = []
    try:
        with gevent.Timeout(20, AssertionError("the server did not start")):
            line = proc.stdout.readline()
        assert line.startswith("PORT "), (line, proc.stderr.read())
        port = int(line.split()[1])
        for _ in range(LIMIT + 40):  # more than the server can hold; the rest wait in the backlog
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        gevent.sleep(1.0)  # the server runs out and keeps trying (a negative check)
        for sock in socks:
            sock.close()
        socks = []
        with gevent.Timeout(10, AssertionError("not serving again after descriptors freed")):
            while True:
                try:
                    resp = get(port, timeout=2)
                    break
                except (OSError, AssertionError):
                    gevent.sleep(0.2)
        assert (resp.status, resp.body) == (200, b"ok")
    finally:
        for sock in socks:
            sock.close()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "out of file descriptors" in ln]
    assert len(lines) == 1, err
    assert f"open-file limit {LIMIT}" in lines[0] and "ulimit -n" in lines[0]
