"""The peer of bench_hub.py: the ``websockets`` library (asyncio) holding
subscribers on ``/sub`` (first frame ``subscribed``) and calling its
``broadcast()`` to all of them for every message sent to ``/pub``; any
other path answers a plain ``GET`` with 426 (the readiness check).

    python loadtests/peers/ws_broadcast.py --port 8080
"""
from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

SUBSCRIBERS: set = set()


async def handler(ws: ServerConnection) -> None:
    try:
        if ws.request.path == "/pub":
            async for message in ws:
                broadcast(SUBSCRIBERS, message)
            return
        SUBSCRIBERS.add(ws)
        try:
            await ws.send("subscribed")
            await ws.wait_closed()
        finally:
            SUBSCRIBERS.discard(ws)
    except ConnectionClosed:
        pass


async def serve_forever(ip: str, port: int) -> None:
    async with serve(handler, ip, port, ping_interval=None, backlog=4096,
                     compression=None) as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="websockets broadcast() peer for bench_hub.py")
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve_forever(args.ip, args.port))


if __name__ == "__main__":
    main()
