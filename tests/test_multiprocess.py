"""N `python -m server serve` processes on one Postgres: a command on one reaches
subscribers on every other; `kill -9` of one sends its clients to the other, where
they resume from their last seq with no gap (clients/python does the failing over)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from clients.python import Client
from server.db import Database
from tests.harness import MS
from tests.people import ADMIN, patient
from tests.realtime import Peer, token_for
from tests.test_hub import expected_seqs

RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class ServeProcess:
    process: asyncio.subprocess.Process
    port: int = 0
    log: list[str] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def start_serve(dsn: str) -> ServeProcess:
    """`python -m server serve --port 0`, its port read from uvicorn's log line."""
    env = {**os.environ, "DATABASE_URL": dsn, "LOG_FORMAT": "console", "LOG_LEVEL": "info",
           "HOST": "127.0.0.1", "ADMIN_PASSWORD": "multi-process-admin"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--port", "0", env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    served = ServeProcess(process)
    assert process.stderr is not None
    async with asyncio.timeout(30_000 * MS):
        while served.port == 0:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise AssertionError("serve exited:\n" + "".join(served.log))
            served.log.append(line)
            if found := RUNNING.search(line):
                served.port = int(found.group(1))

    async def drain() -> None:
        # Keep reading so a chatty server never blocks on a full pipe.
        while line := await process.stderr.readline():  # type: ignore[union-attr]
            served.log.append(line.decode())

    served.drain = asyncio.create_task(drain())
    return served


async def stop(served: ServeProcess) -> None:
    if served.process.returncode is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15_000 * MS):
                await served.process.wait()
        except TimeoutError:
            served.process.kill()
            await served.process.wait()
    if served.drain is not None:
        served.drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await served.drain


@pytest.fixture
def real_db(db: Database) -> Database:
    """The test database on the system clock, as the served processes run."""
    return Database(db.pool)


@pytest.fixture
async def two(dsn: str) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    first, second = await asyncio.gather(start_serve(dsn), start_serve(dsn))
    try:
        yield first, second
    finally:
        await asyncio.gather(stop(first), stop(second))


async def test_a_command_on_one_process_reaches_subscribers_on_the_other(
        two: tuple[ServeProcess, ServeProcess], real_db: Database) -> None:
    """Staff on process B calls; the display on process A shows it, and vice versa."""
    a, b, db = *two, real_db
    who = await patient(db, "21000000001")
    display_a, display_b = await Peer.open(a.ws_url), await Peer.open(b.ws_url)
    await display_a.call("subscribe", {"channel": "clinic:surgery"})
    await display_b.call("subscribe", {"channel": "clinic:surgery"})
    phone_a, staff_b = await Peer.open(a.ws_url), await Peer.open(b.ws_url)
    await phone_a.call("auth", {"token": await token_for(db, who)})
    await phone_a.call("subscribe", {"channel": "me"})
    await staff_b.call("auth", {"token": await token_for(db, ADMIN)})
    await phone_a.call("queue.enter", {"clinic": "surgery"})
    await staff_b.call("queue.call", {"clinic": "surgery"})
    for display in (display_a, display_b):
        await display.wait_for(lambda f, d=display: [e["event"] for e in d.events()]
                               == ["ENTERED", "CALLED"])
    await phone_a.wait_for(lambda f: any(n.get("notice") == "YOUR_TURN" for n in f))
    for peer in (display_a, display_b, phone_a, staff_b):
        await peer.close()


async def collect(client: Client, into: list[dict[str, Any]]) -> None:
    async for frame in client.frames():
        into.append(frame)


async def test_kill_9_of_one_process_its_clients_resume_on_the_other(
        two: tuple[ServeProcess, ServeProcess], real_db: Database) -> None:
    """Clients of A fail over to B and end with every seq once, in order."""
    a, b, db = *two, real_db
    patients = [await patient(db, f"2100000{i:04d}") for i in range(40)]
    watchers: list[tuple[Client, list[dict[str, Any]], str]] = []
    collectors = []
    for channel in ("clinic:lab", "admin"):
        client = Client([a.ws_url, b.ws_url], max_backoff=0.2)
        await client.connect()
        if channel == "admin":
            await client.auth(await token_for(db, ADMIN))
        frames: list[dict[str, Any]] = []
        watchers.append((client, frames, channel))
        collectors.append(asyncio.create_task(collect(client, frames)))
        await client.subscribe(channel)
    tablet = Client(b.ws_url, token=await token_for(db, ADMIN))
    await tablet.connect()
    await tablet.auth(tablet.token or "")
    phones = [await token_for(db, who) for who in patients]

    async def enter(token: str) -> None:
        phone = await Peer.open(b.ws_url)
        await phone.call("auth", {"token": token})
        await phone.call("queue.enter", {"clinic": "lab"})
        await phone.close()

    for i, token in enumerate(phones):
        await enter(token)
        await tablet.request("queue.call", {"clinic": "lab"})
        if i == 15:
            a.process.send_signal(signal.SIGKILL)
            await a.process.wait()
    expected = await expected_seqs(db)
    for client, frames, channel in watchers:
        start = next(f["seq"] for f in frames if f["type"] == "snapshot")
        want = [s for s in expected[channel] if s > start]

        def seqs(fs: list[dict[str, Any]] = frames, c: str = channel) -> list[int]:
            return [f["seq"] for f in fs if f["type"] == "event" and f["channel"] == c]

        for _ in range(1000):
            if len(seqs()) >= len(want):
                break
            await asyncio.sleep(10 * MS)
        assert seqs() == want, channel
        assert client.connects == 2 and b.ws_url in client.urls
        assert [f for f in frames if f["type"] == "snapshot" and f.get("reset")] == []
        await client.close()
    await tablet.close()
    for task in collectors:
        task.cancel()
    await asyncio.gather(*collectors, return_exceptions=True)
