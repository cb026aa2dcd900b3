"""Static checks that keep the layering honest (issue 9, point 5): ruff over
the code and the tests, mypy over gkit (``--strict`` over the sans-IO
``gkit/proto``). Each runs as a subprocess and fails with the tool's output;
a missing tool skips, unless GKIT_REQUIRE_ALL=1 (CI), where it fails.
The doctests of gkit/ run through tests/test_doctests.py."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parent.parent


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        why = f"{module} is not installed (pip install -e '.[test]')"
        if os.environ.get("GKIT_REQUIRE_ALL") == "1":
            pytest.fail(f"{why} but GKIT_REQUIRE_ALL=1")
        pytest.skip(why)


def _run(argv: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=240, check=False)


@pytest.mark.timeout(240)
def test_ruff_is_clean():
    _need("ruff")
    proc = _run(["ruff", "check", "--no-cache", "gkit", "tests", "loadtests", "examples"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(240)
def test_mypy_is_clean_on_gkit():
    _need("mypy")
    proc = _run(["mypy", "--no-incremental", "gkit"])
    # gkit/proto is checked (strictly) by the test below.
    errors = [line for line in proc.stdout.splitlines()
              if ": error:" in line and not line.startswith("gkit/proto/")]
    assert proc.returncode == 0 or (not errors and "gkit/proto/" in proc.stdout), proc.stdout


@pytest.mark.timeout(240)
def test_mypy_strict_is_clean_on_proto():
    _need("mypy")
    proc = _run(["mypy", "--no-incremental", "--strict", "gkit/proto"])
    assert proc.returncode == 0, proc.stdout
