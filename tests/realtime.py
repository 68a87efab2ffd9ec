"""Realtime test pieces: the app served by uvicorn on 127.0.0.1:0 with its hub, raw
websockets clients that keep every frame they receive, session tokens, and a bare
client that writes its frames by hand (for tests of the wire itself)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server import auth
from server.app import create_app
from server.auth import Principal
from server.breaker import CircuitBreaker
from server.clock import Clock
from server.config import Config
from server.db import Database
from server.hub import Hub
from server.ws import WsLimits
from tests.harness import MS, LiveServer, serve

Frame = dict[str, Any]
WAIT = 3000 * MS


@contextlib.asynccontextmanager
async def running(dsn: str, clock: Clock | None = None, *, limits: WsLimits | None = None,
                  breaker: CircuitBreaker | None = None) -> AsyncIterator[LiveServer]:
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=10), clock=clock,
                     limits=limits, breaker=breaker)
    async with serve(app) as live:
        yield live


def hub_of(live: LiveServer) -> Hub:
    """The hub of an app served in this process (its lifespan state)."""
    hub = live.server.lifespan.state["hub"]
    assert isinstance(hub, Hub)
    return hub


async def token_for(db: Database, who: Principal) -> str:
    """A session as a login would create it, without paying for argon2."""
    async with db.transaction() as conn:
        return await auth.create_session(conn, who, db.now())


class Peer:
    """A real websockets client that records every frame the server pushes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.raw: list[str] = []
        self.pushed: list[Frame] = []
        self.close_code: int | None = None
        self.ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Frame]] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, **options: Any) -> Peer:
        ws = await connect(url, subprotocols=["mmc.v1"], open_timeout=WAIT, **options)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                assert isinstance(message, str), "the server sends text frames only"
                self.raw.append(message)
                frame = orjson.loads(message)
                future = self._replies.pop(frame.get("id"), None) if "ok" in frame else None
                if future is not None and not future.done():
                    future.set_result(frame)
                else:
                    self.pushed.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed ({self.close_code})"))
            self._changed.set()

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def request(self, op: str, args: dict[str, Any] | None = None) -> Frame:
        rid = next(self.ids)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._replies[rid] = future
        frame: Frame = {"id": rid, "op": op}
        if args is not None:
            frame["args"] = args
        try:
            await self.ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed as exc:
            raise ConnectionError(f"closed ({self.ws.close_code})") from exc
        async with asyncio.timeout(WAIT):
            return await future

    async def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        reply = await self.request(op, args)
        assert reply["ok"], reply
        return reply["result"]

    async def wait_for(self, predicate: Callable[[list[Frame]], bool],
                       within: float = WAIT) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.pushed):
                if self.close_code is not None and self._reader.done():
                    raise AssertionError(f"closed ({self.close_code}) while waiting")
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed(self, within: float = WAIT) -> int | None:
        async with asyncio.timeout(within):
            await self._reader
        return self.close_code

    def events(self, channel: str | None = None) -> list[Frame]:
        return [f for f in self.pushed if f.get("type") == "event"
                and (channel is None or f["channel"] == channel)]

    def notices(self, kind: str | None = None) -> list[Frame]:
        return [f for f in self.pushed if f.get("type") == "notice"
                and (kind is None or f["notice"] == kind)]

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(TimeoutError):
            await self.wait_closed()


@contextlib.asynccontextmanager
async def peers(url: str, count: int) -> AsyncIterator[list[Peer]]:
    opened = [await Peer.open(url) for _ in range(count)]
    try:
        yield opened
    finally:
        for peer in opened:
            await peer.close()


async def upgraded(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare WebSocket client: handshake done, nothing answered unless the test does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 section 5.3), payload under 126 bytes."""
    mask = os.urandom(4)
    return (bytes((0x80 | opcode, 0x80 | len(payload))) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
