"""A TCP proxy on 127.0.0.1 between the servers and Postgres's Unix socket, in its own
process: it recognises the hub's connection (application_name `mmc-hub` in its startup
packet) and can cut it or stall it, as a network would, while the pool's pass through."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import uvloop

HUB_MARK = b"mmc-hub"
SNIFF_BYTES = 4096


class Side(asyncio.Protocol):
    """One end of a proxied connection; `peer` is the other end's transport."""

    def __init__(self, pair: Pair, client: bool) -> None:
        self.pair = pair
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's own class
        if self.client:
            self.pair.proxy.pairs.add(self.pair)
            # Held by the pair: a task nobody references may be collected mid-flight.
            self.pair.opening = asyncio.get_running_loop().create_task(self.pair.open_upstream())
            transport.pause_reading()  # until the upstream is there

    def data_received(self, data: bytes) -> None:
        self.pair.forward(self.client, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.close()


class Pair:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.down_side = Side(self, client=True)
        self.up_side: Side | None = None
        self.sniffed = 0
        self.hub = False
        self.closed = False
        self.opening: asyncio.Task[None] | None = None
        self.early: list[bytes] = []

    async def open_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, side = await loop.create_unix_connection(
                lambda: Side(self, client=False), self.proxy.socket_path)
        except OSError:
            self.close()
            return
        self.up_side = side
        if self.closed:
            self.close()
            return
        if side.transport is not None:
            for data in self.early:
                side.transport.write(data)
        self.early.clear()
        if self.down_side.transport is not None:
            self.down_side.transport.resume_reading()

    def forward(self, from_client: bool, data: bytes) -> None:
        if from_client and not self.hub and self.sniffed < SNIFF_BYTES:
            self.sniffed += len(data)
            if HUB_MARK in data:
                self.hub = True
                self.proxy.hub_connections += 1
                if self.proxy.stalled_until > time.monotonic():
                    self.pause()
        target = self.up_side if from_client else self.down_side
        if target is not None and target.transport is not None:
            target.transport.write(data)
        elif from_client:
            self.early.append(data)  # before the upstream is connected

    def pause(self) -> None:
        for side in (self.down_side, self.up_side):
            if side is not None and side.transport is not None:
                side.transport.pause_reading()

    def resume(self) -> None:
        for side in (self.down_side, self.up_side):
            if side is not None and side.transport is not None and not side.transport.is_closing():
                side.transport.resume_reading()

    def cut(self) -> None:
        """Both ends reset at once: neither side hears a goodbye."""
        for side in (self.down_side, self.up_side):
            if side is not None and side.transport is not None:
                side.transport.abort()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.pairs.discard(self)
        for side in (self.down_side, self.up_side):
            if side is not None and side.transport is not None:
                side.transport.close()


class Proxy:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.pairs: set[Pair] = set()
        self.stalled_until = 0.0
        self.hub_connections = 0

    def hubs(self) -> list[Pair]:
        return [p for p in self.pairs if p.hub]

    def cmd_cut(self) -> dict[str, Any]:
        hubs = self.hubs()
        for pair in hubs:
            pair.cut()
        return {"cut": len(hubs)}

    def cmd_stall(self, seconds: float) -> dict[str, Any]:
        self.stalled_until = time.monotonic() + seconds
        hubs = self.hubs()
        for pair in hubs:
            pair.pause()
        asyncio.get_running_loop().call_later(seconds, self._unstall)
        return {"stalled": len(hubs)}

    def _unstall(self) -> None:
        self.stalled_until = 0.0
        for pair in self.hubs():
            pair.resume()

    def cmd_status(self) -> dict[str, Any]:
        return {"connections": len(self.pairs), "hubs": len(self.hubs()),
                "hub_connections_ever": self.hub_connections}

    async def serve(self, conn: Connection, port: int) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Pair(self).down_side, "127.0.0.1", port)
        conn.send({"listening": port})
        try:
            while True:
                message: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
                command = message.pop("cmd")
                if command == "close":
                    conn.send({})
                    return
                conn.send(getattr(self, f"cmd_{command}")(**message))
        finally:
            server.close()
            for pair in list(self.pairs):
                pair.cut()


def _main(conn: Connection, socket_path: str, port: int) -> None:
    uvloop.run(Proxy(socket_path).serve(conn, port))


class DbProxy:
    """The proxy process, seen from the coordinator."""

    def __init__(self, socket_path: str, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=_main, args=(theirs, socket_path, port),
                                   daemon=True, name="chaos-dbproxy")
        self.process.start()
        if not self.conn.poll(30):
            self.close()
            raise RuntimeError("the database proxy did not start")
        self.conn.recv()
        self.port = port

    def ask(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.conn.send({"cmd": cmd, **args})
        if not self.conn.poll(30):
            raise TimeoutError("the database proxy did not answer")
        reply: dict[str, Any] = self.conn.recv()
        return reply

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                self.ask("close")
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
