"""Keepalive pings (server/wire.py): each falls due on a shared grid, only to a peer
quiet for a whole interval; a peer that never answers is still dropped, one that
answers is kept."""

from __future__ import annotations

import asyncio
import socket

from server.app import create_app
from server.clock import ManualClock
from server.config import Config
from server.wire import PING_GRID, FanoutWebSocketProtocol, quiet_for
from tests.harness import serve
from tests.realtime import Peer, client_frame, upgraded


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
        reader, writer = await upgraded(live.port)
        received = b""
        async with asyncio.timeout(10):  # never answered: dropped after ping + timeout
            while chunk := await reader.read(4096):
                received += chunk
        writer.close()
        assert received[:1] == b"\x89", "a ping came first"
        assert b"\x88" in received, "then the close frame"
        assert await answering.call("ping") == {}
        await answering.close()


async def test_a_peer_heard_from_is_pinged_only_once_quiet_for_an_interval(
        dsn: str, clock: ManualClock) -> None:
    app = create_app(Config(database_url=dsn, db_pool_min=1, db_pool_max=4), clock=clock)
    interval = 0.5  # 50 ms heartbeats leave room for a slow machine's stalls
    async with serve(app, ws_ping_interval=interval, ws_ping_timeout=interval) as live:
        reader, writer = await upgraded(live.port)
        loop = asyncio.get_running_loop()
        # For four intervals the peer's TCP is heard from every 50 ms (an unsolicited
        # pong, which RFC 6455 allows and the server ignores): no ping is sent.
        heard_until = loop.time() + 4 * interval
        while True:
            writer.write(client_frame(0xA, b"still here"))
            await writer.drain()
            last_heard = loop.time()
            if last_heard >= heard_until:
                break
            await asyncio.sleep(0.05)
        # Then it falls quiet: pinged once it has been quiet for an interval (less the
        # kernel's clock tick), and, never answering, dropped. A ping sent while it was
        # heard from would be read at once here.
        async with asyncio.timeout(10):
            first = await reader.readexactly(1)
            pinged = loop.time()
            rest = await reader.read()
        writer.close()
        assert first == b"\x89", "a ping came first"
        assert b"\x88" in rest, "then the close frame"
        assert pinged - last_heard >= interval - 0.02


async def test_quiet_for_is_the_time_since_the_peer_was_heard_and_none_while_frames_wait(
        ) -> None:
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    async with server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, server.sockets[0].getsockname())
        ours = await accepted.get()
        try:
            client.send(b"hello")
            await asyncio.sleep(0.2)
            quiet = quiet_for(ours.transport)
            assert quiet is not None and 0.15 <= quiet < 1.0
            # The client stops reading: what the server writes waits, and a peer with
            # frames waiting is not taken as heard from, however recent its last word.
            for _ in range(64):
                ours.write(b"x" * 65536)
            await asyncio.sleep(0.1)
            assert quiet_for(ours.transport) is None
        finally:
            ours.transport.abort()
            client.close()
