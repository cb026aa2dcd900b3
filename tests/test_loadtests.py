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


# (script, the tool it needs, what its output must show)
SMOKES = [
    ("bench_http.py", "wrk", ["gkit-httptools", "gkit-h11"]),
    ("bench_idle.py", "", ["gkit-httptools", "OK"]),
    ("bench_ws.py", "", ["gkit", "websockets"]),
    ("bench_longpoll.py", "", ["delivered"]),
    ("bench_ws_session.py", "", ["text32", "wsproto"]),
    ("bench_range.py", "", ["gkit", "werkzeug"]),
    ("bench_hub.py", "redis-server", ["| gkit | 200 |", "| websockets | 200 |", "| 2 | 200 | 10 |"]),
    ("c100k.py", "redis-server", ["OK: all held and reached"]),
    ("capacity.py", "redis-server", ["| connections", "1,000,000"]),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script,needs,shows", SMOKES, ids=[row[0] for row in SMOKES])
def test_smoke(script: str, needs: str, shows: list) -> None:
    out = run_smoke(script, needs)
    missing = [text for text in shows if text not in out]
    assert not missing, f"{script} --smoke printed no {missing!r}:\n{out}"
    assert "FAILED" not in out, out
