"""The ``gkit`` command as users run it: a real ``python -m gkit`` subprocess on
loopback port 0 (the port is read back from its ``Listening at`` line), real
clients, and its stderr read line by line.

Covered: serving and a clean TERM, one-line errors for bad flags and apps
that fail to import, ``--workers`` (sharing, restart, graceful stop),
``--reload``, ``--uds``/``--bind``, ``--proxy-headers`` with
``--forwarded-allow-ips``, and ``--access-log``.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import textwrap
import time
from collections.abc import Iterator
from typing import Any, Dict, Set

import gevent
import pytest
import requests
import websocket
from apps_cli import GkitProcess, GkitRunner, raw_get, run_gkit

LOCAL = ("--ip", "127.0.0.1", "--port", "0")


@pytest.fixture
def gkit() -> Iterator[GkitRunner]:
    yield from run_gkit()


def facts(url: str, path: str = "/", **kw: Any) -> Dict[str, Any]:
    """GET on a fresh connection; the app's JSON facts."""
    resp = requests.get(url + path, headers={"Connection": "close"}, timeout=10, **kw)
    assert resp.status_code == 200, resp.text
    return resp.json()


def until(condition: Any, timeout: float, what: str) -> Any:
    """Poll ``condition()`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        gevent.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def pid_alive(pid: int) -> bool:
    """Is ``pid`` running (a zombie nobody reaped yet counts as gone)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- serving and stopping ---------------------------------------------------------------
def test_serves_then_term_exits_0(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL)
    assert proc.url.startswith("http://127.0.0.1:")
    got = facts(proc.url)
    assert got["pid"] == proc.proc.pid  # served in the process itself: no master
    assert got["scheme"] == "http" and got["multiprocess"] is False
    assert proc.stop() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_term_lets_an_in_flight_request_finish(gkit: Any, workers: str) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--workers", workers)
    slow = gevent.spawn(requests.get, proc.url + "/sleep?s=1", timeout=10)
    proc.wait_line("apps_cli: sleeping")  # the request is in the app
    proc.signal(signal.SIGTERM)
    resp = slow.get(timeout=10)
    assert (resp.status_code, resp.text) == (200, "slept")
    assert proc.wait() == 0


# -- errors: one line on stderr, exit code != 0 ---------------------------------------------
APP_MODULES = {
    "broken_syntax": "def app(environ, start_response:\n    return []\n",
    "raises_at_import": "import json\nraise RuntimeError('no database configured')\n",
    "imports_missing": "import no_such_dependency_xyz\napp = None\n",
}


@pytest.mark.parametrize("spec, message", [
    ("no_such_module:app", "cannot import 'no_such_module': no module named 'no_such_module'"),
    ("apps_cli:no_such_app", "module 'apps_cli' has no attribute 'no_such_app'"),
    ("apps_cli:NOT_CALLABLE", "apps_cli:NOT_CALLABLE is a int, not a WSGI app"),
    ("broken_syntax:app", "importing 'broken_syntax' failed: SyntaxError: "),
    ("raises_at_import:app", "RuntimeError: no database configured"),
    ("imports_missing:app", "No module named 'no_such_dependency_xyz'"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_app_that_fails_to_import(gkit: Any, tmp_path: Any, spec: str, message: str,
                                  workers: str) -> None:
    for name, source in APP_MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    proc = gkit(spec, *LOCAL, "-w", workers, cwd=str(tmp_path), ready=False)
    assert proc.wait() == 4, proc.stderr
    assert len(proc.lines) == 1, proc.stderr
    assert proc.lines[0].startswith("gkit: error: ") and message in proc.lines[0], proc.stderr


@pytest.mark.parametrize("args, env, message", [
    (["--port", "abc"], {}, "argument --port: invalid int value: 'abc'"),
    (["--port", "70000"], {}, "port=70000: give an integer from 0 to 65535"),
    (["--http", "spdy"], {}, "http='spdy': choose one of auto, httptools, h11"),
    (["--thread", "0"], {}, "thread=0: give a positive integer"),
    (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    (["--workers", "0"], {}, "argument -w/--workers: invalid positive integer value: '0'"),
    ([], {"WEB_CONCURRENCY": "lots"}, "environment WEB_CONCURRENCY='lots' is not a valid"),
    (["--forwarded-allow-ips", "10.0.0.1,proxy"], {}, "'proxy' is not an IP address"),
    ([], {"FORWARDED_ALLOW_IPS": "nonsense"}, "'nonsense' is not an IP address"),
    (["-b", "[::1"], {}, "write an IPv6 address as [ADDRESS]:PORT"),
    (["-b", "127.0.0.1:http"], {}, "the port must be an integer from 0 to 65535"),
    (["-b", "127.0.0.1:0", "--port", "8000"], {}, "give either -b/--bind/--uds or --ip/--port"),
    (["--reload", "--workers", "2"], {}, "--reload and --workers 2 do not combine"),
    (["--reload-dir", "."], {}, "--reload-dir needs --reload"),
    (["--reload", "--reload-dir", "/no/such/dir"], {}, "is not a directory"),
    (["--keyfile", "key.pem"], {}, "--keyfile needs --certfile"),
    (["--log-level", "loud"], {}, "argument --log-level: invalid choice: 'loud'"),
])
def test_bad_flags(gkit: Any, args: Any, env: Dict[str, str], message: str) -> None:
    proc = gkit("apps_cli:app", *args, env=env, ready=False)
    assert proc.wait() == 2, proc.stderr
    assert len(proc.lines) == 1, proc.stderr
    assert proc.lines[0].startswith("gkit: error: ") and message in proc.lines[0], proc.stderr


def test_port_in_use(gkit: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = gkit("apps_cli:app", "--ip", "127.0.0.1", "--port", str(port), ready=False)
        assert proc.wait() == 2
    assert proc.lines == [f"gkit: error: cannot bind 127.0.0.1:{port}: Address already in use"]


# -- --workers -------------------------------------------------------------------------------
def _pids(url: str, want: int, attempts: int = 400) -> Set[int]:
    seen: Set[int] = set()
    for _ in range(attempts):
        seen.add(facts(url)["pid"])
        if len(seen) >= want:
            break
    return seen


def serving_workers(proc: GkitProcess, count: int) -> Set[int]:
    """Wait until ``count`` workers logged that they serve; their pids."""
    def pids() -> Set[int]:
        return {int(m.group(1)) for m in map(WORKER_SERVING.search, proc.lines) if m}
    return until(lambda: len(pids()) >= count and pids(), 15, f"{count} workers serving")


WORKER_SERVING = re.compile(r"\[(\d+)\] \[INFO\] gkit: worker serving ")


def test_workers_share_the_socket_restart_and_stop(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "-w", "2")
    master = proc.proc.pid
    workers = serving_workers(proc, 2)
    assert len(workers) == 2 and master not in workers
    answered = _pids(proc.url, 2)
    assert answered == workers, "both workers take connections"
    assert facts(proc.url)["multiprocess"] is True

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    # The survivor answers all along; a new worker replaces the dead one.
    for _ in range(20):
        assert facts(proc.url)["pid"] != victim
    proc.wait_line(rf"worker {victim} killed by SIGKILL after [\d.]+s; starting a new one")
    everyone = serving_workers(proc, 3)
    assert len(everyone - workers) == 1
    live = _pids(proc.url, 2)
    assert live == everyone - {victim}, (live, everyone)

    assert proc.stop() == 0, proc.stderr
    for pid in everyone:
        assert not pid_alive(pid), f"worker {pid} outlived its master"


def test_workers_a_hung_worker_is_killed_after_the_timeout(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "-w", "2", "--graceful-timeout", "0.5")
    serving_workers(proc, 2)
    hung = gevent.spawn(requests.get, proc.url + "/spin?s=20", timeout=30)
    pid = int(proc.wait_line(r"apps_cli: spinning in (\d+)").group(1))
    proc.signal(signal.SIGTERM)
    # 0.5 s graceful + 5 s grace, then KILL; not a clean stop.
    assert proc.wait(15) == 1, proc.stderr
    proc.wait_line(rf"worker {pid} did not stop in time: killing it")
    assert not pid_alive(pid)
    hung.kill()


def test_workers_hup_replaces_them(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "-w", "2")
    old = serving_workers(proc, 2)
    proc.signal(signal.SIGHUP)
    new = serving_workers(proc, 4) - old
    assert len(new) == 2
    until(lambda: not any(pid_alive(p) for p in old), 10, "the old workers exit")
    assert _pids(proc.url, 2) == new
    assert proc.stop() == 0


def test_workers_stop_when_the_master_is_killed(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "-w", "2")
    workers = serving_workers(proc, 2)
    proc.signal(signal.SIGKILL)
    until(lambda: not any(pid_alive(p) for p in workers), 10, "orphaned workers exit")
    with pytest.raises(requests.ConnectionError):
        requests.get(proc.url, timeout=5)


def test_web_concurrency_sets_the_workers(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, env={"WEB_CONCURRENCY": "2"})
    assert len(serving_workers(proc, 2)) == 2
    assert len(_pids(proc.url, 2)) == 2
    assert proc.stop() == 0


def test_workers_int_stops_quickly(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "-w", "2")
    _pids(proc.url, 1)
    proc.signal(signal.SIGINT)
    assert proc.wait(10) == 0, proc.stderr


# -- --reload -----------------------------------------------------------------------------
RELOAD_APP = textwrap.dedent('''
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"{version}"]
''')


@pytest.mark.timeout(60)
def test_reload_restarts_on_change(gkit: Any, tmp_path: Any) -> None:
    module = tmp_path / "live_app.py"
    module.write_text(RELOAD_APP.format(version="v1"))
    # As on a developer's machine: Python writes .pyc files unless told not to.
    proc = gkit("live_app:app", *LOCAL, "--reload", cwd=str(tmp_path),
                env={"PYTHONDONTWRITEBYTECODE": None})
    master = proc.proc.pid

    def answer() -> str:
        return requests.get(proc.url, timeout=10).text

    assert answer() == "v1"
    # An edit that keeps the size and the mtime's second (a .pyc's key): the
    # new code is served all the same.
    before = module.stat()
    module.write_text(RELOAD_APP.format(version="v2"))
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    until(lambda: answer() == "v2", 15, "v2 served after the change")

    mark = len(proc.lines)
    module.write_text("def app(environ, start_response:\n")  # a save mid-edit
    proc.wait_line("SyntaxError", start=mark)
    assert proc.proc.poll() is None  # the reloader waits for the next change
    module.write_text(RELOAD_APP.format(version="v3"))
    until(lambda: answer() == "v3", 15, "v3 served after the fix")
    (tmp_path / "notes.txt").write_text("not python")  # ignored: not a .py file
    assert answer() == "v3"
    assert proc.stop() == 0, proc.stderr
    assert not any("Traceback" in line for line in proc.lines), proc.stderr
    assert master == proc.proc.pid


# -- --uds and --bind ---------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--uds", "-b"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_unix_socket(gkit: Any, tmp_path: Any, flag: str, workers: str) -> None:
    path = str(tmp_path / "gkit.sock")
    proc = gkit("apps_cli:app", flag, path if flag == "--uds" else "unix:" + path,
                "-w", workers)
    assert proc.url == "unix:" + path
    resp = raw_get(path)
    assert resp.status == 200
    body = json.loads(resp.body)
    assert body["path"] == "/" and body["scheme"] == "http"
    assert proc.stop() == 0
    assert not os.path.exists(path), "the socket file is removed at exit"


def test_unix_socket_stale_file_and_not_a_socket(gkit: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    proc = gkit("apps_cli:app", "--uds", path)
    assert raw_get(path).status == 200
    assert proc.stop() == 0

    regular = tmp_path / "regular"
    regular.write_text("keep me")
    proc = gkit("apps_cli:app", "--uds", str(regular), ready=False)
    assert proc.wait() == 2
    assert proc.lines == [f"gkit: error: cannot bind unix:{regular}: the file exists and is not "
                          "a socket"]
    assert regular.read_text() == "keep me"


def test_bind_repeatable_tcp_and_unix(gkit: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "both.sock")
    proc = gkit("apps_cli:app", "-b", "127.0.0.1:0", "--bind", f"unix:{path}")
    urls = [proc.wait_line(r"Listening at: (\S+)", start=i).group(1)
            for i in range(len(proc.lines)) if "Listening at" in proc.lines[i]]
    assert urls[0].startswith("http://127.0.0.1:") and urls[1] == "unix:" + path
    assert facts(urls[0])["path"] == "/"
    assert raw_get(path).status == 200
    assert proc.stop() == 0


def test_bind_ipv6(gkit: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    proc = gkit("apps_cli:app", "-b", "[::1]:0")
    assert proc.url.startswith("http://[::1]:")
    assert json.loads(raw_get(("::1", proc.port)).body)["remote_addr"] == "::1"
    assert proc.stop() == 0


# -- --proxy-headers / --forwarded-allow-ips --------------------------------------------------
SPOOF = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]


def _seen(port: int, source: str) -> Dict[str, Any]:
    body = json.loads(raw_get(("127.0.0.1", port), headers=SPOOF, source=source).body)
    return {"remote_addr": body["remote_addr"], "scheme": body["scheme"]}


def test_proxy_headers_only_from_trusted_peers(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--proxy-headers")
    # 127.0.0.1 is trusted by default: its headers are taken.
    assert _seen(proc.port, "127.0.0.1") == {"remote_addr": "203.0.113.7", "scheme": "https"}
    # A direct client elsewhere cannot spoof its address or the scheme.
    assert _seen(proc.port, "127.0.0.2") == {"remote_addr": "127.0.0.2", "scheme": "http"}


def test_proxy_headers_off_by_default(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL)
    assert _seen(proc.port, "127.0.0.1") == {"remote_addr": "127.0.0.1", "scheme": "http"}


@pytest.mark.parametrize("how", ["flag", "env"])
def test_forwarded_allow_ips(gkit: Any, how: str) -> None:
    args = ["--forwarded-allow-ips", "127.0.0.2"] if how == "flag" else []
    env = {"FORWARDED_ALLOW_IPS": "127.0.0.2"} if how == "env" else {}
    proc = gkit("apps_cli:app", *LOCAL, "--proxy-headers", *args, env=env)
    assert _seen(proc.port, "127.0.0.2") == {"remote_addr": "203.0.113.7", "scheme": "https"}
    # The default (127.0.0.1) is replaced, not extended.
    assert _seen(proc.port, "127.0.0.1") == {"remote_addr": "127.0.0.1", "scheme": "http"}


# -- --access-log -------------------------------------------------------------------------------
def test_access_log_lines(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL, "--access-log")
    requests.get(proc.url + "/?q=1", headers={"User-Agent": "cli-test", "Referer": "/ref"},
                 timeout=10)
    line = proc.wait_line(r'^127\.0\.0\.1 - - \[.+\] "GET /\?q=1 HTTP/1\.1" 200 \d+ "/ref" '
                          r'"cli-test" \d+\.\d+$')
    assert line

    ws = websocket.create_connection(proc.url.replace("http", "ws") + "/ws", timeout=10)
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close()
    proc.wait_line(r'"GET /ws HTTP/1\.1" 101 ')

    resp = requests.get(proc.url + "/poll?delay=0.3", timeout=10)
    assert resp.text == "polled"
    proc.wait_line(r'"GET /poll\?delay=0\.3 HTTP/1\.1" 200 6 ')


def test_no_access_log_by_default(gkit: Any) -> None:
    proc = gkit("apps_cli:app", *LOCAL)
    requests.get(proc.url + "/", timeout=10)
    assert proc.stop() == 0
    assert not any('"GET / HTTP/1.1"' in line for line in proc.lines), proc.stderr


# -- explicit "none" (issue 10, point 3) -------------------------------------------------
def _none_flags() -> Any:
    """Every Config flag whose value may be None: the CLI offers 'none' for each."""
    import typing

    from gkit.cli import _flag_type
    from gkit.config import OPTIONS, Config

    hints = typing.get_type_hints(Config)
    names = [f.name for f in OPTIONS if f.metadata.get("cli", True)
             and type(None) in typing.get_args(hints[f.name])]
    assert {"thread", "server_header", "max_connections"} <= set(names)  # and every later one
    assert all(_flag_type(hints[n]) is not None for n in names)
    return names


@pytest.mark.parametrize("name", _none_flags())
@pytest.mark.parametrize("spelling", ["none", "None"])
def test_explicit_none_reaches_the_config(name: str, spelling: str) -> None:
    from gkit.cli import make_plan

    flag = "--" + name.replace("_", "-")
    assert getattr(make_plan(["x:app", flag, spelling]).config, name) is None
    # and a flag not given keeps Config's default, not None
    from gkit.config import Config
    assert getattr(make_plan(["x:app"]).config, name) == getattr(Config(), name)


def test_default_thread_and_server_header_from_the_cli() -> None:
    from gkit.cli import make_plan

    config = make_plan(["x:app"]).config
    assert config.thread == 1000 and config.server_header == "gkit"
    config = make_plan(["x:app", "--thread", "7", "--max-connections", "9"]).config
    assert config.thread == 7 and config.max_connections == 9


def test_none_flags_served(gkit: Any) -> None:
    """``--server-header none --thread none`` as a user runs them: no Server header,
    and the worker names count up without a limit."""
    proc = gkit("apps_cli:app", *LOCAL, "--server-header", "none", "--thread", "none")
    resp = requests.get(proc.url + "/", headers={"Connection": "close"}, timeout=10)
    assert resp.status_code == 200
    assert "Server" not in resp.headers
    assert proc.stop() == 0
