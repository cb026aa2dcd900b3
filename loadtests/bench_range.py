"""Range near the end of a big file through Flask's ``send_file``, per server.

A sparse file of ``--size`` bytes (default 1 GiB; its last 100 bytes are
data) is served by ``loadtests/peers/range_app.py`` (Flask ``send_file``)
under each server; the client asks ``--reps`` times for
``Range: bytes=-100`` on a fresh connection and times each request from
connect to the last byte. Each answer is checked (206, the exact 100
bytes). gkit's ``wsgi.file_wrapper`` is seekable, so werkzeug seeks to the
range and gkit sends it with ``sendfile``; a server whose wrapper cannot
seek makes werkzeug read and drop every byte before the range.

    python loadtests/bench_range.py                  # 1 GiB, 5 reps per server
    python loadtests/bench_range.py --smoke          # CI: 64 MiB, 1 rep, gkit and werkzeug
    python loadtests/bench_range.py --only gkit,gunicorn-sync

Exit status 1 if a server failed to start or answered wrong.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time

from common import ServerFailed, ServerProcess, ServerSpec, select_specs, terminate_on_sigterm

APP = "loadtests.peers.range_app:app"
TAIL = bytes(range(100))

SERVERS = [
    ServerSpec("gkit", ("{python}", "-m", "gkit", APP, "--ip", "127.0.0.1", "--port", "{port}"),
               requires=("gkit.__main__", "flask"), smoke=True),
    ServerSpec("werkzeug", ("{python}", "{peers}/range_app.py", "{port}"),
               requires=("flask",), smoke=True),
    ServerSpec("gunicorn-sync", ("{python}", "-m", "gunicorn", "-w", "1",
                                 "-b", "127.0.0.1:{port}", APP), requires=("gunicorn", "flask")),
    ServerSpec("gunicorn-gevent", ("{python}", "-m", "gunicorn", "-k", "gevent", "-w", "1",
                                   "-b", "127.0.0.1:{port}", APP),
               requires=("gunicorn", "flask")),
]


def make_file(size: int) -> str:
    fd, path = tempfile.mkstemp(prefix="gkit-bench-range-", suffix=".bin")
    with os.fdopen(fd, "wb") as f:
        f.truncate(size - len(TAIL))
        f.seek(size - len(TAIL))
        f.write(TAIL)
    return path


def ranged_get(port: int, timeout: float = 60.0) -> float:
    """One ``Range: bytes=-100`` request on a fresh connection; seconds taken."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=-100\r\n"
                     b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - start
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 206", b"HTTP/1.0 206")) or body != TAIL:
        raise ServerFailed(f"wrong answer: {head[:200]!r} body {body[:40]!r}...")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1 << 30, help="file size in bytes")
    parser.add_argument("--reps", type=int, default=5, help="requests per server")
    parser.add_argument("--only", help="comma-separated server names")
    parser.add_argument("--smoke", action="store_true", help="64 MiB, 1 rep, smoke servers")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.reps = 64 << 20, 1
    specs = select_specs(SERVERS, args.only, args.smoke)
    path = make_file(args.size)
    os.environ["GKIT_BENCH_RANGE_FILE"] = path
    rows = []
    status = 0
    try:
        with terminate_on_sigterm():
            for spec in specs:
                why = spec.missing()
                if why:
                    print(f"{spec.name}: skipped ({why})")
                    continue
                server = ServerProcess(spec)
                try:
                    server.wait_ready()
                    ranged_get(server.port)  # warm: imports, page cache
                    times = [ranged_get(server.port) for _ in range(args.reps)]
                    rows.append((spec.name, statistics.median(times), min(times), max(times)))
                except ServerFailed as exc:
                    print(f"{spec.name}: FAILED {exc}")
                    status = 1
                finally:
                    server.stop()
    finally:
        os.unlink(path)
    print(f"\nRange: bytes=-100 of a {args.size / (1 << 20):,.0f} MiB sparse file through "
          f"Flask send_file, {args.reps} requests each (fresh connection per request)")
    print(f"{'server':<18}{'median ms':>12}{'min ms':>10}{'max ms':>10}{'vs gkit':>10}")
    base = next((r[1] for r in rows if r[0] == "gkit"), None)
    for name, med, low, high in rows:
        ratio = f"{med / base:.0f}x" if base else "-"
        print(f"{name:<18}{med * 1e3:>12.2f}{low * 1e3:>10.2f}{high * 1e3:>10.2f}{ratio:>10}")
    return status


if __name__ == "__main__":
    sys.exit(main())
