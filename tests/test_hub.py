"""The hub: order, exactly-once delivery across a lost LISTEN connection, slow clients
and the send queue. Real Postgres, real uvicorn, real websockets clients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from server import errors
from server.auth import Principal
from server.clock import ManualClock
from server.db import Database, init_connection
from server.hub import LISTEN_SETTINGS, READ_EVENTS, Outbox, backoff
from server.protocol import CloseCode
from server.views import EVENT_COLUMNS, EventRow, audiences
from server.ws import WsLimits
from tests.harness import MS, LiveServer
from tests.people import ADMIN, patient, run, staff
from tests.realtime import Peer, hub_of, running, token_for


async def expected_seqs(db: Database) -> dict[str, list[int]]:
    """Every committed event filed under each channel key, in id order."""
    async with db.pool.acquire() as conn:
        records = await conn.fetch(
            "SELECT id, event_type, clinic_code, patient_id, queue_number, data, created_at "
            "FROM events ORDER BY id")
    out: dict[str, list[int]] = defaultdict(list)
    for record in records:
        row = EventRow.from_record(record)
        for key, _, _ in audiences(row):
            out[key].append(row.id)
    return out


def received(peer: Peer, channel: str, after: int) -> list[int]:
    return [e["seq"] for e in peer.events(channel) if e["seq"] > after]


def has_all(peer: Peer, channel: str, after: int, count: int) -> Callable[[Any], bool]:
    return lambda _: len(received(peer, channel, after)) >= count


async def ignoring_refusals(work: Awaitable[Any]) -> None:
    """A burst's call on an empty queue is refused; that is part of the burst."""
    with contextlib.suppress(errors.Empty, errors.NotFound, errors.Conflict):
        await work


async def subscribed(live: LiveServer, db: Database, who: Principal | None,
                     channel: str) -> tuple[Peer, int]:
    peer = await Peer.open(live.ws_url)
    if who is not None:
        await peer.call("auth", {"token": await token_for(db, who)})
    reply = await peer.call("subscribe", {"channel": channel})
    return peer, int(reply["seq"])


async def test_seq_only_grows_under_concurrent_commands_on_one_clinic(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """8 staff tablets at once on eyes: every channel sees each seq once, ascending."""
    patients = [await patient(db, f"2500000{i:04d}") for i in range(60)]
    async with running(dsn, clock) as live:
        watchers = {
            "clinic:eyes": await subscribed(live, db, None, "clinic:eyes"),
            "clinic:eyes:staff": await subscribed(live, db, staff("eyes"), "clinic:eyes:staff"),
            "admin": await subscribed(live, db, ADMIN, "admin"),
        }

        async def tablet(mine: list[Principal]) -> None:
            for who in mine:
                await run(db, who, "queue.enter", {"clinic": "eyes"})
                await ignoring_refusals(run(db, staff("eyes"), "queue.call", {"clinic": "eyes"}))
                await ignoring_refusals(run(db, staff("eyes"), "queue.done", {"clinic": "eyes"}))

        await asyncio.gather(*(tablet(patients[i::8]) for i in range(8)))
        expected = await expected_seqs(db)
        for channel, (peer, start) in watchers.items():
            want = [s for s in expected[channel] if s > start]
            await peer.wait_for(has_all(peer, channel, start, len(want)))
            assert received(peer, channel, start) == want, channel
            await peer.close()


async def test_terminated_listen_connection_loses_nothing_in_a_burst(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """pg_terminate_backend of the hub mid-burst of 500 commands: every subscriber
    ends with every seq of its channels exactly once, in order."""
    patients = [await patient(db, f"2400000{i:04d}") for i in range(100)]
    async with running(dsn, clock) as live:
        hub = hub_of(live)
        before = hub.backend_pid
        watchers = [
            ("clinic:lab", *await subscribed(live, db, None, "clinic:lab")),
            ("clinic:xray", *await subscribed(live, db, None, "clinic:xray")),
            ("clinic:lab:staff", *await subscribed(live, db, staff("lab"), "clinic:lab:staff")),
            ("admin", *await subscribed(live, db, ADMIN, "admin")),
        ]
        for who in patients[:5]:
            watchers.append((f"me:{who.subject}", *await subscribed(live, db, who, "me")))
        done = 0
        halfway = asyncio.Event()

        async def examinee(who: Principal) -> None:
            nonlocal done
            steps: list[Callable[[], Awaitable[Any]]] = [
                lambda: run(db, who, "queue.enter", {"clinic": "lab"}),
                lambda: run(db, ADMIN, "queue.call", {"clinic": "lab"}),
                lambda: run(db, ADMIN, "queue.done", {"clinic": "lab"}),
                lambda: run(db, who, "queue.enter", {"clinic": "xray"}),
                lambda: run(db, ADMIN, "queue.call", {"clinic": "xray"}),
            ]
            for step in steps:
                await ignoring_refusals(step())
                done += 1
                if done == 250:
                    halfway.set()

        async def terminate() -> None:
            await halfway.wait()
            async with db.pool.acquire() as conn:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'mmc-hub' AND datname = current_database()")
            assert killed == 1

        sem = asyncio.Semaphore(8)

        async def limited(who: Principal) -> None:
            async with sem:
                await examinee(who)

        await asyncio.gather(terminate(), *(limited(who) for who in patients))
        assert done == 500
        expected = await expected_seqs(db)
        for channel, peer, start in watchers:
            want = [s for s in expected[channel] if s > start]
            name = "me" if channel.startswith("me:") else channel
            await peer.wait_for(has_all(peer, name, start, len(want)), within=10_000 * MS)
            assert received(peer, name, start) == want, channel
        assert hub.listening and hub.backend_pid not in (None, before)
        assert sum(len(v) for v in expected.values()) > 500
        for _, peer, _ in watchers:
            await peer.close()


async def test_positions_are_recomputed_once_per_burst(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """40 patients entering in one transaction: one position query for the clinic,
    not 40, and the first patient (ahead unchanged) is told nothing."""
    first, *rest = [await patient(db, f"2350000{i:04d}") for i in range(41)]
    await run(db, first, "queue.enter", {"clinic": "internal"})
    async with running(dsn, clock) as live:
        hub = hub_of(live)
        phone, _ = await subscribed(live, db, first, "me")
        await phone.call("ping")
        before = hub.position_queries
        async with db.transaction() as conn:
            for who in rest:
                await conn.execute("SELECT mmc_queue_enter($1, 'internal', $2)",
                                   who.subject, db.now())
        head = await db.call("SELECT max(id) FROM events")
        for _ in range(400):
            if hub.last_id == head and hub.position_queries > before:
                break
            await asyncio.sleep(5 * MS)
        await asyncio.sleep(50 * MS)  # room for any further (wrongly uncoalesced) query
        assert hub.last_id == head
        assert 1 <= hub.position_queries - before <= 5
        assert phone.notices() == []
        await phone.close()


def rcvbuf_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive window, so unread frames back up fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_client_that_never_reads_is_closed_with_1013(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """Its queue fills and it is closed with 1013; the display beside it sees all."""
    patients = [await patient(db, f"2300000{i:04d}") for i in range(300)]
    # Large admin-only events fill the kernel's buffers in a few hundred steps.
    bulky = [{"type": "SETTINGS_CHANGED", "data": {"key": "note", "value": "x" * 50_000}}]
    async with running(dsn, clock, limits=WsLimits(send_queue=16)) as live:
        sleeper = await Peer.open(live.ws_url, sock=rcvbuf_socket(live.port), max_queue=1)
        await sleeper.call("auth", {"token": await token_for(db, ADMIN)})
        await sleeper.call("subscribe", {"channel": "admin"})
        sleeper._reader.cancel()  # from here on nobody reads its socket
        display, start = await subscribed(live, db, None, "clinic:lab")
        for who in patients:
            await run(db, who, "queue.enter", {"clinic": "lab"})
            await db.call("SELECT mmc_emit($1)", bulky)
            await asyncio.sleep(MS)
            if hub_of(live).subscribers("admin") == 0:
                break
        assert hub_of(live).subscribers("admin") == 0, "the sleeper was never cut off"
        expected = await expected_seqs(db)
        want = [s for s in expected["clinic:lab"] if s > start]
        await display.wait_for(lambda f: len(received(display, "clinic:lab", start)) >= len(want))
        assert received(display, "clinic:lab", start) == want
        await display.close()
        # Reading again, the sleeper finds the backlog and then the close code.
        code = None
        try:
            async with asyncio.timeout(5000 * MS):
                async for _ in sleeper.ws:
                    pass
        except Exception as exc:  # the close frame surfaces as ConnectionClosed
            code = getattr(getattr(exc, "rcvd", None), "code", None)
        assert (code or sleeper.ws.close_code) == CloseCode.TRY_AGAIN_LATER


async def test_outbox_offers_until_full_then_closes_with_1013() -> None:
    """Broadcast frames never wait: the one that does not fit closes the queue."""
    box = Outbox(4)
    assert all(box.offer(str(i)) for i in range(4))
    assert not box.offer("5")
    assert box.close_code == CloseCode.TRY_AGAIN_LATER
    assert await box.get() is None


async def test_outbox_put_waits_for_room_and_leaves_headroom_for_live_frames() -> None:
    """Replies and replays wait at half full, so a live frame behind them fits."""
    box = Outbox(4)
    await box.put("a")
    await box.put("b")
    blocked = asyncio.create_task(box.put("c"))
    await asyncio.sleep(10 * MS)
    assert not blocked.done()
    assert box.offer("live") and box.offer("live2")
    assert [await box.get() for _ in range(3)] == ["a", "b", "live"]
    await asyncio.wait_for(blocked, 1000 * MS)
    assert [await box.get() for _ in range(2)] == ["live2", "c"]
    box.close(CloseCode.NORMAL, drain=True)
    assert await box.get() is None


def test_backoff_grows_with_jitter_and_stays_capped() -> None:
    """Reconnect delays: exponential, jittered, never past the cap."""
    delays = [backoff(n, cap=2.0) for n in range(20)]
    assert all(0 < d <= 2.0 for d in delays)
    assert max(delays[:3]) < min(delays[10:])


@pytest.mark.parametrize("channel", ["clinic:lab", "admin"])
async def test_unsubscribe_releases_the_channel(
        dsn: str, clock: ManualClock, db: Database, channel: str) -> None:
    """Refcounted channels: the last unsubscribe (or disconnect) drops the channel."""
    async with running(dsn, clock) as live:
        hub = hub_of(live)
        first, _ = await subscribed(live, db, ADMIN, channel)
        second, _ = await subscribed(live, db, ADMIN, channel)
        assert hub.subscribers(channel) == 2
        await first.call("unsubscribe", {"channel": channel})
        assert hub.subscribers(channel) == 1
        await second.close()
        for _ in range(400):
            if not hub.subscribers(channel):
                break
            await asyncio.sleep(5 * MS)
        assert hub.subscribers(channel) == 0
        await first.close()


async def test_hub_listen_connection_is_not_from_the_pool(
        dsn: str, clock: ManualClock) -> None:
    """One dedicated backend named mmc-hub per process, LISTENing on both channels."""
    async with running(dsn, clock) as live:
        conn = await asyncpg.connect(dsn)
        try:
            pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE "
                                    "application_name = 'mmc-hub' AND datname = current_database()")
        finally:
            await conn.close()
        assert [r["pid"] for r in pids] == [hub_of(live).backend_pid]


async def _read_plan(dsn: str, settings: dict[str, str]) -> str:
    """The plan the hub's read gets once the statement has been run on a near-empty
    log and the log has then grown, as it does between a morning start and noon."""
    conn = await asyncpg.connect(dsn, server_settings=settings)
    try:
        await conn.execute("DELETE FROM events")
        await conn.execute("VACUUM ANALYZE events")
        await conn.execute(f"PREPARE tail(bigint) AS {READ_EVENTS}")
        for _ in range(8):
            await conn.execute("EXECUTE tail(0)")
        await conn.execute(
            "INSERT INTO events (event_type, clinic_code, queue_number, data) "
            "SELECT 'CALLED', 'LAB', n, '{}' FROM generate_series(1, 20000) AS n")
        head = await conn.fetchval("SELECT max(id) FROM events")
        rows = await conn.fetch(f"EXPLAIN EXECUTE tail({head - 10})")
        return "\n".join(r[0] for r in rows)
    finally:
        await conn.close()


async def test_hub_reads_the_log_tail_by_index_however_the_log_has_grown(dsn: str) -> None:
    """The hub's connection plans each read for its `id`: a plan cached on the
    morning's small log would scan the whole table on every read later in the day."""
    plan = await _read_plan(dsn, LISTEN_SETTINGS)
    assert "Seq Scan" in await _read_plan(dsn, {"application_name": "control"})
    assert "Index Scan using events_pkey" in plan and "Seq Scan" not in plan


def log_reads(live: LiveServer) -> float:
    value = hub_of(live).metrics.registry.get_sample_value("hub_log_reads_total")
    assert value is not None
    return value


async def test_each_event_is_fanned_out_from_its_notify_without_reading_the_log(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """Twelve commands one after another: every frame arrives in order, and the hub
    reads the log at most once (its keepalive), not once per command."""
    patients = [await patient(db, f"2340000{i:04d}") for i in range(4)]
    async with running(dsn, clock) as live:
        peer, start = await subscribed(live, db, ADMIN, "admin")
        before = log_reads(live)
        for who in patients:
            await run(db, who, "queue.enter", {"clinic": "ent"})
            await run(db, ADMIN, "queue.call", {"clinic": "ent"})
            await run(db, ADMIN, "queue.done", {"clinic": "ent"})
        want = [s for s in (await expected_seqs(db))["admin"] if s > start]
        await peer.wait_for(has_all(peer, "admin", start, len(want)))
        assert received(peer, "admin", start) == want and len(want) >= 12
        assert log_reads(live) - before <= 1
        await peer.close()


async def test_an_id_burnt_by_a_rollback_or_too_large_for_notify_is_read_from_the_log(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """A rolled-back event leaves a gap in ids, and a 9,000-byte event cannot ride its
    NOTIFY: the hub reads the log there, and every frame still arrives once, in order,
    the large one whole."""
    who = await patient(db, "23300000001")
    reason = "x" * 9000
    async with running(dsn, clock) as live:
        peer, start = await subscribed(live, db, ADMIN, "admin")
        before = log_reads(live)
        async with db.pool.acquire() as conn:
            with contextlib.suppress(RuntimeError):
                async with conn.transaction():
                    await conn.execute("SELECT mmc_emit(jsonb_build_array(mmc_event("
                                       "'CLINIC_PAUSED', 'ent', NULL, NULL)))")
                    raise RuntimeError("roll back")
        await run(db, who, "queue.enter", {"clinic": "ent"})
        async with db.pool.acquire() as conn:
            await conn.execute(
                "SELECT mmc_emit(jsonb_build_array(mmc_event('CLINIC_PAUSED', 'ent', NULL, "
                "NULL, jsonb_build_object('is_paused', true, 'reason', $1::text))))", reason)
        await run(db, ADMIN, "queue.call", {"clinic": "ent"})
        want = [s for s in (await expected_seqs(db))["admin"] if s > start]
        await peer.wait_for(has_all(peer, "admin", start, len(want)))
        assert received(peer, "admin", start) == want and len(want) >= 3
        paused = [e for e in peer.events("admin") if e["event"] == "CLINIC_PAUSED"]
        assert [e["data"]["reason"] for e in paused] == [reason]
        assert log_reads(live) - before >= 2
        await peer.close()


async def test_an_event_from_its_notify_equals_the_same_event_read_from_the_log(
        dsn: str, db: Database) -> None:
    """Type, clinic, patient, number, data and the commit time to the microsecond, in
    a session whose time zone is not UTC."""
    who = await patient(db, "23200000001")
    heard: asyncio.Queue[object] = asyncio.Queue()
    conn = await asyncpg.connect(dsn, server_settings={"TimeZone": "Asia/Qatar"})
    try:
        await conn.add_listener("mmc_events",
                                lambda _c, _p, _ch, payload: heard.put_nowait(payload))
        await run(db, who, "queue.enter", {"clinic": "ent"})
        async with asyncio.timeout(5):
            row = EventRow.from_notify(await heard.get())
        assert row is not None
        await init_connection(conn)
        record = await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1",
                                     row.id)
        assert row == EventRow.from_record(record)
        assert row.type == "ENTERED" and row.patient == who.subject and row.number is not None
    finally:
        await conn.close()
