"""Long-poll broadcast: how long 5,000 parked clients wait for one broadcast.

Serves examples/longpoll.py with gkit (``python -m gkit
examples.longpoll:app``, pinned to core 0). The client is this script again
(``client`` sub-command, its own process pinned to core 1): it opens
``--clients`` keep-alive connections, sends ``GET /poll`` on each, polls
``GET /stats`` until the server reports all of them parked, then sends one
``POST /broadcast`` and reads every answer in an epoll loop. Each answer is
checked (200, the broadcast's exact body, keep-alive). Printed per round:
the time from sending the broadcast to the last poll's complete answer, the
median and 99th percentile over the clients, when the broadcast's own
``{"delivered": n}`` answer came, and the server's CPU time for the round
(from /proc/PID/stat, between all polls parked and all answers read: it
includes each connection going back to wait for its next request).

Each round after the first re-polls on the same keep-alive connections;
``--rounds`` (default 3) rounds, the summary shows their medians.

    python loadtests/bench_longpoll.py                    # 5,000 clients, 3 rounds
    python loadtests/bench_longpoll.py --clients 1000 --rounds 1
    python loadtests/bench_longpoll.py --http h11         # the other HTTP engine
    python loadtests/bench_longpoll.py --smoke            # CI: 200 clients, 1 round

Exit status 1 if the server failed to start or died, or any client got a
wrong answer, none, or was never parked. The client exits by itself
(SIGALRM) after ``--deadline`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, NotReady, ServerFailed, ServerProcess, ServerSpec, terminate_on_sigterm

APP = "examples.longpoll:app"
SERVER_CORE, CLIENT_CORE = 0, 1
SCRIPT = Path(__file__).resolve()
MESSAGE = b"broadcast from bench_longpoll"
POLL_TIMEOUT = 600  # seconds: the server must never time a poll out during a round


# ---------------------------------------------------------------------------
# The client.
# ---------------------------------------------------------------------------


class BenchError(RuntimeError):
    pass


def request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body or method == "POST":
        head += f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def split_response(buf: bytes) -> tuple[int, dict[str, str], bytes, bytes] | None:
    """(status, headers, body, rest) once ``buf`` holds a whole response with a
    Content-Length; None while it does not."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise BenchError(f"a response without Content-Length: {lines[0]!r}")
    length = int(headers["content-length"])
    if len(buf) < end + 4 + length:
        return None
    body = buf[end + 4 : end + 4 + length]
    return int(lines[0].split()[1]), headers, body, buf[end + 4 + length :]


def fetch(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on its own connection; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        while (parsed := split_response(buf)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("the server closed before answering")
            buf += chunk
    return parsed[0], parsed[2]


def waiting(port: int) -> int:
    status, body = fetch(port, request("GET", "/stats"))
    if status != 200:
        raise BenchError(f"GET /stats answered {status}")
    return int(json.loads(body)["waiting"])


def open_clients(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def park_all(port: int, socks: list[socket.socket], park_timeout: float) -> float:
    """Send ``GET /poll`` on every connection and wait until all are parked;
    returns the seconds that took."""
    poll = request("GET", f"/poll?timeout={POLL_TIMEOUT}")
    t0 = time.perf_counter()
    for sock in socks:
        sock.send(poll)  # a few dozen bytes into an empty buffer: never short
    deadline = time.monotonic() + park_timeout
    while (n := waiting(port)) < len(socks):
        if time.monotonic() > deadline:
            raise BenchError(f"only {n} of {len(socks)} polls parked after {park_timeout:.0f} s")
        time.sleep(0.05)
    if n > len(socks):
        raise BenchError(
            f"{n} polls parked, {len(socks)} sent: a poll from an earlier round is left"
        )
    return time.perf_counter() - t0


def broadcast_round(port: int, socks: list[socket.socket], deadline: float) -> dict[str, Any]:
    """Broadcast once; the time each poll's complete answer arrived."""
    ep = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    for sock in socks:
        by_fd[sock.fileno()] = sock
        bufs[sock.fileno()] = b""
        ep.register(sock.fileno(), select.EPOLLIN)
    poster = socket.create_connection(("127.0.0.1", port), timeout=10)
    poster.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    poster.setblocking(False)
    ep.register(poster.fileno(), select.EPOLLIN)
    post_buf = b""
    post_time = None
    delivered = None
    times: list[float] = []
    errors: list[str] = []
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    poster.send(request("POST", "/broadcast", MESSAGE))
    pending = len(socks)
    end_by = time.monotonic() + deadline
    while pending or post_time is None:
        if time.monotonic() > end_by:
            errors.append(f"{pending} polls unanswered after {deadline:.0f} s")
            break
        for fd, _ in ep.poll(1.0):
            if fd == poster.fileno():
                post_buf += poster.recv(65536)
                parsed = split_response(post_buf)
                if parsed is not None:
                    post_time = time.perf_counter() - t0
                    delivered = json.loads(parsed[2])["delivered"] if parsed[0] == 200 else None
                    ep.unregister(fd)
                continue
            try:
                data = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            if not data:
                errors.append("the server closed a parked poll")
                ep.unregister(fd)
                pending -= 1
                continue
            buf = bufs[fd] + data
            parsed = split_response(buf)
            if parsed is None:
                bufs[fd] = buf
                continue
            now = time.perf_counter() - t0
            status, headers, body, rest = parsed
            bufs[fd] = b""
            ep.unregister(fd)
            pending -= 1
            if status != 200 or body != MESSAGE or rest:
                errors.append(f"poll answered {status} {body[:40]!r}")
            elif headers.get("connection", "").lower() == "close":
                errors.append("poll answered with Connection: close")
            else:
                times.append(now)
    client_cpu = cpu_seconds() - cpu0
    ep.close()
    poster.close()
    times.sort()
    return {
        "answered": len(times),
        "last": times[-1] if times else None,
        "median": statistics.median(times) if times else None,
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))] if times else None,
        "first": times[0] if times else None,
        "post": post_time,
        "delivered": delivered,
        "client_cpu": client_cpu,
        "errors": errors[:5],
        "error_count": len(errors),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def client_main(args: argparse.Namespace) -> int:
    """``bench_longpoll.py client``: prints one JSON line per round, then exits."""
    signal.alarm(int(args.deadline))
    socks: list[socket.socket] = []
    status = 0
    try:
        socks = open_clients(args.port, args.clients)
        for round_no in range(args.rounds):
            if round_no:
                time.sleep(0.5)  # let the previous round settle
            park_seconds = park_all(args.port, socks, args.park_timeout)
            print(
                json.dumps(
                    {
                        "round": round_no + 1,
                        "event": "parked",
                        "seconds": park_seconds,
                        "load": os.getloadavg()[0],
                    }
                ),
                flush=True,
            )
            if not sys.stdin.readline():  # "go": the driver has read the server's CPU time
                raise BenchError("the driver went away")
            report = broadcast_round(args.port, socks, args.round_timeout)
            report.update(round=round_no + 1, event="broadcast", park_seconds=park_seconds)
            print(json.dumps(report), flush=True)
            if report["error_count"] or report["answered"] != args.clients:
                status = 1
                break
    except (OSError, BenchError, ValueError) as exc:
        print(json.dumps({"event": "error", "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        status = 1
    finally:
        linger = struct.pack("ii", 1, 0)
        for sock in socks:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)  # no TIME_WAIT
            except OSError:
                pass
            sock.close()
    return status


# ---------------------------------------------------------------------------
# The driver.
# ---------------------------------------------------------------------------


class LongpollServer(ServerProcess):
    """Ready when ``GET /stats`` answers."""


    def probe(self) -> None:
        try:
            waiting(self.port)
        except (BenchError, ValueError) as exc:
            raise NotReady(str(exc)) from None


def gkit_command(tree: str | None) -> tuple[str, ...]:
    """How a gkit command line starts: this repo's gkit, or the ``gkit``
    package found in ``tree`` (``--gkit-tree``)."""
    if tree is None:
        return ("{python}", "-m", "gkit")
    return ("env", f"PYTHONPATH={Path(tree).resolve()}{os.pathsep}{REPO}", "{python}", "-m", "gkit")


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def driver_main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.clients, args.rounds = min(args.clients, 200), 1
    spec = ServerSpec(
        f"gkit-{args.http}",
        (
            *gkit_command(args.gkit_tree),
            APP,
            "--ip",
            "127.0.0.1",
            "--port",
            "{port}",
            "--http",
            args.http,
        ),
    )
    print(
        f"bench_longpoll: {args.clients:,} parked clients, {args.rounds} round(s), "
        f"server {spec.name} on core {SERVER_CORE}, client on core {CLIENT_CORE}; "
        f"load average at start {loadavg()}"
    )
    server = LongpollServer(spec, core=SERVER_CORE)
    rounds: list[dict[str, Any]] = []
    failed = False
    client = None
    try:
        server.wait_ready()
        argv = [
            "taskset",
            "-c",
            str(CLIENT_CORE),
            sys.executable,
            str(SCRIPT),
            "client",
            "--port",
            str(server.port),
            "--clients",
            str(args.clients),
            "--rounds",
            str(args.rounds),
            "--deadline",
            str(int(args.deadline)),
            "--park-timeout",
            str(args.park_timeout),
            "--round-timeout",
            str(args.round_timeout),
        ]
        client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdin is not None and client.stdout is not None
        cpu0 = 0.0
        for line in client.stdout:
            event = json.loads(line)
            if event["event"] == "parked":
                print(
                    f"  round {event['round']}: {args.clients:,} polls parked "
                    f"in {event['seconds']:.2f} s "
                    f"(load {event['load']:.2f})",
                    flush=True,
                )
                cpu0 = server.cpu_seconds()
                client.stdin.write("go\n")
                client.stdin.flush()
            elif event["event"] == "broadcast":
                event["server_cpu"] = server.cpu_seconds() - cpu0
                rounds.append(event)
                print(
                    f"  round {event['round']}: broadcast -> last answer {ms(event['last'])} ms, "
                    f"median {ms(event['median'])} ms, p99 {ms(event['p99'])} ms, "
                    f"POST answered at {ms(event['post'])} ms (delivered {event['delivered']}), "
                    f"{event['answered']:,} answered, server CPU {ms(event['server_cpu'])} ms, "
                    f"client CPU {ms(event['client_cpu'])} ms, "
                    f"load {loadavg()}",
                    flush=True,
                )
                for error in event["errors"]:
                    print(f"    ERROR {error}")
                failed = failed or bool(event["error_count"]) or event["answered"] != args.clients
            else:
                print(f"  ERROR {event['error']}")
                failed = True
        client.wait(timeout=30)
        failed = failed or client.returncode != 0
        if not server.alive():
            print(f"server died\n{server.log_tail()}")
            failed = True
    except ServerFailed as exc:
        print(f"server failed: {exc}")
        failed = True
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        server.stop()
    print(
        f"\nLong-poll broadcast, {args.clients:,} parked clients, {spec.name} "
        f"(medians of {len(rounds)} round(s)); load average {loadavg()}"
    )
    print(
        "| clients | to last answer ms | median ms | p99 ms | POST answered ms "
        "| server CPU ms | CPU µs/client | delivered |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def med(key: str) -> float | None:
        values = [r[key] for r in rounds if r[key] is not None]
        return statistics.median(values) if values else None

    delivered = [r["delivered"] for r in rounds]
    cpu = med("server_cpu")
    per_client = "-" if cpu is None else f"{cpu / args.clients * 1e6:.0f}"
    print(
        f"| {args.clients:,} | {ms(med('last'))} | {ms(med('median'))} | {ms(med('p99'))} | "
        f"{ms(med('post'))} | {ms(cpu)} | {per_client} | "
        f"{', '.join(str(d) for d in delivered) or '-'} |"
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=5000, help="parked long-poll clients")
    parser.add_argument(
        "--rounds", type=int, default=3, help="broadcasts (clients re-poll in between)"
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
        "--park-timeout", type=float, default=60.0, help="seconds for all polls to park"
    )
    parser.add_argument(
        "--round-timeout", type=float, default=60.0, help="seconds for all answers to come"
    )
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="seconds the client may run in all"
    )
    parser.add_argument("--smoke", action="store_true", help="CI: 200 clients, 1 round")
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("client", help="internal: the load generator")
    client.add_argument("--port", type=int, required=True)
    for name in ("--clients", "--rounds"):
        client.add_argument(name, type=int, required=True)
    for name in ("--deadline", "--park-timeout", "--round-timeout"):
        client.add_argument(name, type=float, required=True)
    args = parser.parse_args(argv)
    if args.command == "client":
        return client_main(args)
    with terminate_on_sigterm():
        return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
