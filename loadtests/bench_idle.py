"""Memory per idle keep-alive connection: gkit against a bare gevent floor.

For each server in turn: start it (pinned to core 0), let it answer a few
requests, read its RSS; then a client process (loadtests/idle_client.py,
pinned to core 1) opens ``--conns`` connections, completes one keep-alive
``GET /`` on each and leaves them idle. After ``--idle`` seconds the server's
RSS is read again. RSS is VmRSS from /proc/PID/status, summed over the
server's process tree. The floor is loadtests/peers/bare_floor.py: one gevent
greenlet per connection blocked in ``recv``, no HTTP parsing at all.

Goal (gkit issue): gkit at most 1.2x the floor, and at most 64 MiB for 10,000
idle connections.

    python loadtests/bench_idle.py                    # 10,000 connections
    python loadtests/bench_idle.py --conns 2000 --only gkit-httptools,bare-floor
    python loadtests/bench_idle.py --smoke            # 200 connections, CI
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    ServerFailed,
    ServerProcess,
    ServerSpec,
    check_hello,
    rss_kib,
    select_specs,
    terminate_on_sigterm,
)

SERVERS: list[ServerSpec] = [
    ServerSpec("gkit-httptools", ("{python}", "-m", "gkit", "{app}", "--ip", "127.0.0.1", "--port", "{port}",
                                  "--http", "httptools"), requires=("gkit.__main__",), smoke=True),
    ServerSpec("gkit-h11", ("{python}", "-m", "gkit", "{app}", "--ip", "127.0.0.1", "--port", "{port}",
                            "--http", "h11"), requires=("gkit.__main__",), smoke=True),
    ServerSpec("bare-floor", ("{python}", "{peers}/bare_floor.py", "--port", "{port}"), smoke=True),
    ServerSpec("pywsgi", ("{python}", "{peers}/pywsgi_nodelay.py", "{app}", "--port", "{port}")),
    # Not run by default; name them with --only.
    # gunicorn closes idle keep-alive connections after 2 s unless told otherwise.
    ServerSpec("gunicorn-gevent", ("{python}", "-m", "gunicorn", "-k", "gevent", "-w", "1",
                                   "--worker-connections", "20000", "--keep-alive", "300",
                                   "-b", "127.0.0.1:{port}", "{app}"),
               requires=("gunicorn", "gevent"), default=False),
]
FLOOR = "bare-floor"
GOAL_RATIO = 1.2
GOAL_MIB_PER_10K = 64.0
SERVER_CORE = 0
CLIENT_CORE = 1
CLIENT = Path(__file__).resolve().parent / "idle_client.py"


@dataclass
class IdleResult:
    """One server's memory before and after holding the idle connections."""

    name: str
    opened: int
    still_open: int
    before_kib: int
    after_kib: int
    error: str | None = None

    @property
    def added_kib(self) -> int:
        return self.after_kib - self.before_kib

    @property
    def kib_per_conn(self) -> float:
        return self.added_kib / self.opened if self.opened else float("nan")


class Client:
    """The idle_client.py subprocess and its line protocol."""

    def __init__(self, port: int, conns: int, open_timeout: float) -> None:
        argv = ["taskset", "-c", str(CLIENT_CORE), sys.executable, str(CLIENT), "--port", str(port),
                "--conns", str(conns), "--open-timeout", str(open_timeout)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.open_timeout = open_timeout

    def read(self, timeout: float) -> dict[str, Any]:
        """The client's next JSON line, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise TimeoutError(f"idle client said nothing in {timeout:.0f}s (exit {self.proc.poll()})")
        return json.loads(line)

    def still_open(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("check\n")
        self.proc.stdin.flush()
        return int(self.read(timeout=30)["still_open"])

    def close(self) -> None:
        """Let the client reset its connections and exit; kill it if it will not."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass  # the client is gone already
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def measure(spec: ServerSpec, conns: int, idle: float, open_timeout: float) -> IdleResult:
    """Start the server, hold ``conns`` idle connections on it, read RSS."""
    server = ServerProcess(spec, core=SERVER_CORE)
    client: Client | None = None
    try:
        server.wait_ready()
        for _ in range(20):  # warm up: first-request imports and caches are not per connection
            check_hello(server.port)
        time.sleep(1.0)
        before = rss_kib(server.pid)
        client = Client(server.port, conns, open_timeout)
        report = client.read(timeout=open_timeout + 30)
        print(f"  {spec.name}: opened {report['opened']}/{conns} in {report['seconds']}s"
              + (f" (first error: {report['error']})" if report["error"] else ""), file=sys.stderr)
        time.sleep(idle)
        after = rss_kib(server.pid)
        still_open = client.still_open()
        if not server.alive():
            raise ServerFailed(f"{spec.name} died while holding the connections\n{server.log_tail()}")
        error = None if report["opened"] == conns == still_open else (
            f"{conns - report['opened']} failed to open, {report['opened'] - still_open} closed by the server")
        return IdleResult(spec.name, report["opened"], still_open, before, after, error)
    finally:
        if client is not None:
            client.close()
        server.stop()


def format_table(results: list[IdleResult], failures: dict[str, str]) -> str:
    floor = next((r for r in results if r.name == FLOOR and r.opened), None)
    header = ["server", "open", "still open", "RSS before MiB", "RSS after MiB", "added MiB", "KiB/conn",
              f"x {FLOOR}"]
    lines = [header]
    for r in results:
        ratio = f"{r.kib_per_conn / floor.kib_per_conn:.2f}" if floor and floor.kib_per_conn > 0 else "-"
        lines.append([r.name, str(r.opened), str(r.still_open), f"{r.before_kib / 1024:.1f}",
                      f"{r.after_kib / 1024:.1f}", f"{r.added_kib / 1024:.1f}", f"{r.kib_per_conn:.1f}", ratio])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("| " + " | ".join(cell.rjust(w) if i else cell.ljust(w)
                                     for i, (cell, w) in enumerate(zip(line, widths))) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [f"| {name.ljust(widths[0])} | {reason}" for name, reason in failures.items()]
    return "\n".join(out)


def goal_lines(results: list[IdleResult]) -> list[str]:
    """gkit against the issue's goal: <= 1.2x the floor, <= 64 MiB per 10,000."""
    floor = next((r for r in results if r.name == FLOOR and r.opened), None)
    lines = []
    for r in results:
        if not r.name.startswith("gkit") or not r.opened:
            continue
        per_10k = r.kib_per_conn * 10000 / 1024
        verdict = f"{per_10k:.1f} MiB per 10,000 (goal <= {GOAL_MIB_PER_10K:.0f})"
        if floor and floor.kib_per_conn > 0:
            ratio = r.kib_per_conn / floor.kib_per_conn
            verdict += f", {ratio:.2f}x the floor (goal <= {GOAL_RATIO})"
            verdict += " OK" if ratio <= GOAL_RATIO and per_10k <= GOAL_MIB_PER_10K else " MISSED"
        lines.append(f"{r.name}: {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=10000, help="idle connections per server (default 10000)")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before reading RSS (default 2)")
    parser.add_argument("--open-timeout", type=float, default=120.0, help="bound on opening the connections")
    parser.add_argument("--only", help="comma-separated server names: " + ", ".join(s.name for s in SERVERS))
    parser.add_argument("--smoke", action="store_true", help="200 connections, gkit and the floor; for CI")
    args = parser.parse_args(argv)
    conns = 200 if args.smoke else args.conns

    chosen = select_specs(SERVERS, args.only, args.smoke)
    explicit = bool(args.only) or args.smoke
    results: list[IdleResult] = []
    failures: dict[str, str] = {}
    try:
        with terminate_on_sigterm():
            for spec in chosen:
                reason = spec.missing()
                if reason is not None:
                    failures[spec.name] = f"{'cannot run' if explicit else 'skipped'}: {reason}"
                    continue
                try:
                    results.append(measure(spec, conns, args.idle, args.open_timeout))
                except (ServerFailed, TimeoutError, OSError) as exc:
                    failures[spec.name] = f"failed: {str(exc).splitlines()[0]}"
                    print(f"  {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted; servers and client stopped", file=sys.stderr)
        return 130

    print(f"\nIdle keep-alive connections: {conns} per server, RSS {args.idle:g} s after the last one opened\n")
    print(format_table(results, failures))
    goals = goal_lines(results)
    if goals:
        print("\n" + "\n".join(goals))
    bad = [r.name for r in results if r.error] + [
        name for name, reason in failures.items() if not reason.startswith("skipped")]
    for r in results:
        if r.error:
            print(f"{r.name}: {r.error}", file=sys.stderr)
    if bad:
        print(f"\nFAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
