"""CPU per WebSocket message in gkit's sans-IO session alone: bytes in,
events out, the echo frame back. No sockets, no gevent: the cost of
``gkit/proto/ws_session.py`` itself, beside wsproto's ``Connection`` doing
the same work, and optionally beside another gkit checkout (before/after a
change) in the same, interleaved run.

Each measurement runs in its own process (``measure`` sub-command) with the
checkout's directory first on ``sys.path``; runs alternate between the
implementations, and the table shows the median of ``--reps`` runs of
``--count`` messages, in µs of process CPU time per message.

Scenarios: ``text32`` (a masked 32-byte text message per read, echoed),
``binary32`` (the same, binary), ``batch100`` (100 such messages per read:
the parser's loop), ``frag4x8`` (a 32-byte text message in four fragments
per read), ``binary4k`` (a 4 KiB binary message per read).

    python loadtests/bench_ws_session.py                      # this checkout and wsproto
    python loadtests/bench_ws_session.py --against ../main    # and another checkout
    python loadtests/bench_ws_session.py --smoke              # CI: one tiny run each
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
MASK = b"\x37\xfa\x21\x3d"
SCENARIOS = ["text32", "binary32", "batch100", "frag4x8", "binary4k"]


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    head = bytes((first, 0x80 | n)) if n < 126 else struct.pack("!BBH", first, 0xFE, n)
    masked = bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))
    return head + MASK + masked


def reads_for(scenario: str) -> tuple:
    """(one read's bytes, messages in it)."""
    text = b"x" * 32
    if scenario == "text32":
        return frame(1, text), 1
    if scenario == "binary32":
        return frame(2, text), 1
    if scenario == "batch100":
        return frame(1, text) * 100, 100
    if scenario == "frag4x8":
        return (frame(1, text[:8], False) + frame(0, text[8:16], False)
                + frame(0, text[16:24], False) + frame(0, text[24:])), 1
    return frame(2, b"y" * 4096), 1


def measure(impl: str, scenario: str, count: int) -> float:
    """µs of CPU per message for ``count`` messages."""
    data, per_read = reads_for(scenario)
    rounds = max(1, count // per_read)
    if impl == "wsproto":
        from wsproto.connection import Connection, ConnectionType
        from wsproto.events import BytesMessage, Message, TextMessage

        conn = Connection(ConnectionType.SERVER)
        start = time.process_time()
        for _ in range(rounds):
            conn.receive_data(data)
            for ev in conn.events():
                if isinstance(ev, Message) and ev.message_finished:
                    kind = TextMessage if isinstance(ev, TextMessage) else BytesMessage
                    conn.send(kind(data=ev.data))
        return (time.process_time() - start) / (rounds * per_read) * 1e6
    from gkit.proto.ws_events import Message as GMessage
    from gkit.proto.ws_session import WsSession

    ws = WsSession(max_message=1 << 20)
    out = []
    start = time.process_time()
    for _ in range(rounds):
        for ev in ws.receive_data(data):
            if type(ev) is GMessage:
                out.append(ws.send_message(ev.data))
        out.clear()
    return (time.process_time() - start) / (rounds * per_read) * 1e6


def run_one(name: str, tree: str, scenario: str, count: int) -> float:
    env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
    impl = "wsproto" if name == "wsproto" else "gkit"
    out = subprocess.run([sys.executable, __file__, "measure", impl, scenario, str(count)],
                         env=env, cwd=tree, capture_output=True, text=True, timeout=300,
                         check=True).stdout
    return float(json.loads(out)["us"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="another gkit checkout to compare (before/after)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--smoke", action="store_true", help="one tiny run each (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.reps, args.count = 1, 2000
    impls = [("gkit", str(ROOT))]
    if args.against:
        impls.append(("gkit-against", str(Path(args.against).resolve())))
    impls.append(("wsproto", str(ROOT)))
    results: Dict[tuple, List[float]] = {}
    for rep in range(args.reps):
        order = impls[rep % len(impls):] + impls[:rep % len(impls)]
        for scenario in SCENARIOS:
            for name, tree in order:
                count = args.count // (20 if name == "wsproto" else 1)
                results.setdefault((name, scenario), []).append(
                    run_one(name, tree, scenario, count))
    print(f"µs of CPU per message, median of {args.reps} runs "
          f"({args.count:,} messages per gkit run, 1/20 of that for wsproto)")
    print(f"{'scenario':<10}" + "".join(f"{name:>14}" for name, _ in impls))
    for scenario in SCENARIOS:
        row = [statistics.median(results[(name, scenario)]) for name, _ in impls]
        print(f"{scenario:<10}" + "".join(f"{v:>14.2f}" for v in row))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        print(json.dumps({"us": measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))}))
    else:
        main()
