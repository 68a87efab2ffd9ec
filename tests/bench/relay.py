"""The broadcaster peer: what a Python team builds by default. Starlette + uvicorn (our
uvicorn configuration) + encode/broadcaster on its Postgres backend; `queue.call` runs
the same SQL function as ours and NOTIFYs the CALLED frame in the same transaction, and
broadcaster relays it to every socket subscribed to the clinic (one task per socket, as
in broadcaster's own example). The NOTIFY goes out with the command's commit rather than
through `broadcast.publish`, because the backend publishes on its one LISTEN connection
and concurrent publishes fail there ("another operation is in progress").

It speaks the load generator's subset of PROTOCOL.md: `auth` (accepted), `subscribe`
to `clinic:<code>`, `queue.call`; `seq` counts the clinic's calls, `at` is the command
transaction's clock just before its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import uvicorn
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.db import init_connection
from server.runner import uvicorn_config

DSN = os.environ.get("DATABASE_URL", "")
broadcast = Broadcast(DSN or "postgres://")
calls: dict[str, int] = defaultdict(int)
pool: asyncpg.Pool | None = None


async def call(clinic: str) -> dict[str, Any]:
    assert pool is not None
    calls[clinic] += 1
    seq = calls[clinic]
    async with pool.acquire() as conn, conn.transaction():
        result = await conn.fetchval("SELECT mmc_call_next($1, now())", clinic)
        at = await conn.fetchval("SELECT clock_timestamp()")
        frame = orjson.dumps({
            "type": "event", "channel": f"clinic:{clinic}", "seq": seq, "event": "CALLED",
            "data": {"number": result["called"]["number"]}, "at": at.isoformat()}).decode()
        await conn.execute("SELECT pg_notify($1, $2)", f"clinic:{clinic}", frame)
    return dict(result)


async def relay(websocket: WebSocket, channel: str, rid: Any) -> None:
    async with broadcast.subscribe(channel=channel) as subscriber:
        await websocket.send_text(orjson.dumps(
            {"id": rid, "ok": True, "result": {"channel": channel, "seq": 0}}).decode())
        await websocket.send_text(orjson.dumps(
            {"type": "snapshot", "channel": channel, "seq": 0, "state": {},
             "reset": False}).decode())
        async for event in subscriber:  # type: ignore[attr-defined]
            await websocket.send_text(event.message)


async def endpoint(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="mmc.v1" if "mmc.v1" in offered else None)
    relays: list[asyncio.Task[None]] = []
    try:
        async for message in websocket.iter_text():
            request = orjson.loads(message)
            rid, op, args = request.get("id"), request.get("op"), request.get("args") or {}
            if op == "subscribe":
                relays.append(asyncio.create_task(relay(websocket, str(args["channel"]), rid)))
                continue
            try:
                result = await call(str(args["clinic"])) if op == "queue.call" else {}
                reply: dict[str, Any] = {"id": rid, "ok": True, "result": result}
            except asyncpg.PostgresError as exc:
                code = "empty" if exc.sqlstate == "MQE09" else "internal"
                reply = {"id": rid, "ok": False, "error": code, "message": str(exc)}
            await websocket.send_text(orjson.dumps(reply).decode())
    except WebSocketDisconnect:
        pass
    finally:
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ready\n")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=10, init=init_connection)
    await broadcast.connect()
    try:
        yield
    finally:
        await broadcast.disconnect()
        await pool.close()


app = Starlette(routes=[Route("/ready", ready), WebSocketRoute("/ws", endpoint)],
                lifespan=lifespan)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=parser.parse_args().port)).run()
