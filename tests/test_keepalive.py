"""Keepalive pings on a shared grid (server/wire.py): each ping falls due on the grid,
a peer that never answers is still dropped, one that answers is kept."""

from __future__ import annotations

import asyncio
import base64
import os

from server.app import create_app
from server.clock import ManualClock
from server.config import Config
from server.wire import PING_GRID, FanoutWebSocketProtocol
from tests.harness import serve
from tests.realtime import Peer


async def test_a_ping_falls_due_on_the_grid_within_one_slot_of_its_interval() -> None:
    loop = asyncio.get_running_loop()
    protocol = FanoutWebSocketProtocol.__new__(FanoutWebSocketProtocol)
    protocol.loop = loop
    protocol.ping_interval, protocol.last_ping_rtt = 20.0, 0.013
    for _ in range(5):
        earliest = loop.time() + 20.0 - 0.013
        protocol.schedule_ping()
        assert protocol.ping_timer is not None
        when = protocol.ping_timer.when()
        protocol.ping_timer.cancel()
        assert earliest <= when < earliest + PING_GRID + 0.01
        assert when / PING_GRID == round(when / PING_GRID)
        await asyncio.sleep(0.037)  # another moment, the same kind of deadline


async def test_a_silent_peer_is_dropped_and_an_answering_one_is_kept(
        dsn: str, clock: ManualClock) -> None:
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=4), clock=clock)
    async with serve(app, ws_ping_interval=0.3, ws_ping_timeout=0.3) as live:
        answering = await Peer.open(live.ws_url)
        await answering.call("subscribe", {"channel": "clinic:eyes"})
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        received = b""
        async with asyncio.timeout(10):  # never answered: dropped after ping + timeout
            while chunk := await reader.read(4096):
                received += chunk
        writer.close()
        assert received[:1] == b"\x89", "a ping came first"
        assert b"\x88" in received, "then the close frame"
        assert await answering.call("ping") == {}
        await answering.close()
