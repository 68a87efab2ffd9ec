"""`GET /api/v1/events-stream`: one channel as Server-Sent Events, for clients that
cannot hold a WebSocket: the same channels, authorisation, snapshot and resume
(`Last-Event-ID`) as `subscribe`, through the same hub and bounded outbox. A private
channel is opened with a single-use `ticket` (stream.ticket) or a bearer header, never a
session token in the URL; the stream ends the moment its session does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server import auth, errors, protocol
from server.http import bearer_token
from server.hub import Hub
from server.outbox import Outbox
from server.sessions import SessionRegistry

KEEPALIVE_SECONDS = 15.0


def parse_since(request: Request) -> int | None:
    """`Last-Event-ID` (sent by EventSource on reconnect) wins over `since`."""
    raw = request.headers.get("last-event-id") or request.query_params.get("since")
    if raw is None or raw == "":
        return None
    # ASCII digits only: str.isdigit() is true for "²" and other digits int() refuses.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise errors.BadRequest("since must be a non-negative integer")
    return int(raw)


async def caller_of(request: Request) -> tuple[auth.Principal, bytes | None]:
    """(principal, session token hash): from a `ticket` (spent here, and only for the
    channel it was issued for), a bearer header, or anonymous."""
    db = request.state.db
    ticket = request.query_params.get("ticket")
    if ticket is not None:
        async with db.transaction() as conn:
            principal, session, channel = await auth.redeem_ticket(conn, ticket, db.now())
        if channel != request.query_params.get("channel"):
            raise errors.Forbidden("the ticket is for another channel")
        return principal, session
    token = bearer_token(request)
    if token is None:
        return auth.ANONYMOUS, None
    try:
        return await auth.authenticate(db, token), auth.token_hash(token)
    except errors.Unauthorized:
        return auth.ANONYMOUS, None


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
    if "token" in request.query_params:
        raise errors.BadRequest("a session token never goes in a URL: use a ticket "
                                "(stream.ticket) or the Authorization header")
    principal, session = await caller_of(request)
    channel = protocol.parse_channel(request.query_params.get("channel"), principal)
    since = parse_since(request)
    outbox = Outbox(request.state.config.ws_send_queue)
    sessions: SessionRegistry | None = getattr(request.state, "sessions", None)
    release = None
    if session is not None and sessions is not None:
        release = sessions.hold(session, lambda: outbox.close(protocol.CloseCode.NORMAL))

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
            if release is not None:
                release()
            outbox.close(protocol.CloseCode.NORMAL)
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await holder

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
