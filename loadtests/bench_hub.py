"""gkit.hub fan-out: time from a publish until the last subscriber has it.

    python loadtests/bench_hub.py              # (a) and (b), full size
    python loadtests/bench_hub.py --only a     # one part
    python loadtests/bench_hub.py --smoke      # CI: small numbers, one rep

(a) one server process (pinned to core 0; clients to core 1), 10,000
    WebSocket subscribers, one publish: gkit
    (``gkit.hub.publish`` from a WebSocket callback, memory://) beside the
    ``websockets`` library's ``broadcast()`` to the same number of
    connections (loadtests/peers/ws_broadcast.py), interleaved reps, medians.
(b) through Redis: ``gkit --workers 4 --hub redis://...``, 20,000
    subscribers, 100 publishes from a separate process with no server
    (``gkit.hub.publish_to``), one a second (``--rate``; each is 20,000
    sends, and this machine's 2 cores, clients included, do some 50,000 a
    second: faster, the publishes queue up): median and p99 over the
    publishes of the time to the last delivery, and messages lost.

The clock starts when the publisher sends (the message carries its
``time.monotonic()``) and stops when the last client process reads it.
Subscribers live in several client processes (loadtests/hub_fleet.py, under
the 20,000 open-file limit each), all on this machine: the figures include
the clients' own share of the 2 cores.
"""
from __future__ import annotations

import argparse
import base64
import json
import shutil
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtests.common import CLOCK_TICKS, REPO, child_env, free_port, process_tree, rss_kib  # noqa: E402,E501

FLEET = str(REPO / "loadtests" / "hub_fleet.py")


class Server:
    """A server subprocess in its own session; ready once it answers HTTP."""

    def __init__(self, argv: List[str], name: str, port: int,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.name, self.port = name, port
        self.log = open(f"/tmp/gkit-bench-hub-{name}-{port}.log", "wb")
        self.proc = subprocess.Popen(argv, cwd=REPO, env=dict(child_env(), **(env or {})),
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1.1 "):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer on port {port} within 30 s")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """utime + stime of the server and its workers."""
        total = 0
        for pid in process_tree(self.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def rss_mib(self) -> float:
        return rss_kib(self.proc.pid) / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self.log.close()


def pin(core: Optional[int]) -> List[str]:
    """``taskset -c CORE`` when asked for and available (else nothing)."""
    return ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []


def gkit_server(port: int, hub: str, workers: int = 1, extra: List[str] = (),
                core: Optional[int] = None) -> Server:
    argv = [*pin(core), sys.executable, "-m", "gkit", "loadtests.hub_app:app", "--ip", "127.0.0.1",
            "--port", str(port), "--hub", hub, "--workers", str(workers),
            "--log-level", "warning", *extra]
    return Server(argv, f"gkit-w{workers}", port)


def websockets_server(port: int, core: Optional[int] = None) -> Server:
    argv = [*pin(core), sys.executable, str(REPO / "loadtests" / "peers" / "ws_broadcast.py"),
            "--port", str(port)]
    return Server(argv, "websockets", port)


class Fleets:
    """Client processes holding ``total`` subscribers between them."""

    def __init__(self, port: int, total: int, procs: int, expect: int, wait: float,
                 src_base: Optional[int] = None, core: Optional[int] = None,
                 window: int = 256) -> None:
        self.procs: List[subprocess.Popen] = []
        per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
        for i, count in enumerate(per):
            argv = [*pin(core), sys.executable, FLEET, "--port", str(port), "--count", str(count),
                    "--expect", str(expect), "--wait", str(wait), "--connect-timeout", "300",
                    "--window", str(window)]
            if src_base is not None:
                argv += ["--src", f"127.{src_base + i}"]
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                               stdin=subprocess.DEVNULL))
        self.connect = [json.loads(p.stdout.readline() or "{}") for p in self.procs]  # noqa: E501
        self.held = sum(c.get("held", 0) for c in self.connect)
        self.failed = sum(c.get("failed", 0) for c in self.connect)
        self.seconds = max(c.get("seconds", 0.0) for c in self.connect)

    def results(self) -> Dict[str, Any]:
        latest: Dict[int, float] = {}
        counts: Dict[int, int] = {}
        closed = complete = 0
        for p in self.procs:
            r = json.loads(p.stdout.readline() or "{}")
            p.wait(30)
            for k, v in r.get("latest", {}).items():
                latest[int(k)] = max(latest.get(int(k), 0.0), v)
            for k, v in r.get("counts", {}).items():
                counts[int(k)] = counts.get(int(k), 0) + v
            closed += r.get("closed", 0)
            complete += r.get("complete", 0)
        return {"latest": latest, "counts": counts, "closed": closed, "complete": complete}

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def control_publish(port: int, seq: int) -> None:
    """Send ``"<seq> <now>"`` as a masked text frame on a WebSocket to /pub."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((f"GET /pub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        payload = f"{seq} {time.monotonic()!r}".encode()
        mask = b"\x00\x00\x00\x00"
        s.sendall(bytes((0x81, 0x80 | len(payload))) + mask + payload)
        time.sleep(0.2)


def part_a(subs: int, reps: int, fleet_procs: int) -> None:
    print(f"(a) one process, {subs:,} WebSocket subscribers, one publish "
          f"({fleet_procs} client processes), {reps} rep(s), interleaved; "
          f"server on core 0, clients on core 1")
    rows: Dict[str, List[float]] = {"gkit": [], "websockets": []}
    lost: Dict[str, int] = {"gkit": 0, "websockets": 0}
    held: Dict[str, int] = {"gkit": 0, "websockets": 0}
    rss: Dict[str, float] = {"gkit": 0.0, "websockets": 0.0}
    cpu: Dict[str, List[float]] = {"gkit": [], "websockets": []}
    for _ in range(reps):
        for name in ("gkit", "websockets"):
            port = free_port()
            server = (gkit_server(port, "memory://", core=0) if name == "gkit"
                      else websockets_server(port, core=0))
            fleets = None
            try:
                fleets = Fleets(port, subs, fleet_procs, expect=1, wait=30, core=1)
                held[name] = fleets.held
                time.sleep(0.5)
                rss[name] = server.rss_mib()
                before = server.cpu_seconds()
                control_publish(port, 0)
                r = fleets.results()
                cpu[name].append(server.cpu_seconds() - before)
                rows[name].append(r["latest"].get(0, float("nan")) * 1000)
                lost[name] += fleets.held - r["counts"].get(0, 0)
            finally:
                if fleets is not None:
                    fleets.kill()
                server.stop()
    ref = statistics.median(rows["websockets"])
    print("| server | subscribers held | time to last delivery, median (ms) | each rep (ms) "
          "| vs websockets | lost | server CPU for it (ms) | sends per CPU-second "
          "| server RSS (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("gkit", "websockets"):
        med = statistics.median(rows[name])
        reps_text = ", ".join(f"{v:.0f}" for v in rows[name])
        cpu_ms = statistics.median(cpu[name]) * 1000
        rate = held[name] / (cpu_ms / 1000) if cpu_ms else float("nan")
        print(f"| {name} | {held[name]:,} | {med:.0f} | {reps_text} | {med / ref:.2f}x "
              f"| {lost[name]} | {cpu_ms:.0f} | {rate:,.0f} | {rss[name]:.0f} |")
    print()


def part_b(subs: int, workers: int, publishes: int, rate: float, fleet_procs: int) -> None:
    from examples.chat.testing import RedisProcess, redis_server_path

    import gkit.hub
    if redis_server_path() is None:
        print("(b) skipped: redis-server not found (apt-get install redis-server)\n")
        return
    print(f"(b) through Redis: gkit --workers {workers}, {subs:,} WebSocket subscribers, "
          f"{publishes} publishes at {rate:g}/s from a process with no server")
    with RedisProcess() as redis:
        port = free_port()
        server = gkit_server(port, redis.url, workers)
        fleets = None
        try:
            fleets = Fleets(port, subs, fleet_procs, expect=publishes,
                            wait=publishes / rate + 60, src_base=60)
            time.sleep(1.0)
            for seq in range(publishes):
                gkit.hub.publish_to(redis.url, "bench",
                                    f"{seq} {time.monotonic()!r} " + "x" * 64)
                time.sleep(1.0 / rate)
            r = fleets.results()
            rss = server.rss_mib()
        finally:
            if fleets is not None:
                fleets.kill()
            server.stop()
    lat = sorted(v * 1000 for v in r["latest"].values())
    delivered = sum(r["counts"].values())
    expected = fleets.held * publishes
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    print("| processes | subscribers held | publishes | last delivery median (ms) "
          "| p99 (ms) | max (ms) | delivered | lost | server RSS (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {workers} | {fleets.held:,} | {publishes} | {statistics.median(lat):.0f} | "
          f"{p99:.0f} | {lat[-1]:.0f} | {delivered:,} | {expected - delivered} | {rss:.0f} |")
    print()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["a", "b"])
    p.add_argument("--smoke", action="store_true", help="small numbers, one rep (CI)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rate", type=float, default=1.0,
                   help="(b): publishes per second (each is 20,000 sends; this machine's "
                        "2 cores do some 50,000 a second, clients included)")
    args = p.parse_args()
    print(f"load before: {open('/proc/loadavg').read().split()[:3]} (the machine is shared)")
    if args.only in (None, "a"):
        if args.smoke:
            part_a(200, 1, 2)
        else:
            part_a(10_000, args.reps, 4)
    if args.only in (None, "b"):
        if args.smoke:
            part_b(200, 2, 10, 20.0, 2)
        else:
            part_b(20_000, 4, 100, args.rate, 4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
