"""A network link between a browser and the test server that can go dead.

Chromium's offline emulation does not reliably stop an open WebSocket (frames may still
flow), so a page's heartbeat is tested against a link cut outside the browser: a TCP relay
on 127.0.0.1 that, while stalled, holds every byte in both directions without closing
anything, as a dead cable or a wedged switch would. New connections are accepted and held
too; when the link comes back everything held flows on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

CHUNK = 65536


class Link:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.pumps: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        self.flowing.clear()

    def restore(self) -> None:
        self.flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        for source, target in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, target))
            self.pumps.add(task)
            task.add_done_callback(self.pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(CHUNK):
                await self.flowing.wait()
                target.write(data)
                await target.drain()
            await self.flowing.wait()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side's end ends the other: write_eof would leave half-open sockets behind.
            target.close()


@contextlib.asynccontextmanager
async def link_to(upstream_port: int) -> AsyncIterator[Link]:
    """A Link on 127.0.0.1:<free port> to the server on `upstream_port`."""
    link = Link(upstream_port)
    link.server = await asyncio.start_server(link._accept, "127.0.0.1", 0)
    try:
        yield link
    finally:
        link.restore()
        link.server.close()
        for task in list(link.pumps):
            task.cancel()
        await asyncio.gather(*link.pumps, return_exceptions=True)
        await link.server.wait_closed()
