"""`GET /api/v1/events-stream`: one channel as Server-Sent Events, for clients that
cannot hold a WebSocket: the same channels, authorisation, snapshot and resume
(`Last-Event-ID`) as `subscribe`, through the same hub and bounded outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server import errors, protocol
from server.http import principal_of
from server.hub import Hub
from server.outbox import Outbox

KEEPALIVE_SECONDS = 15.0


def parse_since(request: Request) -> int | None:
    """`Last-Event-ID` (sent by EventSource on reconnect) wins over `since`."""
    raw = request.headers.get("last-event-id") or request.query_params.get("since")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise errors.BadRequest("since must be a non-negative integer")
    return int(raw)


def sse_message(frame: str) -> str:
    """A protocol frame as one SSE message; frames with a seq carry it as the id."""
    parsed = orjson.loads(frame)
    lines = []
    if "seq" in parsed:
        lines.append(f"id: {parsed['seq']}")
    lines.append(f"event: {parsed.get('type', 'message')}")
    lines.append(f"data: {frame}")
    return "\n".join(lines) + "\n\n"


async def events_stream(request: Request) -> Response:
    hub: Hub = request.state.hub
    # EventSource cannot set headers: the token may come in the query string.
    principal = await principal_of(request, request.query_params.get("token"))
    channel = protocol.parse_channel(request.query_params.get("channel"), principal)
    since = parse_since(request)
    outbox = Outbox(request.state.config.ws_send_queue)

    async def hold() -> None:
        async with hub.subscribe(outbox, channel, since):
            await outbox.wait_closed()

    async def body() -> AsyncIterator[str]:
        holder = asyncio.create_task(hold())
        # A subscription that fails (database gone mid-snapshot) ends the stream.
        holder.add_done_callback(lambda _: outbox.close(protocol.CloseCode.NORMAL, drain=True))
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(outbox.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if frame is None:
                    return
                yield sse_message(frame)
        finally:
            outbox.close(protocol.CloseCode.NORMAL)
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await holder

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
