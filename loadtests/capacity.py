"""Capacity arithmetic for gkit.hub deployments, from measured inputs.

    python loadtests/capacity.py                          # 1,000,000 connections, 1 publish/s
    python loadtests/capacity.py --rate 10 --message 200
    python loadtests/capacity.py --measure-redis          # measure Redis's pub/sub rate here first
    python loadtests/capacity.py --smoke

The defaults are the figures measured on this machine (2 cores, 23 GB,
Python 3.11; see docs/scaling.md for the runs they come from): memory per
held WebSocket and per process from loadtests/c100k.py, local fan-out
deliveries per second per core from loadtests/bench_hub.py (a), and Redis
pub/sub deliveries per second from ``--measure-redis`` (one Redis core).
Every broadcast is assumed to go to all connections (the worst case).
"""
from __future__ import annotations

import argparse
import math
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Measured here (docs/scaling.md has the runs); override with the flags.
KIB_PER_CONN = 7.1          # c100k.py: server RSS added per held WebSocket, all workers
MIB_PER_PROCESS = 33.0      # c100k.py: 293 MiB for 9 processes before any connection
FANOUT_PER_CORE = 30_000    # bench_hub.py (a): gkit's sends per CPU-second of the server
REDIS_DELIVERIES = 3_800_000  # --measure-redis: messages/s one Redis core hands to subscribers
CONNS_PER_PROCESS = 16_000  # under the 20,000 open files per process


def measure_redis(subscribers: int = 32, messages: int = 20_000, size: int = 64) -> float:
    """Pub/sub deliveries per second of a throw-away redis-server: ``messages``
    PUBLISHes (pipelined) to ``subscribers`` raw connections."""
    from examples.chat.testing import RedisProcess
    payload = b"t" + b"x" * (size - 1)
    publish = (b"*3\r\n$7\r\nPUBLISH\r\n$5\r\ngkit:\r\n$%d\r\n%s\r\n" % (len(payload), payload))
    one = b"*3\r\n$7\r\nmessage\r\n$5\r\ngkit:\r\n$%d\r\n%s\r\n" % (len(payload), payload)
    with RedisProcess() as redis:
        socks = []
        for _ in range(subscribers):
            s = socket.create_connection(("127.0.0.1", redis.port))
            s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\ngkit:\r\n")
            buf = b""
            while buf.count(b"\r\n") < 6:
                buf += s.recv(4096)
            socks.append(s)
        done = []

        def drain(s: socket.socket) -> None:
            want, got = len(one) * messages, 0
            while got < want:
                got += len(s.recv(1 << 20))
            done.append(time.monotonic())

        threads = [threading.Thread(target=drain, args=(s,)) for s in socks]
        for t in threads:
            t.start()
        pub = socket.create_connection(("127.0.0.1", redis.port))
        start = time.monotonic()
        batch = publish * 500
        for _ in range(messages // 500):
            pub.sendall(batch)
        for t in threads:
            t.join(120)
        seconds = max(done) - start
        for s in socks + [pub]:
            s.close()
    return subscribers * messages / seconds


def table(conns: int, rate: float, message: int, kib: float, mib: float, fanout: float,
          redis: float, per_process: int, cores_per_machine: int, gib_per_machine: float) -> str:
    processes = math.ceil(conns / per_process)
    memory_gib = (conns * kib / 1024 + processes * mib) / 1024
    deliveries = conns * rate                       # local sends per second, all processes
    fanout_cores = deliveries / fanout
    redis_msgs = rate * processes                   # Redis: each publish goes to each process
    redis_mbit = redis_msgs * (message + 40) * 8 / 1e6
    machines = max(math.ceil(processes / cores_per_machine / 4),   # up to 4 workers a core
                   math.ceil(memory_gib / (gib_per_machine * 0.7)),
                   math.ceil(fanout_cores / (cores_per_machine * 0.5)))
    rows = [
        ("connections", f"{conns:,}"),
        ("broadcasts per second (each to all connections)", f"{rate:g}"),
        (f"gkit processes at {per_process:,} connections each", f"{processes:,}"),
        (f"server memory ({kib:g} KiB a connection + {mib:g} MiB a process)",
         f"{memory_gib:,.1f} GiB"),
        ("WebSocket sends per second, all processes", f"{deliveries:,.0f}"),
        (f"cores busy with fan-out (at {fanout:,.0f} sends/s a core)", f"{fanout_cores:,.2f}"),
        ("Redis deliveries per second (broadcasts x processes)", f"{redis_msgs:,.0f}"),
        (f"share of one Redis core (at {redis:,.0f} deliveries/s)", f"{redis_msgs / redis:.2%}"),
        (f"Redis outbound ({message} B messages)", f"{redis_mbit:,.1f} Mbit/s"),
        (f"machines of {cores_per_machine} cores / {gib_per_machine:g} GiB "
         f"(70% memory, 50% CPU for fan-out)", f"{machines:,}"),
        ("time to the last delivery, roughly (one process's fan-out)",
         f"{per_process / fanout * 1000:,.0f} ms + Redis hop"),
    ]
    width = max(len(r[0]) for r in rows)
    out = ["| quantity | value |", "| --- | --- |"]
    out += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=1.0, help="broadcasts per second")
    p.add_argument("--message", type=int, default=100, help="message size in bytes")
    p.add_argument("--kib-per-conn", type=float, default=KIB_PER_CONN)
    p.add_argument("--mib-per-process", type=float, default=MIB_PER_PROCESS)
    p.add_argument("--fanout-per-core", type=float, default=FANOUT_PER_CORE)
    p.add_argument("--redis-deliveries", type=float, default=REDIS_DELIVERIES)
    p.add_argument("--conns-per-process", type=int, default=CONNS_PER_PROCESS)
    p.add_argument("--cores", type=int, default=2, help="cores per machine")
    p.add_argument("--gib", type=float, default=23.0, help="memory per machine, GiB")
    p.add_argument("--measure-redis", action="store_true")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.measure_redis or args.smoke:
        rate = measure_redis(messages=2000 if args.smoke else 20_000)
        print(f"Redis pub/sub here: {rate:,.0f} deliveries/s (32 subscribers, 64 B messages)")
        args.redis_deliveries = rate
    for rate in sorted({args.rate, 10 * args.rate}):
        print(table(args.conns, rate, args.message, args.kib_per_conn, args.mib_per_process,
                    args.fanout_per_core, args.redis_deliveries, args.conns_per_process,
                    args.cores, args.gib))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
