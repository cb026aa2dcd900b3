"""100,000 concurrent WebSocket connections on one small machine, one publish
reaching all of them through gkit.hub and Redis. Not run in CI (``--smoke``
is: small numbers); it loads the whole machine for a minute or two.

    python loadtests/c100k.py                      # 100,000 connections, 8 workers
    python loadtests/c100k.py --conns 50000 --workers 6
    python loadtests/c100k.py --smoke

Server: ``gkit loadtests.hub_app:app --workers N --hub redis://...
--max-connections M`` (M = conns/N plus 25 %, so each process stays under
the 20,000 open-file limit: a worker at M stops accepting and the others
take the rest). Clients: ``--clients`` processes of loadtests/hub_fleet.py,
each binding its sockets to source addresses in its own 127.A.0.0/16 so
ephemeral ports never run out. Reports connections held and failed, the
connect rate, every server process's open files, the server's total RSS,
and the time from the publish (``gkit.hub.publish_to`` in this process: no
server here) until the last of the connections has the message.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtests.bench_hub import Fleets, gkit_server  # noqa: E402
from loadtests.common import free_port, process_tree  # noqa: E402


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--clients", type=int, default=10, help="client processes")
    p.add_argument("--smoke", action="store_true", help="1,000 connections, 2 workers, 2 clients")
    args = p.parse_args()
    if args.smoke:
        args.conns, args.workers, args.clients = 1000, 2, 2
    from examples.chat.testing import RedisProcess, redis_server_path

    import gkit.hub
    if redis_server_path() is None:
        print("skipped: redis-server not found (apt-get install redis-server)")
        return 0
    per_worker = int(args.conns / args.workers * 1.25) + 16
    if per_worker > 19_000:
        print(f"--workers {args.workers}: {per_worker} connections per process would pass the "
              f"20,000 open-file limit; give more workers")
        return 2
    print(f"c100k: {args.conns:,} WebSocket connections, gkit --workers {args.workers} "
          f"--max-connections {per_worker} --hub redis, {args.clients} client processes; "
          f"load before: {' '.join(open('/proc/loadavg').read().split()[:3])} "
          f"(the machine is shared)")
    with RedisProcess() as redis:
        port = free_port()
        server = gkit_server(port, redis.url, args.workers,
                             ["--max-connections", str(per_worker), "--backlog", "4096"])
        fleets = None
        try:
            time.sleep(1.0)
            idle_rss = server.rss_mib()   # workers up, hub open, nothing connected
            # 128 handshakes in flight per client process: all of them stay
            # under net.ipv4.tcp_max_syn_backlog (2048 here).
            fleets = Fleets(port, args.conns, args.clients, expect=1, wait=60, src_base=10,
                            window=128)
            time.sleep(2.0)   # let the last subscriptions settle
            pids = process_tree(server.proc.pid)
            files = sorted((open_files(pid) for pid in pids), reverse=True)
            rss = server.rss_mib()
            receivers = gkit.hub.publish_to(redis.url, "bench", f"0 {time.monotonic()!r} hello")
            r = fleets.results()
        finally:
            if fleets is not None:
                fleets.kill()
            server.stop()
    reached = r["counts"].get(0, 0)
    last = r["latest"].get(0, float("nan"))
    print("| connections asked | held | failed | connect rate (/s) | reached | lost "
          "| last delivery (s) | server RSS total (MiB) | of it before connections (MiB) "
          "| added per connection (KiB) "
          "| open files per server process | processes subscribed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.conns:,} | {fleets.held:,} | {fleets.failed:,} | "
          f"{fleets.held / max(fleets.seconds, 1e-9):,.0f} | {reached:,} "
          f"| {fleets.held - reached:,} "
          f"| {last:.2f} | {rss:,.0f} | {idle_rss:,.0f} "
          f"| {(rss - idle_rss) * 1024 / max(fleets.held, 1):.1f} "
          f"| {', '.join(str(f) for f in files)} | {receivers} |")
    ok = fleets.held == args.conns and reached == args.conns
    print("OK: all held and reached" if ok else "NOT OK: some connections were not held or reached")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
