"""Autobahn|Testsuite cases 9 (limits and performance), 12 and 13
(permessage-deflate) against gkit's WebSocket echo, with kosoku.

Starts ``python -m gkit examples.echo_ws:app`` as a subprocess with
``--max-ws 33554432`` (32 MiB: case 9 sends messages of up to 16 MiB, which
the default limit of 4 MiB would answer with close code 1009) and runs the
cases with kosoku's Python API (``kosoku.run_fuzzingclient``), one kosoku
process per case group (9.1, 9.2, ... 13.7). Each group gets
``--case-timeout`` seconds per case; a group that overruns is killed and its
cases rerun one by one with that timeout, so a hanging case shows up as
TIMEOUT instead of stalling the run. If the server dies it is restarted for
the next group and the death is reported.

Prints the counts by result (message exchange and closing handshake), the
non-OK cases with kosoku's explanation, and the time of each case 9 (its
performance cases). kosoku's JSON/HTML reports go to ``--outdir``, one directory per group.

    python loadtests/autobahn_limits.py                       # 9.*, 12.*, 13.* (270 cases)
    python loadtests/autobahn_limits.py --cases '9.1.*,12.1.*'
    python loadtests/autobahn_limits.py --http h11 --max-buffered 67108864

Exit status 1 if a case failed (FAILED, ERROR, UNIMPLEMENTED, TIMEOUT or a
failed closing handshake) or the server died; 2 if kosoku is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, NotReady, ServerFailed, ServerProcess, ServerSpec, terminate_on_sigterm

APP = "examples.echo_ws:app"
SCRIPT = Path(__file__).resolve()
MAX_WS = 32 * 1024 * 1024
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


# ---------------------------------------------------------------------------
# The kosoku side: one process per group of cases.
# ---------------------------------------------------------------------------


def run_cases_main(args: argparse.Namespace) -> int:
    """``autobahn_limits.py run``: run the given cases, print one JSON line each."""
    import kosoku

    async def run() -> list[Any]:
        try:
            return await kosoku.run_fuzzingclient(args.url, args.case, concurrency=1)
        except kosoku.FailureError as failure:
            return list(failure.results)

    results = asyncio.run(run())
    if args.outdir:
        try:
            from kosoku._report import write_reports

            write_reports(results, args.outdir)
        except (ImportError, OSError) as exc:  # a private helper: the summary does without it
            print(f"could not write kosoku reports: {exc}", file=sys.stderr)
    for r in results:
        print(
            json.dumps(
                {
                    "case": r.case_id,
                    "behavior": r.behavior.value,
                    "close": r.behavior_close.value,
                    "ms": r.duration,
                    "remote_close_code": r.remote_close_code,
                    "result": r.result,
                    "result_close": r.result_close,
                    "description": r.description.strip().splitlines()[0] if r.description else "",
                }
            ),
            flush=True,
        )
    return 0


# ---------------------------------------------------------------------------
# The driver.
# ---------------------------------------------------------------------------


class EchoServer(ServerProcess):
    """Ready when a plain ``GET /`` gets the echo app's 200."""

    def probe(self) -> None:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if not sock.recv(64).startswith(b"HTTP/1.1 200"):
                raise NotReady("GET / did not answer 200")


def select_cases(patterns: list[str]) -> list[str]:
    """Case ids matching the patterns, in suite order (asked of kosoku in a child process)."""
    probe = "import json, sys; from kosoku.cases import CASES; print(json.dumps(list(CASES)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    every = json.loads(out.stdout)
    return [case for case in every if any(fnmatch.fnmatchcase(case, p) for p in patterns)]


def group_of(case: str) -> str:
    return ".".join(case.split(".")[:2])


def run_kosoku(
    url: str, cases: list[str], timeout: float, outdir: str
) -> tuple[list[dict], str | None]:
    """Run ``cases`` in one kosoku process; (results, error or None)."""
    argv = [sys.executable, str(SCRIPT), "run", "--url", url, "--outdir", outdir]
    for case in cases:
        argv += ["--case-id", case]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    results = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            results.append(json.loads(line))
    if proc.returncode != 0 or len(results) != len(cases):
        return results, f"kosoku exited {proc.returncode}: {proc.stderr.strip()[-400:]}"
    return results, None


def gkit_command(tree: str | None) -> tuple[str, ...]:
    """How a gkit command line starts: this repo's gkit, or the ``gkit``
    package found in ``tree`` (``--gkit-tree``)."""
    if tree is None:
        return ("{python}", "-m", "gkit")
    return ("env", f"PYTHONPATH={Path(tree).resolve()}{os.pathsep}{REPO}", "{python}", "-m", "gkit")


def server_argv(args: argparse.Namespace) -> tuple[str, ...]:
    argv = [
        *gkit_command(args.gkit_tree),
        APP,
        "--ip",
        "127.0.0.1",
        "--port",
        "{port}",
        "--http",
        args.http,
        "--max-ws",
        str(args.max_ws),
    ]
    if args.max_buffered is not None:
        argv += ["--max-buffered", str(args.max_buffered)]
    return tuple(argv)


def driver_main(args: argparse.Namespace) -> int:
    if subprocess.run(
        [sys.executable, "-c", "import kosoku"], capture_output=True, check=False
    ).returncode:
        print("kosoku is not installed: pip install kosoku")
        return 2
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()]
    cases = select_cases(patterns)
    groups: dict[str, list[str]] = {}
    for case in cases:
        groups.setdefault(group_of(case), []).append(case)
    spec = ServerSpec(f"gkit-{args.http}", server_argv(args))
    outdir = args.outdir or tempfile.mkdtemp(prefix="gkit-autobahn-")
    print(
        f"autobahn_limits: {len(cases)} cases in {len(groups)} groups against "
        f"{' '.join(spec.argv).replace('{python}', 'python').replace('{port}', 'PORT')}; "
        f"{args.case_timeout:g} s per case; reports in {outdir}; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    results: dict[str, dict] = {}
    notes: list[str] = []
    server = None
    started = time.monotonic()
    try:
        for group, members in groups.items():
            if server is None or not server.alive():
                if server is not None:
                    notes.append(f"the server died before group {group}:\n{server.log_tail()}")
                    server.stop()
                server = EchoServer(spec)
                server.wait_ready()
            url = f"ws://127.0.0.1:{server.port}/"
            t0 = time.monotonic()
            got, error = run_kosoku(
                url, members, args.case_timeout * len(members) + 10, os.path.join(outdir, group)
            )
            for r in got:
                results[r["case"]] = r
            if error:
                notes.append(f"group {group}: {error}; rerunning its missing cases one by one")
                for case in members:
                    if case in results:
                        continue
                    if not server.alive():
                        notes.append(f"the server died during group {group}:\n{server.log_tail()}")
                        server.stop()
                        server = EchoServer(spec)
                        server.wait_ready()
                        url = f"ws://127.0.0.1:{server.port}/"
                    one, one_error = run_kosoku(
                        url, [case], args.case_timeout + 10, os.path.join(outdir, case)
                    )
                    if one:
                        results[case] = one[0]
                    else:
                        results[case] = {
                            "case": case,
                            "behavior": "TIMEOUT" if "timed out" in (one_error or "") else "ERROR",
                            "close": "-",
                            "ms": None,
                            "remote_close_code": None,
                            "result": one_error or "",
                            "result_close": "",
                            "description": "",
                        }
            counts = collections.Counter(results[c]["behavior"] for c in members if c in results)
            print(
                f"  {group:>5}: {len(members):>2} cases in {time.monotonic() - t0:6.1f} s  "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                flush=True,
            )
            if not server.alive():
                notes.append(f"the server died during group {group}:\n{server.log_tail()}")
    except ServerFailed as exc:
        notes.append(f"the server failed to start: {exc}")
    finally:
        if server is not None:
            server.stop()
    return summarize(cases, results, notes, time.monotonic() - started)


def summarize(cases: list[str], results: dict[str, dict], notes: list[str], seconds: float) -> int:
    print(
        f"\nAutobahn 9/12/13 against gkit: {len(results)} of {len(cases)} cases run "
        f"in {seconds:.0f} s; "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    by_major: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case, r in results.items():
        by_major[case.split(".")[0]][r["behavior"]] += 1
        by_major["all"][r["behavior"]] += 1
        by_major[f"close:{case.split('.')[0]}"][r["close"]] += 1
    labels = sorted({label for c in by_major.values() for label in c if label in by_major["all"]})
    print("| cases | " + " | ".join(labels) + " |")
    print("| --- " + "| ---: " * len(labels) + "|")
    for major in ("9", "12", "13", "all"):
        if major in by_major:
            print(
                f"| {major if major == 'all' else major + '.*'} | "
                + " | ".join(str(by_major[major][label]) for label in labels)
                + " |"
            )
    close_labels = sorted(
        {label for key, c in by_major.items() if key.startswith("close:") for label in c}
    )
    print(
        "\nclosing handshake: "
        + "; ".join(
            f"{key[6:]}.* "
            + ", ".join(
                f"{label} {by_major[key][label]}" for label in close_labels if by_major[key][label]
            )
            for key in sorted(by_major, key=lambda k: (not k.startswith("close:"), k))
            if key.startswith("close:")
        )
    )
    bad = [r for case, r in results.items() if r["behavior"] != "OK" or r["close"] != "OK"]
    missing = [case for case in cases if case not in results]
    print(f"\nnon-OK cases ({len(bad)}):" if bad else "\nnon-OK cases: none")
    for r in bad:
        code = r["remote_close_code"]
        print(
            f"  {r['case']:>8}  {r['behavior']:<13} close {r['close']:<13} "
            f"{'' if r['ms'] is None else str(r['ms']) + ' ms':>9}  server close code {code}  "
            f"{r['description'][:70]}"
        )
        print(f"            {r['result']} / {r['result_close']}")
    if missing:
        print(f"not run: {', '.join(missing)}")
    timed = [
        (case, results[case]["ms"]) for case in cases if case.startswith("9.") and case in results
    ]
    if timed:
        print("\ncase 9 times (ms): " + ", ".join(f"{case} {ms}" for case, ms in timed))
    for note in notes:
        print(f"NOTE: {note}")
    failed = any(
        r["behavior"] not in PASSING or r["close"] not in PASSING for r in results.values()
    )
    return (
        1 if failed or missing or any("died" in n or "failed to start" in n for n in notes) else 0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cases", default="9.*,12.*,13.*", help="comma-separated case ids or globs"
    )
    parser.add_argument(
        "--http", default="httptools", choices=("httptools", "h11"), help="gkit's HTTP engine"
    )
    parser.add_argument(
        "--gkit-tree",
        metavar="DIR",
        help="serve the gkit package found in DIR (e.g. a copy of another commit's gkit/) "
        "instead of this repo's; the examples still come from this repo",
    )
    parser.add_argument(
        "--max-ws",
        type=int,
        default=MAX_WS,
        help=f"the server's --max-ws (default {MAX_WS}: 32 MiB, case 9 sends 16 MiB)",
    )
    parser.add_argument(
        "--max-buffered",
        type=int,
        default=None,
        help="the server's --max-buffered (default: gkit's own default)",
    )
    parser.add_argument("--case-timeout", type=float, default=60.0, help="seconds allowed per case")
    parser.add_argument("--outdir", help="kosoku's reports (default: a new temporary directory)")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="internal: run cases with kosoku, print JSON lines")
    run.add_argument("--url", required=True)
    run.add_argument("--case-id", dest="case", action="append", required=True)
    run.add_argument("--outdir")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_cases_main(args)
    with terminate_on_sigterm():
        return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
