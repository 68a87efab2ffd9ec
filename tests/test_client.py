"""clients/python: requests by id, errors, resume on another server after a restart
(1012), and `python -m clients.python watch CHANNEL` printing frames as they arrive."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import pytest

from clients.python import Client, ClientError
from server.clock import ManualClock
from server.db import Database
from tests.harness import MS
from tests.people import ADMIN, patient, run
from tests.realtime import WAIT, running, token_for


async def next_of(client: Client, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while (frame := await client.next_frame())["type"] != kind:
            pass
    return frame


async def test_requests_are_answered_by_id_and_errors_raise(
        dsn: str, clock: ManualClock) -> None:
    """Replies find their request; a refusal raises ClientError with its code."""
    async with running(dsn, clock) as live, Client(live.ws_url) as client:
        results = await asyncio.gather(*(client.request("ping") for _ in range(20)))
        assert results == [{}] * 20
        with pytest.raises(ClientError) as refused:
            await client.request("queue.call", {"clinic": "eyes"})
        assert refused.value.code == "unauthorized"
        login = await client.request("patient.login", {"patient_id": "14000000001",
                                                       "gender": "male"})
        assert client.token == login["token"]
        await client.subscribe("me")
        snapshot = await next_of(client, "snapshot")
        assert snapshot["state"]["patient_id"] == "*******0001"


async def test_subscriptions_resume_on_the_next_server_after_a_restart(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """Server A shuts down (1012); the client resumes on B from its last seq."""
    people = [await patient(db, f"1300000{i:04d}") for i in range(6)]
    async with running(dsn, clock) as b:
        async with running(dsn, clock) as a:
            client = Client([a.ws_url, b.ws_url], max_backoff=0.1)
            await client.connect()
            await client.auth(await token_for(db, ADMIN))
            await client.subscribe("clinic:derma")
            start = (await next_of(client, "snapshot"))["seq"]
            for who in people[:3]:
                await run(db, who, "queue.enter", {"clinic": "derma"})
            for _ in range(3):
                await next_of(client, "event")
        for who in people[3:]:
            await run(db, who, "queue.enter", {"clinic": "derma"})
        seqs = [(await next_of(client, "event"))["seq"] for _ in range(3)]
        want = [r["id"] for r in await db.pool.fetch(
            "SELECT id FROM events WHERE clinic_code = 'derma' AND id > $1 ORDER BY id",
            start)]
        assert [*(want[:3]), *seqs] == want
        assert client.connects == 2
        await client.close()


async def test_watch_prints_each_frame_as_a_json_line(dsn: str, clock: ManualClock,
                                                      db: Database) -> None:
    """The command line watcher: the snapshot, then each event, one line each."""
    who = await patient(db, "12000000001")
    async with running(dsn, clock) as live:
        watcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clients.python", "watch", "clinic:vitals",
            "--url", live.ws_url, stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)
        assert watcher.stdout is not None
        try:
            async with asyncio.timeout(10_000 * MS):
                first = orjson.loads(await watcher.stdout.readline())
                assert first["type"] == "snapshot" and first["channel"] == "clinic:vitals"
                await run(db, who, "queue.enter", {"clinic": "vitals"})
                while (line := orjson.loads(await watcher.stdout.readline()))["type"] != "event":
                    pass
            assert line["event"] == "ENTERED" and line["data"] == {"number": 1}
        finally:
            watcher.terminate()
            await watcher.wait()


async def test_invalidations_reach_the_views_that_hold_them(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """A queue change invalidates `queue:status:<clinic>` for its displays and
    `stats:dashboard` for admins; a PIN rotation `pins:current` for staff only."""
    first, second = await patient(db, "11000000001"), await patient(db, "11000000002")
    async with running(dsn, clock) as live, Client(live.ws_url) as display, \
            Client(live.ws_url) as admin:
        await admin.auth(await token_for(db, ADMIN))
        await display.subscribe("clinic:eyes")
        await admin.subscribe("admin")
        await run(db, first, "queue.enter", {"clinic": "eyes"})
        assert (await next_of(display, "invalidate"))["keys"] == ["queue:status:eyes"]
        keys = (await next_of(admin, "invalidate"))["keys"]
        assert {"queue:status:eyes", "stats:dashboard"} <= set(keys)
        await run(db, ADMIN, "pin.rotate", {"clinic": "eyes"})
        assert (await next_of(admin, "invalidate"))["keys"] == ["pins:current"]
        await run(db, second, "queue.enter", {"clinic": "eyes"})
        assert (await next_of(display, "invalidate"))["keys"] == ["queue:status:eyes"]
