"""The real pieces tests run against: one Postgres cluster per session (the embedded
wheel, or TEST_DATABASE_URL), a fresh migrated database per test cloned from a
template, and uvicorn serving the app on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from server import migrations
from server.embedded import EmbeddedPostgres
from server.runner import Server, uvicorn_config

TEMPLATE = "mmc_template"
_names = itertools.count(1)

# Every wait in the tests is a multiple of this, so a slow machine can stretch them.
MS = float(os.environ.get("MMC_TEST_MS", "0.001"))


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@dataclass
class Cluster:
    """A Postgres server the tests own (or were lent through TEST_DATABASE_URL)."""

    admin_dsn: str
    embedded: EmbeddedPostgres | None = None

    def dsn(self, database: str) -> str:
        return with_database(self.admin_dsn, database)

    def bin(self, name: str) -> str:
        if self.embedded is not None:
            return str(self.embedded.bin(name))
        return name

    async def create_template(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.dsn(TEMPLATE))
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()

    async def create_database(self, template: str = TEMPLATE) -> str:
        name = f"mmc_test_{os.getpid()}_{next(_names)}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


def start_cluster() -> Cluster:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return Cluster(url)
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="mmc-pg-")), delete_on_stop=True)
    return Cluster(embedded.start(), embedded)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """uvicorn serving an app in this event loop."""

    server: Server
    task: asyncio.Task[Any]

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@contextlib.asynccontextmanager
async def serve(app: Any, **overrides: Any) -> AsyncIterator[LiveServer]:
    config = uvicorn_config(app, host="127.0.0.1", port=0, **overrides)
    server = Server(config)
    # The test process owns its signals; uvicorn must not take them over.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(10 * MS)
    try:
        yield LiveServer(server, task)
    finally:
        server.should_exit = True
        await task
