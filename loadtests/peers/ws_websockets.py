"""The reference WebSocket echo server: the ``websockets`` library's asyncio
server, one process, echoing every message back (text as text, binary as
binary). loadtests/bench_ws.py measures gkit against it.

    python loadtests/peers/ws_websockets.py --port 8080              # asyncio loop
    python loadtests/peers/ws_websockets.py --port 8080 --uvloop     # uvloop, if installed

Keepalive pings are off (``ping_interval=None``): the benchmark client
answers no pings, and gkit sends none either. Compression stays at the
library's default; the benchmark clients offer none, so none is used.
A plain HTTP ``GET`` (no upgrade) is answered 426 by the library, which is
all the readiness check needs.
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass  # a client that resets instead of closing (bench_ws's idle run): not an error


async def serve_forever(ip: str, port: int) -> None:
    async with serve(echo, ip, port, ping_interval=None, max_size=2**24, backlog=4096) as server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop"
    )
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.run(serve_forever(args.ip, args.port))
    else:
        asyncio.run(serve_forever(args.ip, args.port))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
