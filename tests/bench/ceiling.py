"""The ceiling peer: a bare websockets server on uvloop that broadcasts one pre-encoded
frame per call to the clinic's sockets. No database, no auth, no JSON per recipient:
what one Python process can push through these sockets at best.

It speaks just enough of PROTOCOL.md for the same load generator: `auth` (accepted),
`subscribe` to `clinic:<code>` (reply, then an empty snapshot) and `queue.call`, whose
CALLED frame carries `seq` = the clinic's call count and `at` = when it was encoded.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from server.runner import WS_MAX_SIZE, WS_PING_INTERVAL, WS_PING_TIMEOUT

subscribers: dict[str, set[ServerConnection]] = defaultdict(set)
calls: dict[str, int] = defaultdict(int)


def ready(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/ready":
        return connection.respond(HTTPStatus.OK, "ready\n")
    return None


def call(clinic: str) -> dict[str, Any]:
    calls[clinic] += 1
    seq = calls[clinic]
    frame = orjson.dumps({
        "type": "event", "channel": f"clinic:{clinic}", "seq": seq, "event": "CALLED",
        "data": {"number": seq}, "at": datetime.now(UTC).isoformat()}).decode()
    broadcast(subscribers[clinic], frame)
    return {"called": {"number": seq, "status": "CALLED", "clinic": clinic}}


async def handler(ws: ServerConnection) -> None:
    mine: set[str] = set()
    try:
        async for message in ws:
            request = orjson.loads(message)
            rid, op, args = request.get("id"), request.get("op"), request.get("args") or {}
            result: Any = {}
            if op == "subscribe":
                channel = str(args.get("channel", ""))
                clinic = channel.split(":")[1] if channel.startswith("clinic:") else channel
                await ws.send(orjson.dumps(
                    {"id": rid, "ok": True, "result": {"channel": channel, "seq": 0}}).decode())
                await ws.send(orjson.dumps({"type": "snapshot", "channel": channel, "seq": 0,
                                            "state": {}, "reset": False}).decode())
                subscribers[clinic].add(ws)
                mine.add(clinic)
                continue
            if op == "queue.call":
                result = call(str(args.get("clinic")))
            await ws.send(orjson.dumps({"id": rid, "ok": True, "result": result}).decode())
    except ConnectionClosed:
        pass
    finally:
        for clinic in mine:
            subscribers[clinic].discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, process_request=ready,
                     subprotocols=["mmc.v1"], compression=None, max_size=WS_MAX_SIZE,
                     ping_interval=WS_PING_INTERVAL, ping_timeout=WS_PING_TIMEOUT,
                     backlog=4096) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
