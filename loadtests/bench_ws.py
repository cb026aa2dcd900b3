"""WebSocket echo round trips and idle-connection memory: gkit against the
``websockets`` library's asyncio server, in one interleaved run.

Servers (each its own process, pinned to core 0 with ``taskset -c 0``):

- ``gkit``: ``python -m gkit examples.echo_ws:app --http httptools``. The
  WebSocket path after the upgrade (gkit.proto.ws_session, the channel, its
  writer) is the same for both HTTP engines, so one engine is enough;
  ``gkit-h11`` is there by ``--only`` to check that.
- ``websockets``: loadtests/peers/ws_websockets.py, the library's asyncio
  server; ``websockets-uvloop``: the same on uvloop (``pip install uvloop``;
  skipped unless it imports). Ratios are to ``websockets`` (asyncio).

The client is this script again (``client`` sub-command), in its own process
pinned to core 1: raw sockets, a hand-written handshake, one pre-built masked
frame per connection, and an epoll loop that compares each reply with the
bytes it expects (a 32-byte text message comes back as 34 known bytes) and
only parses frames in full when a reply differs. Each connection keeps one
message in flight: a message is sent when the previous echo came back.

Scenarios: ``1x100000`` (one connection, 100,000 sequential round trips) and
``100x1000`` (100 connections, 1,000 round trips each). For each rep, for
each scenario, every server runs once (the server order rotates per rep);
the table shows the median msgs/s (echoed messages per second), the ratio
to websockets, and the server's CPU time per message (from /proc/PID/stat
over the client's run). Each run's line also says how busy the server's
core was with anything but the server (from /proc/stat): the machine is
shared, and a run during someone else's job on core 0 is slower for
reasons that are not the server's: such a run (over 10%) is run again, at
most ``--retry-busy`` times (default 2), and the last try counts. The
ratios of each rep are printed too. The issue asks gkit >= 0.8x
websockets, aiming at >= 1.0x.

Then the idle run: for each server in turn, a fresh process, its RSS
(VmRSS of the process tree), ``--idle-conns`` WebSocket connections opened
(handshake and one echo each) and left idle for ``--idle`` seconds, the RSS
again: MiB added and KiB per connection.

    python loadtests/bench_ws.py              # full: 3 reps + 10,000 idle (about 3-4 minutes)
    python loadtests/bench_ws.py --reps 1 --scale 0.1 --idle-conns 1000   # quick look
    python loadtests/bench_ws.py --only gkit,gkit-h11 --no-idle
    python loadtests/bench_ws.py --smoke      # CI: tiny runs, gkit and websockets
    python loadtests/bench_ws.py --gkit-tree /tmp/old   # serve the gkit/ package copied to /tmp/old

Exit status 1 if a server failed to start or died, or a client run or the
idle run had errors (every echo is checked byte for byte); timing never
fails a run. Every client exits by itself (SIGALRM) after ``--deadline``
seconds whatever happens.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    CLOCK_TICKS,
    REPO,
    NotReady,
    ServerFailed,
    ServerProcess,
    ServerSpec,
    rss_kib,
    select_specs,
    terminate_on_sigterm,
)

ECHO_APP = "examples.echo_ws:app"


def gkit_command(tree: str | None) -> tuple[str, ...]:
    """How a gkit command line starts: this repo's gkit, or the ``gkit``
    package found in ``tree`` (a copy of another state of gkit: ``--gkit-tree``)."""
    if tree is None:
        return ("{python}", "-m", "gkit")
    return ("env", f"PYTHONPATH={Path(tree).resolve()}{os.pathsep}{REPO}", "{python}", "-m", "gkit")


def server_specs(tree: str | None = None) -> list[ServerSpec]:
    gkit = gkit_command(tree)
    needs = () if tree else ("gkit.__main__",)
    return [
        ServerSpec(
            "gkit",
            (*gkit, ECHO_APP, "--ip", "127.0.0.1", "--port", "{port}", "--http", "httptools"),
            requires=(*needs, "httptools"),
            smoke=True,
        ),
        ServerSpec(
            "websockets",
            ("{python}", "{peers}/ws_websockets.py", "--port", "{port}"),
            requires=("websockets",),
            smoke=True,
        ),
        ServerSpec(
            "websockets-uvloop",
            ("{python}", "{peers}/ws_websockets.py", "--port", "{port}", "--uvloop"),
            requires=("websockets", "uvloop"),
        ),
        # Not run by default: gkit with heartbeats off, for the idle-memory cost of pings.
        ServerSpec(
            "gkit-noping",
            (*gkit, ECHO_APP, "--ip", "127.0.0.1", "--port", "{port}", "--http", "httptools",
             "--ws-ping-interval", "none"),
            requires=(*needs, "httptools"),
            default=False,
        ),
        # Not run by default: the WebSocket path is the same for both HTTP engines.
        ServerSpec(
            "gkit-h11",
            (*gkit, ECHO_APP, "--ip", "127.0.0.1", "--port", "{port}", "--http", "h11"),
            requires=needs,
            default=False,
        ),
    ]


SERVERS = server_specs()
REFERENCE = "websockets"
GKIT = "gkit"
MUST_RATIO, AIM_RATIO = 0.8, 1.0
BUSY_LIMIT = 0.10  # a run whose server core was busier than this elsewhere is run again
SERVER_CORE, CLIENT_CORE = 0, 1
SCRIPT = Path(__file__).resolve()
MESSAGE_SIZE = 32


# ---------------------------------------------------------------------------
# The client: raw sockets, pre-built masked frames, an epoll loop.
# ---------------------------------------------------------------------------


class EchoError(RuntimeError):
    """The server answered something other than the echo of our message."""


def handshake_request(port: int, key: bytes) -> bytes:
    return (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)
    )


def masked_frame(opcode: int, payload: bytes, rng: random.Random) -> bytes:
    """One final client frame (FIN set), masked with a random key."""
    mask = rng.randbytes(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    return (
        head
        + mask
        + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    )


def server_frame(opcode: int, payload: bytes) -> bytes:
    """What an unmasked, uncompressed server frame with ``payload`` looks like."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def parse_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole server frames at the start of ``buf`` as (opcode, payload), and the rest.
    The slow path: only used when a reply is not the exact bytes expected."""
    frames = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        if b1 & 0x80:
            raise EchoError("the server sent a masked frame")
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
        if len(buf) < pos + n:
            break
        if b0 & 0x70:
            raise EchoError(f"the server set RSV bits (0x{b0:02x}): compression was not offered")
        frames.append((b0 & 0x0F, buf[pos : pos + n]))
        buf = buf[pos + n :]
    return frames, buf


class Conn:
    """One client connection: its socket, its frame, the reply it expects."""

    __slots__ = ("buf", "expect", "frame", "left", "payload", "sock")

    def __init__(self, sock: socket.socket, payload: bytes, rng: random.Random) -> None:
        self.sock = sock
        self.payload = payload
        self.frame = masked_frame(0x1, payload, rng)
        self.expect = server_frame(0x1, payload)
        self.left = 0
        self.buf = b""


def open_conns(port: int, count: int, rng: random.Random, batch: int = 200) -> list[Conn]:
    """Open ``count`` WebSocket connections (handshakes sent ``batch`` at a time)."""
    conns: list[Conn] = []
    while len(conns) < count:
        pending = []
        for _ in range(min(batch, count - len(conns))):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(rng.randbytes(16))
            sock.sendall(handshake_request(port, key))
            pending.append(sock)
        for sock in pending:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed during the handshake")
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
            if b"permessage-deflate" in head.lower():
                raise ConnectionError("the server answered with compression we did not offer")
            text = "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(MESSAGE_SIZE)
            )
            conn = Conn(sock, text.encode(), rng)
            conn.buf = rest
            conns.append(conn)
    return conns


def echo_slow_path(conn: Conn, data: bytes) -> int:
    """Parse what came in; returns how many echoes it completed (0 or 1)."""
    frames, conn.buf = parse_frames(conn.buf + data)
    done = 0
    for opcode, payload in frames:
        if opcode == 0x1 and payload == conn.payload:
            done += 1
        elif opcode in (0x9, 0xA):
            continue  # a ping or pong: not ours to count
        elif opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            raise EchoError(f"the server closed the WebSocket (code {code})")
        else:
            raise EchoError(f"unexpected frame opcode {opcode} payload {payload[:40]!r}")
    if done > 1:
        raise EchoError("more echoes than messages sent")
    return done


def run_sequential(conn: Conn, msgs: int) -> None:
    """One connection, blocking: send, wait for the echo, repeat."""
    sock = conn.sock
    send, recv, frame, expect = sock.send, sock.recv, conn.frame, conn.expect
    for _ in range(msgs):
        send(frame)
        data = recv(65536)
        if data != expect:
            while not echo_slow_path(conn, data):
                data = recv(65536)
                if not data:
                    raise EchoError("the server closed the connection")


def run_many(conns: list[Conn], msgs: int) -> None:
    """Many connections, one epoll loop, one message in flight per connection."""
    ep = select.epoll()
    by_fd: dict[int, Conn] = {}
    for conn in conns:
        conn.sock.setblocking(False)
        conn.left = msgs
        fd = conn.sock.fileno()
        by_fd[fd] = conn
        ep.register(fd, select.EPOLLIN)
    active = len(conns)
    for conn in conns:
        conn.sock.send(conn.frame)
    poll = ep.poll
    while active:
        for fd, _ in poll(5.0):
            conn = by_fd[fd]
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise EchoError("the server closed a connection")
            if (data != conn.expect or conn.buf) and not echo_slow_path(conn, data):
                continue  # not a whole echo yet
            conn.left -= 1
            if conn.left:
                conn.sock.send(conn.frame)  # 38 bytes into an empty send buffer: never short
            else:
                ep.unregister(fd)
                active -= 1
    ep.close()


def close_conns(conns: list[Conn], rng: random.Random, reset: bool = False) -> None:
    """Send a close frame (1000) and close; ``reset`` skips the close frame and
    resets (SO_LINGER 0), leaving no TIME_WAIT behind."""
    close = masked_frame(0x8, struct.pack("!H", 1000), rng)
    linger = struct.pack("ii", 1, 0)
    for conn in conns:
        try:
            if reset:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            else:
                conn.sock.setblocking(True)
                conn.sock.sendall(close)
        except OSError:
            pass
        conn.sock.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def client_main(args: argparse.Namespace) -> int:
    """``bench_ws.py client``: one measured run; prints one JSON line."""
    signal.alarm(int(args.deadline))
    rng = random.Random(args.seed)
    report: dict[str, Any] = {"conns": args.conns, "msgs": args.conns * args.msgs}
    conns: list[Conn] = []
    try:
        conns = open_conns(args.port, args.conns, rng)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        if args.conns == 1:
            conns[0].sock.settimeout(None)  # blocking: no poll() before every recv
            run_sequential(conns[0], args.msgs)
        else:
            run_many(conns, args.msgs)
        seconds = time.perf_counter() - t0
        report.update(
            seconds=seconds,
            rate=report["msgs"] / seconds,
            client_cpu=(cpu_seconds() - cpu0) / seconds,
            error=None,
        )
    except (OSError, EchoError) as exc:
        report.update(error=f"{type(exc).__name__}: {exc}")
    finally:
        close_conns(conns, rng)
    print(json.dumps(report), flush=True)
    return 0 if report["error"] is None else 1


def idle_client_main(args: argparse.Namespace) -> int:
    """``bench_ws.py idle-client``: open connections, one echo each, hold them.

    Prints ``{"opened": n, "seconds": t, "error": ...}`` once they are open;
    on the input line ``check`` prints ``{"still_open": n}`` (connections
    with nothing to read: the server closed none); at end of input resets
    them all and exits.
    """
    signal.alarm(int(args.deadline))
    rng = random.Random(args.seed)
    conns: list[Conn] = []
    t0 = time.monotonic()
    error = None
    try:
        conns = open_conns(args.port, args.conns, rng)
        for conn in conns:
            conn.sock.settimeout(None)  # SIGALRM bounds the run
            run_sequential(conn, 1)
    except (OSError, EchoError) as exc:
        error = f"{type(exc).__name__}: {exc} (after {len(conns)} connections)"
    print(
        json.dumps(
            {"opened": len(conns), "seconds": round(time.monotonic() - t0, 2), "error": error}
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() == "check":
            poller = select.poll()
            for conn in conns:
                poller.register(conn.sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            ready = {fd for fd, _ in poller.poll(0)}
            closed = 0
            for conn in conns:
                if conn.sock.fileno() in ready:
                    try:
                        data = conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                    except OSError:
                        data = b""
                    if data != b"\x89":  # a heartbeat ping (ws_ping_interval) is no close
                        closed += 1
            print(json.dumps({"still_open": len(conns) - closed}), flush=True)
    close_conns(conns, rng, reset=True)
    return 0 if error is None else 1


# ---------------------------------------------------------------------------
# The driver: servers, interleaved runs, tables.
# ---------------------------------------------------------------------------


class WsServer(ServerProcess):
    """A server process that is ready when a WebSocket echo works."""

    def probe(self) -> None:
        rng = random.Random(0)
        conns: list[Conn] = []
        try:
            conns = open_conns(self.port, 1, rng)
            conns[0].sock.settimeout(5)
            run_sequential(conns[0], 3)
        except EchoError as exc:
            raise NotReady(str(exc)) from None
        finally:
            close_conns(conns, rng)


@dataclass(frozen=True)
class Scenario:
    name: str
    conns: int
    msgs: int  # per connection


@dataclass
class RunResult:
    rate: float | None
    seconds: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0  # share of one core the server used during the run
    cpu_us: float | None = None  # server CPU time per echoed message, in microseconds
    other: float = 0.0  # share of the server's core that other processes (and interrupts) used
    error: str | None = None


@dataclass
class Table:
    """Run results by (server, scenario)."""

    runs: dict[tuple[str, str], list[RunResult]] = field(default_factory=dict)

    def add(self, server: str, scenario: str, result: RunResult) -> None:
        self.runs.setdefault((server, scenario), []).append(result)

    def median(self, server: str, scenario: str) -> float | None:
        rates = [r.rate for r in self.runs.get((server, scenario), []) if r.rate is not None]
        return statistics.median(rates) if rates else None

    def median_cpu(self, server: str, scenario: str) -> float | None:
        values = [r.cpu_us for r in self.runs.get((server, scenario), []) if r.cpu_us is not None]
        return statistics.median(values) if values else None

    def rep_ratios(self, server: str, scenario: str) -> list[float]:
        """``server``'s rate over the reference's, rep by rep (the runs were interleaved)."""
        ours = self.runs.get((server, scenario), [])
        theirs = self.runs.get((REFERENCE, scenario), [])
        return [a.rate / b.rate for a, b in zip(ours, theirs) if a.rate and b.rate]

    def errors(self, server: str, scenario: str) -> int:
        return sum(r.error is not None for r in self.runs.get((server, scenario), []))


def client_command(port: int, scenario: Scenario, deadline: float, seed: int) -> list[str]:
    return [
        "taskset",
        "-c",
        str(CLIENT_CORE),
        sys.executable,
        str(SCRIPT),
        "client",
        "--port",
        str(port),
        "--conns",
        str(scenario.conns),
        "--msgs",
        str(scenario.msgs),
        "--deadline",
        str(int(deadline)),
        "--seed",
        str(seed),
    ]


def core_busy_seconds(core: int) -> float:
    """CPU seconds core ``core`` has spent busy (not idle, not iowait) since boot."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(x) for x in line.split()[1:9]]
            return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return float("nan")


def run_client(server: WsServer, scenario: Scenario, deadline: float, seed: int) -> RunResult:
    cpu0 = server.cpu_seconds()
    busy0, wall0 = core_busy_seconds(SERVER_CORE), time.monotonic()
    try:
        proc = subprocess.run(
            client_command(server.port, scenario, deadline, seed),
            capture_output=True,
            text=True,
            timeout=deadline + 15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return RunResult(None, error="client did not finish in time")
    server_cpu = server.cpu_seconds() - cpu0
    wall = time.monotonic() - wall0
    other = max(0.0, core_busy_seconds(SERVER_CORE) - busy0 - server_cpu) / wall
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return RunResult(
            None, error=f"client exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        )
    if report.get("error"):
        return RunResult(None, error=report["error"])
    if not server.alive():
        return RunResult(None, error=f"server died\n{server.log_tail()}")
    seconds = report["seconds"]
    return RunResult(
        report["rate"],
        seconds,
        report["client_cpu"],
        server_cpu / seconds if seconds else 0.0,
        server_cpu / report["msgs"] * 1e6,
        other,
    )


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def fmt_rate(rate: float | None) -> str:
    return "failed" if rate is None else f"{rate:,.0f}"


def print_echo_table(
    table: Table, specs: list[ServerSpec], scenarios: list[Scenario], reps: int
) -> None:
    names = [spec.name for spec in specs]
    print(
        f"\nWebSocket echo, msgs/s (median of {reps}), 32-byte text messages, "
        f"server on core {SERVER_CORE}, client on core {CLIENT_CORE}; load average {loadavg()}"
    )
    print(
        "(CPU µs/msg: the server's CPU time during the run, handshakes included, per echoed "
        "message)"
    )
    head = " | ".join(f"{s.name} msgs/s | ratio | CPU µs/msg" for s in scenarios)
    print(f"| server | {head} | errors |")
    print("| --- " + "| ---: | ---: | ---: " * len(scenarios) + "| ---: |")
    for name in names:
        cells = []
        errors = 0
        for scenario in scenarios:
            rate = table.median(name, scenario.name)
            ref = table.median(REFERENCE, scenario.name)
            shown = f"{rate / ref:.2f}x" if rate and ref else "-"
            cpu = table.median_cpu(name, scenario.name)
            cells.append(f"{fmt_rate(rate)} | {shown} | {'-' if cpu is None else f'{cpu:.1f}'}")
            errors += table.errors(name, scenario.name)
        print(f"| {name} | " + " | ".join(cells) + f" | {errors} |")
    others = [r.other for runs in table.runs.values() for r in runs if r.rate is not None]
    if others:
        print(
            f"core {SERVER_CORE} busy outside the server during the runs: median "
            f"{statistics.median(others):.0%}, max {max(others):.0%} (other engineers' jobs, "
            "interrupts; a run with a high figure is suspect)"
        )
    if GKIT in names and REFERENCE in names:
        for scenario in scenarios:
            rate, ref = table.median(GKIT, scenario.name), table.median(REFERENCE, scenario.name)
            if rate and ref:
                ratio = rate / ref
                verdict = (
                    "meets the aim"
                    if ratio >= AIM_RATIO
                    else "meets the must"
                    if ratio >= MUST_RATIO
                    else "BELOW the must"
                )
                per_rep = ", ".join(f"{r:.2f}" for r in table.rep_ratios(GKIT, scenario.name))
                print(
                    f"{scenario.name}: gkit/websockets = {ratio:.2f}x "
                    f"(must >= {MUST_RATIO}x, aim >= {AIM_RATIO}x): {verdict}; rep by rep {per_rep}"
                )
            cpu, ref_cpu = (
                table.median_cpu(GKIT, scenario.name),
                table.median_cpu(REFERENCE, scenario.name),
            )
            if cpu and ref_cpu:
                print(
                    f"{scenario.name}: server CPU per message gkit {cpu:.1f} µs, websockets "
                    f"{ref_cpu:.1f} µs: gkit does {ref_cpu / cpu:.2f}x the work per CPU second"
                )


@dataclass
class IdleResult:
    name: str
    opened: int = 0
    still_open: int = 0
    before_kib: int = 0
    after_kib: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def added_kib(self) -> int:
        return self.after_kib - self.before_kib


def measure_idle(spec: ServerSpec, conns: int, idle: float, deadline: float) -> IdleResult:
    result = IdleResult(spec.name)
    server = WsServer(spec, core=SERVER_CORE)
    client = None
    try:
        server.wait_ready()
        time.sleep(1.0)
        result.before_kib = rss_kib(server.pid)
        client = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(CLIENT_CORE),
                sys.executable,
                str(SCRIPT),
                "idle-client",
                "--port",
                str(server.port),
                "--conns",
                str(conns),
                "--deadline",
                str(int(deadline)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdin is not None and client.stdout is not None
        report = read_json_line(client, deadline)
        result.opened, result.seconds, result.error = (
            report["opened"],
            report["seconds"],
            report["error"],
        )
        time.sleep(idle)
        result.after_kib = rss_kib(server.pid)
        client.stdin.write("check\n")
        client.stdin.flush()
        result.still_open = read_json_line(client, 30)["still_open"]
        if result.still_open != result.opened and result.error is None:
            result.error = f"the server closed {result.opened - result.still_open} idle connections"
        if not server.alive():
            result.error = f"server died\n{server.log_tail()}"
    except (ServerFailed, OSError, ValueError, KeyError) as exc:
        result.error = result.error or str(exc)
    finally:
        if client is not None:
            try:
                client.stdin.close()  # type: ignore[union-attr]
                client.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                client.kill()
                client.wait()
        server.stop()
    return result


def read_json_line(proc: subprocess.Popen, timeout: float) -> dict:
    """The next line the client prints, as JSON; bounded by ``timeout``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise OSError(f"no answer from the idle client within {timeout:.0f}s")
    line = proc.stdout.readline()
    if not line:
        raise OSError(f"the idle client exited ({proc.poll()})")
    return json.loads(line)


def print_idle_table(results: list[IdleResult], conns: int, idle: float) -> None:
    print(
        f"\nIdle WebSocket connections: {conns:,} opened (handshake + one echo each), "
        f"held {idle:g} s; RSS = VmRSS of the server process; load average {loadavg()}"
    )
    print(
        "| server | opened | still open | RSS before MiB | RSS after MiB | added MiB "
        "| KiB/conn | open s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        per = f"{r.added_kib / r.opened:.1f}" if r.opened else "-"
        print(
            f"| {r.name} | {r.opened:,} | {r.still_open:,} | {r.before_kib / 1024:.1f} | "
            f"{r.after_kib / 1024:.1f} | {r.added_kib / 1024:.1f} | {per} | {r.seconds:.1f} |"
        )
    for r in results:
        if r.error:
            print(f"  {r.name}: ERROR {r.error}")


def driver_main(args: argparse.Namespace) -> int:
    specs = select_specs(server_specs(args.gkit_tree), args.only, args.smoke)
    runnable = []
    for spec in specs:
        why = spec.missing()
        if why:
            print(f"skipping {spec.name}: {why}")
        else:
            runnable.append(spec)
    if not runnable:
        print("no server to run")
        return 1
    if args.smoke:
        scenarios = [Scenario("1x2000", 1, 2000), Scenario("10x200", 10, 200)]
        reps, idle_conns = 1, min(args.idle_conns, 200)
        args.retry_busy = 0  # runs this short say little about the core's other load
    else:
        n1 = max(1, int(100_000 * args.scale))
        n2 = max(1, int(1_000 * args.scale))
        scenarios = [Scenario(f"1x{n1}", 1, n1), Scenario(f"100x{n2}", 100, n2)]
        reps, idle_conns = args.reps, args.idle_conns
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(
        f"bench_ws: servers {', '.join(s.name for s in runnable)}; scenarios "
        f"{', '.join(s.name for s in scenarios)}; {reps} rep(s); nofile limit {soft}; "
        f"load average at start {loadavg()}"
    )
    failed = False
    table = Table()
    servers: dict[str, WsServer] = {}
    try:
        for spec in runnable:
            server = WsServer(spec, core=SERVER_CORE)
            servers[spec.name] = server
            server.wait_ready()
            warm = run_client(server, Scenario("warm-up", 10, 300), args.deadline, seed=1)
            if warm.error:
                print(f"{spec.name}: warm-up failed: {warm.error}")
        for rep in range(reps):
            order = runnable[rep % len(runnable) :] + runnable[: rep % len(runnable)]
            for scenario in scenarios:
                for spec in order:
                    server = servers[spec.name]
                    label = f"  rep {rep + 1} {scenario.name:>9} {spec.name:<18}"
                    for attempt in range(args.retry_busy + 1):
                        if not server.alive():
                            result = RunResult(None, error=f"server died\n{server.log_tail()}")
                        else:
                            result = run_client(server, scenario, args.deadline, seed=rep)
                        if result.error:
                            print(f"{label} ERROR {result.error}")
                            break
                        retry = result.other > BUSY_LIMIT and attempt < args.retry_busy
                        print(
                            f"{label} {result.rate:>9,.0f} msgs/s "
                            f"in {result.seconds:5.2f} s  server CPU {result.server_cpu:4.0%}  "
                            f"client CPU {result.client_cpu:4.0%}  "
                            f"core {SERVER_CORE} busy elsewhere {result.other:4.0%}  "
                            f"load {loadavg()}" + ("  -> run again" if retry else ""),
                            flush=True,
                        )
                        if not retry:
                            break
                    failed = failed or result.error is not None
                    table.add(spec.name, scenario.name, result)
    except ServerFailed as exc:
        print(f"server failed: {exc}")
        failed = True
    finally:
        for server in servers.values():
            server.stop()
    print_echo_table(table, runnable, scenarios, reps)
    if idle_conns > 0:
        results = [
            measure_idle(spec, idle_conns, args.idle, args.deadline)
            for spec in runnable
            if spec.name in (GKIT, REFERENCE) or args.only
        ]
        print_idle_table(results, idle_conns, args.idle)
        failed = failed or any(r.error for r in results)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    parser.add_argument(
        "--reps", type=int, default=3, help="interleaved repetitions; the table shows medians"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="scale the message counts (0.1: 10,000 and 100x100)",
    )
    parser.add_argument(
        "--only", help="comma-separated server names: " + ", ".join(s.name for s in SERVERS)
    )
    parser.add_argument(
        "--idle-conns",
        type=int,
        default=10_000,
        help="idle WebSocket connections for the memory run (0: skip it)",
    )
    parser.add_argument(
        "--no-idle",
        dest="idle_conns",
        action="store_const",
        const=0,
        help="skip the idle-connection run",
    )
    parser.add_argument(
        "--idle", type=float, default=2.0, help="seconds the idle connections are held"
    )
    parser.add_argument(
        "--retry-busy",
        type=int,
        default=2,
        help=f"run a measurement again (at most this many times) when the server's core was "
        f"more than {BUSY_LIMIT * 100:.0f}%% busy with other processes during it",
    )
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds any one client may take"
    )
    parser.add_argument(
        "--gkit-tree",
        metavar="DIR",
        help="serve the gkit package found in DIR (e.g. a copy of another commit's gkit/) "
        "instead of this repo's; the examples still come from this repo",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI: 1x2000 and 10x200 round trips, 1 rep, 200 idle connections",
    )
    client = sub.add_parser("client", help="internal: one measured client run")
    idle = sub.add_parser("idle-client", help="internal: hold idle connections")
    for p in (client, idle):
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--conns", type=int, required=True)
        p.add_argument("--deadline", type=float, default=120.0)
        p.add_argument("--seed", type=int, default=0)
    client.add_argument("--msgs", type=int, required=True, help="round trips per connection")
    args = parser.parse_args(argv)
    if args.command == "client":
        return client_main(args)
    if args.command == "idle-client":
        return idle_client_main(args)
    with terminate_on_sigterm():
        return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
