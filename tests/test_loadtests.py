"""The benchmark scripts still run: each one's --smoke mode, against gkit.

Figures are not checked here (tests never time things); the scripts print
them. Each smoke run starts real servers and clients on loopback.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("GKIT_REQUIRE_ALL") == "1"


def run_smoke(script: str, needs: str = "") -> str:
    if needs and shutil.which(needs) is None:
        if REQUIRE_ALL:
            pytest.fail(f"{needs} is not installed but GKIT_REQUIRE_ALL=1 (apt-get install -y {needs})")
        pytest.skip(f"{needs} is not installed (apt-get install -y {needs})")
    proc = subprocess.run([sys.executable, str(ROOT / "loadtests" / script), "--smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{script} --smoke failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.timeout(300)
def test_bench_http_smoke():
    out = run_smoke("bench_http.py", needs="wrk")
    assert "gkit-httptools" in out and "gkit-h11" in out


@pytest.mark.timeout(300)
def test_bench_idle_smoke():
    out = run_smoke("bench_idle.py")
    assert "gkit-httptools" in out and "OK" in out


@pytest.mark.timeout(300)
def test_bench_ws_smoke():
    out = run_smoke("bench_ws.py")
    assert "gkit" in out and "websockets" in out


@pytest.mark.timeout(300)
def test_bench_longpoll_smoke():
    out = run_smoke("bench_longpoll.py")
    assert "delivered" in out


@pytest.mark.timeout(300)
def test_bench_ws_session_smoke():
    out = run_smoke("bench_ws_session.py")
    assert "text32" in out and "wsproto" in out


@pytest.mark.timeout(300)
def test_bench_range_smoke():
    out = run_smoke("bench_range.py")
    assert "gkit" in out and "werkzeug" in out and "FAILED" not in out


@pytest.mark.timeout(300)
def test_bench_hub_smoke():
    out = run_smoke("bench_hub.py", needs="redis-server")
    assert "| gkit | 200 |" in out and "| websockets | 200 |" in out
    assert "| 2 | 200 | 10 |" in out


@pytest.mark.timeout(300)
def test_c100k_smoke():
    out = run_smoke("c100k.py", needs="redis-server")
    assert "OK: all held and reached" in out


@pytest.mark.timeout(300)
def test_capacity_smoke():
    out = run_smoke("capacity.py", needs="redis-server")
    assert "| connections" in out and "1,000,000" in out
