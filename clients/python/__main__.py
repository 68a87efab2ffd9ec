"""`python -m clients.python watch CHANNEL`: print every frame of a channel as it
arrives, one JSON object a line, reconnecting and resuming on its own."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import orjson

from clients.python.client import Client, ClientError


async def watch(urls: list[str], channel: str, token: str | None) -> int:
    async with Client(urls, token=token) as client:
        if token is not None:
            await client.auth(token)
        try:
            await client.subscribe(channel)
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        async for frame in client.frames():
            sys.stdout.write(orjson.dumps(frame).decode() + "\n")
            sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.python", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="print the frames of CHANNEL as they arrive")
    w.add_argument("channel", help="clinic:<code>, clinic:<code>:staff, me or admin")
    w.add_argument("--url", action="append", dest="urls",
                   help="server WebSocket URL (repeat for failover); "
                        "default ws://127.0.0.1:8000/ws")
    w.add_argument("--token", default=os.environ.get("MMC_TOKEN"),
                   help="session token (default: $MMC_TOKEN) for private channels")
    ns = parser.parse_args(argv)
    urls = ns.urls or ["ws://127.0.0.1:8000/ws"]
    try:
        return asyncio.run(watch(urls, ns.channel, ns.token))
    except KeyboardInterrupt:
        return 130
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
