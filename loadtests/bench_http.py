"""Hello-world throughput: gkit against its peers, measured with wrk.

Each server runs as one process pinned to core 0; wrk (-t1 -c100) runs pinned
to core 1. Two scenarios: keep-alive, and ``Connection: close`` (a new TCP
connection per request). Runs are interleaved (for each rep, for each
scenario, for each server) so drift on the machine hits every server alike;
the table shows medians and ratios to gevent.pywsgi with TCP_NODELAY.

    python loadtests/bench_http.py                  # full: 10 s x 3 reps
    python loadtests/bench_http.py --only gkit-httptools,pywsgi-nodelay -d 5
    python loadtests/bench_http.py --smoke          # CI: gkit rows, 2 s, 1 rep
    python loadtests/bench_http.py --gkit-tree /work/wt/before --only gkit-httptools,gkit-httptools@tree
                                                    # this gkit beside another checkout's, interleaved
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import REPO, ServerFailed, ServerProcess, ServerSpec, select_specs, terminate_on_sigterm

# One line per server. {python} is this interpreter, {port} a free port,
# {app} examples.hello:app, {peers} loadtests/peers.
SERVERS: list[ServerSpec] = [
    ServerSpec("gkit-httptools", ("{python}", "-m", "gkit", "{app}", "--ip", "127.0.0.1", "--port", "{port}",
                                  "--http", "httptools"), requires=("gkit.__main__",), smoke=True),
    ServerSpec("gkit-h11", ("{python}", "-m", "gkit", "{app}", "--ip", "127.0.0.1", "--port", "{port}",
                            "--http", "h11"), requires=("gkit.__main__",), smoke=True),
    ServerSpec("pywsgi-nodelay", ("{python}", "{peers}/pywsgi_nodelay.py", "{app}", "--port", "{port}")),
    ServerSpec("gunicorn-gevent", ("{python}", "-m", "gunicorn", "-k", "gevent", "-w", "1",
                                   "-b", "127.0.0.1:{port}", "{app}"), requires=("gunicorn", "gevent")),
    ServerSpec("granian", ("{python}", "-m", "granian", "--interface", "wsgi", "--workers", "1",
                           "--host", "127.0.0.1", "--port", "{port}", "{app}"), requires=("granian",)),
    # Not run by default; name them with --only.
    # block_warn's cost: compare with gkit-httptools (the same server, the monitor on).
    ServerSpec("gkit-block-warn", ("{python}", "-m", "gkit", "{app}", "--ip", "127.0.0.1",
                                   "--port", "{port}", "--http", "httptools", "--block-warn", "0.1"),
               requires=("gkit.__main__",), default=False),
    ServerSpec("bare-floor", ("{python}", "{peers}/bare_floor.py", "--port", "{port}"), default=False),
    ServerSpec("pywsgi-stock", ("{python}", "{peers}/pywsgi_nodelay.py", "{app}", "--port", "{port}",
                                "--no-nodelay"), default=False),
    # Multi-process rows: compare them with gkit-httptools under --no-pin
    # (two processes need both cores; wrk shares them).
    ServerSpec("gkit-workers2", ("{python}", "-m", "gkit", "{app}", "--ip", "127.0.0.1", "--port", "{port}",
                                 "--workers", "2"), requires=("gkit.__main__",), default=False),
    ServerSpec("gunicorn-gkit-w2", ("{python}", "-m", "gunicorn", "-k", "gkit.gunicorn.Worker", "-w", "2",
                                    "-b", "127.0.0.1:{port}", "{app}"), requires=("gunicorn",), default=False),
]
BASELINE = "pywsgi-nodelay"


def tree_specs(tree: str) -> list[ServerSpec]:
    """gkit rows served by the ``gkit`` package of another checkout (``--gkit-tree``):
    ``gkit-httptools@tree`` and ``gkit-h11@tree``, to compare two states of gkit
    in one interleaved run."""
    env = ("env", f"PYTHONPATH={Path(tree).resolve()}{os.pathsep}{REPO}")
    return [ServerSpec(f"gkit-{engine}@tree", (*env, "{python}", "-m", "gkit", "{app}", "--ip", "127.0.0.1",
                                               "--port", "{port}", "--http", engine), default=False)
            for engine in ("httptools", "h11")]
SCENARIOS: dict[str, list[str]] = {
    "keep-alive": [],
    "close": ["-H", "Connection: close"],
}
SERVER_CORE: int | None = 0
WRK_CORE: int | None = 1


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    rps: float
    socket_errors: int
    non_2xx: int

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def errors_dominate(self) -> bool:
        return self.requests == 0 or self.errors * 2 > self.requests


@dataclass
class Row:
    """A server's results across reps, per scenario."""

    spec: ServerSpec
    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    failure: str | None = None

    def median_rps(self, scenario: str) -> float | None:
        results = self.runs.get(scenario)
        return statistics.median(r.rps for r in results) if results else None

    def errors(self, scenario: str) -> int:
        return sum(r.errors for r in self.runs.get(scenario, []))


def parse_wrk(output: str) -> WrkResult:
    """Pick requests, req/s, socket errors and non-2xx counts out of wrk's report."""
    requests = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if requests is None or rps is None:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(port: int, duration: int, extra: list[str]) -> WrkResult:
    """One bounded wrk run against 127.0.0.1:port, pinned to WRK_CORE (or,
    with --no-pin, two wrk threads on whatever core is free)."""
    pin = ["taskset", "-c", str(WRK_CORE)] if WRK_CORE is not None else []
    threads = "-t1" if WRK_CORE is not None else "-t2"
    argv = [*pin, "wrk", threads, "-c100", f"-d{duration}s", *extra, f"http://127.0.0.1:{port}/"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise ValueError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def start_servers(specs: list[ServerSpec], rows: dict[str, Row]) -> dict[str, ServerProcess]:
    """Start every server (pinned to SERVER_CORE) and wait until each answers."""
    running: dict[str, ServerProcess] = {}
    for spec in specs:
        running[spec.name] = ServerProcess(spec, core=SERVER_CORE)
    for name, server in running.items():
        try:
            server.wait_ready()
            print(f"  {name}: ready on port {server.port} (pid {server.pid})", file=sys.stderr)
        except ServerFailed as exc:
            rows[name].failure = "failed to start"
            print(f"  {exc}", file=sys.stderr)
    return running


def run_benchmark(specs: list[ServerSpec], duration: int, reps: int) -> dict[str, Row]:
    """Interleaved runs: for rep, for scenario, for server. Servers always stopped."""
    rows = {spec.name: Row(spec) for spec in specs}
    running: dict[str, ServerProcess] = {}
    try:
        running = start_servers(specs, rows)
        for rep in range(1, reps + 1):
            for scenario, extra in SCENARIOS.items():
                for name, server in running.items():
                    row = rows[name]
                    if row.failure:
                        continue
                    try:
                        result = run_wrk(server.port, duration, extra)
                    except (ValueError, subprocess.TimeoutExpired) as exc:
                        row.failure = f"wrk failed: {exc}"
                        print(f"  {name}: {row.failure}", file=sys.stderr)
                        continue
                    if not server.alive():
                        row.failure = "server died during the run"
                        print(f"  {name}: {row.failure}\n{server.log_tail()}", file=sys.stderr)
                        continue
                    row.runs.setdefault(scenario, []).append(result)
                    print(f"  rep {rep}/{reps} {scenario:10} {name:18} {result.rps:10,.0f} req/s"
                          f"  errors {result.errors}", file=sys.stderr)
                    time.sleep(0.5)
    finally:
        for server in running.values():
            server.stop()
    return rows


def format_table(rows: dict[str, Row], skipped: dict[str, str]) -> str:
    """Median req/s per server and scenario, with ratios to BASELINE."""
    header = ["server"]
    for scenario in SCENARIOS:
        header += [f"{scenario} req/s", f"x {BASELINE}", "errors"]
    lines = [header]
    for name, row in rows.items():
        if row.failure and not row.runs:
            lines.append([name, row.failure])
            continue
        cells = [name]
        for scenario in SCENARIOS:
            rps = row.median_rps(scenario)
            base = rows[BASELINE].median_rps(scenario) if BASELINE in rows else None
            cells.append(f"{rps:,.0f}" if rps is not None else "-")
            cells.append(f"{rps / base:.2f}" if rps is not None and base else "-")
            cells.append(str(row.errors(scenario)))
        lines.append(cells)
    for name, reason in skipped.items():
        lines.append([name, f"skipped: {reason}"])
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        if len(line) == 2 and index > 0:
            out.append(f"| {line[0].ljust(widths[0])} | {line[1]}")
            continue
        out.append("| " + " | ".join(cell.rjust(w) if i else cell.ljust(w)
                                     for i, (cell, w) in enumerate(zip(line, widths))) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def failed(rows: dict[str, Row], strict: bool) -> list[str]:
    """Servers that failed to start or to finish their runs; with ``strict``
    also those where errors dominate any run.

    Errors are not fatal by default: wrk counts a read error each time a
    server closes a connection without having said ``Connection: close``
    (stock pywsgi does that in the close scenario), yet every request was
    answered.
    """
    bad = []
    for name, row in rows.items():
        results = [r for runs in row.runs.values() for r in runs]
        if row.failure or not results or (strict and any(r.errors_dominate for r in results)):
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", "-d", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--only", help="comma-separated server names: " + ", ".join(s.name for s in SERVERS))
    parser.add_argument("--smoke", action="store_true", help="2 s, 1 rep, gkit rows only; non-zero exit on failure")
    parser.add_argument("--no-pin", action="store_true",
                        help="pin nothing (servers and wrk -t2 share both cores): for the multi-process "
                             "rows, e.g. --no-pin --only gkit-httptools,gkit-workers2,gunicorn-gkit-w2")
    parser.add_argument("--gkit-tree", help="a checkout of another state of gkit: adds the rows "
                                            "gkit-httptools@tree and gkit-h11@tree (name them with --only)")
    args = parser.parse_args(argv)
    if args.gkit_tree:
        SERVERS.extend(tree_specs(args.gkit_tree))
    if args.no_pin:
        global SERVER_CORE, WRK_CORE
        SERVER_CORE = WRK_CORE = None
    if shutil.which("wrk") is None:
        print("wrk is missing; install it: apt-get install -y wrk", file=sys.stderr)
        return 2
    duration, reps = (2, 1) if args.smoke else (args.duration, args.reps)

    chosen = select_specs(SERVERS, args.only, args.smoke)
    explicit = bool(args.only) or args.smoke
    specs, skipped = [], {}
    for spec in chosen:
        reason = spec.missing()
        if reason is None:
            specs.append(spec)
        elif explicit:
            print(f"{spec.name} cannot run: {reason}", file=sys.stderr)
            return 1
        else:
            skipped[spec.name] = reason
    if not specs:
        print("no server to run", file=sys.stderr)
        return 1

    threads = "-t1" if WRK_CORE is not None else "-t2"
    print(f"wrk {threads} -c100 -d{duration}s on core {WRK_CORE}, servers on core {SERVER_CORE}, "
          f"{reps} rep(s), medians", file=sys.stderr)
    try:
        with terminate_on_sigterm():
            rows = run_benchmark(specs, duration, reps)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    where = "nothing pinned" if WRK_CORE is None else f"server on core {SERVER_CORE}, wrk on core {WRK_CORE}"
    print(f"\nHello world, wrk {threads} -c100 -d{duration}s ({where}), "
          f"median of {reps} interleaved rep(s)\n")
    print(format_table(rows, skipped))
    if any(row.errors(scenario) for row in rows.values() for scenario in SCENARIOS):
        print("\nerrors: wrk's socket errors + non-2xx responses, summed over reps. A server that closes"
              "\nwithout sending 'Connection: close' shows one read error per request in the close scenario.")
    bad = failed(rows, strict=args.smoke)
    if bad:
        print(f"\nFAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
